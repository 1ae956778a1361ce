//! The endpoint: one local CoAP endpoint talking to any number of peers, in both the
//! client and the server role (RFC 7252 §4 message layer, §5 request/response layer;
//! RFC 7967 No-Response; RFC 8974 §2.2 token lengths).
//!
//! Transition rules, by the section they implement:
//!
//! - §4.2 CON: retransmitted with randomized exponential back-off until ACK or RST;
//!   given up after MAX_RETRANSMIT ([`crate::retransmit`]). A CON that is Empty (ping),
//!   malformed, or of a reserved class is rejected with RST. ACK and RST are never
//!   answered; an unexpected one is ignored.
//! - §4.3 NON: never acknowledged. A malformed or Empty NON is ignored; a NON request
//!   with an unrecognized critical option is rejected with RST.
//! - §4.4 Message IDs: random start, then sequential; ACK/RST matched by peer and ID.
//! - §4.5 Deduplication ([`crate::dedup`]): a duplicate CON within EXCHANGE_LIFETIME gets
//!   its first reply again (stored piggybacked response, or empty ACK) and is not
//!   delivered again; a duplicate NON within NON_LIFETIME is ignored.
//! - §4.7 NSTART: at most NSTART outstanding interactions per peer; more requests wait,
//!   in order, in their slots.
//! - §5.2.1 piggybacked responses: an answer given before the empty-ACK timer fires
//!   rides in the ACK. §5.2.2 separate responses: otherwise an empty ACK goes out and the
//!   answer follows as CON (retransmitted until ACKed) or NON. §5.2.3 a NON request is
//!   answered with NON.
//! - §5.3.2 responses are matched by token **and** peer; a CON response nobody waits for
//!   is rejected with RST, a NON one is ignored.
//! - §5.4.1, §5.4.3 an unrecognized critical option, or a recognized one with a value of
//!   the wrong length, makes a CON request fail with 4.02 Bad Option. §5.8 an
//!   unassigned method code gets 4.05.
//! - RFC 7967: No-Response suppresses responses of the classes it names (a CON request
//!   still gets its empty ACK).
//! - RFC 8974 §2.2.2: a request whose token is longer than the endpoint accepts is a
//!   message format error.
//! - A full exchange table answers a new request with 5.03 Service Unavailable and
//!   Max-Age; a full table refuses a new client request with [`Error::TableFull`].

use core::fmt;
use core::time::Duration;

use crate::block::{
    AssembleError, Assembled, Block1Assembler, Block1Upload, Block2Download, DownloadError,
    Received, UploadError, UploadStep, block1_key, serve_block2,
};
use crate::dedup::{DedupCache, Reply};
use crate::index::{ChainIndex, ItemQueue, TimerHeap};
use crate::retransmit::{RetransmitAction, step};
use crate::rng::Rng;
use crate::wire::{
    Block, BuildError, Code, Header, Message, MessageBuilder, NoResponse, OptionNumber, ParseError,
    Type, encode_uint,
};
use crate::{Instant, ParamsError, Retransmission, TransmissionParams};

/// Longest token this endpoint stores: the 8 bytes of RFC 7252. RFC 8974 tokens are
/// parsed by the codec but refused here (§2.2.2: as a format error).
pub const MAX_TOKEN_LEN: usize = 8;

/// How long the application may take to answer a request, and other endpoint-wide
/// settings.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Seed of the PRNG behind message IDs, tokens and jitter. Same seed, same outputs.
    /// Seed it from a real entropy source in production: RFC 7252 §5.3.1 wants tokens
    /// hard to guess where off-path attackers matter.
    pub seed: u64,
    /// Transmission parameters for everything not given its own (RFC 7252 §4.8).
    pub params: TransmissionParams,
    /// Length of generated tokens, 0–8 bytes (default 4). Tokens tell concurrent
    /// requests to the same peer apart (§5.3.1): use 0 only if a peer never has more than
    /// one request of this endpoint in flight, separate responses included.
    pub token_len: u8,
    /// Longest token accepted in requests, at most [`MAX_TOKEN_LEN`] (RFC 8974 §2.2).
    pub max_token_len: u8,
    /// How long a CON request may wait for an answer before the endpoint sends an empty
    /// ACK and the answer becomes a separate response (default 0: at the next
    /// `poll_output`).
    pub empty_ack_delay: Duration,
    /// How long the endpoint keeps a request the application has not answered; then
    /// [`Event::RequestExpired`] (default: EXCHANGE_LIFETIME).
    pub deferred_response_timeout: Option<Duration>,
    /// How long a client waits for a separate response after an empty ACK (default:
    /// EXCHANGE_LIFETIME).
    pub separate_response_timeout: Option<Duration>,
    /// How long a client waits for the response to a NON request (default:
    /// MAX_TRANSMIT_WAIT).
    pub non_response_timeout: Option<Duration>,
    /// Max-Age, in seconds, of the 5.03 sent when the exchange table is full.
    pub overload_max_age: u32,
    /// Critical options the application understands beyond those of RFC 7252 and
    /// RFC 7959; a request with any other critical option gets 4.02 Bad Option.
    pub known_critical_options: &'static [u16],
    /// The largest block size this endpoint serves with
    /// [`Endpoint::respond_block2`], as SZX (default 6: 1024 bytes); smaller if the
    /// message buffer is.
    pub max_block_szx: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 0,
            params: TransmissionParams::RFC7252,
            token_len: 4,
            max_token_len: MAX_TOKEN_LEN as u8,
            empty_ack_delay: Duration::ZERO,
            deferred_response_timeout: None,
            separate_response_timeout: None,
            non_response_timeout: None,
            overload_max_age: 5,
            known_critical_options: &[],
            max_block_szx: Block::MAX_SZX,
        }
    }
}

/// Per-request settings for [`Endpoint::request`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestOptions<'t> {
    /// Send as NON instead of CON.
    pub non_confirmable: bool,
    /// Transmission parameters for this request only.
    pub params: Option<TransmissionParams>,
    /// Use this token instead of a random one (at most 8 bytes).
    pub token: Option<&'t [u8]>,
    /// For a NON request: how long to wait for the response after sending it
    /// (default [`Config::non_response_timeout`]). A CON request ends by the back-off
    /// of §4.2 and, after an empty ACK, by [`Config::separate_response_timeout`].
    pub timeout: Option<Duration>,
    /// The largest Block2 block size wanted, as SZX (0–6). By default it is announced in
    /// the first request (early negotiation, RFC 7959 Figure 3). A response in blocks is
    /// followed up automatically either way; without this, at the server's size.
    pub block2_szx: Option<u8>,
    /// Do not announce `block2_szx` in the first request; move to it from the second
    /// block on (late negotiation, RFC 7959 Figure 4).
    pub block2_late: bool,
    /// Use a new token for each follow-up block request (some servers want it).
    pub fresh_token_per_block: bool,
    /// Fetch the body from this byte offset on: the first request already asks for
    /// the block that holds it (at `block2_szx`, default 1024 bytes); the bytes of that
    /// block before the offset are the caller's to skip.
    pub block2_offset: usize,
}

/// How [`Endpoint::respond_with`] sends an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseMode {
    /// Piggybacked in the ACK if it has not gone out yet; otherwise separate, as CON
    /// for a CON request and NON for a NON request.
    Auto,
    /// A separate CON response, retransmitted until acknowledged.
    Confirmable,
    /// A separate NON response.
    NonConfirmable,
}

/// A client request in flight. Small and `Copy`; stale handles are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestHandle {
    index: u16,
    generation: u16,
}

/// A request received by the server role, to answer with [`Endpoint::respond`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IncomingHandle {
    index: u16,
    generation: u16,
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
    /// forgot it.
    RequestExpired(IncomingHandle),
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

/// What [`Endpoint::poll_output`] has for the caller.
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

/// A command the endpoint refused. The endpoint is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// Every exchange slot is in use.
    TableFull,
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
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TableFull => f.write_str("every exchange slot is in use"),
            Error::UnknownHandle => f.write_str("the handle's exchange already finished"),
            Error::WrongCode(c) => write!(f, "code {c} is not allowed here"),
            Error::TokenTooLong => f.write_str("tokens are at most 8 bytes"),
            Error::Build(e) => write!(f, "building the message failed: {e}"),
            Error::Params(e) => write!(f, "bad transmission parameters: {e}"),
            Error::NoBlockNeeded => f.write_str("the request is not waiting for a block"),
            Error::Upload(e) => write!(f, "the block cannot be sent: {e}"),
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

/// Counters for what the endpoint absorbed or had to drop; all start at zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Datagrams that failed to parse.
    pub malformed: u64,
    /// Duplicates recognized and not delivered again.
    pub duplicates: u64,
    /// Retransmissions sent.
    pub retransmissions: u64,
    /// ACK, RST or replies not queued because the control queue was full (the peer's
    /// retransmission gets another chance).
    pub control_dropped: u64,
    /// Requests answered 5.03 because the exchange table was full.
    pub overloaded: u64,
    /// ACK and RST messages that matched nothing.
    pub unmatched: u64,
}

/// Where a slot is in its exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Client request built, waiting for NSTART; `deadline` orders the queue.
    Queued,
    /// Client CON (request or ping) sent, retransmitting until ACK/RST.
    AwaitingAck,
    /// Client NON request sent, waiting for the response until `deadline`.
    AwaitingNonResponse,
    /// Client CON request acknowledged, waiting for the separate response.
    AwaitingSeparate,
    /// Client outcome decided, to be reported.
    ClientDone(ClientOutcome),
    /// Client upload: the next block is to be asked for (reported as `BlockNeeded`).
    NeedsBlock,
    /// Client upload: waiting for the application's `send_block`.
    AwaitingBlock,
    /// Server: CON request delivered, empty ACK not sent yet (due at `deadline`).
    DeferredCon,
    /// Server: CON request acknowledged empty, or NON request, waiting for the answer
    /// until `deadline`.
    Deferred,
    /// Server: piggybacked response built, to be sent once and stored for replay.
    Piggybacked,
    /// Server: NON response built, to be sent once.
    SendingNon,
    /// Server: separate CON response sent, retransmitting until ACK/RST.
    RespondingCon,
    /// Server outcome decided, to be reported.
    ServerDone(ServerOutcome),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientOutcome {
    TimedOut,
    Reset,
    Pong,
    /// The failure is kept in the slot's `ClientBlocks`.
    BlockFailed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerOutcome {
    Acknowledged,
    TimedOut,
    Reset,
    Expired,
}

/// One exchange. Its message bytes live in the endpoint's parallel buffer array, so
/// this is all the state an exchange has beyond them: 32 bytes plus the peer address.
#[derive(Clone, Copy, Debug)]
struct Slot<P> {
    peer: P,
    /// When the slot next needs attention (retransmission, give-up, ACK, expiry); for a
    /// queued request, when it was queued.
    deadline: Instant,
    /// The retransmission timeout now running, in µs; for a queued NON request, its
    /// response timeout in µs (0: the default).
    timeout_us: u32,
    /// ID of the message this slot last sent (server: of the request until the
    /// response is built).
    mid: u16,
    /// Bytes of the message in the slot's buffer.
    len: u16,
    /// Server: the dedup entry of the request.
    dedup: u16,
    token: [u8; MAX_TOKEN_LEN],
    /// Token length (bits 0–3) and the `SEND`, `CON` and `PING` flags.
    bits: u8,
    retransmits_left: u8,
    state: State,
    /// Server: the request's No-Response value (RFC 7967).
    no_response: u8,
}

const SEND: u8 = 0x10;
const CON: u8 = 0x20;
const PING: u8 = 0x40;
/// Counted in `Endpoint::outstanding`.
const COUNTED: u8 = 0x80;

impl<P> Slot<P> {
    fn new(peer: P, deadline: Instant, state: State, token: &[u8], flags: u8) -> Slot<P> {
        let mut t = [0; MAX_TOKEN_LEN];
        let n = token.len().min(MAX_TOKEN_LEN);
        t[..n].copy_from_slice(&token[..n]);
        Slot {
            peer,
            deadline,
            timeout_us: 0,
            mid: 0,
            len: 0,
            dedup: 0,
            token: t,
            bits: n as u8 | flags,
            retransmits_left: 0,
            state,
            no_response: 0,
        }
    }

    fn token(&self) -> &[u8] {
        self.token.get(..(self.bits & 0x0f) as usize).unwrap_or(&[])
    }

    /// The message in the buffer waits to be sent.
    fn sending(&self) -> bool {
        self.bits & SEND != 0
    }

    fn set_sending(&mut self, on: bool) {
        self.bits = if on {
            self.bits | SEND
        } else {
            self.bits & !SEND
        };
    }

    /// Client: the request is CON; server: the request was CON.
    fn con(&self) -> bool {
        self.bits & CON != 0
    }

    fn is_ping(&self) -> bool {
        self.bits & PING != 0
    }

    fn is_client(&self) -> bool {
        matches!(
            self.state,
            State::Queued
                | State::AwaitingAck
                | State::AwaitingNonResponse
                | State::AwaitingSeparate
                | State::ClientDone(_)
                | State::NeedsBlock
                | State::AwaitingBlock
        )
    }

    /// Whether `deadline` is a timer to fire (a queued request's is only its place in
    /// the queue).
    fn has_timer(&self) -> bool {
        matches!(
            self.state,
            State::AwaitingAck
                | State::AwaitingNonResponse
                | State::AwaitingSeparate
                | State::DeferredCon
                | State::Deferred
                | State::RespondingCon
        )
    }

    /// Whether an ACK or RST with this slot's peer and MID concerns it.
    fn answerable(&self) -> bool {
        matches!(
            self.state,
            State::AwaitingAck
                | State::AwaitingNonResponse
                | State::AwaitingSeparate
                | State::RespondingCon
        )
    }

    /// Whether a response with this slot's peer and token would be its answer.
    fn awaits_response(&self) -> bool {
        !self.is_ping()
            && matches!(
                self.state,
                State::AwaitingAck | State::AwaitingNonResponse | State::AwaitingSeparate
            )
    }

    /// Counts toward NSTART (§4.7): a CON awaiting its ACK, or a request awaiting a
    /// response that was not acknowledged.
    fn is_outstanding(&self) -> bool {
        matches!(
            self.state,
            State::AwaitingAck | State::AwaitingNonResponse | State::RespondingCon
        )
    }
}

/// What a client request keeps beside its slot: its start parameters and block-wise
/// state.
#[derive(Clone, Copy, Debug)]
struct ClientBlocks {
    start: StartParams,
    download: Block2Download,
    /// For a request started with `request_upload`.
    upload: Option<Block1Upload>,
    fresh_token: bool,
    failed: Option<BlockFailure>,
}

/// What starting a client request — or restarting it for its next block — needs from
/// its transmission parameters, kept with the request so that one that waits for
/// NSTART, and its follow-ups, use its own parameters rather than the endpoint's.
#[derive(Clone, Copy, Debug)]
struct StartParams {
    ack_timeout_us: u32,
    random_milli: u16,
    max_retransmit: u8,
    nstart: u8,
    /// How long a NON request waits for its response.
    non_wait_ms: u32,
}

impl StartParams {
    fn new(p: &TransmissionParams, non_wait: Duration) -> StartParams {
        StartParams {
            ack_timeout_us: p.ack_timeout.as_micros().min(u32::MAX as u128) as u32,
            random_milli: p.ack_random_factor_milli,
            max_retransmit: p.max_retransmit,
            nstart: p.nstart,
            non_wait_ms: non_wait.as_millis().min(u32::MAX as u128) as u32,
        }
    }

    fn initial_timeout(&self, random: u64) -> Duration {
        let p = TransmissionParams {
            ack_timeout: Duration::from_micros(self.ack_timeout_us as u64),
            ack_random_factor_milli: self.random_milli,
            ..TransmissionParams::RFC7252
        };
        Retransmission::initial_timeout(&p, random)
    }
}

/// The payload of a rewritten block request.
#[derive(Clone, Copy, Debug)]
enum BlockPayload<'d> {
    /// The stored request's own payload (a FETCH body for each Block2 follow-up).
    Keep,
    /// New bytes: the next Block1 block.
    New(&'d [u8]),
    None,
}

/// Why a block-wise transfer ended a request.
#[derive(Clone, Copy, Debug)]
enum BlockFailure {
    Download(DownloadError),
    Upload(UploadError),
}

/// A stateless answer waiting to be sent: RST for what matched nothing, or an error
/// response to a NON request. Answers owed to accepted messages are not queued here but
/// marked on their dedup entries, so they cannot be crowded out.
#[derive(Clone, Copy, Debug)]
struct Control<P> {
    to: P,
    kind: ControlKind,
}

#[derive(Clone, Copy, Debug)]
enum ControlKind {
    EmptyAck(u16),
    Rst(u16),
    /// A short message built when queued (error responses to NON requests).
    Bytes {
        len: u8,
        bytes: [u8; CONTROL_BYTES],
    },
}

const CONTROL_QUEUE: usize = 8;
const CONTROL_BYTES: usize = 24;

/// One local CoAP endpoint: client and server at once, any number of peers.
///
/// Type parameters: the peer address `P` (any `Copy + Eq`: a socket address, a smoltcp
/// endpoint, a DTLS session id); `E` exchange slots, each with an `M`-byte message
/// buffer; `D` dedup entries and `R` bytes for stored replies. The defaults —
/// `Endpoint<SocketAddr, 16, 32, 1152, 4608>` — take about 25 KiB; see the crate docs
/// for the exact `size_of`.
///
/// # The run loop
///
/// After any input (`handle_datagram`, `handle_timeout`) or command (`request`,
/// `respond`, `ping`, `cancel`), drain [`poll_output`](Self::poll_output) until it
/// returns [`Output::Timeout`]; then wait for a datagram or that instant. The crate docs
/// show the loop over a `std::net::UdpSocket`.
pub struct Endpoint<
    P = core::net::SocketAddr,
    const E: usize = 16,
    const D: usize = 32,
    const M: usize = 1152,
    const R: usize = 4608,
> {
    config: Config,
    /// EXCHANGE_LIFETIME, NON_LIFETIME and MAX_TRANSMIT_WAIT of `config.params`,
    /// derived once: the parameters never change after construction.
    exchange_lifetime: Duration,
    non_lifetime: Duration,
    max_transmit_wait: Duration,
    rng: Rng,
    next_mid: u16,
    last_now: Instant,
    slots: [Option<Slot<P>>; E],
    /// Generation of each slot's latest exchange, so stale handles are refused.
    gens: [u16; E],
    // Indexes over the slots, kept in step by `sync` and `release`, so that no hot
    // path scans the table.
    free: ItemQueue<E>,
    timers: TimerHeap<E>,
    to_send: ItemQueue<E>,
    to_report: ItemQueue<E>,
    by_mid: ChainIndex<E>,
    by_token: ChainIndex<E>,
    queued: usize,
    /// Slots that count toward NSTART, over all peers.
    outstanding: usize,
    bufs: [[u8; M]; E],
    /// Block-wise state of client requests, by slot.
    blocks: [Option<ClientBlocks>; E],
    dedup: DedupCache<P, D, R>,
    control: [Option<Control<P>>; CONTROL_QUEUE],
    control_head: usize,
    control_len: usize,
    scratch: [u8; CONTROL_BYTES],
    stats: Stats,
}

impl<P, const E: usize, const D: usize, const M: usize, const R: usize> fmt::Debug
    for Endpoint<P, E, D, M, R>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("slots_in_use", &self.slots.iter().flatten().count())
            .field("slots", &E)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<P: Copy + Eq, const E: usize, const D: usize, const M: usize, const R: usize>
    Endpoint<P, E, D, M, R>
{
    const CHECK: () = {
        assert!(E > 0 && E <= u16::MAX as usize, "E must be 1..=65535");
        assert!(D > 0 && D <= u16::MAX as usize, "D must be 1..=65535");
        assert!(M >= 64 && M <= u16::MAX as usize, "M must be 64..=65535");
        assert!(R >= M, "R must hold at least one message of M bytes");
    };

    /// A new endpoint. Fails only for unusable transmission parameters.
    pub fn new(config: Config) -> Result<Self, Error> {
        let () = Self::CHECK;
        config.params.validate().map_err(Error::Params)?;
        let mut rng = Rng::new(config.seed);
        let next_mid = rng.next_u64() as u16;
        Ok(Endpoint {
            exchange_lifetime: config.params.exchange_lifetime(),
            non_lifetime: config.params.non_lifetime(),
            max_transmit_wait: config.params.max_transmit_wait(),
            config,
            rng,
            next_mid,
            last_now: Instant::ZERO,
            slots: [None; E],
            gens: [0; E],
            free: {
                let mut free = ItemQueue::new();
                let mut i = 0;
                while i < E {
                    free.push(i);
                    i += 1;
                }
                free
            },
            timers: TimerHeap::new(),
            to_send: ItemQueue::new(),
            to_report: ItemQueue::new(),
            by_mid: ChainIndex::new(),
            by_token: ChainIndex::new(),
            queued: 0,
            outstanding: 0,
            bufs: [[0; M]; E],
            blocks: [None; E],
            dedup: DedupCache::new(),
            control: [None; CONTROL_QUEUE],
            control_head: 0,
            control_len: 0,
            scratch: [0; CONTROL_BYTES],
            stats: Stats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters of what was absorbed or dropped.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Exchange slots in use.
    pub fn exchanges_in_flight(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// The dedup cache (for inspection).
    pub fn dedup(&self) -> &DedupCache<P, D, R> {
        &self.dedup
    }

    /// `now`, never earlier than any `now` seen before.
    fn clamp(&mut self, now: Instant) -> Instant {
        if now > self.last_now {
            self.last_now = now;
        }
        self.last_now
    }

    fn new_mid(&mut self) -> u16 {
        let mid = self.next_mid;
        self.next_mid = self.next_mid.wrapping_add(1);
        mid
    }

    /// A free slot, taken off the free list: the caller must `occupy` it or give it
    /// back with `release`.
    fn free_index(&mut self) -> Option<usize> {
        self.free.pop()
    }

    fn slot_mut(&mut self, index: u16, generation: u16) -> Option<&mut Slot<P>> {
        match self.slots.get_mut(index as usize) {
            Some(Some(s)) if self.gens.get(index as usize) == Some(&generation) => Some(s),
            _ => None,
        }
    }

    /// Puts `slot` in place `index` under a new generation.
    fn occupy(&mut self, index: usize, slot: Slot<P>) -> u16 {
        let generation = self.gens[index].wrapping_add(1);
        self.gens[index] = generation;
        if slot.state == State::Queued {
            self.queued += 1;
        }
        self.slots[index] = Some(slot);
        self.sync(index);
        generation
    }

    /// Brings the indexes in line with slot `index` after it changed.
    fn sync(&mut self, index: usize) {
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        if slot.is_outstanding() != (slot.bits & COUNTED != 0) {
            slot.bits ^= COUNTED;
            if slot.bits & COUNTED != 0 {
                self.outstanding += 1;
            } else {
                self.outstanding -= 1;
            }
        }
        let slot = &*slot;
        let has_timer = slot.has_timer();
        let slots = &self.slots;
        let key = |i: usize| slots[i].as_ref().map_or(Instant::MAX, |s| s.deadline);
        if has_timer {
            self.timers.set(index, &key);
        } else {
            self.timers.remove(index, &key);
        }
        let Some(Some(slot)) = self.slots.get(index) else {
            return;
        };
        if slot.sending() {
            self.to_send.push(index);
        }
        if matches!(
            slot.state,
            State::ClientDone(_) | State::ServerDone(_) | State::NeedsBlock
        ) {
            self.to_report.push(index);
        }
        if slot.answerable() {
            self.by_mid.insert(index, slot.mid as u32);
        } else {
            self.by_mid.remove(index);
        }
        // Every live client request is indexed by token, queued ones too, so that a new
        // token never repeats one in use; matching a response checks the state.
        if slot.is_client() && !slot.is_ping() && !matches!(slot.state, State::ClientDone(_)) {
            self.by_token.insert(index, token_hash(slot.token()));
        } else {
            self.by_token.remove(index);
        }
    }

    /// The earliest timer and its slot.
    fn next_timer(&self) -> Option<(Instant, usize)> {
        let index = self.timers.peek()?;
        Some((self.slots.get(index)?.as_ref()?.deadline, index))
    }

    /// Frees slot `index` and drops it from every index. Queued sends and reports of
    /// the slot are skipped when they come up.
    fn release(&mut self, index: usize) {
        if self.slots.get(index).is_some_and(Option::is_some) {
            // Out of the heap while the slot still holds the deadline it is keyed by.
            let slots = &self.slots;
            self.timers.remove(index, &|i| {
                slots[i].as_ref().map_or(Instant::MAX, |s| s.deadline)
            });
        }
        if let Some(b) = self.blocks.get_mut(index) {
            *b = None;
        }
        if let Some(slot) = self.slots.get_mut(index).and_then(Option::take) {
            if slot.state == State::Queued {
                self.queued -= 1;
            }
            if slot.bits & COUNTED != 0 {
                self.outstanding -= 1;
            }
            self.by_mid.remove(index);
            self.by_token.remove(index);
            self.free.push(index);
        }
    }

    fn queue_control(&mut self, to: P, kind: ControlKind) {
        if self.control_len == CONTROL_QUEUE {
            self.stats.control_dropped += 1;
            return;
        }
        self.control[(self.control_head + self.control_len) % CONTROL_QUEUE] =
            Some(Control { to, kind });
        self.control_len += 1;
    }

    fn pop_control(&mut self) -> Option<Control<P>> {
        if self.control_len == 0 {
            return None;
        }
        let c = self.control[self.control_head].take();
        self.control_head = (self.control_head + 1) % CONTROL_QUEUE;
        self.control_len -= 1;
        c
    }

    /// Owes `reply` to the peer of dedup entry `entry` (the message `peer`/`mid`): it
    /// goes out at the next `poll_output` and stays the answer for duplicates. If the
    /// entry was given up for another message meanwhile, an empty ACK is still sent.
    fn owe(&mut self, entry: usize, peer: P, mid: u16, reply: Reply) {
        if self.dedup.key(entry) == Some((peer, mid)) {
            if !matches!(self.dedup.reply(entry), Reply::Stored { .. }) {
                self.dedup.set_reply(entry, reply);
            }
            self.dedup.mark_pending(entry);
        } else if reply == Reply::EmptyAck {
            self.queue_control(peer, ControlKind::EmptyAck(mid));
        }
    }

    // ---- client commands -------------------------------------------------------

    /// Starts a request to `peer` with `method`, its options and payload added by
    /// `build` (header and token are already written). Returns the handle the
    /// response or outcome will name.
    ///
    /// ```
    /// # use coap_proto::{Endpoint, Config, RequestOptions, Instant, Output};
    /// # use coap_proto::wire::Code;
    /// let mut ep: Endpoint<u8> = Endpoint::new(Config::default()).unwrap();
    /// let h = ep.request(Instant::ZERO, 7, Code::GET, &RequestOptions::default(), |b| {
    ///     b.uri_path("/sensors/temperature")?;
    ///     Ok(())
    /// })?;
    /// assert!(matches!(ep.poll_output(Instant::ZERO), Output::Transmit(t) if t.to == 7));
    /// # let _ = h;
    /// # Ok::<(), coap_proto::Error>(())
    /// ```
    pub fn request(
        &mut self,
        now: Instant,
        peer: P,
        method: Code,
        options: &RequestOptions<'_>,
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<RequestHandle, Error> {
        self.start_request(now, peer, method, options, None, build)
    }

    /// Starts a request whose body goes in Block1 blocks of `2^(szx + 4)` bytes
    /// (RFC 7959 §2.5). `build` adds the options but no payload. The endpoint then asks
    /// for each block with [`Event::BlockNeeded`]; answer with
    /// [`send_block`](Self::send_block) (bytes produced on demand) or
    /// [`send_body_block`](Self::send_body_block) (a body the caller holds). 2.31
    /// Continue is absorbed; the final response arrives as [`Incoming::Response`] and,
    /// if it carries Block2, continues as a download (§3.3). A smaller block size
    /// preferred by the server is adopted. A random Request-Tag is added (RFC 9175 §3),
    /// so that concurrent uploads to one resource stay apart.
    pub fn request_upload(
        &mut self,
        now: Instant,
        peer: P,
        method: Code,
        options: &RequestOptions<'_>,
        szx: u8,
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<RequestHandle, Error> {
        self.start_request(now, peer, method, options, Some(szx), build)
    }

    /// Sends the next block of an upload: `data` from the offset [`Event::BlockNeeded`]
    /// named, `more` telling whether blocks follow. Every block but the last must be
    /// exactly the block size.
    pub fn send_block(
        &mut self,
        now: Instant,
        handle: RequestHandle,
        data: &[u8],
        more: bool,
    ) -> Result<(), Error> {
        let now = self.clamp(now);
        let index = handle.index as usize;
        let slot = *self
            .slot_mut(handle.index, handle.generation)
            .ok_or(Error::UnknownHandle)?;
        if !matches!(slot.state, State::NeedsBlock | State::AwaitingBlock) {
            return Err(Error::NoBlockNeeded);
        }
        let mut blocks = self.blocks[index].ok_or(Error::NoBlockNeeded)?;
        let mut upload = blocks.upload.ok_or(Error::NoBlockNeeded)?;
        let block1 = upload.send(data.len(), more).map_err(Error::Upload)?;
        // An early Block2 rides on the last block (RFC 7959 Figure 11).
        let early = if more {
            None
        } else {
            blocks.download.next_request_block()
        };
        self.requeue_block_request(
            now,
            index,
            (slot.token, slot.token().len()),
            &[
                OptionNumber::BLOCK1,
                OptionNumber::BLOCK2,
                OptionNumber::SIZE1,
            ],
            Some(block1),
            early,
            BlockPayload::New(data),
        )?;
        blocks.upload = Some(upload);
        self.blocks[index] = Some(blocks);
        Ok(())
    }

    /// [`send_block`](Self::send_block) from a body the caller holds: takes the bytes
    /// the endpoint asked for.
    pub fn send_body_block(
        &mut self,
        now: Instant,
        handle: RequestHandle,
        body: &[u8],
    ) -> Result<(), Error> {
        let (offset, max) = self
            .blocks
            .get(handle.index as usize)
            .copied()
            .flatten()
            .and_then(|b| b.upload)
            .and_then(|u| u.next_offset())
            .ok_or(Error::NoBlockNeeded)?;
        let start = offset.min(body.len());
        let end = body.len().min(offset + max);
        self.send_block(now, handle, &body[start..end], end < body.len())
    }

    fn start_request(
        &mut self,
        now: Instant,
        peer: P,
        method: Code,
        options: &RequestOptions<'_>,
        upload: Option<u8>,
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<RequestHandle, Error> {
        let now = self.clamp(now);
        if !method.is_request() {
            return Err(Error::WrongCode(method));
        }
        let params = options.params.unwrap_or(self.config.params);
        params.validate().map_err(Error::Params)?;
        if options.token.is_some_and(|t| t.len() > MAX_TOKEN_LEN) {
            return Err(Error::TokenTooLong);
        }
        let index = self.free_index().ok_or(Error::TableFull)?;
        let mut token = [0u8; MAX_TOKEN_LEN];
        let token = match options.token {
            Some(t) => t,
            None => {
                let n = self.fresh_token(peer, &mut token);
                &token[..n]
            }
        };
        let ty = if options.non_confirmable {
            Type::Non
        } else {
            Type::Con
        };
        // The MID is patched in when the message is sent (queued requests wait).
        let download = match options.block2_szx {
            _ if options.block2_offset > 0 => Block2Download::starting_at(
                options.block2_offset,
                options.block2_szx.unwrap_or(Block::MAX_SZX),
            ),
            Some(szx) if options.block2_late => Block2Download::new().with_late(szx),
            Some(szx) => Block2Download::new().with_early(szx),
            None => Block2Download::new(),
        };
        // For an upload the early Block2 goes with the last block instead.
        let first_block2 = download.next_request_block().filter(|_| upload.is_none());
        let mut tag = [0u8; 2];
        self.rng.fill(&mut tag);
        // The endpoint's own options go in first: `build` may end with a payload, and
        // the builder puts options added later where they belong.
        let built = MessageBuilder::new(&mut self.bufs[index], ty, method, 0).and_then(|mut b| {
            b.token(token)?;
            if let Some(block) = first_block2 {
                b.block2(block)?;
            }
            if upload.is_some() {
                b.request_tag(&tag)?;
            }
            build(&mut b)?;
            Ok(b.len())
        });
        let len = match built {
            Ok(len) => len,
            Err(e) => {
                self.free.push(index);
                return Err(e.into());
            }
        };
        let state = if upload.is_some() {
            State::NeedsBlock
        } else {
            State::Queued
        };
        let mut slot = Slot::new(
            peer,
            now,
            state,
            token,
            if options.non_confirmable { 0 } else { CON },
        );
        slot.len = len as u16;
        let non_wait = options.timeout.unwrap_or(
            self.config
                .non_response_timeout
                .unwrap_or(params.max_transmit_wait()),
        );
        self.blocks[index] = Some(ClientBlocks {
            start: StartParams::new(&params, non_wait),
            download,
            upload: upload.map(Block1Upload::new),
            fresh_token: options.fresh_token_per_block,
            failed: None,
        });
        let generation = self.occupy(index, slot);
        self.try_start(now, index);
        Ok(RequestHandle {
            index: index as u16,
            generation,
        })
    }

    /// Sends a CoAP ping (an Empty CON, §4.2); the outcome is [`Event::Pong`] or
    /// [`Event::TimedOut`].
    pub fn ping(&mut self, now: Instant, peer: P) -> Result<RequestHandle, Error> {
        let now = self.clamp(now);
        let index = self.free_index().ok_or(Error::TableFull)?;
        // 4 bytes always fit: M is at least 64.
        let _ = MessageBuilder::new(&mut self.bufs[index], Type::Con, Code::EMPTY, 0);
        let mut slot = Slot::new(peer, now, State::Queued, &[], CON | PING);
        slot.len = 4;
        let generation = self.occupy(index, slot);
        self.try_start(now, index);
        Ok(RequestHandle {
            index: index as u16,
            generation,
        })
    }

    /// Abandons a request: no more retransmissions, no outcome event; a late response
    /// will be rejected. Fails for a handle whose request already finished.
    pub fn cancel(&mut self, now: Instant, handle: RequestHandle) -> Result<(), Error> {
        let now = self.clamp(now);
        let slot = self
            .slot_mut(handle.index, handle.generation)
            .ok_or(Error::UnknownHandle)?;
        if !slot.is_client() {
            return Err(Error::UnknownHandle);
        }
        let peer = slot.peer;
        self.release(handle.index as usize);
        self.start_queued(now, peer);
        Ok(())
    }

    fn fresh_token(&mut self, peer: P, token: &mut [u8; MAX_TOKEN_LEN]) -> usize {
        let len = (self.config.token_len as usize).min(MAX_TOKEN_LEN);
        // A few draws make a clash with a request in flight to the same peer
        // vanishingly unlikely for any token of 2 bytes or more.
        for _ in 0..8 {
            self.rng.fill(&mut token[..len]);
            let clash = self.by_token.candidates(token_hash(&token[..len])).any(|i| {
                matches!(&self.slots[i], Some(s) if s.peer == peer && s.token() == &token[..len])
            });
            if !clash {
                break;
            }
        }
        len
    }

    /// Sends queued slot `index` if NSTART allows (§4.7), with the request's own
    /// transmission parameters; otherwise it stays queued.
    fn try_start(&mut self, now: Instant, index: usize) {
        let Some(Some(slot)) = self
            .slots
            .get(index)
            .filter(|s| matches!(s, Some(s) if s.state == State::Queued))
        else {
            return;
        };
        let start = match self.blocks.get(index).copied().flatten() {
            Some(b) => b.start,
            // A ping: the endpoint's parameters.
            None => StartParams::new(
                &self.config.params,
                self.config
                    .non_response_timeout
                    .unwrap_or(self.max_transmit_wait),
            ),
        };
        let peer = slot.peer;
        // Only when NSTART could be reached at all is it worth counting this peer's.
        if self.outstanding >= start.nstart as usize {
            let outstanding = self
                .slots
                .iter()
                .flatten()
                .filter(|s| s.peer == peer && s.is_outstanding())
                .count();
            if outstanding >= start.nstart as usize {
                return;
            }
        }
        let mid = self.new_mid();
        let random = self.rng.next_u64();
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        slot.mid = mid;
        if let Some(b) = self.bufs[index].get_mut(2..4) {
            b.copy_from_slice(&mid.to_be_bytes());
        }
        slot.set_sending(true);
        slot.retransmits_left = start.max_retransmit;
        if slot.con() {
            let r = Retransmission::new(now, start.initial_timeout(random), 0);
            slot.timeout_us = r.timeout().as_micros() as u32;
            slot.deadline = r.deadline();
            slot.state = State::AwaitingAck;
        } else {
            slot.deadline = now + Duration::from_millis(start.non_wait_ms as u64);
            slot.state = State::AwaitingNonResponse;
        }
        self.queued -= 1;
        self.sync(index);
    }

    /// Starts queued requests to `peer` (oldest first) while NSTART allows.
    fn start_queued(&mut self, now: Instant, peer: P) {
        while self.queued > 0 {
            let next = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
                .filter(|(_, s)| s.peer == peer && s.state == State::Queued)
                .min_by_key(|(i, s)| (s.deadline, *i))
                .map(|(i, _)| i);
            let Some(index) = next else {
                return;
            };
            self.try_start(now, index);
            if matches!(&self.slots[index], Some(s) if s.state == State::Queued) {
                return;
            }
        }
    }

    // ---- server commands -------------------------------------------------------

    /// Answers a request: piggybacked if its ACK has not gone out, else as a separate
    /// response (CON for a CON request, NON for a NON one). `build` adds options and
    /// payload; header and token are already written.
    pub fn respond(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        code: Code,
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<(), Error> {
        self.respond_with(now, handle, ResponseMode::Auto, code, build)
    }

    /// [`respond`](Self::respond) with the way of sending chosen explicitly.
    pub fn respond_with(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        mode: ResponseMode,
        code: Code,
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<(), Error> {
        let now = self.clamp(now);
        if !code.is_response() {
            return Err(Error::WrongCode(code));
        }
        let index = handle.index as usize;
        let slot = *self
            .slot_mut(handle.index, handle.generation)
            .ok_or(Error::UnknownHandle)?;
        if !matches!(slot.state, State::DeferredCon | State::Deferred) {
            return Err(Error::UnknownHandle);
        }
        let piggyback = slot.state == State::DeferredCon && mode == ResponseMode::Auto;
        let ty = match (piggyback, mode, slot.con()) {
            (true, _, _) => Type::Ack,
            (false, ResponseMode::Confirmable, _) | (false, ResponseMode::Auto, true) => Type::Con,
            _ => Type::Non,
        };
        if NoResponse(slot.no_response).suppresses(code) {
            // RFC 7967 §2: not sending is the answer; a CON still gets its empty ACK.
            if slot.state == State::DeferredCon {
                self.owe(slot.dedup as usize, slot.peer, slot.mid, Reply::EmptyAck);
            }
            self.release(index);
            return Ok(());
        }
        let mid = if piggyback { slot.mid } else { self.new_mid() };
        let mut b = MessageBuilder::new(&mut self.bufs[index], ty, code, mid)?;
        b.token(slot.token())?;
        build(&mut b)?;
        let len = b.len() as u16;
        if !piggyback && slot.state == State::DeferredCon {
            // A separate response to a CON not yet acknowledged: ACK it first (§5.2.2).
            self.owe(slot.dedup as usize, slot.peer, slot.mid, Reply::EmptyAck);
        }
        let random = self.rng.next_u64();
        let params = self.config.params;
        let Some(Some(s)) = self.slots.get_mut(index) else {
            return Err(Error::UnknownHandle);
        };
        s.len = len;
        s.set_sending(true);
        s.mid = mid;
        s.state = match ty {
            Type::Ack => State::Piggybacked,
            Type::Con => {
                let r =
                    Retransmission::new(now, Retransmission::initial_timeout(&params, random), 0);
                s.timeout_us = r.timeout().as_micros() as u32;
                s.deadline = r.deadline();
                s.retransmits_left = params.max_retransmit;
                State::RespondingCon
            }
            _ => State::SendingNon,
        };
        self.sync(index);
        Ok(())
    }

    /// Answers `request` with `body`, block-wise when the body does not fit one message
    /// or the request asked for a block (RFC 7959 §2.4). The endpoint takes the slice
    /// the request's Block2 names, at the smaller of the requested block size and the
    /// largest that fits the message buffer, and adds Block2 and Size2 (when the request
    /// asked with Size2 = 0, and with every first block). It keeps no state: each block
    /// request is answered on its own, so the body must stay the same between them (send
    /// an ETag from `build` so clients can tell). A block past the end gets 4.02 Bad
    /// Option, a Block2 with the reserved SZX 7 4.00 Bad Request.
    ///
    /// `request` is the message the handle came with; `build` adds the other options.
    pub fn respond_block2(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        request: &Message<'_>,
        code: Code,
        body: &[u8],
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<(), Error> {
        let write = |range: core::ops::Range<usize>, b: &mut MessageBuilder<'_>| {
            b.payload(body.get(range).unwrap_or(&[])).map(drop)
        };
        self.respond_body(now, handle, request, code, body.len(), write, build)
    }

    /// [`respond_block2`](Self::respond_block2) for a body of `body_len` bytes that is
    /// produced on demand: `fill(offset, out)` writes the body's bytes from `offset` into
    /// `out`, which is the message buffer itself (e.g. read straight from flash).
    #[allow(clippy::too_many_arguments)]
    pub fn respond_block2_with(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        request: &Message<'_>,
        code: Code,
        body_len: usize,
        fill: impl FnOnce(usize, &mut [u8]),
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<(), Error> {
        let write = |range: core::ops::Range<usize>, b: &mut MessageBuilder<'_>| {
            fill(range.start, b.payload_mut(range.len())?);
            Ok(())
        };
        self.respond_body(now, handle, request, code, body_len, write, build)
    }

    #[allow(clippy::too_many_arguments)]
    fn respond_body(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        request: &Message<'_>,
        code: Code,
        body_len: usize,
        write: impl FnOnce(core::ops::Range<usize>, &mut MessageBuilder<'_>) -> Result<(), BuildError>,
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<(), Error> {
        let Ok(requested) = request.block2() else {
            return self.respond(now, handle, Code::BAD_REQUEST, |_| Ok(()));
        };
        if requested.is_some_and(|b| b.offset() >= body_len && !(b.offset() == 0 && body_len == 0))
        {
            return self.respond(now, handle, Code::BAD_OPTION, |_| Ok(()));
        }
        let size2_requested = matches!(request.size2(), Ok(Some(0)));
        let max_block_szx = self.config.max_block_szx;
        self.respond(now, handle, code, |b| {
            build(b)?;
            // Room for the payload once Block2 (at most 4 bytes) and Size2 (5) are in.
            let room = b.payload_capacity().saturating_sub(9);
            let max_szx = Block::szx_at_most(room).unwrap_or(0).min(max_block_szx);
            match serve_block2(requested, size2_requested, body_len, max_szx) {
                Ok(None) => write(0..body_len, b),
                Ok(Some(slice)) => {
                    b.block2(slice.block)?;
                    if let Some(n) = slice.size2 {
                        b.size2(n)?;
                    }
                    write(slice.range, b)
                }
                // A block past the end was answered above; this is a body too large
                // for Block2 to number.
                Err(_) => Err(BuildError::OptionTooLong),
            }
        })
    }

    /// Takes the Block1 block `request` carries into `assembler` (RFC 7959 §2.5,
    /// RFC 9175 §3). A block before the last is answered here with 2.31 Continue
    /// echoing its Block1 — at [`Config::max_block_szx`] if that is smaller, which asks
    /// the client for smaller blocks (Figure 9) — and `Ok(None)` is returned. A refused
    /// block is answered too: 4.08 Request Entity Incomplete (out of sequence), 4.13
    /// Request Entity Too Large with Size1, 4.00 Bad Request, or 5.03 when every
    /// assembly is busy. After the last block the whole body is returned with the Block1
    /// to echo in the final response, which the caller sends with
    /// [`respond`](Self::respond) (or `respond_block2`). A request without Block1 returns
    /// its own payload and no Block1.
    pub fn assemble_block1<'a, const N: usize, const CAP: usize>(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        request: &Message<'a>,
        assembler: &'a mut Block1Assembler<P, N, CAP>,
    ) -> Result<Option<Block1Body<'a>>, Error> {
        let Ok(block1) = request.block1() else {
            self.respond(now, handle, Code::BAD_REQUEST, |_| Ok(()))?;
            return Ok(None);
        };
        let Some(block) = block1 else {
            return Ok(Some(Block1Body {
                body: request.payload(),
                echo: None,
            }));
        };
        let peer = self
            .slot_mut(handle.index, handle.generation)
            .map(|s| s.peer)
            .ok_or(Error::UnknownHandle)?;
        let lifetime = self.exchange_lifetime;
        let max_block_szx = self.config.max_block_szx;
        let size1 = request.size1().ok().flatten();
        let key = block1_key(request);
        let answer = |ep: &mut Self, code: Code, block: Option<Block>, size1: Option<u32>| {
            let max_age = ep.config.overload_max_age;
            ep.respond(now, handle, code, |b| {
                if let Some(block) = block {
                    b.block1(block)?;
                }
                if let Some(n) = size1 {
                    b.size1(n)?;
                }
                if code == Code::SERVICE_UNAVAILABLE {
                    b.max_age(max_age)?;
                }
                Ok(())
            })
        };
        match assembler.on_block(now, peer, key, block, size1, request.payload(), lifetime) {
            Ok(Assembled::Complete(body)) => Ok(Some(Block1Body {
                body,
                echo: Some(block),
            })),
            Ok(Assembled::Continue(block)) => {
                let echo = Block::new(block.num(), true, block.szx().min(max_block_szx));
                answer(self, Code::CONTINUE, echo, None)?;
                Ok(None)
            }
            Err(e) => {
                let (code, size1) = match e {
                    AssembleError::Incomplete => (Code::REQUEST_ENTITY_INCOMPLETE, None),
                    AssembleError::TooLarge { max } => (Code::REQUEST_ENTITY_TOO_LARGE, Some(max)),
                    AssembleError::Busy => (Code::SERVICE_UNAVAILABLE, None),
                    _ => (Code::BAD_REQUEST, None),
                };
                answer(self, code, None, size1)?;
                Ok(None)
            }
        }
    }

    // ---- inputs ----------------------------------------------------------------

    /// Processes one datagram from `from`. Returns the request or response it carries
    /// for the application, borrowing `datagram`; everything else (ACKs, RSTs,
    /// duplicates, pings, malformed input) is absorbed and answered as RFC 7252 says.
    pub fn handle_datagram<'b>(
        &mut self,
        now: Instant,
        from: P,
        datagram: &'b [u8],
    ) -> Option<Incoming<'b>> {
        let now = self.clamp(now);
        let msg = match Message::parse(datagram) {
            Ok(msg) => msg,
            Err(e) => {
                self.stats.malformed += 1;
                // §3: unknown versions are ignored outright; §4.2: other format
                // errors in a CON are rejected with RST; §4.3: in a NON, ignored.
                if !matches!(e, ParseError::BadVersion(_)) {
                    if let Some(h) = Header::peek(datagram) {
                        if h.ty == Type::Con {
                            self.queue_control(from, ControlKind::Rst(h.message_id));
                        }
                    }
                }
                return None;
            }
        };
        match msg.ty() {
            Type::Ack => {
                self.on_ack(now, from, &msg);
                self.take_response(from, &msg, true)
            }
            Type::Rst => {
                self.on_rst(now, from, &msg);
                None
            }
            Type::Con | Type::Non if msg.is_empty() => {
                if msg.ty() == Type::Con {
                    // A ping: rejecting it is the answer (§4.2, §4.3).
                    self.queue_control(from, ControlKind::Rst(msg.message_id()));
                }
                None
            }
            Type::Con | Type::Non if msg.code().is_request() => self.on_request(now, from, msg),
            Type::Con | Type::Non => self.on_response(now, from, msg),
        }
    }

    /// An ACK: acknowledges a CON of ours with the same peer and MID (§4.2, §4.4).
    fn on_ack(&mut self, now: Instant, from: P, msg: &Message<'_>) {
        if msg.code().is_request() {
            // §4.2: an ACK carries a response or nothing; reject by ignoring.
            return;
        }
        let Some(index) = self.find_sent(from, msg.message_id()) else {
            self.stats.unmatched += 1;
            return;
        };
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        match slot.state {
            State::AwaitingAck if slot.is_ping() => {
                slot.state = State::ClientDone(ClientOutcome::Pong);
            }
            State::AwaitingAck if msg.is_empty() => {
                slot.state = State::AwaitingSeparate;
                slot.deadline = now
                    + self
                        .config
                        .separate_response_timeout
                        .unwrap_or(self.exchange_lifetime);
                self.start_queued(now, from);
            }
            State::AwaitingAck => {} // piggybacked response: take_response finishes it
            State::RespondingCon => slot.state = State::ServerDone(ServerOutcome::Acknowledged),
            _ => {}
        }
        self.sync(index);
    }

    /// A RST: rejects a CON of ours with the same peer and MID (§4.2).
    fn on_rst(&mut self, now: Instant, from: P, msg: &Message<'_>) {
        if !msg.is_empty() {
            return; // §4.2: a RST must be Empty; reject by ignoring.
        }
        let Some(index) = self.find_sent(from, msg.message_id()) else {
            self.stats.unmatched += 1;
            return;
        };
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        slot.state = match slot.state {
            State::AwaitingAck if slot.is_ping() => State::ClientDone(ClientOutcome::Pong),
            State::AwaitingAck | State::AwaitingNonResponse | State::AwaitingSeparate => {
                State::ClientDone(ClientOutcome::Reset)
            }
            State::RespondingCon => State::ServerDone(ServerOutcome::Reset),
            other => other,
        };
        self.sync(index);
        self.start_queued(now, from);
    }

    /// The slot whose last sent message has this peer and MID and may be answered.
    fn find_sent(&self, from: P, mid: u16) -> Option<usize> {
        self.by_mid.candidates(mid as u32).find(|&i| {
            matches!(&self.slots[i], Some(s) if s.mid == mid && s.peer == from && s.answerable())
        })
    }

    /// A response carried in `msg` for one of our requests, matched by token and peer
    /// (§5.3.2); `piggybacked` responses must also match the request's MID.
    fn take_response<'b>(
        &mut self,
        from: P,
        msg: &Message<'b>,
        piggybacked: bool,
    ) -> Option<Incoming<'b>> {
        if !msg.code().is_response() {
            return None;
        }
        let index = self
            .by_token
            .candidates(token_hash(msg.token()))
            .find(|&i| {
                matches!(&self.slots[i], Some(s) if s.peer == from && s.token() == msg.token()
                && s.awaits_response()
                && (!piggybacked || (s.state == State::AwaitingAck && s.mid == msg.message_id())))
            })?;
        let (peer, generation) = (self.slots[index].as_ref()?.peer, self.gens[index]);
        let handle = RequestHandle {
            index: index as u16,
            generation,
        };
        let now = self.last_now;
        match self.follow_block1(now, index, msg) {
            Ok(true) => {}
            // 2.31 Continue or another block acknowledged: absorbed, the upload goes on.
            Ok(false) => return None,
            Err(e) => {
                self.fail_transfer(index, BlockFailure::Upload(e));
                return None;
            }
        }
        let block = match self.follow_block2(now, index, msg) {
            Ok(block) => block,
            Err(e) => {
                self.fail_transfer(index, BlockFailure::Download(e));
                return None;
            }
        };
        if block.is_none_or(|b| b.last) {
            self.release(index);
            self.start_queued(now, peer);
        }
        Some(Incoming::Response {
            handle,
            message: *msg,
            block,
        })
    }

    /// Ends a client request whose block-wise transfer cannot go on; the failure is
    /// reported as its outcome.
    fn fail_transfer(&mut self, index: usize, failure: BlockFailure) {
        if let (Some(Some(slot)), Some(Some(b))) =
            (self.slots.get_mut(index), self.blocks.get_mut(index))
        {
            slot.state = State::ClientDone(ClientOutcome::BlockFailed);
            b.failed = Some(failure);
        }
        self.sync(index);
    }

    /// Feeds a response to its request's Block1 upload (RFC 7959 §2.5): `Ok(true)` if
    /// the response is for the application (the final one, 4.13, 4.08 or another error),
    /// `Ok(false)` if it only acknowledged a block (the next is then asked for).
    fn follow_block1(
        &mut self,
        _now: Instant,
        index: usize,
        msg: &Message<'_>,
    ) -> Result<bool, UploadError> {
        let Some(Some(blocks)) = self.blocks.get_mut(index) else {
            return Ok(true);
        };
        let Some(upload) = blocks.upload.as_mut().filter(|u| !u.is_done()) else {
            return Ok(true);
        };
        let step = upload.on_response(
            msg.code(),
            msg.block1().ok().flatten(),
            msg.size1().ok().flatten(),
        );
        match step {
            Ok(UploadStep::Done) => Ok(true),
            Ok(UploadStep::Continue) => {
                if let Some(Some(slot)) = self.slots.get_mut(index) {
                    slot.state = State::NeedsBlock;
                }
                self.sync(index);
                let peer = self.slots[index].as_ref().map(|s| s.peer);
                if let Some(peer) = peer {
                    // This slot is no longer outstanding: others to the peer may go.
                    self.start_queued(self.last_now, peer);
                }
                Ok(false)
            }
            // Error codes end the request like any final response: the application
            // sees the code (and Size1 with 4.13).
            Err(
                UploadError::TooLarge { .. } | UploadError::Incomplete | UploadError::Rejected(_),
            ) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Feeds a response to its request's Block2 download (RFC 7959 §2.4) and, if more
    /// blocks follow, queues the request for the next one in the same slot.
    fn follow_block2(
        &mut self,
        now: Instant,
        index: usize,
        msg: &Message<'_>,
    ) -> Result<Option<Received>, DownloadError> {
        let Some(Some(blocks)) = self.blocks.get_mut(index) else {
            return Ok(None);
        };
        let block2 = msg.block2().ok().flatten();
        if !msg.code().is_success() || (block2.is_none() && blocks.download.received() == 0) {
            // Not block-wise, or an error that ends the request as any response does.
            return Ok(None);
        }
        let received = blocks.download.on_response(
            block2,
            msg.etag().ok().flatten(),
            msg.size2().ok().flatten(),
            msg.payload().len(),
        )?;
        if received.last {
            return Ok(Some(received));
        }
        let next = blocks
            .download
            .next_request_block()
            .ok_or(DownloadError::TooLarge)?;
        let fresh = blocks.fresh_token;
        self.queue_follow_up(now, index, next, fresh)
            .map_err(|_| DownloadError::TooLarge)?;
        Ok(Some(received))
    }

    /// Rewrites slot `index`'s request for block `next` of the response — same options
    /// and payload, a new Block2, a new token if asked — and queues it.
    fn queue_follow_up(
        &mut self,
        now: Instant,
        index: usize,
        next: Block,
        fresh_token: bool,
    ) -> Result<(), BuildError> {
        let mut token = [0u8; MAX_TOKEN_LEN];
        let (peer, old_token) = match self.slots.get(index) {
            Some(Some(s)) => (s.peer, (s.token, s.token().len())),
            _ => return Err(BuildError::PayloadAlreadySet),
        };
        let token_len = if fresh_token {
            self.fresh_token(peer, &mut token)
        } else {
            token = old_token.0;
            old_token.1
        };
        // After an upload the body has been sent: follow-ups for the response's blocks
        // carry neither Block1 nor the payload (RFC 7959 §3.3, Figure 10).
        let uploaded = self
            .stored_request(index)
            .is_some_and(|m| m.has_option(OptionNumber::BLOCK1));
        let (drop, payload): (&[OptionNumber], _) = if uploaded {
            (
                &[
                    OptionNumber::BLOCK1,
                    OptionNumber::BLOCK2,
                    OptionNumber::SIZE1,
                ],
                BlockPayload::None,
            )
        } else {
            (&[OptionNumber::BLOCK2], BlockPayload::Keep)
        };
        self.requeue_block_request(
            now,
            index,
            (token, token_len),
            drop,
            None,
            Some(next),
            payload,
        )
    }

    /// The request stored in slot `index`.
    fn stored_request(&self, index: usize) -> Option<Message<'_>> {
        let len = self.slots.get(index)?.as_ref()?.len as usize;
        Message::parse(self.bufs.get(index)?.get(..len)?).ok()
    }

    /// Rewrites the request stored in slot `index` for its next block and queues it: the
    /// same header and options but `drop`, then `block1`/`block2`, the given token, and
    /// the payload — kept where it is, new (copied once, straight into the slot's
    /// buffer), or none. A refusal changes nothing.
    #[allow(clippy::too_many_arguments)]
    fn requeue_block_request(
        &mut self,
        now: Instant,
        index: usize,
        (token, token_len): ([u8; MAX_TOKEN_LEN], usize),
        drop: &[OptionNumber],
        block1: Option<Block>,
        block2: Option<Block>,
        payload: BlockPayload<'_>,
    ) -> Result<(), BuildError> {
        let mut tmp = [0u8; M];
        let (len, kept) = {
            // The slot holds a request this endpoint built, so it always parses.
            let old = self
                .stored_request(index)
                .ok_or(BuildError::PayloadAlreadySet)?;
            let mut b = MessageBuilder::new(&mut tmp, old.ty(), old.code(), 0)?;
            b.token(&token[..token_len])?;
            for o in old.options().filter(|o| !drop.contains(&o.number)) {
                b.option(o.number, o.value)?;
            }
            if let Some(block) = block1 {
                b.block1(block)?;
            }
            if let Some(block) = block2 {
                b.block2(block)?;
            }
            let kept = old.as_bytes().len() - old.payload().len()..old.as_bytes().len();
            (b.len(), kept)
        };
        let data_len = match payload {
            BlockPayload::Keep => kept.len(),
            BlockPayload::New(d) => d.len(),
            BlockPayload::None => 0,
        };
        let total = if data_len == 0 {
            len
        } else {
            len + 1 + data_len
        };
        if total > M {
            return Err(BuildError::BufferTooSmall { needed: total });
        }
        // Payload first (a kept one may move within the buffer), then header and options.
        match payload {
            BlockPayload::Keep if data_len > 0 => self.bufs[index].copy_within(kept, len + 1),
            BlockPayload::New(d) if data_len > 0 => {
                self.bufs[index][len + 1..total].copy_from_slice(d)
            }
            _ => {}
        }
        self.bufs[index][..len].copy_from_slice(&tmp[..len]);
        if data_len > 0 {
            self.bufs[index][len] = 0xff;
        }
        if let Some(Some(slot)) = self.slots.get_mut(index) {
            slot.len = total as u16;
            slot.token = token;
            slot.bits = (slot.bits & !0x0f) | token_len as u8;
            slot.state = State::Queued;
            slot.deadline = now;
            slot.timeout_us = 0;
        }
        self.queued += 1;
        self.sync(index);
        self.try_start(now, index);
        Ok(())
    }

    /// A separate or NON response (§5.2.2, §5.2.3).
    fn on_response<'b>(&mut self, now: Instant, from: P, msg: Message<'b>) -> Option<Incoming<'b>> {
        let con = msg.ty() == Type::Con;
        if let Some(entry) = self.dedup.find(now, from, msg.message_id()) {
            self.stats.duplicates += 1;
            if con {
                self.replay(from, msg.message_id(), entry);
            }
            return None;
        }
        match self.take_response(from, &msg, false) {
            Some(incoming) => {
                if con {
                    let life = self.exchange_lifetime;
                    let entry =
                        self.dedup
                            .insert(now, from, msg.message_id(), life, Reply::EmptyAck);
                    self.owe(entry, from, msg.message_id(), Reply::EmptyAck);
                } else {
                    let life = self.non_lifetime;
                    self.dedup
                        .insert(now, from, msg.message_id(), life, Reply::Nothing);
                }
                Some(incoming)
            }
            None => {
                // §5.3.2: a response nobody waits for is rejected.
                if con {
                    self.queue_control(from, ControlKind::Rst(msg.message_id()));
                }
                None
            }
        }
    }

    /// Sends a duplicate of a remembered CON its first reply again (§4.5).
    fn replay(&mut self, to: P, mid: u16, entry: usize) {
        match self.dedup.reply(entry) {
            Reply::EmptyAck | Reply::Stored { .. } => self.dedup.mark_pending(entry),
            Reply::Pending(tag) => {
                // The request is still with the application. Its client is
                // retransmitting, so acknowledge now rather than wait for the timer —
                // unless a piggybacked answer is about to leave: that is the reply.
                let (index, generation) = ((tag >> 16) as u16, tag as u16);
                let wait = self
                    .config
                    .deferred_response_timeout
                    .unwrap_or(self.exchange_lifetime);
                match self.slot_mut(index, generation) {
                    Some(slot) if slot.state == State::Piggybacked => {}
                    Some(slot) => {
                        if slot.state == State::DeferredCon {
                            slot.state = State::Deferred;
                            slot.deadline = slot.deadline + wait;
                        }
                        self.sync(index as usize);
                        self.owe(entry, to, mid, Reply::EmptyAck);
                    }
                    None => self.owe(entry, to, mid, Reply::EmptyAck),
                }
            }
            Reply::Nothing | Reply::Evicted => {}
        }
    }

    /// A request (§5.1): deduplicated, checked, then handed to the application.
    fn on_request<'b>(&mut self, now: Instant, from: P, msg: Message<'b>) -> Option<Incoming<'b>> {
        let con = msg.ty() == Type::Con;
        let mid = msg.message_id();
        if let Some(entry) = self.dedup.find(now, from, mid) {
            self.stats.duplicates += 1;
            if con {
                self.replay(from, mid, entry);
            }
            return None;
        }
        if msg.token().len() > self.config.max_token_len.min(MAX_TOKEN_LEN as u8) as usize {
            // RFC 8974 §2.2.2: a token longer than supported is a format error.
            self.stats.malformed += 1;
            if con {
                self.queue_control(from, ControlKind::Rst(mid));
            }
            return None;
        }
        let error = if !is_assigned_method(msg.code()) {
            Some(Code::METHOD_NOT_ALLOWED)
        } else if self.has_bad_critical_option(&msg) {
            if !con {
                // §5.4.1: a NON with an unrecognized critical option is rejected.
                self.queue_control(from, ControlKind::Rst(mid));
                return None;
            }
            Some(Code::BAD_OPTION)
        } else {
            None
        };
        let lifetime = if con {
            self.exchange_lifetime
        } else {
            self.non_lifetime
        };
        let free = if error.is_none() {
            self.free_index()
        } else {
            None
        };
        let index = match (error, free) {
            (None, Some(index)) => index,
            (error, _) => {
                let code = error.unwrap_or_else(|| {
                    self.stats.overloaded += 1;
                    Code::SERVICE_UNAVAILABLE
                });
                self.reply_error(now, from, &msg, code, lifetime);
                return None;
            }
        };
        let generation = self.gens[index].wrapping_add(1);
        let entry = self.dedup.insert(
            now,
            from,
            mid,
            lifetime,
            if con {
                Reply::Pending(((index as u32) << 16) | generation as u32)
            } else {
                Reply::Nothing
            },
        );
        let wait = self
            .config
            .deferred_response_timeout
            .unwrap_or(self.exchange_lifetime);
        let (deadline, state) = if con {
            (now + self.config.empty_ack_delay, State::DeferredCon)
        } else {
            (now + wait, State::Deferred)
        };
        let mut slot = Slot::new(
            from,
            deadline,
            state,
            msg.token(),
            if con { CON } else { 0 },
        );
        slot.mid = mid;
        slot.dedup = entry as u16;
        slot.no_response = match msg.no_response() {
            Ok(Some(nr)) => nr.0,
            _ => 0,
        };
        let generation = self.occupy(index, slot);
        Some(Incoming::Request {
            handle: IncomingHandle {
                index: index as u16,
                generation,
            },
            message: msg,
        })
    }

    /// §5.4.1, §5.4.3: a critical option the endpoint does not recognize, or a
    /// recognized one whose value has the wrong length.
    fn has_bad_critical_option(&self, msg: &Message<'_>) -> bool {
        msg.options().any(|o| {
            o.number.is_critical()
                && (!self.knows(o.number)
                    || o.number.info().is_some_and(|i| {
                        o.value.len() < i.min_len as usize || o.value.len() > i.max_len as usize
                    }))
        })
    }

    fn knows(&self, n: OptionNumber) -> bool {
        matches!(
            n,
            OptionNumber::IF_MATCH
                | OptionNumber::URI_HOST
                | OptionNumber::IF_NONE_MATCH
                | OptionNumber::URI_PORT
                | OptionNumber::URI_PATH
                | OptionNumber::URI_QUERY
                | OptionNumber::ACCEPT
                | OptionNumber::BLOCK2
                | OptionNumber::BLOCK1
                | OptionNumber::PROXY_URI
                | OptionNumber::PROXY_SCHEME
        ) || self.config.known_critical_options.contains(&n.0)
    }

    /// Answers a request the endpoint itself refuses (4.02, 4.05, 5.03): piggybacked
    /// and stored for replay if CON, a NON response otherwise.
    fn reply_error(
        &mut self,
        now: Instant,
        to: P,
        msg: &Message<'_>,
        code: Code,
        lifetime: Duration,
    ) {
        let con = msg.ty() == Type::Con;
        let (ty, mid) = if con {
            (Type::Ack, msg.message_id())
        } else {
            (Type::Non, self.new_mid())
        };
        let mut bytes = [0u8; CONTROL_BYTES];
        let Ok(mut b) = MessageBuilder::new(&mut bytes, ty, code, mid) else {
            return;
        };
        let token = msg.token();
        let max_age = self.config.overload_max_age;
        let built = b.token(token).and_then(|b| {
            if code == Code::SERVICE_UNAVAILABLE {
                let mut tmp = [0; 4];
                b.option(OptionNumber::MAX_AGE, encode_uint(max_age, &mut tmp))?;
            }
            Ok(())
        });
        if built.is_err() {
            return;
        }
        let len = b.len();
        if NoResponse(msg.no_response().ok().flatten().map_or(0, |n| n.0)).suppresses(code) {
            if con {
                let entry = self
                    .dedup
                    .insert(now, to, msg.message_id(), lifetime, Reply::EmptyAck);
                self.owe(entry, to, msg.message_id(), Reply::EmptyAck);
            }
            return;
        }
        if con {
            let entry = self
                .dedup
                .insert(now, to, msg.message_id(), lifetime, Reply::Nothing);
            self.dedup.store(entry, &bytes[..len]);
            self.dedup.mark_pending(entry);
        } else {
            self.dedup
                .insert(now, to, msg.message_id(), lifetime, Reply::Nothing);
            self.queue_control(
                to,
                ControlKind::Bytes {
                    len: len as u8,
                    bytes,
                },
            );
        }
    }

    /// Fires every timer due at `now`: retransmissions, give-ups, empty ACKs and
    /// expiries. [`poll_output`](Self::poll_output) calls it too.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        // Every firing moves its timer later or removes it; the bound only guards
        // against a bug turning into a hang.
        for _ in 0..4 * E + 4 {
            match self.next_timer() {
                Some((at, index)) if at <= now => self.fire(now, index),
                _ => return,
            }
        }
    }

    /// The transitions of §4.2 and §5.2.2 driven by time, for slot `index`.
    fn fire(&mut self, now: Instant, index: usize) {
        let exchange_lifetime = self.exchange_lifetime;
        let deferred = self
            .config
            .deferred_response_timeout
            .unwrap_or(exchange_lifetime);
        let ack_delay = self.config.empty_ack_delay;
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        let mut owe = None;
        match slot.state {
            State::AwaitingAck | State::RespondingCon => {
                match step(
                    &mut slot.deadline,
                    &mut slot.timeout_us,
                    &mut slot.retransmits_left,
                    now,
                ) {
                    RetransmitAction::Wait => {}
                    RetransmitAction::Retransmit => {
                        slot.set_sending(true);
                        self.stats.retransmissions += 1;
                    }
                    RetransmitAction::GiveUp => {
                        slot.state = if slot.state == State::AwaitingAck {
                            State::ClientDone(ClientOutcome::TimedOut)
                        } else {
                            State::ServerDone(ServerOutcome::TimedOut)
                        };
                    }
                }
            }
            State::AwaitingNonResponse | State::AwaitingSeparate => {
                slot.state = State::ClientDone(ClientOutcome::TimedOut);
            }
            State::DeferredCon => {
                // §5.2.2: no answer in time; acknowledge now, answer later.
                slot.state = State::Deferred;
                slot.deadline = now + deferred.saturating_sub(ack_delay);
                owe = Some((slot.dedup as usize, slot.peer, slot.mid));
            }
            State::Deferred => slot.state = State::ServerDone(ServerOutcome::Expired),
            _ => {}
        }
        self.sync(index);
        if let Some((entry, peer, mid)) = owe {
            self.owe(entry, peer, mid, Reply::EmptyAck);
        }
    }

    /// The next thing to do: a datagram to send, an event, or the instant to call
    /// again. Fires due timers first. Drain it after every input and command.
    pub fn poll_output(&mut self, now: Instant) -> Output<'_, P> {
        let now = self.clamp(now);
        self.handle_timeout(now);
        // Control messages first: they are small and answer what the peer just sent.
        if let Some(control) = self.pop_control() {
            let len = match control.kind {
                ControlKind::EmptyAck(mid) | ControlKind::Rst(mid) => {
                    let ty = if matches!(control.kind, ControlKind::Rst(_)) {
                        Type::Rst
                    } else {
                        Type::Ack
                    };
                    let [m0, m1] = mid.to_be_bytes();
                    self.scratch[..4].copy_from_slice(&[0x40 | (ty.bits() << 4), 0, m0, m1]);
                    4
                }
                ControlKind::Bytes { len, bytes } => {
                    self.scratch = bytes;
                    len as usize
                }
            };
            return Output::Transmit(Transmit {
                to: control.to,
                data: &self.scratch[..len],
            });
        }
        // Then the answers owed to accepted messages: ACKs and replays (§4.2, §4.5).
        while let Some((entry, to, mid)) = self.dedup.take_pending() {
            match self.dedup.reply(entry) {
                Reply::EmptyAck => {
                    let [m0, m1] = mid.to_be_bytes();
                    self.scratch[..4].copy_from_slice(&[0x40 | (Type::Ack.bits() << 4), 0, m0, m1]);
                    return Output::Transmit(Transmit {
                        to,
                        data: &self.scratch[..4],
                    });
                }
                // A reply overwritten in the arena since is lost, as if on the way.
                Reply::Stored { .. } if self.dedup.stored(entry).is_some() => {
                    return Output::Transmit(Transmit {
                        to,
                        data: self.dedup.stored(entry).unwrap_or(&[]),
                    });
                }
                _ => {}
            }
        }
        while let Some(index) = self.to_send.pop() {
            let Some(Some(slot)) = self.slots.get_mut(index) else {
                continue;
            };
            if !slot.sending() {
                continue;
            }
            slot.set_sending(false);
            let (to, len, state) = (slot.peer, slot.len as usize, slot.state);
            let (mid, entry) = (slot.mid, slot.dedup as usize);
            match state {
                State::Piggybacked => {
                    self.release(index);
                    // Keep the reply for duplicates of the request (§4.5) — if the
                    // dedup entry still belongs to it.
                    if self.dedup.key(entry) == Some((to, mid)) {
                        self.dedup.store(entry, &self.bufs[index][..len]);
                    }
                }
                State::SendingNon => self.release(index),
                _ => {}
            }
            return Output::Transmit(Transmit {
                to,
                data: &self.bufs[index][..len],
            });
        }
        while let Some(index) = self.to_report.pop() {
            let Some(Some(slot)) = self.slots.get(index) else {
                continue;
            };
            let (generation, peer) = (self.gens[index], slot.peer);
            let index16 = index as u16;
            if slot.state == State::NeedsBlock {
                let (offset, max_len) = self.blocks[index]
                    .and_then(|b| b.upload)
                    .and_then(|u| u.next_offset())
                    .unwrap_or((0, 0));
                if let Some(Some(slot)) = self.slots.get_mut(index) {
                    slot.state = State::AwaitingBlock;
                }
                return Output::Event(Event::BlockNeeded {
                    handle: RequestHandle {
                        index: index16,
                        generation,
                    },
                    offset,
                    max_len,
                });
            }
            let event = match slot.state {
                State::ClientDone(outcome) => {
                    let h = RequestHandle {
                        index: index16,
                        generation,
                    };
                    match outcome {
                        ClientOutcome::TimedOut => Event::TimedOut(h),
                        ClientOutcome::Reset => Event::Reset(h),
                        ClientOutcome::Pong => Event::Pong(h),
                        ClientOutcome::BlockFailed => {
                            match self.blocks[index].and_then(|b| b.failed) {
                                Some(BlockFailure::Upload(e)) => Event::UploadFailed(h, e),
                                Some(BlockFailure::Download(e)) => Event::BlockFailed(h, e),
                                None => Event::BlockFailed(h, DownloadError::Finished),
                            }
                        }
                    }
                }
                State::ServerDone(outcome) => {
                    let h = IncomingHandle {
                        index: index16,
                        generation,
                    };
                    match outcome {
                        ServerOutcome::Acknowledged => Event::ResponseAcknowledged(h),
                        ServerOutcome::TimedOut => Event::ResponseTimedOut(h),
                        ServerOutcome::Reset => Event::ResponseReset(h),
                        ServerOutcome::Expired => Event::RequestExpired(h),
                    }
                }
                _ => continue,
            };
            self.release(index);
            self.start_queued(now, peer);
            return Output::Event(event);
        }
        Output::Timeout(self.next_timer().map(|(at, _)| at))
    }
}

/// A hash of a token for the token index: FNV-1a over its bytes.
fn token_hash(token: &[u8]) -> u32 {
    token.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// The methods RFC 7252 and RFC 8132 assign (0.01–0.07); others get 4.05 (§5.8).
fn is_assigned_method(code: Code) -> bool {
    code.is_request() && code.detail() <= 7
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_32_bytes_plus_the_peer() {
        // The indexes add 27 bytes per slot; tests/endpoint.rs checks the whole.
        assert_eq!(core::mem::size_of::<Option<Slot<u8>>>(), 32);
        assert_eq!(
            core::mem::size_of::<Option<Slot<core::net::SocketAddr>>>(),
            64
        );
    }
}
