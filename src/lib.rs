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
//! | message layer | [`Retransmission`] (back-off of one CON), [`DedupCache`] (duplicates and replay), message IDs, NSTART | 7252 §4 |
//! | exchanges | [`Endpoint`]: requests and responses in both roles, piggybacked and separate responses, pings, cancellation, No-Response | 7252 §5, 7967 |
//! | block-wise | [`block`]: Block2 slicer and download, Block1 upload and assembly; the [`Endpoint`] follows Block2 responses and serves bodies block-wise | 7959, 9175 §3 |
//! | group communication | [`Endpoint::handle_group_datagram`] (answers within Leisure, never errors or RST), [`RequestOptions::group`] (one request, every member's answer), [`multicast`] addresses | 7252 §8 |
//!
//! Each piece can be used alone: an embedded server that only wants the codec takes
//! [`wire`] and nothing else; a custom stack can reuse [`Retransmission`] or
//! [`DedupCache`]. An endpoint in one role takes its datagrams with
//! [`Endpoint::handle_client_datagram`] or [`Endpoint::handle_server_datagram`], and
//! the other role's code is not linked.
//!
//! ## The run loop
//!
//! An [`Endpoint`] is driven by three inputs and one output. After any input
//! ([`Endpoint::handle_datagram`], [`Endpoint::handle_timeout`]) or command
//! ([`Endpoint::request`], [`Endpoint::respond`], [`Endpoint::ping`],
//! [`Endpoint::cancel`]), drain [`Endpoint::poll_output`] until it returns
//! [`Output::Timeout`]; then sleep until that instant or the next datagram. That loop is
//! all an adapter does. A CoAP server over a `std::net::UdpSocket`:
//!
//! ```no_run
//! use std::net::UdpSocket;
//! use std::time::{Duration, Instant as Clock};
//! use coap_proto::wire::Code;
//! use coap_proto::{Config, Endpoint, Incoming, Instant, Output};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let socket = UdpSocket::bind("127.0.0.1:5683")?;
//!     let start = Clock::now();
//!     let now = || Instant::from_micros(start.elapsed().as_micros() as u64);
//!     let mut ep: Endpoint = Endpoint::new(Config { seed: 0x1234_5678, ..Config::default() })?;
//!     let mut buf = [0u8; 1500];
//!     loop {
//!         // 1. Send what is due and learn when to wake up.
//!         let deadline = loop {
//!             match ep.poll_output(now()) {
//!                 Output::Transmit(t) => { socket.send_to(t.data, t.to)?; }
//!                 Output::Event(e) => println!("{e}"),
//!                 Output::Timeout(deadline) => break deadline,
//!             }
//!         };
//!         // 2. Wait for a datagram, at most until the deadline.
//!         let wait = deadline.map_or(Duration::from_secs(60), |d| d - now());
//!         socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
//!         match socket.recv_from(&mut buf) {
//!             Ok((n, from)) => {
//!                 // 3. Hand it over; a request comes back borrowing `buf`.
//!                 if let Some(Incoming::Request { handle, message }) =
//!                     ep.handle_datagram(now(), from, &buf[..n])
//!                 {
//!                     let code = if message.uri_path().matches("/hello") {
//!                         Code::CONTENT
//!                     } else {
//!                         Code::NOT_FOUND
//!                     };
//!                     // Answered in the same step: piggybacked in the ACK.
//!                     ep.respond(now(), handle, code, |b| {
//!                         b.payload(b"hello")?;
//!                         Ok(())
//!                     })?;
//!                 }
//!             }
//!             Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
//!                 ep.handle_timeout(now());
//!             }
//!             Err(e) => return Err(e.into()),
//!         }
//!     }
//! }
//! ```
//!
//! `examples/exchange.rs` runs a client and a server this way over 127.0.0.1.
//!
//! ## Memory
//!
//! Everything is inline and fixed at compile time by [`Endpoint`]'s const parameters,
//! in three tables with written overflow policies (see [`Endpoint`], [`DedupCache`] and
//! [`block::Block1Assembler`]):
//!
//! | piece | bytes (64-bit) |
//! |---|---|
//! | one exchange record, indexes included (a request waiting for its answer costs this and nothing else) | 59 + the peer: 91 with `SocketAddr`, 67 with a 4-byte peer handle |
//! | one message buffer (held only by bytes that must be kept) | `MSG_BYTES` + 110 |
//! | one dedup entry, indexes included | 64 with `SocketAddr`, 32 with a 1-byte peer |
//! | one observation (RFC 7641; an idle one holds no buffer) | 60 with `SocketAddr`, 32 with a 4-byte peer, 28 with a 1-byte one |
//! | one verified peer (RFC 9175 §2.4) | 36 with `SocketAddr`, 12 with a 1-byte peer |
//! | `size_of::<Endpoint>()`: `SocketAddr`, 64 records, 16 buffers of 1152 bytes, 512 dedup entries, 32 KiB of stored replies, 16 observations, 16 verified peers | **94,128** |
//! | `size_of::<SmallEndpoint<u8>>()`: 8 records, 4 buffers of 256 bytes, 16 entries, 1 KiB of replies, 4 observations, 4 verified peers | **4,440** |
//!
//! A thousand requests waiting for late answers cost a thousand records: 91 KB with
//! socket addresses. Every index (timer heap, queues, lookups by message ID and token)
//! keeps operations O(1) or O(log n).
//!
//! ## Parsing
//!
//! [`wire::Message::parse`] checks the whole datagram once. Afterwards every accessor
//! borrows the datagram and none panics; the typed getters that decode an option's
//! value return a `Result`, for a value of a length its registration forbids:
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

#[cfg(any(test, feature = "std"))]
extern crate std;

/// Logs through the `log` facade (feature `log`), at info level: retransmissions,
/// give-ups, duplicates and refusals. Without the feature it compiles to nothing (the
/// arguments are still type-checked).
#[cfg(feature = "log")]
macro_rules! log_info {
    ($($arg:tt)*) => { ::log::info!(target: "coap_proto", $($arg)*) };
}
#[cfg(not(feature = "log"))]
macro_rules! log_info {
    ($($arg:tt)*) => {{
        if false {
            let _ = format_args!($($arg)*);
        }
    }};
}

pub mod block;
#[cfg(feature = "dtls")]
pub mod dtls;
pub mod multicast;
#[cfg(feature = "std")]
pub mod net;
pub mod resource;
#[cfg(feature = "smoltcp")]
pub mod smoltcp;
pub mod uri;
pub mod wire;

mod dedup;
mod endpoint;
mod index;
mod params;
mod retransmit;
mod rng;
mod shift;
mod time;

pub use dedup::{DedupCache, DedupFull, Reply};
pub use endpoint::{
    AUTO_ETAG_MAX, Amplification, Block1Body, Config, Endpoint, Error, Event, Incoming,
    IncomingHandle, MAX_TOKEN_LEN, Notified, Output, RequestHandle, RequestOptions, ResponseMode,
    SmallEndpoint, Stats, Transmit,
};
pub use params::{ParamsError, TransmissionParams};
pub use retransmit::{Retransmission, RetransmitAction};
pub use time::Instant;

/// The README's examples, run as doctests so that they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
