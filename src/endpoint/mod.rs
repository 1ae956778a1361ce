//! The endpoint: one local CoAP endpoint talking to any number of peers, in both the
//! client and the server role (RFC 7252 §4 message layer, §5 request/response layer;
//! RFC 7959 block-wise; RFC 7967 No-Response; RFC 8974 §2.2 token lengths; RFC 8516
//! Too Many Requests).
//!
//! Transition rules, by the section they implement, and the file that holds them:
//!
//! - §4.2 CON: retransmitted with randomized exponential back-off until ACK or RST;
//!   given up after MAX_RETRANSMIT ([`crate::retransmit`], `timers.rs`). A CON that is
//!   Empty (ping), malformed, or of a reserved class is rejected with RST. ACK and RST
//!   are never answered; an unexpected one is ignored (`mod.rs`, `replies.rs`).
//! - §4.3 NON: never acknowledged. A malformed or Empty NON is ignored; a NON request
//!   with an unrecognized critical option is rejected with RST (`server.rs`).
//! - §4.4 Message IDs: random start, then sequential, offset per peer by a keyed hash
//!   (so that one peer cannot predict another's); ACK/RST matched by peer and ID
//!   (`replies.rs`).
//! - §4.5 Deduplication ([`crate::dedup`], `replies.rs`): a duplicate CON within
//!   EXCHANGE_LIFETIME gets its first reply again (stored piggybacked response, or empty
//!   ACK) and is not delivered again; a duplicate NON within NON_LIFETIME is ignored.
//! - §4.7 NSTART: at most NSTART outstanding interactions per peer; more requests wait,
//!   in order, in their records (`client.rs`).
//! - §5.2.1 piggybacked responses: an answer given within the handling call rides in
//!   the ACK. §5.2.2 separate responses: otherwise an empty ACK goes out and the answer
//!   follows as CON (retransmitted until ACKed) or NON. §5.2.3 a NON request is answered
//!   with NON (`server.rs`, `output.rs`).
//! - §5.3.2 responses are matched by token **and** peer; a CON response nobody waits for
//!   is rejected with RST, a NON one is ignored (`client.rs`).
//! - §5.4.1, §5.4.3 an unrecognized critical option, or a recognized one with a value of
//!   the wrong length, makes a CON request fail with 4.02 Bad Option. §5.8 an
//!   unassigned method code gets 4.05 (`server.rs`).
//! - RFC 7959 block-wise in both roles (`client_block.rs`, `server_block.rs`).
//! - RFC 7967: No-Response suppresses responses of the classes it names (a CON request
//!   still gets its empty ACK).
//! - RFC 8974 §2.2.2: a request whose token is longer than the endpoint accepts is a
//!   message format error.
//! - RFC 7641 Observe, server role: registration, notifications, their sequence
//!   numbers and reliability, and every way an observation ends (`observe.rs`).
//! - §8 group communication: requests that came to a group address are NON, never get
//!   RST or error answers, and are answered at a random point within Leisure; a group
//!   request collects answers from any member, continuing a member's block-wise or
//!   challenged answer by unicast (`group.rs`, `server.rs`).
//! - RFC 9175 §2 Echo: amplification mitigation and freshness in the server role, a
//!   challenged request repeated once in the client role (`echo.rs`, `client.rs`);
//!   §4 token processing: see "Tokens" on [`Endpoint`].
//!
//! # Overflow policies, table by table
//!
//! Every table is bounded by a const parameter, and none keeps its bound by breaking a
//! promise: a live entry of a non-idempotent request is never dropped, a handler never
//! runs twice for one request, a stored reply is never lost while its duplicates may
//! come, and no peer can lock the others out for long.
//!
//! | table | full: what gives way | else | per peer |
//! |---|---|---|---|
//! | exchange records (`EXCHANGES`) | nothing in use is dropped; requests answered late may hold all but [`Config::immediate_reserve`] records (separate CON responses included), so a request answered at once always finds one | a request over the quota is still delivered, but if not answered within its handling call (until the next input or poll) the endpoint answers 5.03 with a Max-Age that is the real time until a place under the quota frees ([`Event::RequestRefused`], [`Endpoint::may_defer`]); with no record at all, 5.03 at once; a client request gets [`Error::TableFull`] | [`Config::peer_share_percent`] of the late places; over it 4.29 with the time until its own oldest frees |
//! | message buffers (`BUFFERS`) | nothing: a buffer holds only bytes that must be kept | client requests and CON responses may not take the last `immediate_reserve` buffers, kept for answers sent at the next poll; a command that finds none gets [`Error::BuffersFull`] and changes nothing | — |
//! | dedup entries (`DEDUP_ENTRIES`) | the oldest settled evictable entry (idempotent requests, NON, ACKed responses: a duplicate is then processed again, as RFC 7252 §4.5 allows), then refusals (sticky), then any evictable one; entries of non-idempotent requests ([`Config::non_idempotent`]) never | a new non-idempotent request gets 5.03, before it runs, with the time until the earliest protected entry expires | half the protected entries; over it 4.29 |
//! | stored replies (`REPLY_BYTES`) | the oldest evictable replies (their entries go too, so duplicates are processed again), refusals last; a protected reply never: its room is set aside before the request runs | a new non-idempotent CON request gets 5.03 before it runs | — |
//! | Block1 assemblies ([`crate::block::Block1Assembler`]) | the stalest partial body (its client gets 4.08 and may restart); bodies idle for [`Config::block_idle_timeout`] are dropped, and repeating an old block is no progress | — | [`Config::peer_share_percent`]; over it 4.29 with the time until its stalest idles out |
//! | kept Block2 responses ([`crate::block::KeptResponses`]) | the stalest; a follow-up that finds nothing gets 4.08, never a second run of the handler | the first block goes out unkept | as for assemblies |
//! | observations (`OBSERVERS`) | the oldest place of a peer holding two more than the registering one, else the oldest observer that did not confirm its address within MAX_TRANSMIT_WAIT; else the registration is declined (answered without Observe, RFC 7641 §4.1) and the observer confirmed longest ago gets a CON notification next, which reclaims its place if it vanished | a notification that finds no exchange record (beyond `immediate_reserve`) or buffer leaves its observer *due*; [`Event::NotificationsDue`] says when one frees, and [`Endpoint::notify_due`] sends the current state — an observer never gets an older one | [`Config::peer_share_percent`]; over it a registration is declined |
//! | verified peers (`VERIFIED`, RFC 9175 §2.4) | an expired place, else the peer verified longest ago (kept in order of verification, so a burst within one clock tick evicts in arrival order): its next answers are kept within the amplification factor again (smaller blocks), or challenged where they cannot be; only a peer that echoed a value from its own address gets a place, so spoofed floods cannot churn it | — | — |
//! | group requests (RFC 7252 §8) | server: a group request that finds no record or protected entry is dropped, unanswered (§8.2: no 5.03 to a group); client: a member's follow-up (next block, Echo repetition) takes a record and a buffer like any request, and one that finds none leaves that member's answer as it came, reported as [`Event::MemberFailed`] before [`Event::GroupEnded`] | — | — |
//! | control queue (8 RSTs and refusals; at most 4 refusals, 48 bytes each, built when queued) | the newest is dropped and counted ([`Stats::control_dropped`]); timers that could refuse wait for a free place (the next [`poll_output`](Endpoint::poll_output) sends the queued ones first), so many deadlines at once lose nothing; answers owed to accepted messages do not live here but on their dedup entries | — | — |

mod api;
mod client;
mod client_block;
mod config;
mod echo;
mod error;
mod group;
mod observe;
mod output;
mod pool;
mod replies;
mod server;
mod server_block;
mod slot;
mod stats;
mod table;
mod timers;

pub use api::{Block1Body, Event, Incoming, IncomingHandle, Output, RequestHandle, Transmit};
pub use config::{Config, MAX_TOKEN_LEN, RequestOptions, ResponseMode};
pub use echo::Amplification;
pub use error::Error;
pub use observe::Notified;
pub use server_block::AUTO_ETAG_MAX;
pub use stats::Stats;

use core::fmt;
use core::time::Duration;

use crate::Instant;
use crate::dedup::DedupCache;
use crate::index::{ChainIndex, ItemQueue, TimerHeap};
use crate::rng::Rng;
use crate::wire::{Header, Message, ParseError, Type};
use output::{CONTROL_BYTES, CONTROL_QUEUE, Control, ControlKind, REFUSALS};
use pool::BufferPool;
use slot::Slot;

/// One local CoAP endpoint: client and server at once, any number of peers.
///
/// Type parameters, all capacities fixed at compile time:
/// - `P`: the peer address, any `Copy + Eq + Hash` (a socket address, a smoltcp endpoint, a
///   DTLS session id).
/// - `EXCHANGES`: exchange records — client requests in flight, requests waiting for
///   the application's answer, responses being sent. A record is small (see the crate
///   docs); a request waiting for its answer holds nothing else.
/// - `BUFFERS` message buffers of `MSG_BYTES` bytes each, for the bytes that must be
///   kept: client requests, CON responses until acknowledged, answers until sent.
/// - `DEDUP_ENTRIES` remembered messages and `REPLY_BYTES` bytes of stored replies
///   for duplicate detection ([`DedupCache`]).
/// - `OBSERVERS` observations of this endpoint's resources (RFC 7641; see
///   [`respond_observe`](Self::respond_observe) and [`notify`](Self::notify)): a small
///   record each, no buffer while idle.
/// - `VERIFIED` peers whose address an Echo proved (RFC 9175 §2.4; see
///   [`Config::amplification`]): a peer and a timestamp each. With `VERIFIED = 0` the
///   endpoint has no amplification mitigation (a configured one is refused with
///   [`Error::NoVerifiedPeers`]) and its code is not linked — 1.3 KB less on a
///   Cortex-M4 for both roles, 1.9 KB for a server (the client's repetition of challenged
///   requests stays; see BENCHMARKS.md).
///
/// The defaults suit a server or gateway on a host; [`SmallEndpoint`] is a
/// configuration for a microcontroller. The crate docs give the `size_of` of both.
///
/// Size the dedup table for the rate of non-idempotent requests: each POST keeps its
/// entry and its reply for EXCHANGE_LIFETIME (247 s), so the defaults — 512 entries and
/// 32 KiB of replies — sustain about 2 POSTs a second with small replies, or one every
/// 8 s with 1 KiB replies, before new ones are refused with 5.03 (and a Max-Age that
/// says when space frees).
///
/// # The run loop
///
/// After any input (`handle_datagram`, `handle_timeout`) or command (`request`,
/// `respond`, `ping`, `cancel`), drain [`poll_output`](Self::poll_output) until it
/// returns [`Output::Timeout`]; then wait for a datagram or that instant. The crate docs
/// show the loop over a `std::net::UdpSocket`.
///
/// # Tokens (RFC 7252 §5.3.1, RFC 9175 §4)
///
/// Which of RFC 9175 §4's rules the client role follows, and which not:
/// - A response is matched by token *and* peer; one that matches no request waiting
///   for it is rejected (RST if CON), never delivered to another request.
/// - Tokens are [`Config::token_len`] random bytes (4 by default) from the seeded PRNG,
///   drawn again while they clash with a request in flight to the same peer: unique
///   among the requests in flight, and hard to guess when the seed is (§5.3.1).
/// - A request repeated for an Echo value gets a new token (and message ID), as in RFC
///   9175's figures; so does every block request with
///   [`RequestOptions::fresh_token_per_block`]. Otherwise the blocks of one transfer,
///   and an observation's re-registrations (RFC 7641 §3.3.1), keep their token.
/// - Not followed: §4.2's SHOULD to make tokens a sequence number per security
///   association. A random token may come again once its request has ended (for two
///   4-byte tokens, with probability 2^-32). This matters only where a security layer
///   does not bind responses to requests (DTLS); there, and until the endpoint numbers
///   tokens itself, pass a counter as [`RequestOptions::token`].
///
/// A client and a server exchanging a GET in memory, the "network" being a variable
/// (peers are named by a `u8` here; over UDP they are socket addresses):
///
/// ```
/// use coap_proto::wire::Code;
/// use coap_proto::{Config, Endpoint, Event, Incoming, Instant, Output, RequestOptions};
///
/// let mut client = Endpoint::<u8>::new(Config { seed: 1, ..Config::default() })?;
/// let mut server = Endpoint::<u8>::new(Config { seed: 2, ..Config::default() })?;
/// let now = Instant::ZERO;
///
/// // The client asks server 2 for /hello.
/// let handle = client.request(now, 2, Code::GET, &RequestOptions::default(), |b| {
///     b.uri_path("/hello").map(drop)
/// })?;
/// let Output::Transmit(t) = client.poll_output(now) else { panic!("a request to send") };
/// let request = t.data.to_vec();
///
/// // The server, as client 1 sent it, answers at once: the answer rides on the ACK.
/// if let Some(Incoming::Request { handle, message }) = server.handle_datagram(now, 1, &request) {
///     assert!(message.uri_path().matches("/hello"));
///     server.respond(now, handle, Code::CONTENT, |b| b.payload(b"hi").map(drop))?;
/// }
/// let Output::Transmit(t) = server.poll_output(now) else { panic!("the ACK") };
/// let ack = t.data.to_vec();
/// // Drained: the exchange is over for the server.
/// assert!(matches!(server.poll_output(now), Output::Timeout(_)));
///
/// match client.handle_datagram(now, 2, &ack) {
///     Some(Incoming::Response { handle: h, message, .. }) => {
///         assert_eq!((h, message.code(), message.payload()), (handle, Code::CONTENT, &b"hi"[..]));
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), coap_proto::Error>(())
/// ```
pub struct Endpoint<
    P = core::net::SocketAddr,
    const EXCHANGES: usize = 64,
    const BUFFERS: usize = 16,
    const MSG_BYTES: usize = 1152,
    const DEDUP_ENTRIES: usize = 512,
    const REPLY_BYTES: usize = 32768,
    const OBSERVERS: usize = 16,
    const VERIFIED: usize = 16,
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
    slots: [Option<Slot<P>>; EXCHANGES],
    /// Generation of each slot's latest exchange, so stale handles are refused.
    gens: [u16; EXCHANGES],
    // Indexes over the slots, kept in step by `sync` and `release`, so that no hot
    // path scans the table.
    free: ItemQueue<EXCHANGES>,
    timers: TimerHeap<EXCHANGES>,
    to_send: ItemQueue<EXCHANGES>,
    to_report: ItemQueue<EXCHANGES>,
    by_mid: ChainIndex<EXCHANGES>,
    by_token: ChainIndex<EXCHANGES>,
    queued: usize,
    /// Slots that count toward NSTART, over all peers.
    outstanding: usize,
    /// Server slots whose request is with the application under the quota.
    held: usize,
    /// The request admitted over the quota whose handling call is in progress: refused
    /// (if still unanswered) when the next input arrives, so that a burst of such
    /// requests cannot take the slots kept for answers given at once.
    must_answer: Option<(u16, u16)>,
    pool: BufferPool<BUFFERS, MSG_BYTES>,
    dedup: DedupCache<P, DEDUP_ENTRIES, REPLY_BYTES>,
    control: [Option<Control<P>>; CONTROL_QUEUE],
    control_head: u8,
    control_len: u8,
    /// Refusals the control queue points to, and their lengths (0: a free place).
    refusals: [[u8; CONTROL_BYTES]; REFUSALS],
    refusal_lens: [u8; REFUSALS],
    /// An empty ACK or RST while it is being sent.
    scratch: [u8; 4],
    stats: Stats,
    /// Observations of this endpoint's resources (RFC 7641), in `observe.rs`.
    observers: [Option<observe::Observer<P>>; OBSERVERS],
    /// The sequence number of the last notification or registration answer (24 bits).
    observe_seq: u32,
    /// A notification found no room: an exchange ending is worth telling (and
    /// `observe_room` says one did).
    observe_waiting: bool,
    observe_room: bool,
    /// Peers whose address an Echo verified (RFC 9175 §2.4), in `echo.rs`.
    verified: [Option<echo::Verified<P>>; VERIFIED],
    /// What the server role does on paths both roles take ([`server::ServerAction`]),
    /// set when the first request arrives. It is reached only through this pointer, so
    /// that an endpoint used as a client only (`handle_client_datagram`) does not link
    /// it, nor the refusals and reply storage it uses.
    server: Option<
        Hook<
            server::ServerAction,
            P,
            EXCHANGES,
            BUFFERS,
            MSG_BYTES,
            DEDUP_ENTRIES,
            REPLY_BYTES,
            OBSERVERS,
            VERIFIED,
        >,
    >,
    /// Starting requests to a peer that wait for NSTART, set when the first request is
    /// started: for the same reason, an endpoint used as a server only does not link it.
    client: Option<
        Hook<P, P, EXCHANGES, BUFFERS, MSG_BYTES, DEDUP_ENTRIES, REPLY_BYTES, OBSERVERS, VERIFIED>,
    >,
}

/// One role's part of a path both roles take, with its argument `A` (see
/// `Endpoint::server` and `Endpoint::client`).
type Hook<
    A,
    P,
    const EXCHANGES: usize,
    const BUFFERS: usize,
    const MSG_BYTES: usize,
    const DEDUP_ENTRIES: usize,
    const REPLY_BYTES: usize,
    const OBSERVERS: usize,
    const VERIFIED: usize,
> = fn(
    &mut Endpoint<P, EXCHANGES, BUFFERS, MSG_BYTES, DEDUP_ENTRIES, REPLY_BYTES, OBSERVERS, VERIFIED>,
    Instant,
    A,
);

/// An endpoint for a microcontroller: 8 exchange records, 4 message buffers of 256
/// bytes, 16 dedup entries, 1 KiB of stored replies, 4 observers and 4 verified peers.
/// The crate docs give its `size_of`.
///
/// ```
/// use coap_proto::{Config, SmallEndpoint};
/// // Peers are whatever the application names them by: here an index into its table.
/// let ep = SmallEndpoint::<u8>::new(Config { max_block_szx: 4, ..Config::default() })?;
/// assert!(core::mem::size_of_val(&ep) < 5_000);
/// # Ok::<(), coap_proto::Error>(())
/// ```
pub type SmallEndpoint<P> = Endpoint<P, 8, 4, 256, 16, 1024, 4, 4>;

impl<
    P,
    const EXCHANGES: usize,
    const BUFFERS: usize,
    const MSG_BYTES: usize,
    const DEDUP_ENTRIES: usize,
    const REPLY_BYTES: usize,
    const OBSERVERS: usize,
    const VERIFIED: usize,
> fmt::Debug
    for Endpoint<P, EXCHANGES, BUFFERS, MSG_BYTES, DEDUP_ENTRIES, REPLY_BYTES, OBSERVERS, VERIFIED>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (buffers_in_use, _) = self.pool.usage();
        f.debug_struct("Endpoint")
            .field("exchanges_in_use", &self.slots.iter().flatten().count())
            .field("exchanges", &EXCHANGES)
            .field("buffers_in_use", &buffers_in_use)
            .field("buffers", &BUFFERS)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<
    P: Copy + Eq + core::hash::Hash,
    const EXCHANGES: usize,
    const BUFFERS: usize,
    const MSG_BYTES: usize,
    const DEDUP_ENTRIES: usize,
    const REPLY_BYTES: usize,
    const OBSERVERS: usize,
    const VERIFIED: usize,
> Endpoint<P, EXCHANGES, BUFFERS, MSG_BYTES, DEDUP_ENTRIES, REPLY_BYTES, OBSERVERS, VERIFIED>
{
    const CHECK: () = {
        assert!(
            EXCHANGES > 0 && EXCHANGES < u16::MAX as usize,
            "EXCHANGES must be 1..65535"
        );
        assert!(
            BUFFERS > 0 && BUFFERS < u16::MAX as usize,
            "BUFFERS must be 1..65535"
        );
        assert!(
            MSG_BYTES >= 64 && MSG_BYTES <= u16::MAX as usize,
            "MSG_BYTES must be 64..=65535"
        );
        assert!(
            DEDUP_ENTRIES > 0 && DEDUP_ENTRIES < u16::MAX as usize,
            "DEDUP_ENTRIES must be 1..65535"
        );
        assert!(
            REPLY_BYTES >= MSG_BYTES + 4,
            "REPLY_BYTES must hold at least one message of MSG_BYTES bytes"
        );
    };

    /// A new endpoint. Fails only for unusable transmission parameters.
    pub fn new(config: Config) -> Result<Self, Error> {
        let () = Self::CHECK;
        config.params.validate().map_err(Error::Params)?;
        if VERIFIED == 0 && config.amplification.is_some() {
            return Err(Error::NoVerifiedPeers);
        }
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
            slots: [None; EXCHANGES],
            gens: [0; EXCHANGES],
            free: {
                let mut free = ItemQueue::new();
                let mut i = 0;
                while i < EXCHANGES {
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
            must_answer: None,
            pool: BufferPool::new(),
            dedup: DedupCache::new(),
            control: [None; CONTROL_QUEUE],
            control_head: 0,
            control_len: 0,
            refusals: [[0; CONTROL_BYTES]; REFUSALS],
            refusal_lens: [0; REFUSALS],
            scratch: [0; 4],
            stats: Stats::default(),
            observers: [None; OBSERVERS],
            observe_seq: 0,
            observe_waiting: false,
            observe_room: false,
            verified: [None; VERIFIED],
            server: None,
            client: None,
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
    pub fn dedup(&self) -> &DedupCache<P, DEDUP_ENTRIES, REPLY_BYTES> {
        &self.dedup
    }

    /// `now`, never earlier than any `now` seen before. Every command and input starts
    /// with it: out of line on 32-bit targets, where its 64-bit compare is ~16 bytes at
    /// each of them.
    #[cfg_attr(target_pointer_width = "32", inline(never))]
    fn clamp(&mut self, now: Instant) -> Instant {
        if now > self.last_now {
            self.last_now = now;
        }
        self.last_now
    }

    /// A message ID for a message to `peer` (RFC 7252 §4.4): one counter for the
    /// endpoint, offset for each peer by 16 bits of SipHash keyed from the seed. A peer
    /// sees its own IDs go up one by one (no reuse before 65,536 messages), but learns
    /// nothing of another's: guessing the ID of a message to someone else (to end its
    /// observation with a spoofed RST, say) is one chance in 65,536 per try.
    fn new_mid(&mut self, peer: P) -> u16 {
        use core::hash::Hasher;
        let mid = self.next_mid;
        self.next_mid = self.next_mid.wrapping_add(1);
        let mut h = crate::rng::Rng::keyed(self.config.seed, 0x4d49_4420_7065_6572);
        peer.hash(&mut h);
        mid.wrapping_add(h.finish() as u16)
    }

    // ---- inputs -------------------------------------------------------------

    /// Processes one datagram from `from`. Returns the request or response it carries
    /// for the application, borrowing `datagram`; everything else (ACKs, RSTs,
    /// duplicates, pings, malformed input) is absorbed and answered as RFC 7252 says.
    ///
    /// An endpoint in one role only may take its datagrams with
    /// [`handle_client_datagram`](Self::handle_client_datagram) or
    /// [`handle_server_datagram`](Self::handle_server_datagram) instead: the other
    /// role's code is then not linked.
    pub fn handle_datagram<'b>(
        &mut self,
        now: Instant,
        from: P,
        datagram: &'b [u8],
    ) -> Option<Incoming<'b>> {
        self.handle(now, from, datagram, true, true)
    }

    /// [`handle_datagram`](Self::handle_datagram) for an endpoint that only sends
    /// requests: a request that comes is refused as one this endpoint cannot process
    /// (RST for a CON, nothing for a NON; RFC 7252 §4.2, §4.3), and the server role's
    /// code — request handling, deduplication of requests, refusals, Echo challenges —
    /// is not linked (the size probe on a Cortex-M4: 26.3 KB instead of 47.5 KB for both
    /// roles; see BENCHMARKS.md).
    pub fn handle_client_datagram<'b>(
        &mut self,
        now: Instant,
        from: P,
        datagram: &'b [u8],
    ) -> Option<Incoming<'b>> {
        self.handle(now, from, datagram, true, false)
    }

    /// [`handle_datagram`](Self::handle_datagram) for an endpoint that only serves: a
    /// response that comes matches nothing (RST for a CON, RFC 7252 §5.3.2), and the
    /// client role's matching of responses, block-wise follow-ups and Echo repetitions
    /// is not linked (the size probe: 35.3 KB instead of 47.5 KB). ACKs and RSTs of the
    /// endpoint's own separate responses and notifications are processed as ever.
    pub fn handle_server_datagram<'b>(
        &mut self,
        now: Instant,
        from: P,
        datagram: &'b [u8],
    ) -> Option<Incoming<'b>> {
        self.handle(now, from, datagram, false, true)
    }

    /// The datagram dispatch, for the roles asked for (constants in each caller, so
    /// that the other role's branches fold away).
    #[inline(always)]
    fn handle<'b>(
        &mut self,
        now: Instant,
        from: P,
        datagram: &'b [u8],
        client: bool,
        server: bool,
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
                if !client {
                    return None;
                }
                // An ACK is never acknowledged, stale or not.
                match self.take_response(from, &msg, true) {
                    client::Taken::Response(incoming) => Some(incoming),
                    client::Taken::Stale | client::Taken::Absorbed | client::Taken::Unmatched => {
                        None
                    }
                }
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
            Type::Con | Type::Non if msg.code().is_request() => {
                if server {
                    return self.on_request(now, from, msg, None);
                }
                // A request to a client-only endpoint: nothing here can process it.
                if msg.ty() == Type::Con {
                    self.queue_control(from, ControlKind::Rst(msg.message_id()));
                }
                None
            }
            Type::Con | Type::Non if client => self.on_response(now, from, msg),
            // A response to a server-only endpoint matches nothing (§5.3.2).
            Type::Con => {
                self.queue_control(from, ControlKind::Rst(msg.message_id()));
                None
            }
            Type::Non => None,
        }
    }

    /// Processes one datagram from `from` that arrived on a group address this
    /// endpoint joined (RFC 7252 §8), rather than on its own: `leisure` is that group's
    /// Leisure (§8.2; [`TransmissionParams::default_leisure`](crate::TransmissionParams)
    /// unless the group says otherwise).
    ///
    /// Only a NON request is taken (§8.1: group requests are never CON); anything else
    /// is dropped without an answer — never an RST. The request is delivered like any
    /// other, and:
    /// - the answer is held back until a random point within `leisure` from now and
    ///   then sent as NON, from wherever the caller sends unicast datagrams (the adapter's
    ///   own address, never the group's);
    /// - error answers (4.xx, 5.xx) — the application's and the endpoint's own refusals
    ///   — are not sent (§8.2: nothing useful to say), nor is a response to a request
    ///   the endpoint could not take; an answer too large for an unverified peer still
    ///   becomes a 4.01 with an Echo value (RFC 9175 §2.4), with which that client can ask
    ///   this server by unicast;
    /// - No-Response (RFC 7967) is honoured as for unicast; Observe is not registered.
    ///
    /// ```
    /// use core::time::Duration;
    /// use coap_proto::wire::{Code, MessageBuilder, Type};
    /// use coap_proto::{Config, Endpoint, Incoming, Instant, Output};
    ///
    /// let mut server = Endpoint::<u8>::new(Config::default())?;
    /// let mut buf = [0u8; 32];
    /// let mut b = MessageBuilder::new(&mut buf, Type::Non, Code::GET, 7)?;
    /// b.token(&[1])?;
    /// b.uri_path("/missing")?;
    /// let leisure = Duration::from_secs(5);
    /// let Some(Incoming::Request { handle, .. }) =
    ///     server.handle_group_datagram(Instant::ZERO, 9, b.finish(), leisure)
    /// else {
    ///     panic!("a request")
    /// };
    /// // Nothing useful to say: a 4.04 to a group request is not sent.
    /// server.respond(Instant::ZERO, handle, Code::NOT_FOUND, |_| Ok(()))?;
    /// assert_eq!(server.poll_output(Instant::ZERO), Output::Timeout(None));
    /// # Ok::<(), Box<dyn core::error::Error>>(())
    /// ```
    pub fn handle_group_datagram<'b>(
        &mut self,
        now: Instant,
        from: P,
        datagram: &'b [u8],
        leisure: Duration,
    ) -> Option<Incoming<'b>> {
        let now = self.clamp(now);
        let Ok(msg) = Message::parse(datagram) else {
            self.stats.malformed += 1;
            return None;
        };
        if msg.ty() != Type::Non || !msg.code().is_request() {
            log_info!(
                "ignoring a {} {} on a group address (RFC 7252 §8.1)",
                msg.ty(),
                msg.code()
            );
            return None;
        }
        self.on_request(now, from, msg, Some(leisure))
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
