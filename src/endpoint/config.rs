//! Endpoint-wide and per-request settings.

use core::time::Duration;

use crate::TransmissionParams;
use crate::resource::Methods;
use crate::wire::Block;

#[allow(unused_imports)]
use super::Endpoint;

/// Longest token this endpoint stores: the 8 bytes of RFC 7252. RFC 8974 tokens are
/// parsed by the codec but refused here (§2.2.2: as a format error).
pub const MAX_TOKEN_LEN: usize = 8;

/// How long the application may take to answer a request, and other endpoint-wide
/// settings.
///
/// Start from the defaults and change what you need; [`Endpoint::new`] checks it:
///
/// ```
/// use core::time::Duration;
/// use coap_proto::{Config, Endpoint, TransmissionParams};
///
/// let config = Config {
///     seed: 0x5eed, // from a real entropy source in production
///     // A lossy radio link: wait longer before the first retransmission.
///     params: TransmissionParams {
///         ack_timeout: Duration::from_secs(4),
///         ..TransmissionParams::RFC7252
///     },
///     // Blocks of at most 256 bytes.
///     max_block_szx: 4,
///     ..Config::default()
/// };
/// let endpoint = Endpoint::<u8>::new(config)?;
/// assert_eq!(endpoint.config().max_block_szx, 4);
/// # Ok::<(), coap_proto::Error>(())
/// ```
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
    /// [`Event::RequestExpired`](super::Event::RequestExpired) (default: EXCHANGE_LIFETIME).
    pub deferred_response_timeout: Option<Duration>,
    /// How long a client waits for a separate response after an empty ACK (default:
    /// EXCHANGE_LIFETIME).
    pub separate_response_timeout: Option<Duration>,
    /// How long a client waits for the response to a NON request (default:
    /// MAX_TRANSMIT_WAIT).
    pub non_response_timeout: Option<Duration>,
    /// Max-Age, in seconds, of a 5.03 when the endpoint cannot tell when space frees
    /// (every slot holds a client request waiting for NSTART). Otherwise a refusal's
    /// Max-Age is the real time until a place frees.
    pub overload_max_age: u32,
    /// Methods whose requests must never be processed twice (RFC 7252 §4.5): their
    /// dedup entries and stored replies stay for EXCHANGE_LIFETIME and are never
    /// evicted or overwritten; when that cannot be promised, a new one is refused with
    /// 5.03 before it is delivered. Default: POST and PATCH. Requests of other methods
    /// may be processed again when their entry had to make room, as §4.5 allows for
    /// idempotent ones; so may a request for a Block2 block past the first, which is
    /// answered from the response kept for its exchange
    /// ([`Endpoint::respond_from_kept`]) and never runs the handler again.
    pub non_idempotent: Methods,
    /// Exchange slots that only requests answered within their handling call may use
    /// (default 2, at most all slots but one). However many requests wait for a late
    /// answer, one answered at once always finds a slot.
    pub immediate_reserve: u16,
    /// The share of each bounded table one peer may hold, in percent (default 50): of
    /// the slots for requests answered late, and of the protected dedup entries. Over
    /// its share a peer gets 4.29 Too Many Requests (RFC 8516) with the time until its
    /// oldest place frees as Max-Age.
    pub peer_share_percent: u8,
    /// How long a body kept for a block-wise exchange may go without progress before it
    /// is dropped: a partial Block1 body in [`Endpoint::assemble_block1`] (RFC 7959 §2.5;
    /// repeating an old block is no progress), and a response kept for the follow-ups of
    /// an unsafe request by [`Endpoint::respond_block2_kept`]. Default: MAX_TRANSMIT_WAIT,
    /// the longest one block's exchange can take.
    pub block_idle_timeout: Option<Duration>,
    /// Critical options the application understands beyond those of RFC 7252 and
    /// RFC 7959; a request with any other critical option gets 4.02 Bad Option.
    pub known_critical_options: &'static [u16],
    /// Whether the application is a forward proxy (RFC 7252 §5.7.2): its requests with
    /// Proxy-Uri or Proxy-Scheme are delivered. Otherwise (the default) the endpoint
    /// answers them 5.05 Proxying Not Supported.
    pub forward_proxy: bool,
    /// Whether the endpoint's own error responses (4.02, 5.03, 4.29, 5.05 …) carry a
    /// diagnostic payload: the code's name in ASCII (RFC 7252 §5.5.2). Default on.
    pub diagnostic_payloads: bool,
    /// Amplification mitigation (RFC 9175 §2.4, RFC 7252 §11.3): responses more than
    /// `factor` times their request's size go only to peers that proved their address
    /// by echoing an Echo value; others get 4.01 Unauthorized with one (see
    /// [`Amplification`](super::Amplification)). Default off; the `net` servers turn it
    /// on. Echo values are as hard to forge as [`seed`](Self::seed) is to guess.
    pub amplification: Option<super::Amplification>,
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
            non_idempotent: Methods::POST.and(Methods::PATCH),
            immediate_reserve: 2,
            peer_share_percent: 50,
            block_idle_timeout: None,
            known_critical_options: &[],
            forward_proxy: false,
            diagnostic_payloads: true,
            amplification: None,
            max_block_szx: Block::MAX_SZX,
        }
    }
}

/// Per-request settings for [`Endpoint::request`].
///
/// ```
/// use core::time::Duration;
/// use coap_proto::wire::Code;
/// use coap_proto::{Config, Endpoint, Instant, Output, RequestOptions};
///
/// let mut ep = Endpoint::<u8>::new(Config::default())?;
/// let options = RequestOptions {
///     non_confirmable: true,
///     token: Some(&[0xca, 0xfe]),
///     timeout: Some(Duration::from_secs(5)),
///     block2_szx: Some(2), // 64-byte blocks of the response
///     ..RequestOptions::default()
/// };
/// ep.request(Instant::ZERO, 1, Code::GET, &options, |b| b.uri_path("/log").map(drop))?;
/// let Output::Transmit(t) = ep.poll_output(Instant::ZERO) else { unreachable!() };
/// assert_eq!(&t.data[..2], &[0x52, 0x01], "NON GET, 2-byte token");
/// assert_eq!(&t.data[4..6], &[0xca, 0xfe]);
/// # Ok::<(), coap_proto::Error>(())
/// ```
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
    /// of §4.2 and, after an empty ACK, by `separate_timeout`.
    pub timeout: Option<Duration>,
    /// For a CON request: how long to wait for the separate response after the empty
    /// ACK (default [`Config::separate_response_timeout`]).
    pub separate_timeout: Option<Duration>,
    /// The largest Block2 block size wanted, as SZX (0–6). By default it is announced in
    /// the first request (early negotiation, RFC 7959 Figure 3). A response in blocks is
    /// followed up automatically either way; without this, at the server's size.
    pub block2_szx: Option<u8>,
    /// Do not announce `block2_szx` in the first request; move to it from the second
    /// block on (late negotiation, RFC 7959 Figure 4).
    pub block2_late: bool,
    /// Use a new token for each follow-up block request (some servers want it).
    pub fresh_token_per_block: bool,
    /// Observe the resource (RFC 7641; a GET or FETCH): the request carries Observe: 0,
    /// and if the server registers it, every notification is delivered as a response
    /// under this request's handle — newest state only (§3.4) — until the observation
    /// ends ([`Event::ObservationEnded`](super::Event::ObservationEnded)) or the
    /// application cancels it ([`Endpoint::cancel`], [`Endpoint::cancel_observe`]).
    pub observe: bool,
    /// Fetch the body from this byte offset on: the first request already asks for
    /// the block that holds it (at `block2_szx`, default 1024 bytes); the bytes of that
    /// block before the offset are the caller's to skip.
    pub block2_offset: usize,
    /// The peer is a group (RFC 7252 §8.1, e.g. a multicast address): the request must
    /// be `non_confirmable` (else [`Error::NotForGroups`](super::Error::NotForGroups)),
    /// and collects responses from any number of members — any source, matched by
    /// token — for `timeout` (default
    /// [`TransmissionParams::group_window`], 8 s). Each answer is delivered under this
    /// request's handle, the caller knowing its source from `handle_datagram`; a member's
    /// block-wise answer is continued by unicast to that member alone (RFC 7959 §2.8). The
    /// request ends with [`Event::GroupEnded`](super::Event::GroupEnded).
    pub group: bool,
    /// Give the request's message buffer back when its empty ACK comes (RFC 7252
    /// §5.2.2): waiting for the separate response then costs an exchange record only,
    /// so a few buffers serve many slow requests. The request cannot be sent again
    /// after that: a separate response in blocks ends the request with
    /// [`Event::BlockFailed`](super::Event::BlockFailed) and
    /// [`DownloadError::Released`](crate::block::DownloadError::Released) (send it again
    /// without this option), and a 4.01 with Echo is delivered rather than repeated.
    /// Ignored for uploads and observations, which need their request later. The `net`
    /// clients set it for GET and FETCH requests and resend on `Released`.
    pub release_on_ack: bool,
}

impl Config {
    /// One peer's share of a table of `capacity` places: at least one.
    pub(super) fn peer_share(&self, capacity: usize) -> usize {
        (capacity * self.peer_share_percent.clamp(1, 100) as usize)
            .div_ceil(100)
            .max(1)
    }
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
