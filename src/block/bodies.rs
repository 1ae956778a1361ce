//! A fixed table of bodies kept for one client exchange each, with one overflow policy
//! for every user: [`Block1Assembler`](super::Block1Assembler) (request bodies being
//! assembled) and [`KeptResponses`](super::KeptResponses) (response bodies being
//! fetched block by block).
//!
//! - A body is keyed by its peer and a key (a hash of the request's URI options and
//!   Request-Tag) and lives until `expires`, which only progress moves.
//! - A new body takes a free or expired place; when there is none, it evicts the body
//!   that would expire first (the stalest). Its client finds nothing on its next block
//!   and is told so (4.08), so it may start again.
//! - One peer may hold at most `share` places; over it a new body is refused with the
//!   time its earliest one expires (4.29).

use crate::Instant;

#[derive(Clone, Copy, Debug)]
pub(super) struct Place<P> {
    pub(super) peer: P,
    pub(super) key: u64,
    /// Bytes of the body in the place's buffer (assembled so far, or kept).
    pub(super) len: usize,
    pub(super) expires: Instant,
}

/// `BODIES` places of `BODY_BYTES` bytes each.
#[derive(Clone, Debug)]
pub(super) struct BodyTable<P, const BODIES: usize, const BODY_BYTES: usize> {
    pub(super) places: [Option<Place<P>>; BODIES],
    pub(super) bufs: [[u8; BODY_BYTES]; BODIES],
    pub(super) evictions: u64,
}

/// Why no place was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NoPlace {
    /// The peer holds its share until then.
    OverShare(Instant),
    /// The table has no places at all.
    Empty,
}

impl<P: Copy + Eq, const BODIES: usize, const BODY_BYTES: usize> BodyTable<P, BODIES, BODY_BYTES> {
    pub(super) const fn new() -> Self {
        BodyTable {
            places: [None; BODIES],
            bufs: [[0; BODY_BYTES]; BODIES],
            evictions: 0,
        }
    }

    /// The live place of `peer`'s body `key`.
    pub(super) fn find(&self, now: Instant, peer: P, key: u64) -> Option<usize> {
        self.places
            .iter()
            .position(|p| matches!(p, Some(p) if p.peer == peer && p.key == key && p.expires > now))
    }

    /// A place for a new body of `peer`: a free or expired one, else the stalest
    /// (evicted); refused when the peer holds `share` places already. The place is
    /// taken for `key` until `expires`, empty.
    pub(super) fn take(
        &mut self,
        now: Instant,
        peer: P,
        key: u64,
        expires: Instant,
        share: usize,
    ) -> Result<usize, NoPlace> {
        let mut mine = 0;
        let mut mine_first_expiry = Instant::MAX;
        let mut free = None;
        let mut stalest: Option<(Instant, usize)> = None;
        for (i, p) in self.places.iter().enumerate() {
            match p {
                Some(p) if p.expires > now => {
                    if p.peer == peer {
                        mine += 1;
                        mine_first_expiry = mine_first_expiry.min(p.expires);
                    }
                    if stalest.is_none_or(|(at, _)| p.expires < at) {
                        stalest = Some((p.expires, i));
                    }
                }
                _ => {
                    free.get_or_insert(i);
                }
            }
        }
        if mine >= share.max(1) {
            return Err(NoPlace::OverShare(mine_first_expiry));
        }
        let i = match (free, stalest) {
            (Some(i), _) => i,
            (None, Some((_, i))) => {
                self.evictions += 1;
                i
            }
            (None, None) => return Err(NoPlace::Empty),
        };
        self.places[i] = Some(Place {
            peer,
            key,
            len: 0,
            expires,
        });
        Ok(i)
    }

    /// Bodies kept, expired ones included until their place is reused.
    pub(super) fn in_use(&self) -> usize {
        self.places.iter().flatten().count()
    }
}
