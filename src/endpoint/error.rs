//! Why a command was refused.

use core::fmt;

use crate::ParamsError;
use crate::block::UploadError;
use crate::wire::{BuildError, Code};

/// A command the endpoint refused. The endpoint is unchanged.
///
/// ```
/// use coap_proto::wire::Code;
/// use coap_proto::{Config, Endpoint, Error, Instant};
/// let mut ep = Endpoint::<u8>::new(Config::default())?;
/// let e = ep.request(Instant::ZERO, 1, Code::CONTENT, &Default::default(), |_| Ok(()));
/// assert_eq!(e, Err(Error::WrongCode(Code::CONTENT)));
/// assert_eq!(e.unwrap_err().to_string(), "code 2.05 Content is not allowed here");
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// Every exchange record is in use.
    TableFull,
    /// No message buffer may be taken for this: the others hold messages that must be
    /// kept (client requests, CON responses awaiting their ACK), and the last few are
    /// kept for answers that leave at once. Retry after an event has finished an
    /// exchange; a request waiting for its answer stays valid meanwhile.
    BuffersFull,
    /// The handle is stale: its exchange already finished.
    UnknownHandle,
    /// The code is not a request method (for `request`) or not a response (for
    /// `respond`).
    WrongCode(Code),
    /// A token longer than 8 bytes was given.
    TokenTooLong,
    /// The message did not fit or was malformed.
    Build(BuildError),
    /// Unusable transmission parameters.
    Params(ParamsError),
    /// `send_block` for a request that is not waiting for a block.
    NoBlockNeeded,
    /// The block cannot be sent (e.g. a block before the last is not of the block size).
    Upload(UploadError),
    /// A group request must be NON (RFC 7252 §8.1: a CON to a group would draw ACKs
    /// from every member), and cannot observe or upload block-wise.
    NotForGroups,
    /// [`Config::amplification`](super::Config::amplification) is set on an endpoint
    /// without places for verified peers (`VERIFIED = 0`).
    NoVerifiedPeers,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TableFull => f.write_str("every exchange record is in use"),
            Error::BuffersFull => f.write_str("no message buffer is free for this"),
            Error::UnknownHandle => f.write_str("the handle's exchange already finished"),
            Error::WrongCode(c) => write!(f, "code {c} is not allowed here"),
            Error::TokenTooLong => f.write_str("tokens are at most 8 bytes"),
            Error::Build(e) => write!(f, "building the message failed: {e}"),
            Error::Params(e) => write!(f, "bad transmission parameters: {e}"),
            Error::NoBlockNeeded => f.write_str("the request is not waiting for a block"),
            Error::Upload(e) => write!(f, "the block cannot be sent: {e}"),
            Error::NotForGroups => {
                f.write_str("a group request must be non-confirmable and cannot observe or upload")
            }
            Error::NoVerifiedPeers => f.write_str(
                "amplification mitigation needs places for verified peers (VERIFIED > 0)",
            ),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Build(e) => Some(e),
            Error::Params(e) => Some(e),
            Error::Upload(e) => Some(e),
            _ => None,
        }
    }
}

impl From<BuildError> for Error {
    fn from(e: BuildError) -> Self {
        Error::Build(e)
    }
}
