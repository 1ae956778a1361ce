//! The value of the Block1 and Block2 options (RFC 7959 §2.2).

use core::fmt;

/// A Block1 or Block2 option value: block number, "more" flag and size exponent
/// (RFC 7959 §2.2, Figure 1).
///
/// The size exponent `szx` is 0–6 (16 to 1024 bytes); 7 is reserved for BERT over
/// reliable transports (RFC 8323) and refused here, as this crate speaks CoAP over
/// datagrams. The block number fits in 20 bits, so the value always fits the three bytes
/// the option allows.
///
/// ```
/// use coap_proto::wire::Block;
/// let b = Block::new(3, true, 6).unwrap();
/// assert_eq!((b.size(), b.offset()), (1024, 3072));
/// assert_eq!(b.to_uint(), 0x3e);
/// assert_eq!(Block::from_uint(0x3e), Some(b));
/// assert_eq!(b.to_string(), "3/1/1024");
/// assert_eq!(Block::new(0, false, 7), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Block {
    num: u32,
    more: bool,
    szx: u8,
}

impl Block {
    /// The largest block number: NUM is at most 20 bits wide (RFC 7959 §2.2).
    pub const MAX_NUM: u32 = (1 << 20) - 1;
    /// The largest size exponent allowed over UDP (1024-byte blocks).
    pub const MAX_SZX: u8 = 6;

    /// A block value, or `None` if `num > MAX_NUM` or `szx > MAX_SZX`.
    pub const fn new(num: u32, more: bool, szx: u8) -> Option<Block> {
        if num > Self::MAX_NUM || szx > Self::MAX_SZX {
            None
        } else {
            Some(Block { num, more, szx })
        }
    }

    /// The block value encoded in a uint, or `None` if it has more than 24 bits or
    /// carries the reserved SZX 7.
    pub const fn from_uint(value: u32) -> Option<Block> {
        Block::new(value >> 4, value & 0x8 != 0, (value & 0x7) as u8)
    }

    /// The uint this value is sent as: `NUM << 4 | M << 3 | SZX`.
    pub const fn to_uint(self) -> u32 {
        (self.num << 4) | ((self.more as u32) << 3) | self.szx as u32
    }

    /// The block number (NUM).
    pub const fn num(self) -> u32 {
        self.num
    }

    /// The "more" flag (M): more blocks follow this one (descriptive use), or the server
    /// acted on the block non-atomically (Block1 in a response, RFC 7959 §2.3).
    pub const fn more(self) -> bool {
        self.more
    }

    /// The size exponent (SZX), 0–6.
    pub const fn szx(self) -> u8 {
        self.szx
    }

    /// The block size in bytes: `2^(SZX + 4)`, 16–1024.
    pub const fn size(self) -> usize {
        1 << (self.szx + 4)
    }

    /// The byte offset of the block's first byte in the body: `NUM × size`.
    pub const fn offset(self) -> usize {
        (self.num as usize) << (self.szx + 4)
    }

    /// The same block with another "more" flag.
    pub const fn with_more(self, more: bool) -> Block {
        Block { more, ..self }
    }

    /// The largest size exponent whose block size is at most `size` bytes, or `None` if
    /// `size < 16`.
    ///
    /// ```
    /// use coap_proto::wire::Block;
    /// assert_eq!(Block::szx_at_most(1000), Some(5)); // 512-byte blocks
    /// assert_eq!(Block::szx_at_most(4096), Some(6));
    /// assert_eq!(Block::szx_at_most(15), None);
    /// ```
    pub const fn szx_at_most(size: usize) -> Option<u8> {
        if size < 16 {
            return None;
        }
        let log2 = usize::BITS - 1 - size.leading_zeros();
        let szx = log2 - 4;
        Some(if szx > Self::MAX_SZX as u32 {
            Self::MAX_SZX
        } else {
            szx as u8
        })
    }
}

/// `NUM/M/size`, the notation of the RFC 7959 figures.
impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.num, self.more as u8, self.size())
    }
}
