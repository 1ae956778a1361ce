//! The CoAP message format: a checked, zero-copy view and a builder that writes into a
//! caller's buffer (RFC 7252 §3, §5.4, §12; RFC 7959 §2.2; RFC 8974 §2.1).
//!
//! - [`Message::parse`] validates a datagram once and returns a [`Message`] whose
//!   accessors borrow the datagram and never fail or panic.
//! - [`MessageBuilder`] writes a message into a `&mut [u8]`; every refused call returns a
//!   [`BuildError`] and leaves the message unchanged.
//! - [`Code`], [`Type`], [`OptionNumber`], [`ContentFormat`], [`Block`] and
//!   [`NoResponse`] are the values the header and options carry.
//!
//! What the codec does *not* decide: which token lengths an endpoint accepts
//! (RFC 8974 §2.2), what to do with a malformed datagram (§4.2, §4.3), or whether an
//! unrecognized critical option makes a request fail (§5.4.1). Those are the endpoint's.
//!
//! The uint codec accepts leading zero bytes on input (a peer may send them) and always
//! writes minimally, so a datagram rebuilt option by option from its raw values is
//! byte-identical to the one parsed, while one rebuilt through the typed setters may be
//! shorter.

mod block;
mod builder;
mod code;
mod content_format;
mod message;
mod option;

pub use block::Block;
pub use builder::{BuildError, MAX_OPTION_LEN, MAX_TOKEN_LEN, MessageBuilder};
pub(crate) use builder::{Fill, once};
pub use code::{Code, Type};
pub use content_format::ContentFormat;
pub use message::{Header, Message, Options, ParseError, Values};
pub use option::{
    CoapOption, NoResponse, OptionError, OptionFormat, OptionInfo, OptionNumber, decode_uint,
    encode_uint,
};
