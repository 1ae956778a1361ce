//! Duplicate detection with reply replay (RFC 7252 §4.5), with an overflow policy that
//! keeps the promise where it matters.
//!
//! §4.5: a recipient must acknowledge each duplicate of a CON within EXCHANGE_LIFETIME
//! but process it only once, ideally answering with the same reply again; it should
//! ignore duplicates of a NON within NON_LIFETIME. A request whose processing is
//! idempotent may be processed again instead. §4.4 makes the key the pair of source
//! endpoint and message ID.
//!
//! Capacity is fixed: `DEDUP_ENTRIES` entries and `REPLY_BYTES` bytes for stored
//! replies. Entries come in two kinds, and the overflow policy differs:
//!
//! - A **protected** entry (the owner uses it for non-idempotent requests: POST, PATCH)
//!   is never evicted before it expires, and its stored reply is never overwritten or
//!   dropped while the entry lives. Room for that reply is *reserved* when the entry is
//!   made ([`DedupCache::insert_protected`]), before the request is processed, so storing
//!   it later cannot fail. When no entry or no reply space can be had without breaking
//!   that promise, `insert_protected` refuses with [`DedupFull`], which says when space
//!   frees at the earliest: the owner answers 5.03 with that Max-Age, before any handler
//!   runs. [`DedupFull::peer_over_share`] tells a refusal caused by one peer holding more
//!   than its share of protected entries (4.29 Too Many Requests, RFC 8516).
//! - An **evictable** entry (idempotent requests, NON and error replies, ACKed separate
//!   responses) may be given up for a newer message. Entries are reused with a clock
//!   hand: the first entry found that is free, expired or evictable and not waiting for
//!   its answer, else the first evictable one. A **sticky** entry
//!   ([`DedupCache::insert_sticky`]: the refusal of a non-idempotent request) is
//!   evictable too, but only once no plain evictable entry is left. When an evictable entry's stored reply
//!   has to make room, the entry goes with it, so that a duplicate is *processed again*
//!   (§4.5 allows it for idempotent requests) rather than silently ignored.
//!
//! Replies live in an arena filled from the front. When the end is reached, the arena
//! is compacted: expired and given-up replies go, the oldest plain evictable replies go
//! (with their entries) until half the arena is free, sticky ones only if room is still
//! short, and the rest slide to the front (each reply carries a 4-byte header naming
//! its entry, so compaction needs no other table). Compaction costs one pass over the
//! bytes in use and comes at most once per half arena of new bytes, so storing costs
//! O(1) per byte amortized.
//!
//! An entry can also be marked *pending*: its reply is owed to the peer now (the first
//! ACK of a message, or a replay for a duplicate). Pending entries are handed out in
//! the order they were marked by [`DedupCache::take_pending`]; since every entry is
//! marked at most once at a time, this needs no queue beyond the entries themselves.

use core::fmt;
use core::time::Duration;

use crate::Instant;
use crate::index::ChainIndex;

/// Bytes in front of every stored reply: its entry index and its length.
const HEADER: usize = 4;

/// What a duplicate of a remembered message gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Nothing: a duplicate NON, or a message whose answer is not decided yet.
    Nothing,
    /// An empty ACK with the message's ID.
    EmptyAck,
    /// A reply kept in the arena, sent again byte for byte.
    Stored {
        /// Offset of the reply's bytes in the arena.
        at: u32,
        /// Length in bytes.
        len: u32,
    },
    /// A value the owner of the cache interprets (the endpoint: an exchange in
    /// progress).
    Pending(u32),
}

/// What an entry keeps of its [`Reply`]. A stored reply's length is in the arena, in
/// front of its bytes, so it is not kept twice: an entry takes 8 bytes less.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kept {
    Nothing,
    EmptyAck,
    /// Offset of the reply's bytes in the arena.
    Stored(u32),
    Pending(u32),
}

impl Kept {
    /// A reply given from outside: only [`DedupCache::store`] stores bytes.
    fn given(reply: Reply) -> Kept {
        match reply {
            Reply::EmptyAck => Kept::EmptyAck,
            Reply::Pending(v) => Kept::Pending(v),
            Reply::Nothing | Reply::Stored { .. } => Kept::Nothing,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry<P> {
    peer: P,
    expires: Instant,
    reply: Kept,
    /// Reply bytes held back for this entry (protected entries, until they store).
    reserved: u16,
    mid: u16,
    pending: bool,
    protected: bool,
    /// Evictable, but given up only after every plain evictable entry.
    sticky: bool,
}

/// How an entry may be given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Evictable,
    Sticky,
    /// Never before it expires; with this many reply bytes set aside.
    Protected(u16),
}

/// [`DedupCache::insert_protected`] could not keep its promise for one more message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupFull {
    /// The earliest instant at which a protected entry expires and frees its place or
    /// its reply space: a truthful Max-Age for the 5.03 that refuses the message.
    pub retry_at: Instant,
    /// The peer already holds its share of protected entries (4.29 rather than 5.03).
    pub peer_over_share: bool,
}

impl fmt::Display for DedupFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.peer_over_share {
            write!(
                f,
                "the peer holds its share of protected entries until {}",
                self.retry_at
            )
        } else {
            write!(
                f,
                "every protected entry or reply byte is in use until {}",
                self.retry_at
            )
        }
    }
}

/// The duplicate cache: `DEDUP_ENTRIES` remembered messages and `REPLY_BYTES` bytes of
/// stored replies.
///
/// ```
/// use coap_proto::{DedupCache, Instant, Reply};
/// use core::time::Duration;
/// let mut cache: DedupCache<u8, 4, 64> = DedupCache::new();
/// let now = Instant::ZERO;
/// let life = Duration::from_secs(247);
/// assert_eq!(cache.find(now, 1, 0x10), None);
/// // A POST: protected, with room for a reply of up to 16 bytes set aside.
/// let i = cache.insert_protected(now, 1, 0x10, life, Reply::Nothing, 16, 4).unwrap();
/// assert!(cache.store(now, i, &[0x60, 0x44, 0x00, 0x10]));
/// let dup = cache.find(Instant::from_secs(5), 1, 0x10).unwrap();
/// assert_eq!(cache.stored(dup), Some(&[0x60, 0x44, 0x00, 0x10][..]));
/// assert_eq!(cache.find(Instant::from_secs(248), 1, 0x10), None); // expired
/// ```
#[derive(Clone, Debug)]
pub struct DedupCache<P, const DEDUP_ENTRIES: usize, const REPLY_BYTES: usize> {
    entries: [Option<Entry<P>>; DEDUP_ENTRIES],
    /// Entries by message ID.
    by_mid: ChainIndex<DEDUP_ENTRIES>,
    /// Where the search for an entry to reuse starts.
    hand: usize,
    /// Indices of pending entries, oldest first (a ring; stale indices are skipped).
    pending: [u16; DEDUP_ENTRIES],
    pending_head: usize,
    pending_len: usize,
    arena: [u8; REPLY_BYTES],
    /// Bytes of the arena in use from the front, live or not.
    end: usize,
    /// Bytes (headers included) of stored replies of protected entries, expired ones
    /// included until [`Self::sweep`] finds them.
    protected_bytes: usize,
    /// Reply bytes (headers included) set aside for protected entries.
    reserved: usize,
    /// Protected entries, expired ones included until the sweep.
    protected: usize,
    /// The earliest expiry of a protected entry: when the accounting must be swept.
    next_expiry: Instant,
    evictions: u64,
}

impl<P: Copy + Eq, const DEDUP_ENTRIES: usize, const REPLY_BYTES: usize> Default
    for DedupCache<P, DEDUP_ENTRIES, REPLY_BYTES>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Copy + Eq, const DEDUP_ENTRIES: usize, const REPLY_BYTES: usize>
    DedupCache<P, DEDUP_ENTRIES, REPLY_BYTES>
{
    const CHECK: () = {
        assert!(
            DEDUP_ENTRIES > 0 && DEDUP_ENTRIES < u16::MAX as usize,
            "DEDUP_ENTRIES must be 1..65535"
        );
        assert!(
            REPLY_BYTES <= u32::MAX as usize,
            "REPLY_BYTES must fit in 32 bits"
        );
    };

    /// An empty cache.
    pub const fn new() -> Self {
        let () = Self::CHECK;
        DedupCache {
            entries: [None; DEDUP_ENTRIES],
            by_mid: ChainIndex::new(),
            hand: 0,
            pending: [0; DEDUP_ENTRIES],
            pending_head: 0,
            pending_len: 0,
            arena: [0; REPLY_BYTES],
            end: 0,
            protected_bytes: 0,
            reserved: 0,
            protected: 0,
            next_expiry: Instant::MAX,
            evictions: 0,
        }
    }

    /// The entry for `(peer, mid)` if it is remembered and has not expired at `now`.
    pub fn find(&self, now: Instant, peer: P, mid: u16) -> Option<usize> {
        self.by_mid.candidates(mid as u32).find(|&i| {
            matches!(self.entries.get(i), Some(Some(e)) if e.mid == mid && e.peer == peer && e.expires > now)
        })
    }

    /// Remembers `(peer, mid)` until `now + lifetime` in an evictable entry and returns
    /// it; `None` when every entry is protected and live. `reply` is what a duplicate
    /// gets meanwhile; a [`Reply::Stored`] is taken as [`Reply::Nothing`], since only
    /// [`store`](Self::store) keeps bytes.
    pub fn insert(
        &mut self,
        now: Instant,
        peer: P,
        mid: u16,
        lifetime: Duration,
        reply: Reply,
    ) -> Option<usize> {
        self.insert_evictable(now, peer, mid, lifetime, reply, Kind::Evictable)
    }

    /// [`insert`](Self::insert) for an entry that is worth more than most evictable ones
    /// but cannot be protected: the endpoint's refusal of a non-idempotent request,
    /// which must keep being the answer to that message's duplicates (a duplicate that
    /// found no entry would be processed, though its client may have been told 5.03).
    /// It is given up only when no plain evictable entry is left.
    pub fn insert_sticky(
        &mut self,
        now: Instant,
        peer: P,
        mid: u16,
        lifetime: Duration,
        reply: Reply,
    ) -> Option<usize> {
        self.insert_evictable(now, peer, mid, lifetime, reply, Kind::Sticky)
    }

    fn insert_evictable(
        &mut self,
        now: Instant,
        peer: P,
        mid: u16,
        lifetime: Duration,
        reply: Reply,
        kind: Kind,
    ) -> Option<usize> {
        self.sweep(now);
        let i = self.reusable(now)?;
        self.put(now, i, peer, mid, lifetime, reply, kind);
        Some(i)
    }

    /// Remembers `(peer, mid)` until `now + lifetime` in a protected entry: it stays,
    /// and so does the reply stored for it, until it expires. `reply_room` bytes are
    /// set aside so that a reply of up to that length can always be stored (0 when none
    /// will be, e.g. for a NON). `peer_share` is the most protected entries one peer may
    /// hold. Refused when that cannot be promised.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_protected(
        &mut self,
        now: Instant,
        peer: P,
        mid: u16,
        lifetime: Duration,
        reply: Reply,
        reply_room: usize,
        peer_share: usize,
    ) -> Result<usize, DedupFull> {
        self.sweep(now);
        let full = |peer_over_share| DedupFull {
            retry_at: self.next_expiry,
            peer_over_share,
        };
        if self.protected >= peer_share.max(1) && self.protected_of(peer) >= peer_share.max(1) {
            return Err(full(true));
        }
        let room = if reply_room == 0 {
            0
        } else {
            reply_room.min(u16::MAX as usize - HEADER) + HEADER
        };
        if self.protected_bytes + self.reserved + room > REPLY_BYTES {
            return Err(full(false));
        }
        // `reusable` never hands out a protected entry that is still live.
        let Some(i) = self.reusable(now) else {
            return Err(full(false));
        };
        self.put(
            now,
            i,
            peer,
            mid,
            lifetime,
            reply,
            Kind::Protected(room as u16),
        );
        Ok(i)
    }

    /// Protected entries of `peer` that have not been swept.
    fn protected_of(&self, peer: P) -> usize {
        self.entries
            .iter()
            .flatten()
            .filter(|e| e.protected && e.peer == peer)
            .count()
    }

    /// The entry to reuse, from the clock hand on: a free or expired one, or else a
    /// plain evictable one whose exchange is settled; else a sticky one; else any
    /// evictable one. Protected entries only once they expire.
    fn reusable(&self, now: Instant) -> Option<usize> {
        // Swept: every protected entry counted is live, so none can be reused.
        if self.protected >= DEDUP_ENTRIES && now < self.next_expiry {
            return None;
        }
        let n = DEDUP_ENTRIES;
        let at = |k: usize| (self.hand + k) % n;
        let find = |ok: &dyn Fn(&Entry<P>) -> bool| {
            (0..n).map(at).find(|&i| match &self.entries[i] {
                None => true,
                Some(e) => e.expires <= now || (!e.protected && ok(e)),
            })
        };
        let settled = |e: &Entry<P>| !matches!(e.reply, Kept::Pending(_));
        find(&|e| !e.sticky && settled(e))
            .or_else(|| find(&settled))
            .or_else(|| find(&|_| true))
    }

    #[allow(clippy::too_many_arguments)]
    fn put(
        &mut self,
        now: Instant,
        i: usize,
        peer: P,
        mid: u16,
        lifetime: Duration,
        reply: Reply,
        kind: Kind,
    ) {
        let (protected, reserved) = match kind {
            Kind::Protected(room) => (true, room),
            _ => (false, 0),
        };
        if matches!(&self.entries[i], Some(e) if e.expires > now) {
            self.evictions += 1;
        }
        self.forget(i);
        self.hand = (i + 1) % DEDUP_ENTRIES;
        let expires = now + lifetime;
        self.entries[i] = Some(Entry {
            peer,
            expires,
            reply: Kept::given(reply),
            reserved,
            mid,
            pending: false,
            protected,
            sticky: kind == Kind::Sticky,
        });
        if protected {
            self.protected += 1;
            self.reserved += reserved as usize;
            self.next_expiry = self.next_expiry.min(expires);
        }
        self.by_mid.insert(i, mid as u32);
    }

    /// Empties entry `i`, settling its accounts. Its stored reply becomes garbage for
    /// the next compaction.
    fn forget(&mut self, i: usize) {
        let Some(Some(e)) = self.entries.get_mut(i).map(Option::take) else {
            return;
        };
        if e.protected {
            self.protected -= 1;
            self.reserved -= e.reserved as usize;
            if let Kept::Stored(at) = e.reply {
                self.protected_bytes -= self.block_len(at as usize - HEADER);
            }
        }
        self.by_mid.remove(i);
    }

    /// Settles protected entries that expired by `now`, so that their places and reply
    /// bytes count as free. Runs only when the earliest protected expiry has passed.
    fn sweep(&mut self, now: Instant) {
        if now < self.next_expiry {
            return;
        }
        let mut next = Instant::MAX;
        for i in 0..DEDUP_ENTRIES {
            match &self.entries[i] {
                Some(e) if e.protected && e.expires <= now => self.forget(i),
                Some(e) if e.protected => next = next.min(e.expires),
                _ => {}
            }
        }
        self.next_expiry = next;
    }

    /// What a duplicate of entry `i` gets.
    pub fn reply(&self, i: usize) -> Reply {
        match self.entries.get(i) {
            Some(Some(e)) => match e.reply {
                Kept::Nothing => Reply::Nothing,
                Kept::EmptyAck => Reply::EmptyAck,
                Kept::Stored(at) => Reply::Stored {
                    at,
                    len: (self.block_len(at as usize - HEADER) - HEADER) as u32,
                },
                Kept::Pending(v) => Reply::Pending(v),
            },
            _ => Reply::Nothing,
        }
    }

    /// Sets what a duplicate of entry `i` gets. A protected entry that will not store a
    /// reply (it is answered with an empty ACK or not at all) gives its reserved room
    /// back. A stored reply is not replaced.
    pub fn set_reply(&mut self, i: usize, reply: Reply) {
        let Some(Some(e)) = self.entries.get_mut(i) else {
            return;
        };
        if matches!(e.reply, Kept::Stored(_)) || matches!(reply, Reply::Stored { .. }) {
            return;
        }
        e.reply = Kept::given(reply);
        if !matches!(reply, Reply::Pending(_)) {
            self.reserved -= e.reserved as usize;
            e.reserved = 0;
        }
    }

    /// Keeps `bytes` as the reply of entry `i` and returns whether it did. A protected
    /// entry always can, within the room it reserved (longer replies are cut to
    /// nothing: the owner reserves the largest message it builds). For an evictable
    /// entry the oldest evictable replies make room if needed; if there still is none,
    /// the entry is forgotten, so that a duplicate is processed again.
    pub fn store(&mut self, now: Instant, i: usize, bytes: &[u8]) -> bool {
        let Some(Some(e)) = self.entries.get(i) else {
            return false;
        };
        if matches!(e.reply, Kept::Stored(_)) {
            return false;
        }
        let (protected, room) = (e.protected, e.reserved as usize);
        let need = bytes.len() + HEADER;
        if protected && need > room {
            return false;
        }
        let available = REPLY_BYTES - self.protected_bytes - self.reserved + room;
        if need > available || (!protected && bytes.len() > u16::MAX as usize) {
            self.forget(i);
            return false;
        }
        if self.end + need > REPLY_BYTES {
            self.compact(now, need, room);
        }
        if self.end + need > REPLY_BYTES {
            // Only evictable replies can be short of room after compaction.
            self.forget(i);
            return false;
        }
        let at = self.end;
        self.arena[at..at + 2].copy_from_slice(&(i as u16).to_be_bytes());
        self.arena[at + 2..at + 4].copy_from_slice(&(bytes.len() as u16).to_be_bytes());
        self.arena[at + HEADER..at + need].copy_from_slice(bytes);
        self.end += need;
        if let Some(Some(e)) = self.entries.get_mut(i) {
            e.reply = Kept::Stored((at + HEADER) as u32);
            if protected {
                self.reserved -= e.reserved as usize;
                e.reserved = 0;
                self.protected_bytes += need;
            }
        }
        true
    }

    /// Whether the block at `at` (its header) is the live reply of its entry.
    fn owner(&self, at: usize) -> Option<usize> {
        let i = u16::from_be_bytes([self.arena[at], self.arena[at + 1]]) as usize;
        match self.entries.get(i) {
            Some(Some(e)) if e.reply == Kept::Stored((at + HEADER) as u32) => Some(i),
            _ => None,
        }
    }

    fn block_len(&self, at: usize) -> usize {
        HEADER + u16::from_be_bytes([self.arena[at + 2], self.arena[at + 3]]) as usize
    }

    /// Slides the live replies to the front so that `need` bytes fit at the end:
    /// replies of expired or forgotten entries go, and the oldest evictable replies go
    /// (with their entries) while room is still short.
    fn compact(&mut self, now: Instant, need: usize, room: usize) {
        self.sweep(now);
        // Evictable bytes to give up so that the rest and `need` fit: plain ones first,
        // oldest first, then sticky ones.
        let (mut plain, mut sticky) = (0, 0);
        let mut at = 0;
        while at < self.end {
            match self.owner(at).and_then(|i| self.entries[i].as_ref()) {
                Some(e) if e.protected => {}
                Some(e) if e.sticky => sticky += self.block_len(at),
                Some(_) => plain += self.block_len(at),
                None => {}
            }
            at += self.block_len(at);
        }
        // `room` is the storing entry's own reservation, which `need` uses.
        let committed = (self.protected_bytes + self.reserved).saturating_sub(room);
        let budget = REPLY_BYTES.saturating_sub(need + committed);
        // The oldest plain evictable replies go until half the arena is free (or `need`
        // fits, if more): the newer half stays, as duplicates come soon after their
        // original, while each compaction copies at most half the arena and comes at
        // most once per half arena of stores — O(1) copies per byte stored.
        let excess = (plain + sticky).saturating_sub(budget);
        let half = (plain + sticky + committed + need).saturating_sub(REPLY_BYTES / 2);
        let mut drop_plain = excess.max(half).min(plain);
        let mut drop_sticky = excess.saturating_sub(drop_plain);
        let (mut from, mut to) = (0, 0);
        while from < self.end {
            let len = self.block_len(from);
            if let Some(i) = self.owner(from) {
                let (protected, is_sticky) = match &self.entries[i] {
                    Some(e) => (e.protected, e.sticky),
                    None => (true, false),
                };
                let drop = match (protected, is_sticky) {
                    (true, _) => None,
                    (false, false) => Some(&mut drop_plain),
                    (false, true) => Some(&mut drop_sticky),
                };
                match drop {
                    Some(left) if *left > 0 => {
                        *left = left.saturating_sub(len);
                        self.forget(i);
                    }
                    _ => {
                        crate::shift::shift(&mut self.arena, from..from + len, to);
                        if let Some(Some(e)) = self.entries.get_mut(i) {
                            if let Kept::Stored(at) = &mut e.reply {
                                *at = (to + HEADER) as u32;
                            }
                        }
                        to += len;
                    }
                }
            }
            from += len;
        }
        self.end = to;
    }

    /// The stored reply of entry `i`, if it has one.
    pub fn stored(&self, i: usize) -> Option<&[u8]> {
        match self.reply(i) {
            Reply::Stored { at, len } => self.arena.get(at as usize..(at + len) as usize),
            _ => None,
        }
    }

    /// Whether entry `i` is protected.
    pub fn is_protected(&self, i: usize) -> bool {
        matches!(self.entries.get(i), Some(Some(e)) if e.protected)
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
        if self.pending_len == DEDUP_ENTRIES {
            // Only stale indices (of entries reused since they were marked) can fill
            // the ring beyond the pending entries, which number fewer than N here.
            self.compact_pending();
        }
        self.pending[(self.pending_head + self.pending_len) % DEDUP_ENTRIES] = i as u16;
        self.pending_len += 1;
    }

    /// Drops stale and repeated indices from the pending ring, keeping the order. Each
    /// kept entry's mark is cleared while it is kept, so a repeat is seen in O(1), and
    /// set again at the end: O(N) in all.
    fn compact_pending(&mut self) {
        let n = DEDUP_ENTRIES;
        let mut kept = 0;
        for k in 0..self.pending_len {
            let i = self.pending[(self.pending_head + k) % n];
            if let Some(Some(e)) = self.entries.get_mut(i as usize) {
                if e.pending {
                    e.pending = false;
                    self.pending[(self.pending_head + kept) % n] = i;
                    kept += 1;
                }
            }
        }
        for k in 0..kept {
            let i = self.pending[(self.pending_head + k) % n] as usize;
            if let Some(Some(e)) = self.entries.get_mut(i) {
                e.pending = true;
            }
        }
        self.pending_len = kept;
    }

    /// The oldest entry whose reply is owed, with its peer and message ID; clears the
    /// mark.
    pub fn take_pending(&mut self) -> Option<(usize, P, u16)> {
        while self.pending_len > 0 {
            let i = self.pending[self.pending_head] as usize;
            self.pending_head = (self.pending_head + 1) % DEDUP_ENTRIES;
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

    /// Live protected entries at `now`.
    pub fn protected(&self, now: Instant) -> usize {
        self.entries
            .iter()
            .flatten()
            .filter(|e| e.protected && e.expires > now)
            .count()
    }

    /// Live evictable entries given up for newer messages. Protected entries are never
    /// given up.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Checks the bookkeeping against the entries and the arena; panics on a mismatch.
    /// For tests and fuzzing.
    #[doc(hidden)]
    pub fn check(&self) {
        let (mut protected, mut reserved, mut bytes) = (0, 0, 0);
        for (i, e) in self.entries.iter().enumerate() {
            let Some(e) = e else { continue };
            assert!(
                self.by_mid.candidates(e.mid as u32).any(|j| j == i),
                "entry {i} not indexed"
            );
            if e.protected {
                protected += 1;
                reserved += e.reserved as usize;
                assert!(self.next_expiry <= e.expires, "sweep would miss entry {i}");
            } else {
                assert_eq!(e.reserved, 0);
            }
            if let Reply::Stored { at, len } = self.reply(i) {
                let at = at as usize;
                assert!(
                    at >= HEADER && at + len as usize <= self.end,
                    "reply {i} out of the arena"
                );
                assert_eq!(self.owner(at - HEADER), Some(i), "reply {i} not owned");
                if e.protected {
                    bytes += len as usize + HEADER;
                }
            }
        }
        assert_eq!(protected, self.protected, "protected count");
        assert_eq!(reserved, self.reserved, "reserved bytes");
        assert_eq!(bytes, self.protected_bytes, "protected bytes");
        assert!(
            self.protected_bytes + self.reserved <= REPLY_BYTES,
            "over-committed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFE: Duration = Duration::from_secs(247);

    fn t(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    #[test]
    fn full_cache_replaces_the_oldest_evictable_entry() {
        let mut c: DedupCache<u8, 2, 16> = DedupCache::new();
        c.insert(t(0), 1, 1, LIFE, Reply::EmptyAck).unwrap();
        c.insert(t(1), 1, 2, LIFE, Reply::EmptyAck).unwrap();
        assert_eq!(c.evictions(), 0);
        c.insert(t(2), 1, 3, LIFE, Reply::EmptyAck).unwrap();
        assert_eq!(c.evictions(), 1);
        assert_eq!(c.find(t(3), 1, 1), None, "oldest entry was given up");
        assert!(c.find(t(3), 1, 2).is_some());
        assert!(c.find(t(3), 1, 3).is_some());
        // An expired entry is reused without counting as an eviction.
        c.insert(t(300), 1, 4, LIFE, Reply::Nothing).unwrap();
        assert_eq!(c.evictions(), 1);
        c.check();
    }

    #[test]
    fn protected_entries_are_never_evicted_and_refusal_says_until_when() {
        let mut c: DedupCache<u8, 3, 64> = DedupCache::new();
        let a = c
            .insert_protected(t(0), 1, 1, LIFE, Reply::Nothing, 10, 8)
            .unwrap();
        c.insert_protected(t(1), 2, 2, LIFE, Reply::Nothing, 10, 8)
            .unwrap();
        // Evictable traffic takes the one remaining entry, over and over.
        for mid in 10..20 {
            c.insert(t(2), 3, mid, LIFE, Reply::EmptyAck).unwrap();
        }
        assert!(c.find(t(3), 1, 1).is_some() && c.find(t(3), 2, 2).is_some());
        c.insert_protected(t(3), 3, 3, LIFE, Reply::Nothing, 10, 8)
            .unwrap();
        // Now every entry is protected: evictable and protected inserts are refused.
        assert_eq!(c.insert(t(4), 4, 4, LIFE, Reply::EmptyAck), None);
        assert_eq!(
            c.insert_protected(t(4), 4, 4, LIFE, Reply::Nothing, 10, 8),
            Err(DedupFull {
                retry_at: t(247),
                peer_over_share: false
            })
        );
        // At expiry the oldest place frees.
        assert!(
            c.insert_protected(t(247), 4, 4, LIFE, Reply::Nothing, 10, 8)
                .is_ok()
        );
        assert_eq!(c.find(t(247), 1, 1), None);
        assert_eq!(c.reply(a), Reply::Nothing);
        c.check();
    }

    #[test]
    fn reply_room_is_reserved_before_the_request_runs() {
        // 64 bytes: room for two replies of up to 28 bytes (plus 4-byte headers).
        let mut c: DedupCache<u8, 8, 64> = DedupCache::new();
        let a = c
            .insert_protected(t(0), 1, 1, LIFE, Reply::Nothing, 28, 8)
            .unwrap();
        let b = c
            .insert_protected(t(0), 1, 2, LIFE, Reply::Nothing, 28, 8)
            .unwrap();
        let full = c.insert_protected(t(0), 1, 3, LIFE, Reply::Nothing, 28, 8);
        assert_eq!(full.map_err(|e| e.retry_at), Err(t(247)));
        // Evictable replies cannot take the reserved room.
        let g = c.insert(t(0), 2, 9, LIFE, Reply::Nothing).unwrap();
        assert!(!c.store(t(0), g, &[9; 10]));
        assert_eq!(
            c.find(t(0), 2, 9),
            None,
            "a reply that could not stay takes its entry"
        );
        assert!(c.store(t(0), a, &[1; 28]));
        assert!(c.store(t(0), b, &[2; 5]));
        // b used less than it reserved: the rest is free again.
        let g = c.insert(t(0), 2, 10, LIFE, Reply::Nothing).unwrap();
        assert!(c.store(t(0), g, &[3; 10]));
        assert_eq!(c.stored(a), Some(&[1u8; 28][..]));
        assert_eq!(c.stored(b), Some(&[2u8; 5][..]));
        c.check();
    }

    #[test]
    fn compaction_keeps_protected_and_sticky_replies_and_drops_the_evictable() {
        let mut c: DedupCache<u8, 16, 100> = DedupCache::new();
        let p = c
            .insert_protected(t(0), 1, 1, LIFE, Reply::Nothing, 20, 8)
            .unwrap();
        let e1 = c.insert(t(0), 2, 2, LIFE, Reply::Nothing).unwrap();
        assert!(c.store(t(0), e1, &[2; 20]));
        assert!(c.store(t(0), p, &[1; 20]));
        let s = c.insert_sticky(t(0), 3, 3, LIFE, Reply::Nothing).unwrap();
        assert!(c.store(t(0), s, &[3; 20]));
        // 72 of 100 bytes used; 30 more need room: the evictable reply goes (and its
        // entry, so a duplicate runs again); protected and sticky ones stay.
        let e3 = c.insert(t(0), 2, 4, LIFE, Reply::Nothing).unwrap();
        assert!(c.store(t(0), e3, &[4; 26]));
        assert_eq!(c.find(t(0), 2, 2), None, "dropped with its reply");
        assert_eq!(c.stored(p), Some(&[1u8; 20][..]));
        assert_eq!(c.stored(s), Some(&[3u8; 20][..]));
        assert_eq!(c.stored(e3), Some(&[4u8; 26][..]));
        c.check();
        // Sticky replies go only when room is short without them.
        let big = c.insert(t(0), 5, 5, LIFE, Reply::Nothing).unwrap();
        assert!(c.store(t(0), big, &[5; 50]));
        assert_eq!(c.stored(s), None, "the sticky reply made room last");
        assert_eq!(c.stored(p), Some(&[1u8; 20][..]));
        c.check();
        // Once expired, the protected reply's bytes are reclaimed too.
        let late = c.insert(t(300), 2, 6, LIFE, Reply::Nothing).unwrap();
        assert!(c.store(t(300), late, &[6; 90]));
        assert_eq!(c.stored(late), Some(&[6u8; 90][..]));
        c.check();
    }

    #[test]
    fn one_peer_cannot_hold_more_than_its_share() {
        let mut c: DedupCache<u8, 8, 256> = DedupCache::new();
        for mid in 0..3 {
            c.insert_protected(t(0), 1, mid, LIFE, Reply::Nothing, 0, 3)
                .unwrap();
        }
        let refused = c.insert_protected(t(1), 1, 9, LIFE, Reply::Nothing, 0, 3);
        assert_eq!(refused.map_err(|e| e.peer_over_share), Err(true));
        assert!(
            c.insert_protected(t(1), 2, 9, LIFE, Reply::Nothing, 0, 3)
                .is_ok()
        );
        c.check();
    }

    #[test]
    fn a_reply_that_is_not_stored_gives_its_room_back() {
        let mut c: DedupCache<u8, 4, 40> = DedupCache::new();
        let a = c
            .insert_protected(t(0), 1, 1, LIFE, Reply::Pending(7), 30, 8)
            .unwrap();
        assert!(
            c.insert_protected(t(0), 1, 2, LIFE, Reply::Nothing, 30, 8)
                .is_err()
        );
        c.set_reply(a, Reply::EmptyAck); // answered separately
        assert!(
            c.insert_protected(t(0), 1, 2, LIFE, Reply::Nothing, 30, 8)
                .is_ok()
        );
        c.check();
    }

    #[test]
    fn pending_replies_come_out_in_order_once() {
        let mut c: DedupCache<u8, 3, 16> = DedupCache::new();
        let t0 = Instant::ZERO;
        let a = c.insert(t0, 1, 1, LIFE, Reply::EmptyAck).unwrap();
        let b = c.insert(t0, 1, 2, LIFE, Reply::EmptyAck).unwrap();
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
                let i = c
                    .insert(at, 1, 100 + round * 3 + mid, LIFE, Reply::EmptyAck)
                    .unwrap();
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
        c.insert(Instant::ZERO, 1, 7, LIFE, Reply::EmptyAck)
            .unwrap();
        assert!(c.find(Instant::ZERO, 2, 7).is_none());
    }
}
