//! The Echo option in both roles (RFC 9175 §2), and amplification mitigation with it
//! (RFC 9175 §2.4 item 3, RFC 7252 §11.3).
//!
//! Server, when [`Config::amplification`](super::Config::amplification) is set:
//! - §2.4 item 3: no answer to a peer whose address is not verified is more than
//!   `factor` times its request, counted over the wire ([`Amplification::overhead`]).
//!   The rule is kept per answer, without per-address state: each answer is built
//!   within its request's budget, so nothing a spoofer sends can fill a table, and
//!   every block-wise follow-up brings its own budget. Legitimate clients are not
//!   asked to do anything (principle 8 of the design): a block-wise answer
//!   (`respond_block2`, `respond_block2_kept`, `respond_observe_body`, `notify_body`)
//!   picks a Block2 size that fits (RFC 7959 §2.2 lets the server choose; RFC 9175 §2.4
//!   names limiting the response as the alternative to Echo), and the client continues
//!   with it. Requests of every method are delivered at once, Observe registrations
//!   too; a per-peer byte budget (QUIC's anti-amplification limit, RFC 9000 §8.1) was
//!   not chosen because it needs a record per unverified address, which spoofed
//!   sources would churn, and because a first answer must fit one request's budget
//!   anyway.
//! - What still gets 4.01 Unauthorized with an Echo value (itself within the factor):
//!   an answer built with plain [`respond`](Endpoint::respond) that does not fit (see
//!   [`Endpoint::answer_limit`]), and one whose options alone leave no room for a
//!   16-byte block. For a non-idempotent request
//!   ([`Config::non_idempotent`](super::Config::non_idempotent)) the repeated request
//!   runs its handler again: answer such requests block-wise
//!   ([`respond_block2_kept`](Endpoint::respond_block2_kept), as the `net` servers do),
//!   whose first block always fits.
//! - Observe (RFC 7641): the registration is answered within its budget; until the
//!   observer acknowledges a notification its notifications are CON and within the
//!   registration's budget. Only the client that registered acknowledges a
//!   notification of its token (anyone else rejects it, §3.6), so a registration from
//!   a spoofed address ends with its first notification.
//! - A block-wise answer kept small so offers an Echo value where the block keeps its
//!   size (§2.3: a response may carry one for the next request). A client that echoes
//!   it in its next block request proves its address, and its later transfers get the
//!   block size it asks for; one that ignores it loses nothing.
//! - Peers behind a DTLS session are not limited: the handshake proved the address
//!   ([`crate::dtls`]).
//! - §2.2, §2.3: a request carrying an Echo value this endpoint made for that peer, at
//!   most [`Amplification::verified_for`] ago, verifies the peer for that long. Verified
//!   peers are remembered in a table in the order they were verified; when it is full,
//!   the peer verified longest ago gives way (an expired place first). Only a peer that answered a
//!   challenge from its address gets in, so spoofed floods cannot fill it, and a peer
//!   that lost its place pays one more round trip for its next large response: nothing
//!   is lost, nobody is locked out.
//! - §2.3 freshness: [`Endpoint::echo_age`] tells the application how old a request's
//!   Echo is and [`Endpoint::challenge`] asks for a new one (the `net` servers do it for
//!   unsafe requests to a resource marked `fresh`).
//! - Appendix A method 2, without per-request state: an Echo value is a 16-bit
//!   timestamp (units of 2^18 µs, about a quarter second, from a secret offset) then 4–6
//!   bytes of SipHash-2-4, keyed from [`Config::seed`](super::Config::seed), over the
//!   peer and the full timestamp. A value is checked by recomputing it; it cannot be
//!   moved to another peer and stops verifying after `verified_for` (at most 4 hours by
//!   construction). Ages are known to a tick: a value is taken as up to two ticks (half
//!   a second) younger than it may be, so that one just made is never refused.
//!
//! Client (`client.rs`, §2.3): a 4.01 with Echo to a request that carried no Echo is
//! answered by sending the request again under the same handle, with a new message ID
//! and token and the Echo value; the block-wise follow-ups after it go without that
//! Echo, so each message the application or the block machinery makes is repeated at
//! most once. A block-wise response that carries an Echo value has it echoed in the
//! next block request (`client_block.rs`).

use core::hash::{Hash, Hasher};
use core::time::Duration;

use super::Endpoint;
use crate::Instant;
use crate::wire::{BuildError, MessageBuilder};

/// Amplification mitigation (RFC 9175 §2.4 item 3, RFC 7252 §11.3): how much larger than
/// a request its response may be while the peer's address is not verified.
///
/// ```
/// use coap_proto::{Amplification, Config};
/// let config = Config {
///     amplification: Some(Amplification::RFC9175),
///     ..Config::default()
/// };
/// assert_eq!(config.amplification.unwrap().factor, 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Amplification {
    /// The largest response to an unverified peer, as a multiple of its request's size.
    pub factor: u8,
    /// How long a peer stays verified after it echoed a value, and how old a value it
    /// echoes may be (at most 4 hours are honoured). Keep it at least EXCHANGE_LIFETIME
    /// (247 s with the RFC 7252 parameters): retransmissions may carry a challenge and
    /// its repetition that long, and a value that expires in transit ends the request
    /// with the 4.01.
    pub verified_for: Duration,
    /// Bytes every datagram carries below CoAP, counted on both sides of the factor:
    /// what the request cost its sender and the response costs the address it goes to
    /// on the wire. 28 is the least a UDP datagram takes over IPv4 (20 bytes of IP
    /// header, 8 of UDP; over IPv6 it is 48, so 28 errs on the safe side); 0 counts
    /// CoAP bytes only. See [`RFC9175`](Self::RFC9175) for why the wire is what counts.
    pub overhead: u8,
}

impl Amplification {
    /// The factor RFC 9175 §2.4 and RFC 7252 §11.3 name (3), counted over the datagrams
    /// as they travel (an IPv4 and UDP header of 28 bytes on each), and 10 minutes of
    /// verification.
    ///
    /// Why the wire: an attacker pays for, and a victim's link carries, whole
    /// datagrams. Counted over CoAP bytes alone, a 6-byte GET (a 2-byte token, as
    /// aiocoap sends it) would allow 18 bytes, less than the smallest block RFC 7959
    /// can send (16 bytes of payload after 8 of header, token and Block2), so every
    /// answer longer than a few bytes would need a 4.01 round trip that clients
    /// without RFC 9175 support cannot make. Over the wire the same request allows
    /// 74 bytes of CoAP: a first block of 32, and the client continues block-wise.
    pub const RFC9175: Amplification = Amplification {
        factor: 3,
        verified_for: Duration::from_secs(600),
        overhead: 28,
    };
}

/// Bytes of an Echo value this endpoint makes: 2 of timestamp and up to 6 of MAC.
pub(super) const ECHO_MAX: usize = 8;
/// The shortest value it makes and accepts: 32 bits of MAC (the minimum of §6).
const ECHO_MIN: usize = 6;
/// Microseconds in one timestamp unit, as a shift: 2^18 µs, about a quarter second,
/// without a 64-bit division. 16 bits of them span 4.7 hours.
const TICK_SHIFT: u32 = 18;

fn ticks(now: Instant) -> u64 {
    now.as_micros() >> TICK_SHIFT
}

fn ticks_of(d: Duration) -> u64 {
    (d.as_micros() >> TICK_SHIFT).min(u128::from(u16::MAX)) as u64
}

/// A peer verified until `until` (in ticks).
#[derive(Clone, Copy, Debug)]
pub(super) struct Verified<P> {
    peer: P,
    until: u32,
}

/// A 4.01 Unauthorized with Echo, sized to fit the amplification budget.
#[derive(Clone, Copy, Debug)]
pub(super) struct Challenge {
    value: [u8; ECHO_MAX],
    len: u8,
    diagnostic: bool,
}

impl Challenge {
    /// Writes the Echo option (and the diagnostic payload, if it fits).
    pub(super) fn write(&self, b: &mut MessageBuilder<'_>) -> Result<(), BuildError> {
        b.echo(&self.value[..self.len as usize])?;
        if self.diagnostic {
            b.payload(DIAGNOSTIC)?;
        }
        Ok(())
    }
}

const DIAGNOSTIC: &[u8] = b"Unauthorized";

impl<
    P: Copy + Eq + Hash,
    const EXCHANGES: usize,
    const BUFFERS: usize,
    const MSG_BYTES: usize,
    const DEDUP_ENTRIES: usize,
    const REPLY_BYTES: usize,
    const OBSERVERS: usize,
    const VERIFIED: usize,
> Endpoint<P, EXCHANGES, BUFFERS, MSG_BYTES, DEDUP_ENTRIES, REPLY_BYTES, OBSERVERS, VERIFIED>
{
    /// How old the Echo value `request` carries is, if this endpoint made it for
    /// `peer` (RFC 9175 §2.3): `None` for no Echo, a value made for another peer or by
    /// another endpoint, or one older than 4 hours. The age is a lower bound, up to half
    /// a second short (timestamps count quarter seconds). A request that must be fresh is
    /// one whose Echo is younger than the application's bound; answer the others with
    /// [`challenge`](Self::challenge).
    ///
    /// ```
    /// use coap_proto::wire::{Code, Message};
    /// use coap_proto::{Config, Endpoint, Incoming, Instant, Output};
    ///
    /// let mut server = Endpoint::<u8>::new(Config { seed: 7, ..Config::default() })?;
    /// // PUT /lock from peer 1, without Echo: not known to be fresh.
    /// let put = [0x40, 0x03, 0, 1, 0xb4, b'l', b'o', b'c', b'k'];
    /// let Some(Incoming::Request { handle, message }) =
    ///     server.handle_datagram(Instant::ZERO, 1, &put) else { panic!() };
    /// assert_eq!(server.echo_age(Instant::ZERO, 1, &message), None);
    /// server.challenge(Instant::ZERO, handle)?;
    /// let Output::Transmit(t) = server.poll_output(Instant::ZERO) else { panic!() };
    /// let answer = Message::parse(t.data)?;
    /// assert_eq!(answer.code(), Code::UNAUTHORIZED);
    /// let echo = answer.echo()?.unwrap();
    ///
    /// // The client repeats the request with the value: 3 seconds old.
    /// let mut again = put[..4].to_vec();
    /// again[3] = 2;
    /// again.extend_from_slice(&[0xb4, b'l', b'o', b'c', b'k', 0xd0 | echo.len() as u8, 252 - 11 - 13]);
    /// again.extend_from_slice(echo);
    /// let later = Instant::from_secs(3);
    /// let Some(Incoming::Request { message, .. }) = server.handle_datagram(later, 1, &again)
    ///     else { panic!() };
    /// let age = server.echo_age(later, 1, &message).unwrap();
    /// assert!(age.as_secs() <= 3);
    /// // Made for peer 1, it means nothing from peer 2.
    /// assert_eq!(server.echo_age(later, 2, &message), None);
    /// # Ok::<(), Box<dyn core::error::Error>>(())
    /// ```
    pub fn echo_age(
        &self,
        now: Instant,
        peer: P,
        request: &crate::wire::Message<'_>,
    ) -> Option<Duration> {
        let value = request.echo().ok().flatten()?;
        self.check_echo(now, peer, value)
    }

    /// Answers request `handle` with 4.01 Unauthorized and a new Echo value (RFC 9175
    /// §2.3): the client is to repeat the request with it, which proves the request
    /// fresh (see [`echo_age`](Self::echo_age)) and the peer's address its own. The
    /// answer stays within the amplification factor, if one is set.
    pub fn challenge(
        &mut self,
        now: Instant,
        handle: super::IncomingHandle,
    ) -> Result<(), super::Error> {
        let now = self.clamp(now);
        let slot = *self
            .slot_mut(handle.index, handle.generation)
            .ok_or(super::Error::UnknownHandle)?;
        let challenge = self.make_challenge(now, slot.peer, slot.timeout_us, slot.token().len());
        self.respond(now, handle, crate::wire::Code::UNAUTHORIZED, |b| {
            challenge.write(b)
        })
    }

    /// The most bytes an answer to request `handle` may take while its peer's address
    /// is not verified (RFC 9175 §2.4): `None` when there is no such limit (no
    /// mitigation, a verified peer, or a request large enough that any answer fits).
    /// [`respond`](Self::respond) answers with 4.01 and Echo what does not fit; the
    /// block-wise answers ([`respond_block2`](Self::respond_block2),
    /// [`respond_observe_body`](Self::respond_observe_body) …) fit by taking smaller
    /// blocks, so use them for an answer that may be longer.
    pub fn answer_limit(&self, now: Instant, handle: super::IncomingHandle) -> Option<usize> {
        let slot = self
            .slots
            .get(handle.index as usize)?
            .as_ref()
            .filter(|_| self.gens.get(handle.index as usize) == Some(&handle.generation))?;
        let limit = self.send_limit(now, slot.peer, slot.timeout_us);
        (limit < MSG_BYTES).then_some(limit)
    }

    /// An Echo value to offer `peer` in a block-wise answer kept small by the
    /// amplification budget (RFC 9175 §2.3: a response may carry one for the next
    /// request): a client that echoes it in its next block request proves its address,
    /// and its later transfers get blocks of the size it asks for. `None` when the
    /// answer is not limited.
    pub(super) fn offered_echo(
        &self,
        now: Instant,
        handle: super::IncomingHandle,
    ) -> Option<[u8; ECHO_MAX]> {
        let slot = self.slots.get(handle.index as usize)?.as_ref()?;
        self.answer_limit(now, handle)?;
        Some(self.echo_value(slot.peer, ticks(now), ECHO_MAX))
    }

    /// Whether `peer` has echoed a value within [`Amplification::verified_for`] and
    /// still has its place among the verified peers.
    pub fn is_verified(&self, now: Instant, peer: P) -> bool {
        let t = ticks(now);
        self.verified
            .iter()
            .flatten()
            .any(|v| v.peer == peer && u64::from(v.until) > t)
    }

    /// The Echo value for `peer` at `now`, `len` bytes (6–8).
    pub(super) fn echo_value(&self, peer: P, t: u64, len: usize) -> [u8; ECHO_MAX] {
        let mut value = [0; ECHO_MAX];
        value[..2].copy_from_slice(&self.stamp(t).to_be_bytes());
        let mac = self.mac(peer, t).to_be_bytes();
        let n = len.clamp(ECHO_MIN, ECHO_MAX) - 2;
        value[2..2 + n].copy_from_slice(&mac[..n]);
        value
    }

    /// The timestamp as sent: offset by a secret, so that it does not tell how long
    /// the endpoint has been up (RFC 9175 §7).
    fn stamp(&self, t: u64) -> u16 {
        (t as u16).wrapping_add((echo_key(self.config.seed).0 >> 48) as u16)
    }

    // SipHash-2-4 is a keyed PRF made for short inputs; core still ships it
    // (deprecated only as a HashMap default, which is not how it is used here).
    #[allow(deprecated)]
    fn mac(&self, peer: P, t: u64) -> u64 {
        let (k0, k1) = echo_key(self.config.seed);
        let mut h = core::hash::SipHasher::new_with_keys(k0, k1);
        peer.hash(&mut h);
        h.write_u64(t);
        h.finish()
    }

    /// The age of Echo `value` if this endpoint made it for `peer`.
    pub(super) fn check_echo(&self, now: Instant, peer: P, value: &[u8]) -> Option<Duration> {
        if !(ECHO_MIN..=ECHO_MAX).contains(&value.len()) {
            return None;
        }
        let t = ticks(now);
        let stamp = u16::from_be_bytes([value[0], value[1]]);
        let age = u64::from(self.stamp(t).wrapping_sub(stamp));
        let made = t.checked_sub(age)?;
        let expected = self.echo_value(peer, made, value.len());
        // Compared in full, not up to the first difference.
        let diff = expected[..value.len()]
            .iter()
            .zip(value)
            .fold(0u8, |d, (a, b)| d | (a ^ b));
        // `age` ticks apart: between `age - 1` and `age + 1` ticks old.
        (diff == 0).then(|| crate::time::duration_from_micros(age.saturating_sub(1) << TICK_SHIFT))
    }

    /// The most bytes a response to a request of `request_len` bytes from `peer` may
    /// have before the peer must be verified: `u32::MAX` without a limit. A request
    /// carrying a valid Echo verifies its peer here.
    pub(super) fn amplification_budget(
        &mut self,
        now: Instant,
        peer: P,
        msg: &crate::wire::Message<'_>,
    ) -> u32 {
        let budget = self.raw_budget(msg.as_bytes().len());
        let Some(a) = self.config.amplification.filter(|_| budget != u32::MAX) else {
            return u32::MAX;
        };
        if let Ok(Some(value)) = msg.echo() {
            if self
                .check_echo(now, peer, value)
                .is_some_and(|age| age <= a.verified_for)
            {
                self.verify(now, peer, a.verified_for);
                return u32::MAX;
            }
        }
        budget
    }

    /// The amplification budget of a request of `len` bytes, before verification.
    pub(super) fn raw_budget(&self, len: usize) -> u32 {
        // Without a table of verified peers there is no mitigation (`new` refuses one
        // configured), and none of its code is linked.
        if VERIFIED == 0 {
            return u32::MAX;
        }
        let Some(a) = self.config.amplification else {
            return u32::MAX;
        };
        let overhead = a.overhead as usize;
        let wire = len
            .saturating_add(overhead)
            .saturating_mul(a.factor as usize);
        match wire.saturating_sub(overhead) {
            // Nothing this endpoint sends is larger than a message buffer.
            budget if budget < MSG_BYTES => budget as u32,
            _ => u32::MAX,
        }
    }

    /// The most bytes a message to `peer` may take under `budget`: all of a message
    /// buffer without a budget or once the peer is verified.
    pub(super) fn send_limit(&self, now: Instant, peer: P, budget: u32) -> usize {
        if self.within_budget(now, peer, budget, usize::MAX) {
            MSG_BYTES
        } else {
            budget as usize
        }
    }

    /// Whether `len` bytes may go to `peer` under `budget`.
    pub(super) fn within_budget(&self, now: Instant, peer: P, budget: u32, len: usize) -> bool {
        VERIFIED == 0 || len <= budget as usize || self.is_verified(now, peer)
    }

    /// Remembers `peer` as verified. The table is kept in the order of verification,
    /// the longest verified first: an expired place, else that first one, gives way,
    /// so a burst of verifications within one clock tick evicts in arrival order too.
    fn verify(&mut self, now: Instant, peer: P, verified_for: Duration) {
        if VERIFIED == 0 {
            return;
        }
        let t = ticks(now);
        let until = (t + ticks_of(verified_for)).min(u64::from(u32::MAX)) as u32;
        let gone = |v: &Option<Verified<P>>| v.is_none_or(|v| u64::from(v.until) <= t);
        let place = self
            .verified
            .iter()
            .position(|v| v.is_some_and(|v| v.peer == peer))
            .or_else(|| self.verified.iter().position(gone))
            .unwrap_or(0);
        // The freed place moves to the end and the others keep their order (swaps, not
        // a `rotate`, which would link `memmove` into firmware).
        for i in place..VERIFIED - 1 {
            self.verified.swap(i, i + 1);
        }
        self.verified[VERIFIED - 1] = Some(Verified { peer, until });
    }

    /// A challenge for `peer` that fits `budget` with a token of `token_len` bytes:
    /// the longest Echo value that fits (6–8 bytes), the diagnostic payload if it
    /// fits too.
    pub(super) fn make_challenge(
        &mut self,
        now: Instant,
        peer: P,
        budget: u32,
        token_len: usize,
    ) -> Challenge {
        self.stats.echo_challenges += 1;
        // Header, token, and the Echo option's two bytes of delta and length.
        let base = 4 + token_len + 2;
        let budget = budget as usize;
        let len = budget.saturating_sub(base).clamp(ECHO_MIN, ECHO_MAX);
        let diagnostic =
            self.config.diagnostic_payloads && base + len + 1 + DIAGNOSTIC.len() <= budget;
        Challenge {
            value: self.echo_value(peer, ticks(now), len),
            len: len as u8,
            diagnostic,
        }
    }
}

/// The Echo key: two words from its own stream of the seed, so that the message IDs
/// and tokens a seed gives stay what they were. Derived where it is used rather than
/// kept (16 bytes of RAM for a few multiplications per Echo value).
fn echo_key(seed: u64) -> (u64, u64) {
    let mut rng = crate::rng::Rng::new(seed ^ 0x4563_686f_2052_4643);
    (rng.next_u64(), rng.next_u64())
}
