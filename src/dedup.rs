//! Duplicate detection with reply replay (RFC 7252 §4.5).
//!
//! §4.5: a recipient must acknowledge each duplicate of a CON within EXCHANGE_LIFETIME
//! but process it only once, ideally answering with the same reply again; it should
//! ignore duplicates of a NON within NON_LIFETIME. §4.4 makes the key the pair of source
//! endpoint and message ID.
//!
//! Capacity is fixed: `N` entries and an arena of `A` bytes for stored replies.
//! - Entries are reused in the order they were filled: a new message takes the oldest
//!   entry. If that entry had not expired yet, duplicates of its message are no longer
//!   recognized; counted in [`DedupCache::evictions`]. Lookups go through a hash index
//!   on the message ID, so both lookup and insertion cost O(1).
//! - The arena is a ring written in order: a new reply overwrites the oldest stored
//!   replies. Their entries stay (duplicates are still recognized and not processed
//!   again) but [`DedupCache::stored`] no longer has their bytes: the endpoint then sends
//!   nothing, as if the reply had been lost on the way. Whether a reply is intact is an
//!   O(1) check of its position against the writer's, so storing never scans.
//!
//! An entry can also be marked *pending*: its reply is owed to the peer now (the first
//! ACK of a message, or a replay for a duplicate). Pending entries are handed out in
//! the order they were marked by [`DedupCache::take_pending`]; since every entry is
//! marked at most once at a time, this needs no queue beyond the entries themselves.

use core::time::Duration;

use crate::Instant;
use crate::index::ChainIndex;

/// What a duplicate of a remembered message gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Nothing: a duplicate NON, or a message whose answer is not decided yet.
    Nothing,
    /// An empty ACK with the message's ID.
    EmptyAck,
    /// A reply kept in the arena, sent again byte for byte while it is intact.
    Stored {
        /// Position in the stream of all bytes ever stored (the arena offset is this
        /// modulo the arena size).
        start: u64,
        /// Length in bytes.
        len: u32,
    },
    /// A reply too large to keep.
    Evicted,
    /// A value the owner of the cache interprets (the endpoint: a deferred exchange).
    Pending(u32),
}

#[derive(Clone, Copy, Debug)]
struct Entry<P> {
    peer: P,
    mid: u16,
    expires: Instant,
    reply: Reply,
    pending: bool,
}

/// The duplicate cache: `N` remembered messages and `A` bytes of stored replies.
///
/// ```
/// use coap_proto::{DedupCache, Instant, Reply};
/// use core::time::Duration;
/// let mut cache: DedupCache<u8, 4, 64> = DedupCache::new();
/// let now = Instant::ZERO;
/// assert_eq!(cache.find(now, 1, 0x10), None);
/// let i = cache.insert(now, 1, 0x10, Duration::from_secs(247), Reply::Nothing);
/// cache.store(i, &[0x60, 0x45, 0x00, 0x10]);
/// let dup = cache.find(Instant::from_secs(5), 1, 0x10).unwrap();
/// assert_eq!(cache.stored(dup), Some(&[0x60, 0x45, 0x00, 0x10][..]));
/// assert_eq!(cache.find(Instant::from_secs(248), 1, 0x10), None); // expired
/// ```
#[derive(Clone, Debug)]
pub struct DedupCache<P, const N: usize, const A: usize> {
    entries: [Option<Entry<P>>; N],
    /// Entries by message ID.
    by_mid: ChainIndex<N>,
    /// The entry the next message takes.
    oldest: usize,
    /// Indices of pending entries, oldest first (a ring; stale indices are skipped).
    pending: [u16; N],
    pending_head: usize,
    pending_len: usize,
    arena: [u8; A],
    /// Where the next reply goes, as a position in the stream of stored bytes.
    written: u64,
    evictions: u64,
}

impl<P: Copy + Eq, const N: usize, const A: usize> Default for DedupCache<P, N, A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Copy + Eq, const N: usize, const A: usize> DedupCache<P, N, A> {
    /// An empty cache.
    pub const fn new() -> Self {
        DedupCache {
            entries: [None; N],
            by_mid: ChainIndex::new(),
            oldest: 0,
            pending: [0; N],
            pending_head: 0,
            pending_len: 0,
            arena: [0; A],
            written: 0,
            evictions: 0,
        }
    }

    /// The entry for `(peer, mid)` if it is remembered and has not expired at `now`.
    pub fn find(&self, now: Instant, peer: P, mid: u16) -> Option<usize> {
        self.by_mid.candidates(mid as u32).find(|&i| {
            matches!(self.entries.get(i), Some(Some(e)) if e.mid == mid && e.peer == peer && e.expires > now)
        })
    }

    /// Remembers `(peer, mid)` until `now + lifetime` in the oldest entry and returns it.
    pub fn insert(
        &mut self,
        now: Instant,
        peer: P,
        mid: u16,
        lifetime: Duration,
        reply: Reply,
    ) -> usize {
        let slot = self.oldest;
        self.oldest = (self.oldest + 1) % N;
        if let Some(Some(old)) = self.entries.get(slot) {
            if old.expires > now {
                self.evictions += 1;
            }
        }
        if let Some(e) = self.entries.get_mut(slot) {
            *e = Some(Entry {
                peer,
                mid,
                expires: now + lifetime,
                reply,
                pending: false,
            });
        }
        self.by_mid.insert(slot, mid as u32);
        slot
    }

    /// What a duplicate of entry `i` gets.
    pub fn reply(&self, i: usize) -> Reply {
        match self.entries.get(i) {
            Some(Some(e)) => e.reply,
            _ => Reply::Nothing,
        }
    }

    /// Sets what a duplicate of entry `i` gets.
    pub fn set_reply(&mut self, i: usize, reply: Reply) {
        if let Some(Some(e)) = self.entries.get_mut(i) {
            e.reply = reply;
        }
    }

    /// Keeps `bytes` as the reply of entry `i`, overwriting the oldest stored replies if
    /// the arena is short. A reply larger than the arena is not kept
    /// ([`Reply::Evicted`]).
    pub fn store(&mut self, i: usize, bytes: &[u8]) {
        let len = bytes.len();
        if len > A || u32::try_from(len).is_err() {
            self.set_reply(i, Reply::Evicted);
            return;
        }
        let mut at = (self.written % A as u64) as usize;
        if at + len > A {
            // Replies are kept contiguous: skip the arena's tail.
            self.written += (A - at) as u64;
            at = 0;
        }
        self.arena[at..at + len].copy_from_slice(bytes);
        let start = self.written;
        self.written += len as u64;
        self.set_reply(
            i,
            Reply::Stored {
                start,
                len: len as u32,
            },
        );
    }

    /// The stored reply of entry `i`, if it has one that is still intact.
    pub fn stored(&self, i: usize) -> Option<&[u8]> {
        match self.reply(i) {
            // Intact while the writer has not come round to `start` again.
            Reply::Stored { start, len } if self.written <= start + A as u64 => {
                let at = (start % A as u64) as usize;
                self.arena.get(at..at + len as usize)
            }
            _ => None,
        }
    }

    /// Marks entry `i`'s reply as owed to its peer now.
    pub fn mark_pending(&mut self, i: usize) {
        let Some(Some(e)) = self.entries.get_mut(i) else {
            return;
        };
        if e.pending {
            return;
        }
        e.pending = true;
        if self.pending_len == N {
            // Only stale indices (of entries reused since they were marked) can fill
            // the ring beyond the pending entries, which number fewer than N here.
            self.compact_pending();
        }
        self.pending[(self.pending_head + self.pending_len) % N] = i as u16;
        self.pending_len += 1;
    }

    fn compact_pending(&mut self) {
        let mut kept = 0;
        for k in 0..self.pending_len {
            let i = self.pending[(self.pending_head + k) % N];
            let live = matches!(self.entries.get(i as usize), Some(Some(e)) if e.pending);
            let duplicate = (0..kept).any(|j| self.pending[(self.pending_head + j) % N] == i);
            if live && !duplicate {
                self.pending[(self.pending_head + kept) % N] = i;
                kept += 1;
            }
        }
        self.pending_len = kept;
    }

    /// The oldest entry whose reply is owed, with its peer and message ID; clears the
    /// mark.
    pub fn take_pending(&mut self) -> Option<(usize, P, u16)> {
        while self.pending_len > 0 {
            let i = self.pending[self.pending_head] as usize;
            self.pending_head = (self.pending_head + 1) % N;
            self.pending_len -= 1;
            if let Some(Some(e)) = self.entries.get_mut(i) {
                if e.pending {
                    e.pending = false;
                    return Some((i, e.peer, e.mid));
                }
            }
        }
        None
    }

    /// The peer and message ID entry `i` remembers.
    pub fn key(&self, i: usize) -> Option<(P, u16)> {
        match self.entries.get(i) {
            Some(Some(e)) => Some((e.peer, e.mid)),
            _ => None,
        }
    }

    /// Entries in use, expired ones included until they are reused.
    pub fn len(&self) -> usize {
        self.entries.iter().flatten().count()
    }

    /// Whether no entry is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live entries replaced because the cache was full.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFE: Duration = Duration::from_secs(247);

    #[test]
    fn full_cache_replaces_the_oldest_entry() {
        let mut c: DedupCache<u8, 2, 16> = DedupCache::new();
        let t = Instant::from_secs;
        c.insert(t(0), 1, 1, LIFE, Reply::EmptyAck);
        c.insert(t(1), 1, 2, LIFE, Reply::EmptyAck);
        assert_eq!(c.evictions(), 0);
        c.insert(t(2), 1, 3, LIFE, Reply::EmptyAck);
        assert_eq!(c.evictions(), 1);
        assert_eq!(c.find(t(3), 1, 1), None, "oldest entry was given up");
        assert!(c.find(t(3), 1, 2).is_some());
        assert!(c.find(t(3), 1, 3).is_some());
        // An expired entry is reused without counting as an eviction.
        c.insert(t(300), 1, 4, LIFE, Reply::Nothing);
        assert_eq!(c.evictions(), 1);
    }

    #[test]
    fn pending_replies_come_out_in_order_once() {
        let mut c: DedupCache<u8, 3, 16> = DedupCache::new();
        let t = Instant::ZERO;
        let a = c.insert(t, 1, 1, LIFE, Reply::EmptyAck);
        let b = c.insert(t, 1, 2, LIFE, Reply::EmptyAck);
        c.mark_pending(b);
        c.mark_pending(a);
        c.mark_pending(b); // already pending: no second copy
        assert_eq!(c.take_pending(), Some((b, 1, 2)));
        assert_eq!(c.take_pending(), Some((a, 1, 1)));
        assert_eq!(c.take_pending(), None);
        // Reusing a pending entry drops its mark; the ring never overflows.
        for round in 0..10u16 {
            for mid in 0..3u16 {
                let at = Instant::from_millis((round * 3 + mid) as u64);
                let i = c.insert(at, 1, 100 + round * 3 + mid, LIFE, Reply::EmptyAck);
                c.mark_pending(i);
            }
        }
        let mut n = 0;
        while c.take_pending().is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
    }

    #[test]
    fn peers_are_part_of_the_key() {
        let mut c: DedupCache<u8, 4, 16> = DedupCache::new();
        c.insert(Instant::ZERO, 1, 7, LIFE, Reply::EmptyAck);
        assert!(c.find(Instant::ZERO, 2, 7).is_none());
    }

    #[test]
    fn arena_overwrites_oldest_replies_and_keeps_the_entry() {
        let mut c: DedupCache<u8, 4, 10> = DedupCache::new();
        let a = c.insert(Instant::ZERO, 1, 1, LIFE, Reply::Nothing);
        c.store(a, &[1; 6]);
        let b = c.insert(Instant::ZERO, 1, 2, LIFE, Reply::Nothing);
        c.store(b, &[2; 6]); // wraps to 0, overwriting a
        assert_eq!(c.stored(a), None);
        assert_eq!(c.stored(b), Some(&[2u8; 6][..]));
        assert!(
            c.find(Instant::ZERO, 1, 1).is_some(),
            "still recognized as duplicate"
        );
        let big = c.insert(Instant::ZERO, 1, 3, LIFE, Reply::Nothing);
        c.store(big, &[3; 11]);
        assert_eq!(c.reply(big), Reply::Evicted);
    }
}
