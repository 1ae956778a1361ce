//! Collecting the Block1 blocks of request bodies on a server (RFC 7959 §2.3, §2.5,
//! §2.9; RFC 9175 §3).
//!
//! §2.5: an atomic server acts on the body when the last block arrives; it answers the
//! others with 2.31 Continue echoing their Block1 (M set: atomic). A block that is not
//! next in sequence, or a last block without all the earlier ones, gets 4.08 Request
//! Entity Incomplete. A body larger than the server can keep gets 4.13 Request Entity
//! Too Large with the acceptable size in Size1. Block 0 starts a new body, replacing any
//! older one from the same client for the same resource. RFC 9175 §3: the Request-Tag
//! option tells concurrent bodies for one resource apart, so it is part of the key.
//!
//! Capacity: `BODIES` bodies in assembly at once, each at most `BODY_BYTES` bytes, all
//! inline. The overflow policy (§2.5 allows a server to drop partial bodies; the client
//! then gets 4.08 and may start again):
//! - A partial body that has made no progress for the idle time given with each block
//!   is dropped. Only a block that adds to the body counts as progress: repeating an
//!   old block is answered again but does not keep the body alive.
//! - When every place is taken, block 0 of a new body evicts the partial body that has
//!   been idle longest ([`Block1Assembler::evictions`]); new uploads are never refused
//!   for want of room.
//! - One peer may hold at most a given share of the places; over it, its block 0 is
//!   refused with [`AssembleError::TooMany`] (4.29 Too Many Requests, RFC 8516), which
//!   says when its stalest body idles out.

use core::fmt;
use core::time::Duration;

use super::bodies::{BodyTable, NoPlace};
use crate::Instant;
use crate::wire::{Block, Message, OptionNumber};

/// What a block led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled<'a> {
    /// More blocks are expected: answer 2.31 Continue with this Block1.
    Continue(Block),
    /// The last block arrived: the whole body, ready for the handler.
    Complete(&'a [u8]),
}

/// Why a block was refused, with the response code it calls for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AssembleError {
    /// 4.08 Request Entity Incomplete: out of sequence, or no body started.
    Incomplete,
    /// 4.13 Request Entity Too Large: at most `max` bytes fit (send it as Size1).
    TooLarge {
        /// The largest body this assembler keeps.
        max: u32,
    },
    /// 4.00 Bad Request: a block before the last was not of the block size (§2.3).
    BadBlock,
    /// The peer already holds its share of assemblies: 4.29 Too Many Requests
    /// (RFC 8516) with Max-Age until `retry_at`, when its stalest one idles out.
    TooMany {
        /// When one of the peer's assemblies is dropped at the latest.
        retry_at: Instant,
    },
}

impl fmt::Display for AssembleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssembleError::Incomplete => f.write_str("block out of sequence or body not started"),
            AssembleError::TooLarge { max } => write!(f, "bodies of at most {max} bytes are kept"),
            AssembleError::BadBlock => {
                f.write_str("a block before the last is not of the block size")
            }
            AssembleError::TooMany { retry_at } => {
                write!(f, "the peer holds its share of assemblies until {retry_at}")
            }
        }
    }
}

impl core::error::Error for AssembleError {}

/// Bodies being assembled from Block1 blocks: `BODIES` at once, `BODY_BYTES` bytes each.
///
/// ```
/// use coap_proto::block::{Assembled, Block1Assembler};
/// use coap_proto::wire::Block;
/// use coap_proto::Instant;
/// use core::time::Duration;
/// let mut a: Block1Assembler<u8, 2, 64> = Block1Assembler::new();
/// let idle = Duration::from_secs(93);
/// let b0 = Block::new(0, true, 0).unwrap();
/// assert_eq!(a.on_block(Instant::ZERO, 1, 42, b0, None, &[1; 16], idle, 1), Ok(Assembled::Continue(b0)));
/// let b1 = Block::new(1, false, 0).unwrap();
/// assert_eq!(a.on_block(Instant::ZERO, 1, 42, b1, None, &[2; 3], idle, 1).unwrap(),
///            Assembled::Complete(&[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2][..]));
/// ```
#[derive(Clone, Debug)]
pub struct Block1Assembler<P, const BODIES: usize, const BODY_BYTES: usize> {
    table: BodyTable<P, BODIES, BODY_BYTES>,
}

impl<P: Copy + Eq, const BODIES: usize, const BODY_BYTES: usize> Default
    for Block1Assembler<P, BODIES, BODY_BYTES>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Copy + Eq, const BODIES: usize, const BODY_BYTES: usize>
    Block1Assembler<P, BODIES, BODY_BYTES>
{
    /// No bodies in assembly.
    pub const fn new() -> Self {
        Block1Assembler {
            table: BodyTable::new(),
        }
    }

    /// Bodies in assembly (idle ones included until they are reused).
    pub fn in_progress(&self) -> usize {
        self.table.in_use()
    }

    /// Partial bodies dropped to make room for a new one before they idled out.
    pub fn evictions(&self) -> u64 {
        self.table.evictions
    }

    /// Takes in one block of the body `key` (see [`block1_key`]) from `peer`: its
    /// Block1, the request's Size1, and its payload. A partial body is dropped after
    /// `idle` without progress; `peer_share` is the most bodies one peer may have in
    /// assembly at once.
    #[allow(clippy::too_many_arguments)]
    pub fn on_block(
        &mut self,
        now: Instant,
        peer: P,
        key: u64,
        block: Block,
        size1: Option<u32>,
        payload: &[u8],
        idle: Duration,
        peer_share: usize,
    ) -> Result<Assembled<'_>, AssembleError> {
        if block.more() && payload.len() != block.size() || payload.len() > block.size() {
            return Err(AssembleError::BadBlock);
        }
        let max = u32::try_from(BODY_BYTES).unwrap_or(u32::MAX);
        let found = self.table.find(now, peer, key);
        let offset = block.offset();
        let index = if offset == 0 {
            if size1.is_some_and(|n| n > max) {
                if let Some(i) = found {
                    self.table.places[i] = None;
                }
                return Err(AssembleError::TooLarge { max });
            }
            // Block 0 (re)starts the body.
            if let Some(i) = found {
                self.table.places[i] = None;
            }
            match self.table.take(now, peer, key, now + idle, peer_share) {
                Ok(i) => i,
                Err(NoPlace::OverShare(retry_at)) => {
                    return Err(AssembleError::TooMany { retry_at });
                }
                Err(NoPlace::Empty) => return Err(AssembleError::TooLarge { max: 0 }),
            }
        } else {
            found.ok_or(AssembleError::Incomplete)?
        };
        let Some(Some(a)) = self.table.places.get_mut(index) else {
            return Err(AssembleError::Incomplete);
        };
        let end = offset + payload.len();
        if offset != a.len {
            if end == a.len && offset < a.len {
                // The previous block again (a retry with a new message ID): already
                // taken, acknowledged again — but it is no progress, so it does not
                // keep the body alive.
                return Ok(Assembled::Continue(block));
            }
            return Err(AssembleError::Incomplete);
        }
        if end > BODY_BYTES {
            self.table.places[index] = None;
            return Err(AssembleError::TooLarge { max });
        }
        self.table.bufs[index][offset..end].copy_from_slice(payload);
        a.len = end;
        a.expires = now + idle;
        if block.more() {
            return Ok(Assembled::Continue(block));
        }
        self.table.places[index] = None;
        Ok(Assembled::Complete(&self.table.bufs[index][..end]))
    }
}

/// The key of a request body: a hash of the options that name the resource (Uri-Host,
/// Uri-Port, Uri-Path, Uri-Query) and of its Request-Tag (RFC 9175 §3.3), so that blocks
/// of one body share it and concurrent bodies for one resource do not.
pub fn block1_key(msg: &Message<'_>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    for o in msg.options() {
        if matches!(
            o.number,
            OptionNumber::URI_HOST
                | OptionNumber::URI_PORT
                | OptionNumber::URI_PATH
                | OptionNumber::URI_QUERY
                | OptionNumber::REQUEST_TAG
        ) {
            o.number.0.to_be_bytes().into_iter().for_each(&mut eat);
            (o.value.len() as u16)
                .to_be_bytes()
                .into_iter()
                .for_each(&mut eat);
            o.value.iter().copied().for_each(&mut eat);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(93);

    fn blk(num: u32, more: bool, szx: u8) -> Block {
        Block::new(num, more, szx).unwrap()
    }

    type A = Block1Assembler<u8, 2, 64>;

    #[test]
    fn blocks_in_order_assemble_the_body() {
        let mut a = A::new();
        let t = Instant::ZERO;
        assert!(matches!(
            a.on_block(t, 1, 9, blk(0, true, 0), None, &[1; 16], IDLE, 2),
            Ok(Assembled::Continue(_))
        ));
        assert!(matches!(
            a.on_block(t, 1, 9, blk(1, true, 0), None, &[2; 16], IDLE, 2),
            Ok(Assembled::Continue(_))
        ));
        match a.on_block(t, 1, 9, blk(2, false, 0), None, &[3; 5], IDLE, 2) {
            Ok(Assembled::Complete(body)) => {
                assert_eq!(body.len(), 37);
                assert_eq!((body[0], body[16], body[36]), (1, 2, 3));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.in_progress(), 0);
    }

    #[test]
    fn missing_or_out_of_order_blocks_get_4_08() {
        let mut a = A::new();
        let t = Instant::ZERO;
        assert_eq!(
            a.on_block(t, 1, 9, blk(1, true, 0), None, &[0; 16], IDLE, 2),
            Err(AssembleError::Incomplete)
        );
        a.on_block(t, 1, 9, blk(0, true, 0), None, &[0; 16], IDLE, 2)
            .unwrap();
        assert_eq!(
            a.on_block(t, 1, 9, blk(2, false, 0), None, &[0; 1], IDLE, 2),
            Err(AssembleError::Incomplete)
        );
        // The assembly survives: the right block still fits.
        assert!(
            a.on_block(t, 1, 9, blk(1, false, 0), None, &[0; 1], IDLE, 2)
                .is_ok()
        );
    }

    #[test]
    fn repeated_previous_block_is_acknowledged_not_appended() {
        let mut a = A::new();
        let t = Instant::ZERO;
        a.on_block(t, 1, 9, blk(0, true, 0), None, &[1; 16], IDLE, 2)
            .unwrap();
        assert!(matches!(
            a.on_block(t, 1, 9, blk(0, true, 0), None, &[1; 16], IDLE, 2),
            Ok(Assembled::Continue(_))
        ));
        match a.on_block(t, 1, 9, blk(1, false, 0), None, &[2; 1], IDLE, 2) {
            Ok(Assembled::Complete(body)) => assert_eq!(body.len(), 17),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn body_over_capacity_gets_4_13() {
        let mut a = A::new();
        let t = Instant::ZERO;
        assert_eq!(
            a.on_block(t, 1, 9, blk(0, true, 2), Some(65), &[0; 64], IDLE, 2),
            Err(AssembleError::TooLarge { max: 64 })
        );
        a.on_block(t, 1, 9, blk(0, true, 2), None, &[0; 64], IDLE, 2)
            .unwrap();
        assert_eq!(
            a.on_block(t, 1, 9, blk(1, false, 2), None, &[0; 1], IDLE, 2),
            Err(AssembleError::TooLarge { max: 64 })
        );
        assert_eq!(a.in_progress(), 0);
    }

    #[test]
    fn full_assembler_evicts_the_stalest_body_for_a_new_one() {
        let mut a = A::new();
        let s = Instant::from_secs;
        a.on_block(s(0), 1, 9, blk(0, true, 0), None, &[0; 16], IDLE, 2)
            .unwrap();
        a.on_block(s(1), 2, 9, blk(0, true, 0), None, &[0; 16], IDLE, 2)
            .unwrap();
        // Peer 1's body makes progress at 5 s: peer 2's is now the stalest.
        a.on_block(s(5), 1, 9, blk(1, true, 0), None, &[0; 16], IDLE, 2)
            .unwrap();
        assert!(
            a.on_block(s(6), 3, 9, blk(0, true, 0), None, &[0; 16], IDLE, 2)
                .is_ok()
        );
        assert_eq!(a.evictions(), 1);
        assert_eq!(
            a.on_block(s(7), 2, 9, blk(1, true, 0), None, &[0; 16], IDLE, 2),
            Err(AssembleError::Incomplete),
            "the evicted client gets 4.08 and may start again"
        );
        assert!(
            a.on_block(s(7), 1, 9, blk(2, true, 0), None, &[0; 16], IDLE, 2)
                .is_ok()
        );
    }

    #[test]
    fn idle_bodies_are_dropped_and_repeats_do_not_keep_them_alive() {
        let mut a = A::new();
        let s = Instant::from_secs;
        let mut feed = |at, num, key| {
            a.on_block(s(at), 1, key, blk(num, true, 0), None, &[0; 16], IDLE, 2)
                .is_ok()
        };
        assert!(feed(0, 0, 9) && feed(0, 1, 9));
        // Block 1 again and again: acknowledged, but no progress. (Block 0 again would
        // start the body anew.)
        for k in 1..=92 {
            assert!(feed(k, 1, 9));
        }
        assert!(!feed(93, 2, 9), "idle since 0 s: dropped at 93 s");
        // A fresh body for another key is not held back by the idle one.
        assert!(feed(93, 0, 8));
        assert_eq!(a.evictions(), 0, "idle bodies are reused, not evicted");
    }

    #[test]
    fn one_peer_gets_too_many_over_its_share_with_the_time_it_frees() {
        let mut a: Block1Assembler<u8, 4, 64> = Block1Assembler::new();
        let s = Instant::from_secs;
        a.on_block(s(0), 1, 1, blk(0, true, 0), None, &[0; 16], IDLE, 2)
            .unwrap();
        a.on_block(s(3), 1, 2, blk(0, true, 0), None, &[0; 16], IDLE, 2)
            .unwrap();
        assert_eq!(
            a.on_block(s(4), 1, 3, blk(0, true, 0), None, &[0; 16], IDLE, 2),
            Err(AssembleError::TooMany { retry_at: s(93) })
        );
        assert!(
            a.on_block(s(4), 2, 3, blk(0, true, 0), None, &[0; 16], IDLE, 2)
                .is_ok()
        );
        // Restarting one of its own bodies is not a new one.
        assert!(
            a.on_block(s(4), 1, 2, blk(0, true, 0), None, &[0; 16], IDLE, 2)
                .is_ok()
        );
    }

    #[test]
    fn short_intermediate_block_is_a_bad_request() {
        let mut a = A::new();
        assert_eq!(
            a.on_block(
                Instant::ZERO,
                1,
                9,
                blk(0, true, 0),
                None,
                &[0; 15],
                IDLE,
                2
            ),
            Err(AssembleError::BadBlock)
        );
    }
}
