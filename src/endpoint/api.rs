//! What the application holds and gets: handles, incoming messages, events and outputs.

use core::fmt;

use crate::Instant;
use crate::block::{DownloadError, Received, UploadError};
use crate::wire::{Block, Message};

#[allow(unused_imports)]
use super::Endpoint;

/// A client request in flight. Small and `Copy`; stale handles are refused.
///
/// ```
/// use coap_proto::{Config, Endpoint, Error, Instant, wire::Code};
/// let mut ep = Endpoint::<u8>::new(Config::default())?;
/// let h = ep.request(Instant::ZERO, 1, Code::GET, &Default::default(), |_| Ok(()))?;
/// assert_eq!(h.to_string(), "request 0.1");
/// ep.cancel(Instant::ZERO, h)?;
/// assert_eq!(ep.cancel(Instant::ZERO, h), Err(Error::UnknownHandle), "stale");
/// # Ok::<(), coap_proto::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestHandle {
    pub(super) index: u16,
    pub(super) generation: u16,
}

/// A request received by the server role, to answer with [`Endpoint::respond`] (see
/// [`Incoming`] for one in use). Small and `Copy`; a handle whose exchange ended is
/// refused with [`Error::UnknownHandle`](crate::Error::UnknownHandle).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IncomingHandle {
    pub(super) index: u16,
    pub(super) generation: u16,
}

impl fmt::Display for RequestHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request {}.{}", self.index, self.generation)
    }
}

impl fmt::Display for IncomingHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "incoming {}.{}", self.index, self.generation)
    }
}

/// A request or response handed to the application, borrowing the datagram it came in.
///
/// ```
/// use coap_proto::wire::{Code, MessageBuilder, Type};
/// use coap_proto::{Config, Endpoint, Incoming, Instant};
///
/// let mut server = Endpoint::<u8>::new(Config::default())?;
/// let mut buf = [0u8; 64];
/// let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::PUT, 0x0101)?;
/// b.token(&[7])?;
/// b.uri_path("/led")?;
/// b.payload(b"on")?;
/// let datagram = b.finish();
///
/// match server.handle_datagram(Instant::ZERO, 9, datagram) {
///     Some(Incoming::Request { handle, message }) => {
///         assert_eq!((message.code(), message.payload()), (Code::PUT, &b"on"[..]));
///         server.respond(Instant::ZERO, handle, Code::CHANGED, |_| Ok(()))?;
///     }
///     // A response would come as Incoming::Response with the request's handle.
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn core::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub enum Incoming<'b> {
    /// A new request (never a duplicate). Answer it with [`Endpoint::respond`] — before
    /// the next [`Endpoint::poll_output`] to piggyback the answer.
    Request {
        /// What to answer with.
        handle: IncomingHandle,
        /// The request.
        message: Message<'b>,
    },
    /// The response to one of this endpoint's requests. The request is finished unless
    /// `block` says that more blocks follow (RFC 7959): the endpoint then asks for the
    /// next block itself, and its response comes under the same handle.
    Response {
        /// The request it answers.
        handle: RequestHandle,
        /// The response (for a block: this block's payload).
        message: Message<'b>,
        /// For a block-wise response: where this block's payload lies in the body,
        /// whether it is the last, and the body's size if the server said.
        block: Option<Received>,
    },
}

/// A request body complete after [`Endpoint::assemble_block1`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block1Body<'a> {
    /// The whole body.
    pub body: &'a [u8],
    /// The Block1 to echo in the final response (RFC 7959 Figure 7); `None` when the
    /// request was not block-wise.
    pub echo: Option<Block>,
}

/// Outcomes other than responses, reported by [`Endpoint::poll_output`].
///
/// A CON request to a peer that never answers ends with [`Event::TimedOut`] after the
/// retransmissions of RFC 7252 §4.2:
///
/// ```
/// use coap_proto::wire::Code;
/// use coap_proto::{Config, Endpoint, Event, Instant, Output};
///
/// let mut ep = Endpoint::<u8>::new(Config::default())?;
/// let h = ep.request(Instant::ZERO, 1, Code::GET, &Default::default(), |_| Ok(()))?;
/// let mut now = Instant::ZERO;
/// let (mut sent, mut events) = (0, Vec::new());
/// for _ in 0..100 {
///     match ep.poll_output(now) {
///         Output::Transmit(_) => sent += 1,
///         Output::Event(e) => events.push(e),
///         Output::Timeout(Some(at)) => {
///             now = at;
///             ep.handle_timeout(now);
///         }
///         Output::Timeout(None) => break,
///     }
/// }
/// assert_eq!((sent, events), (5, vec![Event::TimedOut(h)]));
/// assert_eq!(Event::TimedOut(h).to_string(), "request 0.1 timed out");
/// # Ok::<(), coap_proto::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Event {
    /// A request got no response in time (for CON: no ACK after MAX_RETRANSMIT
    /// retransmissions, or no separate response after the empty ACK).
    TimedOut(RequestHandle),
    /// The peer rejected a request with RST.
    Reset(RequestHandle),
    /// A block-wise response could not be continued (a changed ETag, a skipped block,
    /// a larger block size than asked for …); the request is finished.
    BlockFailed(RequestHandle, DownloadError),
    /// An upload started with [`Endpoint::request_upload`] wants its next block: call
    /// [`Endpoint::send_block`] with at most `max_len` bytes of the body from `offset`.
    BlockNeeded {
        /// The request.
        handle: RequestHandle,
        /// Where in the body the next block starts.
        offset: usize,
        /// The block size: every block but the last must have exactly this length.
        max_len: usize,
    },
    /// A block-wise upload could not go on (the server acknowledged another block than
    /// the one sent); the request is finished.
    UploadFailed(RequestHandle, UploadError),
    /// A ping was answered (RST, or ACK from a peer that answers pings that way).
    Pong(RequestHandle),
    /// A separate CON response was acknowledged.
    ResponseAcknowledged(IncomingHandle),
    /// A separate CON response was never acknowledged.
    ResponseTimedOut(IncomingHandle),
    /// The client rejected a separate CON response with RST.
    ResponseReset(IncomingHandle),
    /// A request was not answered within the deferred-response timeout; the endpoint
    /// answered 5.00 Internal Server Error in a NON response and forgot it.
    RequestExpired(IncomingHandle),
    /// A request that came in over the deferral quota (see
    /// [`Endpoint::may_defer`](super::Endpoint::may_defer)) was not answered within its
    /// handling call; the endpoint answered it with 5.03 or 4.29 and forgot it.
    RequestRefused(IncomingHandle),
    /// An observation this endpoint asked for ended: the server declined it (its answer
    /// had no Observe option), or sent a final response (another code, or no Observe).
    /// The response was delivered before this event.
    ObservationEnded(RequestHandle),
    /// A group request's collection window closed (RFC 7252 §8.1) and the unicast
    /// follow-ups to its members ended: no more responses come under its handle. Every
    /// group request ends with exactly this event (unless cancelled).
    GroupEnded(RequestHandle),
    /// A unicast follow-up of a group request to one of its members (the next block of
    /// its block-wise answer, or the request repeated with its Echo value) failed: timed
    /// out, reset, or the blocks did not fit together. That member's answer delivered so
    /// far is incomplete; the group request goes on.
    MemberFailed(RequestHandle),
    /// Observers of this resource (the application's number for it) are still due a
    /// notification that found no exchange record or buffer, and one is free now: call
    /// [`Endpoint::notify_due`] with the resource's current state.
    NotificationsDue(u16),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::TimedOut(h) => write!(f, "{h} timed out"),
            Event::Reset(h) => write!(f, "{h} was reset by the peer"),
            Event::BlockFailed(h, e) => write!(f, "{h}: block-wise transfer failed: {e}"),
            Event::BlockNeeded {
                handle,
                offset,
                max_len,
            } => write!(
                f,
                "{handle} needs up to {max_len} bytes from offset {offset}"
            ),
            Event::UploadFailed(h, e) => write!(f, "{h}: block-wise upload failed: {e}"),
            Event::Pong(h) => write!(f, "{h}: pong"),
            Event::ResponseAcknowledged(h) => write!(f, "response to {h} acknowledged"),
            Event::ResponseTimedOut(h) => write!(f, "response to {h} never acknowledged"),
            Event::ResponseReset(h) => write!(f, "response to {h} was reset by the peer"),
            Event::RequestExpired(h) => write!(f, "{h} expired unanswered"),
            Event::RequestRefused(h) => {
                write!(
                    f,
                    "{h} refused: answered late while over the deferral quota"
                )
            }
            Event::ObservationEnded(h) => write!(f, "{h}: observation ended"),
            Event::GroupEnded(h) => write!(f, "{h}: group request ended"),
            Event::MemberFailed(h) => write!(f, "{h}: a member's follow-up failed"),
            Event::NotificationsDue(r) => {
                write!(f, "observers of resource {r} are due a notification")
            }
        }
    }
}

/// A datagram to send: `data` borrows the endpoint until the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit<'a, P> {
    /// The peer to send to.
    pub to: P,
    /// The datagram.
    pub data: &'a [u8],
}

/// What [`Endpoint::poll_output`] has for the caller: drain it after every input or
/// command until it says [`Output::Timeout`].
///
/// ```
/// use coap_proto::wire::Code;
/// use coap_proto::{Config, Endpoint, Instant, Output};
///
/// let mut ep = Endpoint::<u8>::new(Config::default())?;
/// ep.ping(Instant::ZERO, 3)?;
/// let mut deadline = None;
/// loop {
///     match ep.poll_output(Instant::ZERO) {
///         // Send `t.data` to `t.to` (a 4-byte empty CON for a ping).
///         Output::Transmit(t) => assert_eq!((t.to, t.data.len()), (3, 4)),
///         Output::Event(e) => println!("{e}"),
///         Output::Timeout(at) => {
///             deadline = at;
///             break;
///         }
///     }
/// }
/// // Wait for a datagram until the retransmission is due.
/// assert!(deadline.is_some());
/// # Ok::<(), coap_proto::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output<'a, P> {
    /// Send this datagram, then poll again.
    Transmit(Transmit<'a, P>),
    /// Something finished; poll again.
    Event(Event),
    /// Nothing more now. Call [`Endpoint::handle_timeout`] (or `poll_output`) at this
    /// instant, or earlier when a datagram arrives; `None`: only a datagram or a command
    /// can create work.
    Timeout(Option<Instant>),
}
