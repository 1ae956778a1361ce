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

mod api;
mod client;
mod client_block;
mod config;
mod error;
mod output;
mod replies;
mod server;
mod server_block;
mod slot;
mod stats;
mod table;
mod timers;

pub use api::{Block1Body, Event, Incoming, IncomingHandle, Output, RequestHandle, Transmit};
pub use config::{Config, MAX_TOKEN_LEN, RequestOptions, ResponseMode};
pub use error::Error;
pub use stats::Stats;

use core::fmt;
use core::time::Duration;

use crate::Instant;
use crate::dedup::DedupCache;
use crate::index::{ChainIndex, ItemQueue, TimerHeap};
use crate::rng::Rng;
use crate::wire::{Header, Message, ParseError, Type};
use client::ClientBlocks;
use output::{CONTROL_BYTES, CONTROL_QUEUE, Control, ControlKind};
use slot::Slot;

/// One local CoAP endpoint: client and server at once, any number of peers.
///
/// Type parameters: the peer address `P` (any `Copy + Eq`: a socket address, a smoltcp
/// endpoint, a DTLS session id); `E` exchange slots, each with an `M`-byte message
/// buffer; `D` dedup entries and `R` bytes for stored replies. The defaults —
/// `Endpoint<SocketAddr, 16, 32, 1152, 4608>` — take about 29 KiB; see the crate docs
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
    /// Server slots whose request is with the application (handling or deferred).
    held: usize,
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
            held: 0,
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

    // ---- inputs -------------------------------------------------------------

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
}

/// A dedup entry index that names no entry: `owe` then sends a plain empty ACK.
pub(super) const NO_ENTRY: usize = u16::MAX as usize;

/// A hash of a token for the token index: FNV-1a over its bytes.
pub(super) fn token_hash(token: &[u8]) -> u32 {
    token.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
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
