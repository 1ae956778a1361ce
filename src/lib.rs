//! # coap-proto
//!
//! CoAP ([RFC 7252]) and block-wise transfer ([RFC 7959]) as pure, sans-IO state
//! machines: bytes and the current time go in; datagrams to send, application events
//! and the next deadline come out. The crate never touches a socket, a clock, a thread
//! or the heap. It is `#![no_std]`, needs no `alloc`, contains no `unsafe` and depends
//! on nothing but `core`.
//!
//! ## Layers
//!
//! | layer | what it owns | RFC |
//! |---|---|---|
//! | [`wire`] | header, token, options, payload; zero-copy [`wire::Message`] view; [`wire::MessageBuilder`] into `&mut [u8]`; [`wire::Block`], [`wire::Code`], content formats | 7252 §3, §5.4, §12; 7959 §2.2; 8974 |
//! | message layer | message IDs, retransmission, ACK/RST, deduplication | 7252 §4 (coming) |
//! | exchanges | requests and responses, separate responses, No-Response | 7252 §5, 7967 (coming) |
//! | block-wise | Block1/Block2 in both roles | 7959 (coming) |
//!
//! Each layer can be used alone: an embedded server that only wants the codec takes
//! [`wire`] and nothing else.
//!
//! ## Parsing
//!
//! [`wire::Message::parse`] checks the whole datagram once. Afterwards every accessor
//! borrows the datagram and none can fail or panic:
//!
//! ```
//! use coap_proto::wire::{Code, Message, Type};
//!
//! // ACK 2.05 Content, MID 0x1234, token de ad be ef, Content-Format 0, "22.5 C"
//! let datagram = b"\x64\x45\x12\x34\xde\xad\xbe\xef\xc0\xff22.5 C";
//! let msg = Message::parse(datagram)?;
//! assert_eq!(msg.ty(), Type::Ack);
//! assert_eq!(msg.code(), Code::CONTENT);
//! assert_eq!(msg.payload(), b"22.5 C");
//! for option in msg.options() {
//!     println!("{option}"); // "Content-Format: 0 (text/plain; charset=utf-8)"
//! }
//! # Ok::<(), coap_proto::wire::ParseError>(())
//! ```
//!
//! ## Building
//!
//! [`wire::MessageBuilder`] writes into a buffer you own. A call that does not fit
//! reports the size it needed and changes nothing:
//!
//! ```
//! use coap_proto::wire::{BuildError, Code, MessageBuilder, Type};
//!
//! let mut buf = [0u8; 64];
//! let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::PUT, 0x0042)?;
//! b.token(&[0x17])?.uri_path("/config/led")?.payload(b"on")?;
//! assert_eq!(b.finish().len(), 19);
//!
//! let mut small = [0u8; 8];
//! let mut b = MessageBuilder::new(&mut small, Type::Con, Code::PUT, 0x0042)?;
//! assert_eq!(b.uri_path("/config").err(), Some(BuildError::BufferTooSmall { needed: 11 }));
//! assert_eq!(b.len(), 4);
//! # Ok::<(), BuildError>(())
//! ```
//!
//! [RFC 7252]: https://www.rfc-editor.org/rfc/rfc7252
//! [RFC 7959]: https://www.rfc-editor.org/rfc/rfc7959
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod wire;

mod dedup;
mod endpoint;
mod params;
mod retransmit;
mod rng;
mod time;

pub use dedup::{DedupCache, Reply};
pub use endpoint::{
    Config, Endpoint, Error, Event, Incoming, IncomingHandle, MAX_TOKEN_LEN, Output, RequestHandle,
    RequestOptions, ResponseMode, Stats, Transmit,
};
pub use params::{ParamsError, TransmissionParams};
pub use retransmit::{Retransmission, RetransmitAction};
pub use time::Instant;

/// The README's examples, run as doctests so that they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
