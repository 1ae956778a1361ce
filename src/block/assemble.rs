//! Collecting the Block1 blocks of request bodies on a server (RFC 7959 §2.3, §2.5,
//! §2.9; RFC 9175 §3).
//!
//! §2.5: an atomic server acts on the body when the last block arrives; it answers the
//! others with 2.31 Continue echoing their Block1 (M set: atomic). A block that is not
//! next in sequence, or a last block without all the earlier ones, gets 4.08 Request
//! Entity Incomplete. A body larger than the server can keep gets 4.13 Request Entity
//! Too Large with the acceptable size in Size1. Block 0 starts a new body, replacing any
//! older one from the same client for the same resource. Partial bodies may be dropped
//! EXCHANGE_LIFETIME after their last block. RFC 9175 §3: the Request-Tag option tells
//! concurrent bodies for one resource apart, so it is part of the key.
//!
//! Capacity: `N` bodies in assembly at once, each at most `CAP` bytes, all inline.

use core::fmt;
use core::time::Duration;

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
    /// Every assembly is in use: 5.03 Service Unavailable (or 4.13, §2.5).
    Busy,
}

impl fmt::Display for AssembleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssembleError::Incomplete => f.write_str("block out of sequence or body not started"),
            AssembleError::TooLarge { max } => write!(f, "bodies of at most {max} bytes are kept"),
            AssembleError::BadBlock => {
                f.write_str("a block before the last is not of the block size")
            }
            AssembleError::Busy => f.write_str("every assembly slot is in use"),
        }
    }
}

impl core::error::Error for AssembleError {}

#[derive(Clone, Copy, Debug)]
struct Assembly<P> {
    peer: P,
    key: u64,
    next: usize,
    expires: Instant,
}

/// Bodies being assembled from Block1 blocks: `N` at once, `CAP` bytes each.
///
/// ```
/// use coap_proto::block::{Assembled, Block1Assembler};
/// use coap_proto::wire::Block;
/// use coap_proto::Instant;
/// use core::time::Duration;
/// let mut a: Block1Assembler<u8, 2, 64> = Block1Assembler::new();
/// let life = Duration::from_secs(247);
/// let b0 = Block::new(0, true, 0).unwrap();
/// assert_eq!(a.on_block(Instant::ZERO, 1, 42, b0, None, &[1; 16], life), Ok(Assembled::Continue(b0)));
/// let b1 = Block::new(1, false, 0).unwrap();
/// assert_eq!(a.on_block(Instant::ZERO, 1, 42, b1, None, &[2; 3], life).unwrap(),
///            Assembled::Complete(&[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2][..]));
/// ```
#[derive(Clone, Debug)]
pub struct Block1Assembler<P, const N: usize, const CAP: usize> {
    slots: [Option<Assembly<P>>; N],
    bufs: [[u8; CAP]; N],
}

impl<P: Copy + Eq, const N: usize, const CAP: usize> Default for Block1Assembler<P, N, CAP> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Copy + Eq, const N: usize, const CAP: usize> Block1Assembler<P, N, CAP> {
    /// No bodies in assembly.
    pub const fn new() -> Self {
        Block1Assembler {
            slots: [None; N],
            bufs: [[0; CAP]; N],
        }
    }

    /// Bodies in assembly (expired ones included until reused).
    pub fn in_progress(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Takes in one block of the body `key` (see [`block1_key`]) from `peer`: its
    /// Block1, the request's Size1, and its payload. `lifetime` is how long a partial
    /// body is kept after this block (EXCHANGE_LIFETIME).
    #[allow(clippy::too_many_arguments)]
    pub fn on_block(
        &mut self,
        now: Instant,
        peer: P,
        key: u64,
        block: Block,
        size1: Option<u32>,
        payload: &[u8],
        lifetime: Duration,
    ) -> Result<Assembled<'_>, AssembleError> {
        if block.more() && payload.len() != block.size() || payload.len() > block.size() {
            return Err(AssembleError::BadBlock);
        }
        let max = u32::try_from(CAP).unwrap_or(u32::MAX);
        let found = self.slots.iter().position(
            |s| matches!(s, Some(a) if a.peer == peer && a.key == key && a.expires > now),
        );
        let offset = block.offset();
        let index = if offset == 0 {
            if size1.is_some_and(|n| n > max) {
                if let Some(i) = found {
                    self.slots[i] = None;
                }
                return Err(AssembleError::TooLarge { max });
            }
            // Block 0 (re)starts the body.
            let free = found.or_else(|| {
                self.slots
                    .iter()
                    .position(|s| s.as_ref().is_none_or(|a| a.expires <= now))
            });
            let Some(i) = free else {
                return Err(AssembleError::Busy);
            };
            self.slots[i] = Some(Assembly {
                peer,
                key,
                next: 0,
                expires: now + lifetime,
            });
            i
        } else {
            found.ok_or(AssembleError::Incomplete)?
        };
        let Some(Some(a)) = self.slots.get_mut(index) else {
            return Err(AssembleError::Incomplete);
        };
        let end = offset + payload.len();
        if offset != a.next {
            if end == a.next && offset < a.next {
                // The previous block again (a retry with a new message ID): already
                // taken, acknowledge it again.
                a.expires = now + lifetime;
                return Ok(Assembled::Continue(block));
            }
            return Err(AssembleError::Incomplete);
        }
        if end > CAP {
            self.slots[index] = None;
            return Err(AssembleError::TooLarge { max });
        }
        self.bufs[index][offset..end].copy_from_slice(payload);
        a.next = end;
        a.expires = now + lifetime;
        if block.more() {
            return Ok(Assembled::Continue(block));
        }
        self.slots[index] = None;
        Ok(Assembled::Complete(&self.bufs[index][..end]))
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

    const LIFE: Duration = Duration::from_secs(247);

    fn blk(num: u32, more: bool, szx: u8) -> Block {
        Block::new(num, more, szx).unwrap()
    }

    type A = Block1Assembler<u8, 2, 64>;

    #[test]
    fn blocks_in_order_assemble_the_body() {
        let mut a = A::new();
        let t = Instant::ZERO;
        assert!(matches!(
            a.on_block(t, 1, 9, blk(0, true, 0), None, &[1; 16], LIFE),
            Ok(Assembled::Continue(_))
        ));
        assert!(matches!(
            a.on_block(t, 1, 9, blk(1, true, 0), None, &[2; 16], LIFE),
            Ok(Assembled::Continue(_))
        ));
        match a.on_block(t, 1, 9, blk(2, false, 0), None, &[3; 5], LIFE) {
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
            a.on_block(t, 1, 9, blk(1, true, 0), None, &[0; 16], LIFE),
            Err(AssembleError::Incomplete)
        );
        a.on_block(t, 1, 9, blk(0, true, 0), None, &[0; 16], LIFE)
            .unwrap();
        assert_eq!(
            a.on_block(t, 1, 9, blk(2, false, 0), None, &[0; 1], LIFE),
            Err(AssembleError::Incomplete)
        );
        // The assembly survives: the right block still fits.
        assert!(
            a.on_block(t, 1, 9, blk(1, false, 0), None, &[0; 1], LIFE)
                .is_ok()
        );
    }

    #[test]
    fn repeated_previous_block_is_acknowledged_not_appended() {
        let mut a = A::new();
        let t = Instant::ZERO;
        a.on_block(t, 1, 9, blk(0, true, 0), None, &[1; 16], LIFE)
            .unwrap();
        assert!(matches!(
            a.on_block(t, 1, 9, blk(0, true, 0), None, &[1; 16], LIFE),
            Ok(Assembled::Continue(_))
        ));
        match a.on_block(t, 1, 9, blk(1, false, 0), None, &[2; 1], LIFE) {
            Ok(Assembled::Complete(body)) => assert_eq!(body.len(), 17),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn body_over_capacity_gets_4_13() {
        let mut a = A::new();
        let t = Instant::ZERO;
        assert_eq!(
            a.on_block(t, 1, 9, blk(0, true, 2), Some(65), &[0; 64], LIFE),
            Err(AssembleError::TooLarge { max: 64 })
        );
        a.on_block(t, 1, 9, blk(0, true, 2), None, &[0; 64], LIFE)
            .unwrap();
        assert_eq!(
            a.on_block(t, 1, 9, blk(1, false, 2), None, &[0; 1], LIFE),
            Err(AssembleError::TooLarge { max: 64 })
        );
        assert_eq!(a.in_progress(), 0);
    }

    #[test]
    fn peers_keys_and_capacity_are_respected_and_stale_bodies_dropped() {
        let mut a = A::new();
        let t = Instant::ZERO;
        a.on_block(t, 1, 9, blk(0, true, 0), None, &[0; 16], LIFE)
            .unwrap();
        a.on_block(t, 2, 9, blk(0, true, 0), None, &[0; 16], LIFE)
            .unwrap();
        assert_eq!(
            a.on_block(t, 3, 9, blk(0, true, 0), None, &[0; 16], LIFE),
            Err(AssembleError::Busy)
        );
        assert_eq!(
            a.on_block(t, 1, 8, blk(1, true, 0), None, &[0; 16], LIFE),
            Err(AssembleError::Incomplete)
        );
        // After EXCHANGE_LIFETIME the slots are free again.
        let later = t + LIFE;
        assert!(
            a.on_block(later, 3, 9, blk(0, true, 0), None, &[0; 16], LIFE)
                .is_ok()
        );
        assert_eq!(
            a.on_block(later, 1, 9, blk(1, true, 0), None, &[0; 16], LIFE),
            Err(AssembleError::Incomplete)
        );
    }

    #[test]
    fn short_intermediate_block_is_a_bad_request() {
        let mut a = A::new();
        assert_eq!(
            a.on_block(Instant::ZERO, 1, 9, blk(0, true, 0), None, &[0; 15], LIFE),
            Err(AssembleError::BadBlock)
        );
    }
}
