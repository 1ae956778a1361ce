//! Time as the core sees it: an instant handed in by the caller, never read from a clock.

use core::fmt;
use core::ops::{Add, Sub};
use core::time::Duration;

/// A point in time, in microseconds from an epoch of the caller's choosing (boot, the
/// Unix epoch, the start of a simulation …). Only differences matter.
///
/// The core never reads a clock: every input carries the `now` it happens at. Adding a
/// duration saturates instead of overflowing.
///
/// ```
/// use coap_proto::Instant;
/// use core::time::Duration;
/// let t = Instant::from_millis(1500);
/// assert_eq!(t + Duration::from_millis(500), Instant::from_secs(2));
/// assert_eq!(Instant::from_secs(2) - t, Duration::from_millis(500));
/// assert_eq!(t - Instant::from_secs(2), Duration::ZERO); // saturates
/// assert_eq!(t.to_string(), "1.500000s");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    micros: u64,
}

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant { micros: 0 };
    /// The latest representable instant.
    pub const MAX: Instant = Instant { micros: u64::MAX };

    /// `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Instant {
        Instant { micros }
    }

    /// `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Instant {
        Instant {
            micros: millis.saturating_mul(1000),
        }
    }

    /// `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Instant {
        Instant {
            micros: secs.saturating_mul(1_000_000),
        }
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.micros
    }

    /// Milliseconds since the epoch, rounded down.
    pub const fn as_millis(self) -> u64 {
        self.micros / 1000
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        duration_from_micros(self.micros.saturating_sub(earlier.micros))
    }

    /// `micros` microseconds later (saturating), without making a `Duration`.
    pub(crate) const fn plus_micros(self, micros: u64) -> Instant {
        Instant {
            micros: self.micros.saturating_add(micros),
        }
    }
}

/// `n / d` and `n % d` for a divisor below 2^16. A 64-bit target divides in hardware;
/// a 32-bit one goes digit by 16-bit digit — four 32-bit divisions, which a Cortex-M
/// does in hardware — instead of calling the ~900-byte 64-bit division routine. `d`
/// must not be zero.
pub(crate) const fn div_rem_small(n: u64, d: u16) -> (u64, u32) {
    if cfg!(target_pointer_width = "64") {
        return (n / d as u64, (n % d as u64) as u32);
    }
    div_rem_digits(n, d)
}

/// [`div_rem_small`] by 16-bit digits, on any target.
const fn div_rem_digits(n: u64, d: u16) -> (u64, u32) {
    let d = d as u32;
    let (mut q, mut r) = (0u64, 0u32);
    let mut digit = 4;
    while digit > 0 {
        digit -= 1;
        // `r < d < 2^16`, so the partial dividend fits 32 bits.
        let part = (r << 16) | ((n >> (16 * digit)) as u32 & 0xffff);
        q = (q << 16) | (part / d) as u64;
        r = part % d;
    }
    (q, r)
}

/// `Duration::from_micros` without a 64-bit division (1,000,000 = 2^6 × 15,625).
pub(crate) const fn duration_from_micros(micros: u64) -> Duration {
    let (secs, _) = div_rem_small(micros >> 6, 15_625);
    let rest = (micros - secs * 1_000_000) as u32;
    Duration::new(secs, rest * 1000)
}

/// `d` in whole microseconds, saturating: without `Duration::as_micros`'s 128-bit
/// arithmetic, and on 32-bit targets in one place rather than inlined wherever an
/// `Instant` and a `Duration` are added (0.3 KB less on a Cortex-M; a 64-bit host
/// keeps it inline, which saves it a call per deadline).
#[cfg_attr(target_pointer_width = "32", inline(never))]
fn micros(d: Duration) -> u64 {
    const LIMIT: u64 = u64::MAX / 1_000_000;
    if d.as_secs() > LIMIT {
        return u64::MAX;
    }
    (d.as_secs() * 1_000_000).saturating_add(u64::from(d.subsec_micros()))
}

impl Add<Duration> for Instant {
    type Output = Instant;
    // Out of line on 32-bit targets: a deadline is computed in many places.
    #[cfg_attr(target_pointer_width = "32", inline(never))]
    fn add(self, d: Duration) -> Instant {
        Instant {
            micros: self.micros.saturating_add(micros(d)),
        }
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        Instant {
            micros: self.micros.saturating_sub(micros(d)),
        }
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// Seconds with six decimals, e.g. `12.000500s`.
impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}s",
            self.micros / 1_000_000,
            self.micros % 1_000_000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_division_and_micros_agree_with_the_builtin_ones() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut values = std::vec![
            0,
            1,
            999,
            1000,
            999_999,
            1_000_000,
            u32::MAX as u64,
            u64::MAX
        ];
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (x % 64));
        }
        for &n in &values {
            for d in [1u16, 3, 1000, 15_625, u16::MAX] {
                let expected = (n / d as u64, (n % d as u64) as u32);
                assert_eq!(div_rem_small(n, d), expected);
                assert_eq!(div_rem_digits(n, d), expected, "the 32-bit targets' way");
            }
            assert_eq!(duration_from_micros(n), Duration::from_micros(n), "{n}");
            for nanos in [0, 1, 999, 1000, 551_615_999, 999_999_999] {
                let d = Duration::new(n, nanos);
                let expected = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                assert_eq!(micros(d), expected, "{d:?}");
            }
        }
        let edge = u64::MAX / 1_000_000;
        for secs in [edge - 1, edge, edge + 1] {
            for nanos in [0, 551_615_000, 551_615_999, 551_616_000, 999_999_999] {
                let d = Duration::new(secs, nanos);
                let expected = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                assert_eq!(micros(d), expected, "{d:?}");
            }
        }
    }
}
