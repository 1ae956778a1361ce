//! Transmission parameters and the values derived from them (RFC 7252 §4.7, §4.8).

use core::fmt;
use core::time::Duration;

/// The transmission parameters of RFC 7252 §4.8, settable per endpoint and per request.
///
/// The derived values of §4.8.2 are computed from these, never hard-coded, so changing
/// `ack_timeout` or `max_retransmit` moves EXCHANGE_LIFETIME and the rest with them.
/// `ack_random_factor_milli` is ACK_RANDOM_FACTOR in thousandths (1500 = 1.5), which keeps
/// the arithmetic in integers on targets without a floating-point unit.
///
/// ```
/// use coap_proto::TransmissionParams;
/// use core::time::Duration;
/// let p = TransmissionParams::default();
/// assert_eq!(p.max_transmit_span(), Duration::from_secs(45));
/// assert_eq!(p.max_transmit_wait(), Duration::from_secs(93));
/// assert_eq!(p.max_rtt(), Duration::from_secs(202));
/// assert_eq!(p.exchange_lifetime(), Duration::from_secs(247));
/// assert_eq!(p.non_lifetime(), Duration::from_secs(145));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransmissionParams {
    /// ACK_TIMEOUT: the shortest initial retransmission timeout (default 2 s).
    pub ack_timeout: Duration,
    /// ACK_RANDOM_FACTOR in thousandths (default 1500): the initial timeout is drawn
    /// from `[ACK_TIMEOUT, ACK_TIMEOUT × ACK_RANDOM_FACTOR]`. At least 1000.
    pub ack_random_factor_milli: u16,
    /// MAX_RETRANSMIT: retransmissions of a CON before giving up (default 4).
    pub max_retransmit: u8,
    /// NSTART: outstanding interactions allowed per peer (default 1, §4.7).
    pub nstart: u8,
    /// DEFAULT_LEISURE: spread of multicast responses (default 5 s, §8.2).
    pub default_leisure: Duration,
    /// PROBING_RATE: average bytes per second towards an unresponsive peer
    /// (default 1, §4.7).
    pub probing_rate: u32,
    /// MAX_LATENCY: the longest a datagram is assumed to take (default 100 s, §4.8.2).
    pub max_latency: Duration,
}

impl Default for TransmissionParams {
    fn default() -> Self {
        TransmissionParams::RFC7252
    }
}

/// Why a [`TransmissionParams`] value cannot be used.
///
/// ```
/// use coap_proto::{ParamsError, TransmissionParams};
/// let p = TransmissionParams { ack_timeout: core::time::Duration::ZERO, ..TransmissionParams::RFC7252 };
/// assert_eq!(p.validate(), Err(ParamsError::ZeroAckTimeout));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParamsError {
    /// ACK_TIMEOUT is zero.
    ZeroAckTimeout,
    /// ACK_RANDOM_FACTOR is below 1.0.
    RandomFactorBelowOne,
    /// NSTART is zero, so nothing could ever be sent.
    ZeroNstart,
    /// MAX_RETRANSMIT above 20 makes the back-off span centuries.
    TooManyRetransmits,
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamsError::ZeroAckTimeout => "ACK_TIMEOUT must be above zero",
            ParamsError::RandomFactorBelowOne => "ACK_RANDOM_FACTOR must be at least 1.0",
            ParamsError::ZeroNstart => "NSTART must be at least 1",
            ParamsError::TooManyRetransmits => "MAX_RETRANSMIT must be at most 20",
        })
    }
}

impl core::error::Error for ParamsError {}

impl TransmissionParams {
    /// The defaults of RFC 7252 §4.8.
    pub const RFC7252: TransmissionParams = TransmissionParams {
        ack_timeout: Duration::from_secs(2),
        ack_random_factor_milli: 1500,
        max_retransmit: 4,
        nstart: 1,
        default_leisure: Duration::from_secs(5),
        probing_rate: 1,
        max_latency: Duration::from_secs(100),
    };

    /// Checks the values are usable.
    pub fn validate(&self) -> Result<(), ParamsError> {
        if self.ack_timeout.is_zero() {
            Err(ParamsError::ZeroAckTimeout)
        } else if self.ack_random_factor_milli < 1000 {
            Err(ParamsError::RandomFactorBelowOne)
        } else if self.nstart == 0 {
            Err(ParamsError::ZeroNstart)
        } else if self.max_retransmit > 20 {
            Err(ParamsError::TooManyRetransmits)
        } else {
            Ok(())
        }
    }

    /// `ACK_TIMEOUT × (2^n − 1) × ACK_RANDOM_FACTOR`.
    fn backoff_span(&self, n: u32) -> Duration {
        let steps = (1u64 << n.min(40)) - 1;
        let micros = self.ack_timeout.as_micros() as u64;
        let (total, _) = crate::time::div_rem_small(
            micros
                .saturating_mul(steps)
                .saturating_mul(self.ack_random_factor_milli as u64),
            1000,
        );
        crate::time::duration_from_micros(total)
    }

    /// MAX_TRANSMIT_SPAN: from the first transmission of a CON to its last
    /// retransmission (§4.8.2).
    pub fn max_transmit_span(&self) -> Duration {
        self.backoff_span(self.max_retransmit as u32)
    }

    /// MAX_TRANSMIT_WAIT: from the first transmission of a CON until the sender gives up
    /// waiting for an acknowledgement or reset (§4.8.2).
    pub fn max_transmit_wait(&self) -> Duration {
        self.backoff_span(self.max_retransmit as u32 + 1)
    }

    /// MAX_LATENCY (§4.8.2).
    pub fn max_latency(&self) -> Duration {
        self.max_latency
    }

    /// PROCESSING_DELAY: the time a node takes to turn a CON into an ACK, set to
    /// ACK_TIMEOUT (§4.8.2).
    pub fn processing_delay(&self) -> Duration {
        self.ack_timeout
    }

    /// MAX_RTT: `2 × MAX_LATENCY + PROCESSING_DELAY` (§4.8.2).
    pub fn max_rtt(&self) -> Duration {
        self.max_latency * 2 + self.processing_delay()
    }

    /// EXCHANGE_LIFETIME: how long a message ID of a CON stays in use —
    /// `MAX_TRANSMIT_SPAN + 2 × MAX_LATENCY + PROCESSING_DELAY` (§4.8.2).
    pub fn exchange_lifetime(&self) -> Duration {
        self.max_transmit_span() + self.max_latency * 2 + self.processing_delay()
    }

    /// How long a group request (RFC 7252 §8.1) collects responses unless it says:
    /// DEFAULT_LEISURE, within which every server answers (§8.2), and the longest
    /// first retransmission timeout, `ACK_TIMEOUT × ACK_RANDOM_FACTOR`, for the answer's
    /// way back — 8 s with the defaults.
    ///
    /// ```
    /// # use coap_proto::TransmissionParams;
    /// assert_eq!(TransmissionParams::RFC7252.group_window().as_secs(), 8);
    /// ```
    pub fn group_window(&self) -> Duration {
        self.default_leisure + self.backoff_span(1)
    }

    /// NON_LIFETIME: how long a message ID of a NON stays in use —
    /// `MAX_TRANSMIT_SPAN + MAX_LATENCY` (§4.8.2).
    pub fn non_lifetime(&self) -> Duration {
        self.max_transmit_span() + self.max_latency
    }
}
