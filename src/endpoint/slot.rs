//! One exchange slot: its state and the predicates that decide which index it belongs to.

use super::MAX_TOKEN_LEN;
use crate::Instant;

/// Where a slot is in its exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
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
pub(super) enum ClientOutcome {
    TimedOut,
    Reset,
    Pong,
    /// The failure is kept in the slot's `ClientBlocks`.
    BlockFailed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ServerOutcome {
    Acknowledged,
    TimedOut,
    Reset,
    Expired,
}

/// One exchange. Its message bytes live in the endpoint's parallel buffer array, so
/// this is all the state an exchange has beyond them: 32 bytes plus the peer address.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot<P> {
    pub(super) peer: P,
    /// When the slot next needs attention (retransmission, give-up, ACK, expiry); for a
    /// queued request, when it was queued.
    pub(super) deadline: Instant,
    /// The retransmission timeout now running, in µs; for a queued NON request, its
    /// response timeout in µs (0: the default).
    pub(super) timeout_us: u32,
    /// ID of the message this slot last sent (server: of the request until the
    /// response is built).
    pub(super) mid: u16,
    /// Bytes of the message in the slot's buffer.
    pub(super) len: u16,
    /// Server: the dedup entry of the request.
    pub(super) dedup: u16,
    pub(super) token: [u8; MAX_TOKEN_LEN],
    /// Token length (bits 0–3) and the `SEND`, `CON` and `PING` flags.
    pub(super) bits: u8,
    pub(super) retransmits_left: u8,
    pub(super) state: State,
    /// Server: the request's No-Response value (RFC 7967).
    pub(super) no_response: u8,
}

pub(super) const SEND: u8 = 0x10;
pub(super) const CON: u8 = 0x20;
pub(super) const PING: u8 = 0x40;
/// Counted in `Endpoint::outstanding`.
pub(super) const COUNTED: u8 = 0x80;

impl<P> Slot<P> {
    pub(super) fn new(
        peer: P,
        deadline: Instant,
        state: State,
        token: &[u8],
        flags: u8,
    ) -> Slot<P> {
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

    pub(super) fn token(&self) -> &[u8] {
        self.token.get(..(self.bits & 0x0f) as usize).unwrap_or(&[])
    }

    /// The message in the buffer waits to be sent.
    pub(super) fn sending(&self) -> bool {
        self.bits & SEND != 0
    }

    pub(super) fn set_sending(&mut self, on: bool) {
        self.bits = if on {
            self.bits | SEND
        } else {
            self.bits & !SEND
        };
    }

    /// Client: the request is CON; server: the request was CON.
    pub(super) fn con(&self) -> bool {
        self.bits & CON != 0
    }

    pub(super) fn is_ping(&self) -> bool {
        self.bits & PING != 0
    }

    pub(super) fn is_client(&self) -> bool {
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
    pub(super) fn has_timer(&self) -> bool {
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
    pub(super) fn answerable(&self) -> bool {
        matches!(
            self.state,
            State::AwaitingAck
                | State::AwaitingNonResponse
                | State::AwaitingSeparate
                | State::RespondingCon
        )
    }

    /// Whether a response with this slot's peer and token would be its answer.
    pub(super) fn awaits_response(&self) -> bool {
        !self.is_ping()
            && matches!(
                self.state,
                State::AwaitingAck | State::AwaitingNonResponse | State::AwaitingSeparate
            )
    }

    /// Counts toward NSTART (§4.7): a CON awaiting its ACK, or a request awaiting a
    /// response that was not acknowledged.
    pub(super) fn is_outstanding(&self) -> bool {
        matches!(
            self.state,
            State::AwaitingAck | State::AwaitingNonResponse | State::RespondingCon
        )
    }
}
