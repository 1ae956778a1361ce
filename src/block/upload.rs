//! Sending a request body in Block1 blocks (RFC 7959 §2.2, §2.3, §2.5, §2.9).
//!
//! §2.5: blocks go in order from block 0. An atomic server answers each non-final block
//! with 2.31 Continue (§2.9.1) and the last one with the final response; a non-atomic
//! one may answer any 2.xx. A server may prefer a smaller block size, given in the
//! Block1 of its response: the client uses it from the next block on, recounting block
//! numbers from the byte offset reached. 4.08 Request Entity Incomplete (§2.9.2) and
//! 4.13 Request Entity Too Large (§2.9.3, with the acceptable size in Size1) end the
//! transfer.
//!
//! Two ways to feed it: [`Block1Upload::next_block`] slices a body held by the caller;
//! [`Block1Upload::next_offset`] and [`Block1Upload::send`] take one block at a time
//! from a caller that produces data on demand (e.g. reading flash).

use core::fmt;
use core::ops::Range;

use crate::wire::{Block, Code};

/// What the response to a block means for the transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadStep {
    /// The block was accepted: send the next one.
    Continue,
    /// The response to the last block arrived; it is the final response.
    Done,
}

/// Why a transfer ended early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UploadError {
    /// 4.13: the server will not take a body this large; `size1` is the most it
    /// accepts, `szx` the block size it suggests, when it said.
    TooLarge {
        /// The Size1 of the response.
        size1: Option<u32>,
        /// The SZX of the response's Block1, a hint to retry with smaller blocks.
        szx: Option<u8>,
    },
    /// 4.08: the server is missing blocks (it may have timed out).
    Incomplete,
    /// Another error code answered a block before the last.
    Rejected(Code),
    /// The response acknowledged a different block than the one sent.
    UnexpectedBlock1,
    /// A response arrived with no block in flight, or after the end.
    NotInFlight,
    /// A block before the last must have exactly the block size (§2.3).
    WrongBlockLength,
    /// The body needs more blocks than Block1 can number.
    TooManyBlocks,
}

impl fmt::Display for UploadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadError::TooLarge { size1: Some(n), .. } => {
                write!(f, "4.13: the server accepts at most {n} bytes")
            }
            UploadError::TooLarge { .. } => {
                f.write_str("4.13: the body is too large for the server")
            }
            UploadError::Incomplete => f.write_str("4.08: the server is missing blocks"),
            UploadError::Rejected(c) => write!(f, "a block was answered {c}"),
            UploadError::UnexpectedBlock1 => {
                f.write_str("the response acknowledged another block than the one sent")
            }
            UploadError::NotInFlight => f.write_str("no block is waiting for a response"),
            UploadError::WrongBlockLength => {
                f.write_str("a block before the last must have exactly the block size")
            }
            UploadError::TooManyBlocks => {
                f.write_str("the body has more blocks than Block1 can number")
            }
        }
    }
}

impl core::error::Error for UploadError {}

/// The client side of a Block1 transfer.
///
/// ```
/// use coap_proto::block::{Block1Upload, UploadStep};
/// use coap_proto::wire::{Block, Code};
/// let body = [7u8; 300];
/// let mut up = Block1Upload::new(6);
/// let (b, range) = up.next_block(body.len()).unwrap();
/// assert_eq!((b, range), (Block::new(0, false, 6).unwrap(), 0..300)); // fits in one
/// let mut up = Block1Upload::new(4); // 256-byte blocks
/// let (b, r) = up.next_block(body.len()).unwrap();
/// assert_eq!((b.num(), b.more(), r), (0, true, 0..256));
/// assert_eq!(up.on_response(Code::CONTINUE, Some(b), None), Ok(UploadStep::Continue));
/// let (b, r) = up.next_block(body.len()).unwrap();
/// assert_eq!((b.num(), b.more(), r), (1, false, 256..300));
/// assert_eq!(up.on_response(Code::CHANGED, Some(b), None), Ok(UploadStep::Done));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block1Upload {
    szx: u8,
    offset: usize,
    /// The block sent and not yet answered.
    in_flight: Option<Block>,
    in_flight_len: usize,
    done: bool,
}

impl Block1Upload {
    /// An upload in blocks of `2^(szx + 4)` bytes (at most 1024).
    pub fn new(szx: u8) -> Block1Upload {
        Block1Upload {
            szx: szx.min(Block::MAX_SZX),
            offset: 0,
            in_flight: None,
            in_flight_len: 0,
            done: false,
        }
    }

    /// The block size now in use.
    pub fn block_size(&self) -> usize {
        16 << self.szx
    }

    /// Bytes acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.offset
    }

    /// Whether the final response arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next block of a `body_len`-byte body held by the caller, and the bytes it
    /// carries; `None` when a block is in flight or the transfer is over.
    pub fn next_block(&mut self, body_len: usize) -> Option<(Block, Range<usize>)> {
        let (offset, max) = self.next_offset()?;
        let end = body_len.min(offset + max);
        let more = end < body_len;
        let block = self.send(end.saturating_sub(offset), more).ok()?;
        Some((block, offset..end))
    }

    /// Where the next block starts and how long it may be; `None` when a block is in
    /// flight or the transfer is over.
    pub fn next_offset(&self) -> Option<(usize, usize)> {
        (!self.done && self.in_flight.is_none()).then(|| (self.offset, self.block_size()))
    }

    /// Records that the next block, of `len` bytes, is being sent, `more` telling
    /// whether others follow; returns its Block1 option.
    pub fn send(&mut self, len: usize, more: bool) -> Result<Block, UploadError> {
        if self.done || self.in_flight.is_some() {
            return Err(UploadError::NotInFlight);
        }
        if more && len != self.block_size() || len > self.block_size() {
            return Err(UploadError::WrongBlockLength);
        }
        let num =
            u32::try_from(self.offset >> (self.szx + 4)).map_err(|_| UploadError::TooManyBlocks)?;
        let block = Block::new(num, more, self.szx).ok_or(UploadError::TooManyBlocks)?;
        self.in_flight = Some(block);
        self.in_flight_len = len;
        Ok(block)
    }

    /// Takes in the response to the block in flight: its code, Block1 and Size1.
    pub fn on_response(
        &mut self,
        code: Code,
        block1: Option<Block>,
        size1: Option<u32>,
    ) -> Result<UploadStep, UploadError> {
        let Some(sent) = self.in_flight.take() else {
            return Err(UploadError::NotInFlight);
        };
        if code == Code::REQUEST_ENTITY_TOO_LARGE {
            self.done = true;
            return Err(UploadError::TooLarge {
                size1,
                szx: block1.map(|b| b.szx()),
            });
        }
        if code == Code::REQUEST_ENTITY_INCOMPLETE {
            self.done = true;
            return Err(UploadError::Incomplete);
        }
        if !sent.more() {
            // Whatever answers the last block is the final response.
            self.done = true;
            return Ok(UploadStep::Done);
        }
        if !code.is_success() {
            self.done = true;
            return Err(UploadError::Rejected(code));
        }
        if let Some(ack) = block1 {
            // The server acknowledges our block (counted in our size) and may ask for
            // smaller blocks from now on (§2.5).
            if ack.offset() != sent.offset() && ack.num() != sent.num() {
                self.done = true;
                return Err(UploadError::UnexpectedBlock1);
            }
            self.szx = self.szx.min(ack.szx());
        }
        self.offset += self.in_flight_len;
        Ok(UploadStep::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaller_server_size_is_adopted_and_numbers_recounted() {
        // RFC 7959 Figure 9 pattern: 128-byte first block, server prefers 32.
        let mut up = Block1Upload::new(3);
        let (b, r) = up.next_block(300).unwrap();
        assert_eq!((b.num(), b.size(), r), (0, 128, 0..128));
        let ack = Block::new(0, true, 1).unwrap();
        assert_eq!(
            up.on_response(Code::CONTINUE, Some(ack), None),
            Ok(UploadStep::Continue)
        );
        let (b, r) = up.next_block(300).unwrap();
        assert_eq!((b.num(), b.size(), r), (4, 32, 128..160));
    }

    #[test]
    fn errors_end_the_transfer() {
        let mut up = Block1Upload::new(2);
        up.next_block(1000).unwrap();
        assert_eq!(
            up.on_response(
                Code::REQUEST_ENTITY_TOO_LARGE,
                Block::new(0, false, 1),
                Some(500)
            ),
            Err(UploadError::TooLarge {
                size1: Some(500),
                szx: Some(1)
            })
        );
        assert!(up.next_block(1000).is_none());
        let mut up = Block1Upload::new(2);
        up.next_block(1000).unwrap();
        assert_eq!(
            up.on_response(Code::REQUEST_ENTITY_INCOMPLETE, None, None),
            Err(UploadError::Incomplete)
        );
        let mut up = Block1Upload::new(2);
        up.next_block(1000).unwrap();
        assert_eq!(
            up.on_response(Code::NOT_FOUND, None, None),
            Err(UploadError::Rejected(Code::NOT_FOUND))
        );
    }

    #[test]
    fn block_by_block_feeding() {
        let mut up = Block1Upload::new(0);
        assert_eq!(up.next_offset(), Some((0, 16)));
        assert_eq!(up.send(15, true), Err(UploadError::WrongBlockLength));
        let b = up.send(16, true).unwrap();
        assert_eq!(up.next_offset(), None, "one block in flight at a time");
        up.on_response(Code::CONTINUE, Some(b), None).unwrap();
        assert_eq!(up.next_offset(), Some((16, 16)));
        let b = up.send(3, false).unwrap();
        assert_eq!((b.num(), b.more()), (1, false));
        assert_eq!(
            up.on_response(Code::CREATED, None, None),
            Ok(UploadStep::Done)
        );
        assert_eq!(
            up.on_response(Code::CREATED, None, None),
            Err(UploadError::NotInFlight)
        );
    }

    #[test]
    fn acknowledgement_of_another_block_is_an_error() {
        let mut up = Block1Upload::new(2);
        up.next_block(1000).unwrap();
        let wrong = Block::new(3, true, 2);
        assert_eq!(
            up.on_response(Code::CONTINUE, wrong, None),
            Err(UploadError::UnexpectedBlock1)
        );
    }

    #[test]
    fn empty_body_is_one_empty_last_block() {
        let mut up = Block1Upload::new(6);
        let (b, r) = up.next_block(0).unwrap();
        assert_eq!((b.num(), b.more(), r), (0, false, 0..0));
    }
}
