//! The small PRNG behind message IDs, tokens and retransmission jitter (RFC 7252 §4.4,
//! §4.8, §5.3.1). Seeded by the caller, so every run is reproducible.

/// SplitMix64: one 64-bit state, full period, good enough statistics for jitter and
/// tokens. Not cryptographic: RFC 7252 §5.3.1 asks tokens to be hard to guess only when
/// the transport is unsecured and off-path attacks matter; seed from a real entropy
/// source then.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// SipHash-2-4 keyed from `seed` for one purpose, `domain`: its own stream of the
    /// seed, so that the values the PRNG gives for a seed stay what they were.
    // SipHash is a keyed PRF made for short inputs; core still ships it (deprecated only
    // as a HashMap default, which is not how it is used here).
    #[allow(deprecated)]
    pub(crate) fn keyed(seed: u64, domain: u64) -> core::hash::SipHasher {
        let mut rng = Rng::new(seed ^ domain);
        core::hash::SipHasher::new_with_keys(rng.next_u64(), rng.next_u64())
    }

    pub(crate) fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}
