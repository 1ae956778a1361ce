//! One exchange slot: its state and the predicates that decide which index it belongs to.

use super::MAX_TOKEN_LEN;
use crate::Instant;
use crate::wire::NoResponse;

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
    /// Client upload: the next block is to be asked for (reported as `BlockNeeded`).
    NeedsBlock,
    /// Client upload: waiting for the application's `send_block`.
    AwaitingBlock,
    /// Client: observing (RFC 7641): notifications with the token are delivered; no
    /// buffer, no timer. `timeout_us` holds the newest sequence number delivered and
    /// `deadline` when it arrived (the §3.4 freshness rule).
    Observing,
    /// Server: request delivered, within its handling call. At `deadline` (CON: after
    /// `empty_ack_delay`; NON: at once) it is deferred: a CON gets its empty ACK.
    Handling,
    /// Server: request deferred (CON: acknowledged empty), waiting for the
    /// application's answer until `deadline`.
    Deferred,
    /// Server: piggybacked response built, to be sent once and stored for replay.
    Piggybacked,
    /// Server: NON response built, to be sent once.
    SendingNon,
    /// Server: separate CON response sent, retransmitting until ACK/RST.
    RespondingCon,
    /// Server: the response to a group request (RFC 7252 §8.2) is built and waits
    /// until `deadline`, a random point within Leisure, to be sent once as NON.
    Leisure,
    /// Client: a group request whose collection window closed while unicast
    /// follow-ups to its members (`MEMBER` slots) still run; ends with the last.
    Collected,
    /// Outcome decided, to be reported.
    Done(Outcome),
}

/// How an exchange ended, to be reported as an [`Event`](super::Event). One enum for
/// both roles keeps `State` a single byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    // Client side.
    TimedOut,
    Reset,
    Pong,
    /// The failure is kept in the slot's `ClientBlocks`.
    BlockFailed,
    /// An observation ended (declined, or a final response), after its response was
    /// delivered.
    ObserveEnded,
    /// A group request's collection window closed and its follow-ups ended.
    GroupEnded,
    // Server side.
    Acknowledged,
    ResponseTimedOut,
    ResponseReset,
    Expired,
    /// Deferred over the quota: the endpoint answered 5.03 or 4.29 itself.
    Refused,
}

impl Outcome {
    fn is_client(self) -> bool {
        matches!(
            self,
            Outcome::TimedOut
                | Outcome::Reset
                | Outcome::Pong
                | Outcome::BlockFailed
                | Outcome::ObserveEnded
                | Outcome::GroupEnded
        )
    }
}

/// One exchange record: all the state an exchange has beyond the message buffer it
/// may hold from the pool — 32 bytes with a one-byte peer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot<P> {
    pub(super) peer: P,
    /// When the slot next needs attention (retransmission, give-up, ACK, expiry); for a
    /// queued request, when it was queued.
    pub(super) deadline: Instant,
    /// The retransmission timeout now running, in µs; for a queued NON request, its
    /// response timeout in µs (0: the default). Server, while the request is with the
    /// application (`Handling`, `Deferred`): the most bytes its answer may have before
    /// the peer must be verified (RFC 9175 §2.4; `u32::MAX`: any), which no timer
    /// needs until a CON response starts retransmitting.
    pub(super) timeout_us: u32,
    /// ID of the message this slot last sent (server: of the request until the
    /// response is built).
    pub(super) mid: u16,
    /// The pool buffer holding this exchange's message, or `NO_BUFFER`.
    pub(super) buf: u16,
    /// Server: the dedup entry of the request.
    pub(super) dedup: u16,
    pub(super) token: [u8; MAX_TOKEN_LEN],
    /// Token length (bits 0–3) and the `SEND`, `CON` and `PING` flags.
    pub(super) bits: u8,
    pub(super) retransmits_left: u8,
    pub(super) state: State,
    /// Server: the request's No-Response value (RFC 7967).
    pub(super) no_response: u8,
    /// Server: the `HELD`, `MUST_ANSWER` and `OVER_SHARE` flags.
    pub(super) quota: u8,
}

// The `quota` bits. Some mean one thing in a server slot and another in a client slot;
// every test of a shared bit first knows the slot's role.
//
// | bit  | server slot         | client slot           |
// |------|---------------------|-----------------------|
// | 0x01 | HELD                | (kept clear by sync)  |
// | 0x02 | MUST_ANSWER         | —                     |
// | 0x04 | OVER_SHARE          | GROUP                 |
// | 0x08 | OBSERVE_REGISTER    | MEMBER                |
// | 0x10 | NOTIFICATION        | —                     |
// | 0x20 | —                   | OBSERVE_ASKED         |
// | 0x40 | —                   | OBSERVE_ACCEPTED      |
// | 0x80 | GROUP_REQUEST       | OBSERVE_LEAVING       |

/// Counted in `Endpoint::held`: a request with the application.
pub(super) const HELD: u8 = 0x01;
/// Admitted over the deferral quota: answered by the endpoint if not at once.
pub(super) const MUST_ANSWER: u8 = 0x02;
/// Over the quota of its peer (4.29) rather than of the endpoint (5.03).
pub(super) const OVER_SHARE: u8 = 0x04;
/// Server: the request came to a group address (RFC 7252 §8.2): no error answers, and
/// the answer waits a random time within Leisure.
pub(super) const GROUP_REQUEST: u8 = 0x80;
/// Client: a request to a group (RFC 7252 §8.1): answered by any number of members,
/// matched by token from any source until `deadline`; `retransmits_left` counts its
/// `MEMBER` follow-ups.
pub(super) const GROUP: u8 = 0x04;
/// Client: a unicast follow-up of a group request to one member (its next Block2
/// block, RFC 7959 §2.8, or its repetition with an Echo value); `dedup` holds the
/// group request's slot, under whose handle its responses are delivered.
pub(super) const MEMBER: u8 = 0x08;

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
            buf: super::pool::NO_BUFFER,
            dedup: 0,
            token: t,
            bits: n as u8 | flags,
            retransmits_left: 0,
            state,
            no_response: 0,
            quota: 0,
        }
    }

    /// Starts the back-off of a CON this slot sends now (RFC 7252 §4.2): the first
    /// timeout `initial`, then doubling, `max_retransmit` times at most.
    pub(super) fn start_retransmission(
        &mut self,
        now: Instant,
        initial: core::time::Duration,
        max_retransmit: u8,
    ) {
        let r = crate::Retransmission::new(now, initial, 0);
        self.timeout_us = r.timeout().as_micros() as u32;
        self.deadline = r.deadline();
        self.retransmits_left = max_retransmit;
    }

    /// Server: the No-Response value (RFC 7967) the answers to this request obey: the
    /// request's own, and for a group request also no error answers (RFC 7252 §8.2:
    /// a server says nothing when it has nothing useful to say).
    pub(super) fn answer_filter(&self) -> u8 {
        if self.quota & GROUP_REQUEST != 0 {
            self.no_response | NoResponse::SUPPRESS_4XX | NoResponse::SUPPRESS_5XX
        } else {
            self.no_response
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
                | State::NeedsBlock
                | State::AwaitingBlock
                | State::Observing
                | State::Collected
        ) || matches!(self.state, State::Done(o) if o.is_client())
    }

    /// Whether `deadline` is a timer to fire (a queued request's is only its place in
    /// the queue).
    pub(super) fn has_timer(&self) -> bool {
        matches!(
            self.state,
            State::AwaitingAck
                | State::AwaitingNonResponse
                | State::AwaitingSeparate
                | State::Handling
                | State::Deferred
                | State::RespondingCon
                | State::Leisure
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
                State::AwaitingAck
                    | State::AwaitingNonResponse
                    | State::AwaitingSeparate
                    | State::Observing
            )
    }

    /// A request with the application (handling or deferred), or its separate CON
    /// response until acknowledged: what a late answer holds, counted toward the
    /// deferral quota.
    pub(super) fn is_held(&self) -> bool {
        matches!(
            self.state,
            State::Handling | State::Deferred | State::RespondingCon
        )
    }

    /// When the slot is free at the latest, if nothing else happens: its give-up or
    /// expiry. `deferred_wait` is how long a deferred request waits; `None` for a
    /// request waiting for NSTART, which has no bound of its own.
    pub(super) fn ends_by(
        &self,
        now: Instant,
        deferred_wait: core::time::Duration,
    ) -> Option<Instant> {
        let retransmitting = || {
            // The remaining back-off: timeout · (2 + 4 + … + 2^left).
            let rest = (self.timeout_us as u64)
                .saturating_mul((1u64 << (self.retransmits_left.min(32) + 1)) - 2);
            self.deadline.plus_micros(rest)
        };
        match self.state {
            State::Queued | State::Observing => None,
            State::Handling => Some(self.deadline + deferred_wait),
            State::AwaitingAck | State::RespondingCon => Some(retransmitting()),
            State::Deferred
            | State::AwaitingNonResponse
            | State::AwaitingSeparate
            | State::Leisure => Some(self.deadline),
            State::Collected => None,
            _ => Some(now),
        }
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
