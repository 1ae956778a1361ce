//! Serving a body in Block2 blocks, statelessly (RFC 7959 §2.2, §2.4, §4).
//!
//! §2.4: the server uses the block size the request asks for or a smaller one; once it
//! uses a smaller one, the block number is recounted in the smaller size (the request's
//! byte offset is kept). §2.3: every block but the last carries exactly the block size;
//! M tells whether more follow. §4: Size2 goes with a response when the request asked
//! (Size2 = 0) and, here, with every first block of a transfer. A request for a block
//! past the end of the body gets 4.02 Bad Option, as libcoap answers; RFC 7959 does not
//! say.

use core::fmt;
use core::ops::Range;

use crate::wire::Block;

/// The part of a body that answers a Block2 request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block2Slice {
    /// The Block2 option of the response.
    pub block: Block,
    /// The bytes of the body this block carries.
    pub range: Range<usize>,
    /// The Size2 option of the response, if one is to be sent.
    pub size2: Option<u32>,
}

/// Why a Block2 request cannot be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServeError {
    /// The block starts past the end of the body: answer 4.02 Bad Option.
    BeyondEnd,
    /// The body needs more than 2^20 blocks of the largest size: it cannot be sent
    /// block-wise at all (answer 4.13 or 5.00).
    BodyTooLarge,
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServeError::BeyondEnd => "the requested block starts past the end of the body",
            ServeError::BodyTooLarge => "the body has more blocks than Block2 can number",
        })
    }
}

impl core::error::Error for ServeError {}

/// The block of a `body_len`-byte body that answers a request carrying `requested`
/// (its Block2 option, if any) and `size2_requested` (Size2 = 0 in the request), when at
/// most blocks of `2^(max_szx + 4)` bytes fit the response.
///
/// `Ok(None)`: no Block2 is needed — the request had none and the body fits in one
/// block of the largest size.
///
/// ```
/// use coap_proto::block::serve_block2;
/// use coap_proto::wire::Block;
/// // Late negotiation: block 1 of 1024 bytes asked, 256-byte blocks served.
/// let s = serve_block2(Block::new(1, false, 6), false, 3000, 4).unwrap().unwrap();
/// assert_eq!((s.block.num(), s.block.size(), s.block.more()), (4, 256, true));
/// assert_eq!(s.range, 1024..1280);
/// ```
pub fn serve_block2(
    requested: Option<Block>,
    size2_requested: bool,
    body_len: usize,
    max_szx: u8,
) -> Result<Option<Block2Slice>, ServeError> {
    let max_szx = max_szx.min(Block::MAX_SZX);
    let (offset, szx) = match requested {
        None if body_len <= 16 << max_szx => return Ok(None),
        None => (0, max_szx),
        Some(b) => (b.offset(), b.szx().min(max_szx)),
    };
    let size = 16usize << szx;
    if offset >= body_len && !(offset == 0 && body_len == 0) {
        return Err(ServeError::BeyondEnd);
    }
    let end = body_len.min(offset + size);
    let more = end < body_len;
    let num = u32::try_from(offset / size).map_err(|_| ServeError::BodyTooLarge)?;
    let block = Block::new(num, more, szx).ok_or(ServeError::BodyTooLarge)?;
    let size2 = (size2_requested || num == 0).then(|| u32::try_from(body_len).unwrap_or(u32::MAX));
    Ok(Some(Block2Slice {
        block,
        range: offset..end,
        size2,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(num: u32, szx: u8) -> Option<Block> {
        Block::new(num, false, szx)
    }

    #[test]
    fn small_body_without_block2_needs_no_block() {
        assert_eq!(serve_block2(None, false, 1024, 6), Ok(None));
        assert_eq!(serve_block2(None, false, 0, 6), Ok(None));
    }

    #[test]
    fn large_body_without_block2_starts_at_block_zero_with_size2() {
        let s = serve_block2(None, false, 1025, 6).unwrap().unwrap();
        assert_eq!(
            (s.block, s.range, s.size2),
            (Block::new(0, true, 6).unwrap(), 0..1024, Some(1025))
        );
    }

    #[test]
    fn every_block_is_full_but_the_last() {
        for szx in 0..=6u8 {
            for len in [1usize, 15, 16, 17, 1023, 1024, 1025, 5000] {
                let size = 16 << szx;
                let mut served = 0;
                let mut num = 0;
                loop {
                    let s = serve_block2(b(num, szx), false, len, 6).unwrap().unwrap();
                    assert_eq!(s.range.start, served);
                    if s.block.more() {
                        assert_eq!(s.range.len(), size);
                    } else {
                        assert!(s.range.len() <= size && s.range.end == len);
                    }
                    served = s.range.end;
                    num += 1;
                    if !s.block.more() {
                        break;
                    }
                }
                assert_eq!(served, len);
            }
        }
    }

    #[test]
    fn smaller_server_size_recounts_the_block_number() {
        let s = serve_block2(b(2, 6), false, 10_000, 5).unwrap().unwrap();
        assert_eq!((s.block.num(), s.block.szx(), s.range), (4, 5, 2048..2560));
    }

    #[test]
    fn size2_when_asked_or_on_the_first_block() {
        assert_eq!(
            serve_block2(b(1, 4), false, 1000, 6)
                .unwrap()
                .unwrap()
                .size2,
            None
        );
        assert_eq!(
            serve_block2(b(1, 4), true, 1000, 6).unwrap().unwrap().size2,
            Some(1000)
        );
        assert_eq!(
            serve_block2(b(0, 4), false, 1000, 6)
                .unwrap()
                .unwrap()
                .size2,
            Some(1000)
        );
    }

    #[test]
    fn block_past_the_end_is_refused() {
        assert_eq!(
            serve_block2(b(4, 6), false, 4096, 6),
            Err(ServeError::BeyondEnd)
        );
        assert!(serve_block2(b(3, 6), false, 4096, 6).unwrap().is_some());
        // An empty body asked for block-wise is one empty last block.
        let s = serve_block2(b(0, 6), false, 0, 6).unwrap().unwrap();
        assert_eq!((s.block.more(), s.range), (false, 0..0));
    }
}
