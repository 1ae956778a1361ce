//! Counters of what the endpoint absorbed or dropped.

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
    /// Requests answered 5.03 because a table was full (exchange slots, deferral
    /// quota, protected dedup entries or reply bytes).
    pub overloaded: u64,
    /// Requests answered 4.29 because their peer held its share of a table.
    pub over_share: u64,
    /// ACK and RST messages that matched nothing.
    pub unmatched: u64,
    /// 4.01 Unauthorized answers with an Echo value (RFC 9175): amplification
    /// challenges and freshness checks.
    pub echo_challenges: u64,
    /// Observe registrations declined (answered without Observe, RFC 7641 §4.1): their
    /// peer held its share of the observer places, or none could be reclaimed.
    pub observers_declined: u64,
}

impl core::fmt::Display for Stats {
    /// Every counter, in words:
    ///
    /// ```
    /// let mut s = coap_proto::Stats::default();
    /// s.retransmissions = 3;
    /// assert_eq!(
    ///     s.to_string(),
    ///     "3 retransmissions, 0 duplicates, 0 malformed, 0 refused (0 over a peer's share), \
    ///      0 control messages dropped, 0 unmatched ACK/RST, 0 Echo challenges, \
    ///      0 registrations declined"
    /// );
    /// ```
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} retransmissions, {} duplicates, {} malformed, {} refused ({} over a peer's \
             share), {} control messages dropped, {} unmatched ACK/RST, {} Echo challenges, \
             {} registrations declined",
            self.retransmissions,
            self.duplicates,
            self.malformed,
            self.overloaded + self.over_share,
            self.over_share,
            self.control_dropped,
            self.unmatched,
            self.echo_challenges,
            self.observers_declined
        )
    }
}
