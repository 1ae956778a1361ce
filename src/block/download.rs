//! Following a Block2 response, block by block (RFC 7959 §2.2, §2.4, §3.1, §4).
//!
//! §2.4: the client may ask for a block size in its first request (early negotiation);
//! the server answers with that size or a smaller one and the client must continue with
//! the size the server used. A client that did not ask may still continue with a smaller
//! size than the server chose (late negotiation, Figure 4), recounting block numbers
//! from the byte offset reached. All blocks
//! but the last carry exactly the block size (§2.3). If the responses carry ETags, the
//! client must compare them: a changed ETag means the blocks belong to different
//! representations (§2.4). This machine never buffers the body: each block is reported
//! with its byte offset, and the next request's Block2 is derived from what arrived.

use core::fmt;

use crate::wire::Block;

/// What one accepted response contributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Byte offset of this block's payload in the body.
    pub offset: usize,
    /// Whether this was the last block.
    pub last: bool,
    /// The body's size, when the server said (Size2).
    pub total: Option<u32>,
}

/// Why a response cannot continue the download. Each ends the transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DownloadError {
    /// The block does not start where the previous one ended (a skipped or repeated
    /// block).
    UnexpectedBlock {
        /// The offset the next block should start at (Block2 offsets stay below 2^30).
        expected: u32,
        /// The offset the received block starts at.
        got: u32,
    },
    /// The ETag changed between blocks: the representation changed (§2.4).
    EtagChanged,
    /// The server used a larger block size than the client asked for (§2.4 forbids it).
    LargerBlockSize,
    /// A block with M set did not carry exactly the block size (§2.3).
    WrongBlockLength,
    /// A response after the first one came without Block2.
    MissingBlock2,
    /// The body would be longer than the limit set with
    /// [`Block2Download::with_limit`], or than Block2 can number.
    TooLarge,
    /// The transfer already ended.
    Finished,
    /// A separate response came in blocks, but the request was given up when its
    /// empty ACK came ([`RequestOptions::release_on_ack`](crate::RequestOptions)), so
    /// there is nothing to ask for the next block with: send the request again.
    Released,
}

impl fmt::Display for DownloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownloadError::UnexpectedBlock { expected, got } => {
                write!(f, "block at offset {got} where offset {expected} was due")
            }
            DownloadError::EtagChanged => f.write_str("the ETag changed during the transfer"),
            DownloadError::LargerBlockSize => {
                f.write_str("the server used a larger block size than asked for")
            }
            DownloadError::WrongBlockLength => {
                f.write_str("a block with more to follow was not of the block size")
            }
            DownloadError::MissingBlock2 => f.write_str("a follow-up response lacked Block2"),
            DownloadError::TooLarge => f.write_str("the body exceeds the size limit"),
            DownloadError::Finished => f.write_str("the transfer already ended"),
            DownloadError::Released => {
                f.write_str("a block-wise separate response to a request released at its empty ACK")
            }
        }
    }
}

impl core::error::Error for DownloadError {}

/// The client side of a Block2 transfer.
///
/// ```
/// use coap_proto::block::Block2Download;
/// use coap_proto::wire::Block;
/// let mut d = Block2Download::new().with_early(6); // ask for 1024-byte blocks
/// assert_eq!(d.next_request_block(), Block::new(0, false, 6));
/// // The server answers with 512-byte blocks: late negotiation.
/// let r = d.on_response(Block::new(0, true, 5), None, Some(1300), 512).unwrap();
/// assert_eq!((r.offset, r.last), (0, false));
/// assert_eq!(d.next_request_block(), Block::new(1, false, 5));
/// d.on_response(Block::new(1, true, 5), None, None, 512).unwrap();
/// let r = d.on_response(Block::new(2, false, 5), None, None, 276).unwrap();
/// assert!(r.last);
/// assert_eq!(d.next_request_block(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block2Download {
    szx: u8,
    /// Where the next block must start (below 2^30: 2^20 blocks of 1024 bytes).
    offset: u32,
    started: bool,
    done: bool,
    /// Size announced in the first request, if any.
    asked: Option<u8>,
    /// The largest size this client wants.
    max_szx: u8,
    etag: [u8; 8],
    etag_len: u8,
    has_etag: bool,
    total: Option<u32>,
    limit: u32,
}

impl Default for Block2Download {
    fn default() -> Self {
        Self::new()
    }
}

impl Block2Download {
    /// A download that takes the block size the server chooses.
    pub fn new() -> Block2Download {
        Block2Download {
            szx: Block::MAX_SZX,
            offset: 0,
            started: false,
            done: false,
            asked: None,
            max_szx: Block::MAX_SZX,
            etag: [0; 8],
            etag_len: 0,
            has_etag: false,
            total: None,
            limit: u32::MAX,
        }
    }

    /// Announces blocks of at most `2^(szx + 4)` bytes in the first request (early
    /// negotiation, Figure 3); the server must not answer with larger ones.
    pub fn with_early(mut self, szx: u8) -> Block2Download {
        let szx = szx.min(Block::MAX_SZX);
        self.asked = Some(szx);
        self.max_szx = szx;
        self.szx = szx;
        self
    }

    /// Continues with blocks of at most `2^(szx + 4)` bytes whatever size the server
    /// starts with, without announcing it first (late negotiation, Figure 4).
    pub fn with_late(mut self, szx: u8) -> Block2Download {
        self.max_szx = szx.min(Block::MAX_SZX);
        self
    }

    /// Starts at the block that holds byte `offset` of the body, for fetching a slice
    /// (`szx` is the block size to ask for): the first request names that block, and
    /// the bytes of it before `offset` are the caller's to skip.
    pub fn starting_at(offset: usize, szx: u8) -> Block2Download {
        let mut d = Block2Download::new().with_early(szx);
        let size = 16usize << d.szx;
        let start = (offset / size * size).min((Block::MAX_NUM as usize) * size);
        d.offset = start as u32;
        d
    }

    /// Refuses bodies longer than `limit` bytes ([`DownloadError::TooLarge`]), as soon as
    /// a block or the Size2 option shows it.
    pub fn with_limit(mut self, limit: usize) -> Block2Download {
        self.limit = u32::try_from(limit).unwrap_or(u32::MAX);
        self
    }

    /// The Block2 option for the next request: the first one (only with early
    /// negotiation), or the follow-up after the blocks received. `None` when nothing
    /// more is to be asked for.
    pub fn next_request_block(&self) -> Option<Block> {
        if self.done {
            return None;
        }
        if !self.started {
            return self
                .asked
                .and_then(|szx| Block::new(self.offset >> (szx + 4), false, szx));
        }
        Block::new(self.offset >> (self.szx + 4), false, self.szx)
    }

    /// Bytes received so far, i.e. the offset the next block starts at.
    pub fn received(&self) -> usize {
        self.offset as usize
    }

    /// Whether the last block arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The body's size, once the server said.
    pub fn total(&self) -> Option<u32> {
        self.total
    }

    /// Takes in a response: its Block2 option, ETag, Size2, and payload length.
    pub fn on_response(
        &mut self,
        block2: Option<Block>,
        etag: Option<&[u8]>,
        size2: Option<u32>,
        payload_len: usize,
    ) -> Result<Received, DownloadError> {
        if self.done {
            return Err(DownloadError::Finished);
        }
        self.check_etag(etag)?;
        if let Some(total) = size2 {
            if total > self.limit {
                return Err(DownloadError::TooLarge);
            }
            self.total = Some(total);
        }
        let Some(block) = block2 else {
            if self.started {
                return Err(DownloadError::MissingBlock2);
            }
            // The whole body in one response.
            let Some(len) = u32::try_from(payload_len).ok().filter(|&n| n <= self.limit) else {
                return Err(DownloadError::TooLarge);
            };
            self.started = true;
            self.done = true;
            self.offset = len;
            return Ok(Received {
                offset: 0,
                last: true,
                total: self.total,
            });
        };
        if block.szx() > self.szx && (self.started || self.asked.is_some()) {
            return Err(DownloadError::LargerBlockSize);
        }
        // Block offsets are below 2^30: NUM has 20 bits and blocks at most 1024 bytes.
        let got = block.offset() as u32;
        if got != self.offset {
            return Err(DownloadError::UnexpectedBlock {
                expected: self.offset,
                got,
            });
        }
        if block.more() && payload_len != block.size()
            || !block.more() && payload_len > block.size()
        {
            return Err(DownloadError::WrongBlockLength);
        }
        let end = got + payload_len as u32; // payload_len ≤ 1024, checked above
        let next_num_fits = !block.more() || (end >> (block.szx() + 4)) <= Block::MAX_NUM;
        if end > self.limit || !next_num_fits {
            return Err(DownloadError::TooLarge);
        }
        // Continue with the size the server used, or the client's smaller one.
        self.szx = block.szx().min(self.max_szx);
        self.started = true;
        self.offset = end;
        self.done = !block.more();
        Ok(Received {
            offset: got as usize,
            last: self.done,
            total: self.total,
        })
    }

    fn check_etag(&mut self, etag: Option<&[u8]>) -> Result<(), DownloadError> {
        let etag = etag.map(|e| &e[..e.len().min(8)]);
        if !self.started {
            if let Some(e) = etag {
                self.etag[..e.len()].copy_from_slice(e);
                self.etag_len = e.len() as u8;
                self.has_etag = true;
            }
            return Ok(());
        }
        let before = self.has_etag.then(|| &self.etag[..self.etag_len as usize]);
        if before != etag {
            return Err(DownloadError::EtagChanged);
        }
        Ok(())
    }
}

/// Reassembles a body into a caller's buffer, block by block, as the
/// [`Received`] reports of a download come in.
///
/// ```
/// use coap_proto::block::{BodyBuffer, Received};
/// let mut buf = [0u8; 8];
/// let mut body = BodyBuffer::new(&mut buf);
/// body.put(&Received { offset: 0, last: false, total: Some(6) }, b"abcd").unwrap();
/// body.put(&Received { offset: 4, last: true, total: None }, b"ef").unwrap();
/// assert_eq!(body.as_slice(), b"abcdef");
/// let mut small = [0u8; 4];
/// let mut body = BodyBuffer::new(&mut small);
/// let err = body.put(&Received { offset: 0, last: false, total: Some(6) }, b"abcd");
/// assert_eq!(err, Err(coap_proto::block::BufferTooSmall { needed: 6 }));
/// ```
#[derive(Debug)]
pub struct BodyBuffer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

/// The body does not fit the buffer; it needs at least `needed` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufferTooSmall {
    /// The buffer size the body needs (its full size when the server said it, else
    /// as much as has arrived so far).
    pub needed: usize,
}

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the body needs a buffer of at least {} bytes",
            self.needed
        )
    }
}

impl core::error::Error for BufferTooSmall {}

impl<'a> BodyBuffer<'a> {
    /// An empty body in `buf`.
    pub fn new(buf: &'a mut [u8]) -> BodyBuffer<'a> {
        BodyBuffer { buf, len: 0 }
    }

    /// Adds one block's payload at the offset `received` reports. Fails, changing
    /// nothing, if the body does not fit — as soon as Size2 shows it.
    pub fn put(&mut self, received: &Received, payload: &[u8]) -> Result<(), BufferTooSmall> {
        let end = received.offset + payload.len();
        let needed = received.total.map_or(end, |t| (t as usize).max(end));
        if needed > self.buf.len() {
            return Err(BufferTooSmall { needed });
        }
        self.buf[received.offset..end].copy_from_slice(payload);
        self.len = self.len.max(end);
        Ok(())
    }

    /// The body reassembled so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blk(num: u32, more: bool, szx: u8) -> Option<Block> {
        Block::new(num, more, szx)
    }

    #[test]
    fn response_without_block2_is_the_whole_body() {
        let mut d = Block2Download::new();
        assert_eq!(
            d.next_request_block(),
            None,
            "no Block2 in the first request"
        );
        let r = d.on_response(None, None, None, 40).unwrap();
        assert_eq!((r.offset, r.last), (0, true));
        assert!(d.is_done());
        assert_eq!(
            d.on_response(None, None, None, 1),
            Err(DownloadError::Finished)
        );
    }

    #[test]
    fn late_negotiation_continues_with_the_smaller_client_size() {
        // RFC 7959 Figure 4: 128-byte first block, then 64-byte blocks from 2/0/64.
        let mut d = Block2Download::new().with_late(2);
        d.on_response(blk(0, true, 3), None, None, 128).unwrap();
        assert_eq!(d.next_request_block(), blk(2, false, 2));
    }

    #[test]
    fn starting_at_an_offset_asks_for_the_block_that_holds_it() {
        let mut d = Block2Download::starting_at(1000, 4); // 256-byte blocks
        assert_eq!(d.next_request_block(), blk(3, false, 4));
        let r = d
            .on_response(blk(3, true, 4), Some(&[7]), None, 256)
            .unwrap();
        assert_eq!(r.offset, 768);
        assert_eq!(d.next_request_block(), blk(4, false, 4));
        assert!(
            d.on_response(blk(4, false, 4), Some(&[7]), None, 10)
                .unwrap()
                .last
        );
    }

    #[test]
    fn server_chosen_size_is_followed() {
        let mut d = Block2Download::new();
        d.on_response(blk(0, true, 4), None, None, 256).unwrap();
        assert_eq!(d.next_request_block(), blk(1, false, 4));
    }

    #[test]
    fn skipped_or_repeated_blocks_end_the_transfer() {
        let mut d = Block2Download::new();
        d.on_response(blk(0, true, 2), None, None, 64).unwrap();
        assert_eq!(
            d.on_response(blk(2, true, 2), None, None, 64),
            Err(DownloadError::UnexpectedBlock {
                expected: 64,
                got: 128
            })
        );
        assert_eq!(
            d.on_response(blk(0, true, 2), None, None, 64),
            Err(DownloadError::UnexpectedBlock {
                expected: 64,
                got: 0
            })
        );
    }

    #[test]
    fn changed_etag_ends_the_transfer() {
        let mut d = Block2Download::new();
        d.on_response(blk(0, true, 2), Some(&[1]), None, 64)
            .unwrap();
        assert_eq!(
            d.on_response(blk(1, true, 2), Some(&[2]), None, 64),
            Err(DownloadError::EtagChanged)
        );
        assert_eq!(
            d.on_response(blk(1, true, 2), None, None, 64),
            Err(DownloadError::EtagChanged)
        );
        assert!(d.on_response(blk(1, true, 2), Some(&[1]), None, 64).is_ok());
    }

    #[test]
    fn larger_block_size_than_asked_is_refused() {
        let mut d = Block2Download::new().with_early(2);
        assert_eq!(
            d.on_response(blk(0, true, 3), None, None, 128),
            Err(DownloadError::LargerBlockSize)
        );
        let mut d = Block2Download::new();
        d.on_response(blk(0, true, 2), None, None, 64).unwrap();
        assert_eq!(
            d.on_response(blk(0, true, 3), None, None, 128),
            Err(DownloadError::LargerBlockSize)
        );
    }

    #[test]
    fn short_intermediate_block_is_refused() {
        let mut d = Block2Download::new();
        assert_eq!(
            d.on_response(blk(0, true, 2), None, None, 63),
            Err(DownloadError::WrongBlockLength)
        );
    }

    #[test]
    fn endless_more_bits_hit_the_limit() {
        let mut d = Block2Download::new().with_limit(1000);
        let mut n = 0;
        let err = loop {
            match d.on_response(blk(n, true, 4), None, None, 256) {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
            assert!(n < 10, "must stop");
        };
        assert_eq!(err, DownloadError::TooLarge);
        // Without a limit, Block2's own numbering ends it.
        let mut d = Block2Download::new();
        d.offset = Block::MAX_NUM << 4;
        d.started = true;
        d.szx = 0;
        assert_eq!(
            d.on_response(blk(Block::MAX_NUM, true, 0), None, None, 16),
            Err(DownloadError::TooLarge)
        );
    }

    #[test]
    fn size2_over_the_limit_is_refused_at_once() {
        let mut d = Block2Download::new().with_limit(100);
        assert_eq!(
            d.on_response(blk(0, true, 2), None, Some(5000), 64),
            Err(DownloadError::TooLarge)
        );
    }
}
