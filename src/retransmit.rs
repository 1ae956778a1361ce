//! The retransmission record of one Confirmable message (RFC 7252 §4.2, §4.8).
//!
//! §4.2: the first timeout is drawn at random from `[ACK_TIMEOUT,
//! ACK_TIMEOUT × ACK_RANDOM_FACTOR]`; on each expiry the message is retransmitted and
//! the timeout doubled, until MAX_RETRANSMIT retransmissions are spent; the sender gives
//! up when the last doubled timeout expires. With the largest first timeout that is
//! MAX_TRANSMIT_WAIT after the first transmission.

use core::time::Duration;

use crate::{Instant, TransmissionParams};

/// What a retransmission record wants when its timer is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetransmitAction {
    /// Nothing yet; check again at [`Retransmission::deadline`].
    Wait,
    /// Send the message again now.
    Retransmit,
    /// The last timeout expired unanswered: give up (§4.2).
    GiveUp,
}

/// The back-off state of one CON: when to act next, the current timeout and the
/// retransmissions left. 16 bytes.
///
/// ```
/// use coap_proto::{Instant, Retransmission, RetransmitAction};
/// use core::time::Duration;
/// let t0 = Instant::ZERO;
/// let mut r = Retransmission::new(t0, Duration::from_secs(2), 4);
/// let mut sent = vec![t0];
/// let mut now = t0;
/// loop {
///     now = r.deadline();
///     match r.on_timeout(now) {
///         RetransmitAction::Retransmit => sent.push(now),
///         RetransmitAction::GiveUp => break,
///         RetransmitAction::Wait => unreachable!(),
///     }
/// }
/// let secs: Vec<u64> = sent.iter().map(|t| t.as_millis() / 1000).collect();
/// assert_eq!(secs, [0, 2, 6, 14, 30]); // timeouts 2, 4, 8, 16 s
/// assert_eq!(now, Instant::from_secs(62)); // then 32 s more
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retransmission {
    deadline: Instant,
    timeout_us: u32,
    left: u8,
}

impl Retransmission {
    /// Starts the record for a message first sent at `now` with the given initial
    /// timeout (see [`Retransmission::initial_timeout`]).
    pub fn new(now: Instant, initial_timeout: Duration, max_retransmit: u8) -> Retransmission {
        let timeout_us = u32::try_from(initial_timeout.as_micros()).unwrap_or(u32::MAX);
        Retransmission {
            deadline: now.plus_micros(timeout_us as u64),
            timeout_us,
            left: max_retransmit,
        }
    }

    /// The initial timeout for `params`, placed in `[ACK_TIMEOUT, ACK_TIMEOUT ×
    /// ACK_RANDOM_FACTOR]` by `random` (any value; it is reduced into the range).
    pub fn initial_timeout(params: &TransmissionParams, random: u64) -> Duration {
        let base = params.ack_timeout.as_micros() as u64;
        let (spread, _) = crate::time::div_rem_small(
            base.saturating_mul(params.ack_random_factor_milli.saturating_sub(1000) as u64),
            1000,
        );
        let offset = ((random as u128 * (spread as u128 + 1)) >> 64) as u64;
        crate::time::duration_from_micros(base.saturating_add(offset))
    }

    /// When the record next wants [`on_timeout`](Self::on_timeout) to be called.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Retransmissions still allowed.
    pub fn retransmissions_left(&self) -> u8 {
        self.left
    }

    /// The timeout now running.
    pub fn timeout(&self) -> Duration {
        crate::time::duration_from_micros(self.timeout_us as u64)
    }

    /// Checks the timer at `now`: retransmit (and double the timeout), give up, or wait.
    pub fn on_timeout(&mut self, now: Instant) -> RetransmitAction {
        step(
            &mut self.deadline,
            &mut self.timeout_us,
            &mut self.left,
            now,
        )
    }
}

/// The back-off rule on bare fields, so that the endpoint can keep them in its compact
/// slots and still share this one piece of logic with [`Retransmission`].
pub(crate) fn step(
    deadline: &mut Instant,
    timeout_us: &mut u32,
    left: &mut u8,
    now: Instant,
) -> RetransmitAction {
    if now < *deadline {
        return RetransmitAction::Wait;
    }
    if *left == 0 {
        return RetransmitAction::GiveUp;
    }
    *left -= 1;
    *timeout_us = timeout_us.saturating_mul(2);
    // From `now`, not the old deadline: a late caller retransmits late, and the
    // doubled timeout must run from when the message really left.
    *deadline = now.plus_micros(*timeout_us as u64);
    RetransmitAction::Retransmit
}
