//! Option numbers, their registered properties and value formats (RFC 7252 §3.2, §5.4,
//! §5.10, §12.2; RFC 7641; RFC 7959 §2.1, §4; RFC 7967; RFC 8613; RFC 8768; RFC 9175;
//! RFC 9177).

use core::fmt;

use super::{Block, ContentFormat};

/// An option number (RFC 7252 §5.4, §12.2).
///
/// The low bits carry the option's properties (§5.4.6): odd numbers are critical, bit 1
/// marks unsafe-to-forward, and `number & 0x1e == 0x1c` marks NoCacheKey.
///
/// ```
/// use coap_proto::wire::OptionNumber;
/// assert!(OptionNumber::URI_PATH.is_critical());
/// assert!(OptionNumber::SIZE1.is_no_cache_key());
/// assert_eq!(OptionNumber::BLOCK2.to_string(), "Block2");
/// assert_eq!(OptionNumber(65000).to_string(), "Option 65000");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OptionNumber(pub u16);

/// How an option's value is encoded (RFC 7252 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OptionFormat {
    /// A zero-length value.
    Empty,
    /// An opaque byte sequence.
    Opaque,
    /// A non-negative integer in network byte order, without leading zero bytes.
    Uint,
    /// A UTF-8 string (Net-Unicode, RFC 5198).
    String,
}

/// What the registry says about a known option: name, value format, permitted value
/// lengths and whether it may occur more than once (RFC 7252 §5.10, Table 4, and the
/// documents that register the others).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OptionInfo {
    /// The registered name, e.g. "Uri-Path".
    pub name: &'static str,
    /// The value format.
    pub format: OptionFormat,
    /// The shortest permitted value, in bytes.
    pub min_len: u16,
    /// The longest permitted value, in bytes.
    pub max_len: u16,
    /// Whether the option may occur more than once in a message.
    pub repeatable: bool,
}

macro_rules! registry {
    ($( $(#[$doc:meta])* $name:ident = ($num:literal, $text:literal, $format:ident, $min:literal, $max:literal, $rep:literal); )*) => {
        impl OptionNumber {
            $( $(#[$doc])* pub const $name: OptionNumber = OptionNumber($num); )*

            /// The registered properties of this option, or `None` if it is not one this
            /// crate knows.
            pub const fn info(self) -> Option<OptionInfo> {
                match self.0 {
                    $( $num => Some(OptionInfo {
                        name: $text,
                        format: OptionFormat::$format,
                        min_len: $min,
                        max_len: $max,
                        repeatable: $rep,
                    }), )*
                    _ => None,
                }
            }
        }
    };
}

registry! {
    /// If-Match (1), opaque 0–8, repeatable (RFC 7252 §5.10.8.1).
    IF_MATCH = (1, "If-Match", Opaque, 0, 8, true);
    /// Uri-Host (3), string 1–255 (RFC 7252 §5.10.1).
    URI_HOST = (3, "Uri-Host", String, 1, 255, false);
    /// ETag (4), opaque 1–8, repeatable in requests (RFC 7252 §5.10.6).
    ETAG = (4, "ETag", Opaque, 1, 8, true);
    /// If-None-Match (5), empty (RFC 7252 §5.10.8.2).
    IF_NONE_MATCH = (5, "If-None-Match", Empty, 0, 0, false);
    /// Observe (6), uint 0–3 (RFC 7641 §2).
    OBSERVE = (6, "Observe", Uint, 0, 3, false);
    /// Uri-Port (7), uint 0–2 (RFC 7252 §5.10.1).
    URI_PORT = (7, "Uri-Port", Uint, 0, 2, false);
    /// Location-Path (8), string 0–255, repeatable (RFC 7252 §5.10.7).
    LOCATION_PATH = (8, "Location-Path", String, 0, 255, true);
    /// OSCORE (9), opaque 0–255 (RFC 8613 §2).
    OSCORE = (9, "OSCORE", Opaque, 0, 255, false);
    /// Uri-Path (11), string 0–255, repeatable (RFC 7252 §5.10.1).
    URI_PATH = (11, "Uri-Path", String, 0, 255, true);
    /// Content-Format (12), uint 0–2 (RFC 7252 §5.10.3).
    CONTENT_FORMAT = (12, "Content-Format", Uint, 0, 2, false);
    /// Max-Age (14), uint 0–4, default 60 s (RFC 7252 §5.10.5).
    MAX_AGE = (14, "Max-Age", Uint, 0, 4, false);
    /// Uri-Query (15), string 0–255, repeatable (RFC 7252 §5.10.1).
    URI_QUERY = (15, "Uri-Query", String, 0, 255, true);
    /// Hop-Limit (16), uint 1 (RFC 8768 §3).
    HOP_LIMIT = (16, "Hop-Limit", Uint, 1, 1, false);
    /// Accept (17), uint 0–2 (RFC 7252 §5.10.4).
    ACCEPT = (17, "Accept", Uint, 0, 2, false);
    /// Q-Block1 (19), uint 0–3 (RFC 9177 §4).
    Q_BLOCK1 = (19, "Q-Block1", Uint, 0, 3, false);
    /// Location-Query (20), string 0–255, repeatable (RFC 7252 §5.10.7).
    LOCATION_QUERY = (20, "Location-Query", String, 0, 255, true);
    /// Block2 (23), uint 0–3 (RFC 7959 §2.1).
    BLOCK2 = (23, "Block2", Uint, 0, 3, false);
    /// Block1 (27), uint 0–3 (RFC 7959 §2.1).
    BLOCK1 = (27, "Block1", Uint, 0, 3, false);
    /// Size2 (28), uint 0–4 (RFC 7959 §4).
    SIZE2 = (28, "Size2", Uint, 0, 4, false);
    /// Q-Block2 (31), uint 0–3 (RFC 9177 §4).
    Q_BLOCK2 = (31, "Q-Block2", Uint, 0, 3, false);
    /// Proxy-Uri (35), string 1–1034 (RFC 7252 §5.10.2).
    PROXY_URI = (35, "Proxy-Uri", String, 1, 1034, false);
    /// Proxy-Scheme (39), string 1–255 (RFC 7252 §5.10.2).
    PROXY_SCHEME = (39, "Proxy-Scheme", String, 1, 255, false);
    /// Size1 (60), uint 0–4 (RFC 7252 §5.10.9, RFC 7959 §4).
    SIZE1 = (60, "Size1", Uint, 0, 4, false);
    /// Echo (252), opaque 1–40 (RFC 9175 §2.2.1).
    ECHO = (252, "Echo", Opaque, 1, 40, false);
    /// No-Response (258), uint 0–1 (RFC 7967 §2).
    NO_RESPONSE = (258, "No-Response", Uint, 0, 1, false);
    /// Request-Tag (292), opaque 0–8, repeatable (RFC 9175 §3.2).
    REQUEST_TAG = (292, "Request-Tag", Opaque, 0, 8, true);
}

impl OptionNumber {
    /// Critical options must be understood by the recipient (odd numbers, §5.4.1).
    pub const fn is_critical(self) -> bool {
        self.0 & 1 != 0
    }

    /// Elective options may be ignored when not understood (§5.4.1).
    pub const fn is_elective(self) -> bool {
        !self.is_critical()
    }

    /// Unsafe-to-forward options must be understood by a proxy forwarding them (§5.4.2).
    pub const fn is_unsafe(self) -> bool {
        self.0 & 2 != 0
    }

    /// NoCacheKey options are not part of the cache key (§5.4.6). Only meaningful for
    /// safe-to-forward options.
    pub const fn is_no_cache_key(self) -> bool {
        self.0 & 0x1e == 0x1c
    }

    /// The registered name, or `None` if this crate does not know the option.
    pub const fn name(self) -> Option<&'static str> {
        match self.info() {
            Some(info) => Some(info.name),
            None => None,
        }
    }
}

/// The registered value length range of option `N`, evaluated at compile time by the
/// typed getters and setters, so they need no registry lookup at run time.
pub(crate) const fn registered_len<const N: u16>() -> (usize, usize) {
    match OptionNumber(N).info() {
        Some(info) => (info.min_len as usize, info.max_len as usize),
        None => panic!("typed accessor for an unregistered option"),
    }
}

impl fmt::Display for OptionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.pad(name),
            None => write!(f, "Option {}", self.0),
        }
    }
}

/// Why a typed option getter could not give a value (RFC 7252 §5.4.3: such an option is
/// to be treated like an unrecognized one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OptionError {
    /// The value length is outside the range registered for the option.
    BadLength {
        /// The option.
        number: OptionNumber,
        /// The value's length in bytes.
        len: usize,
    },
    /// A uint value longer than the 4 bytes a `u32` holds. It is reported rather than
    /// truncated.
    UintTooLong {
        /// The option.
        number: OptionNumber,
        /// The value's length in bytes.
        len: usize,
    },
    /// A string option whose value is not valid UTF-8.
    NotUtf8 {
        /// The option.
        number: OptionNumber,
    },
    /// A Block1/Block2 value with the reserved SZX 7 (RFC 7959 §2.2).
    ReservedBlockSize {
        /// The option.
        number: OptionNumber,
    },
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            OptionError::BadLength { number, len } => {
                write!(
                    f,
                    "{number} value of {len} bytes is outside its permitted length"
                )
            }
            OptionError::UintTooLong { number, len } => {
                write!(f, "{number} value of {len} bytes is too long for a uint")
            }
            OptionError::NotUtf8 { number } => write!(f, "{number} value is not UTF-8"),
            OptionError::ReservedBlockSize { number } => {
                write!(f, "{number} value uses the reserved SZX 7")
            }
        }
    }
}

impl core::error::Error for OptionError {}

/// Decodes a uint option value of 0–4 bytes (RFC 7252 §3.2). Leading zero bytes are
/// accepted on input; `None` if the value is longer than 4 bytes.
///
/// ```
/// use coap_proto::wire::{decode_uint, encode_uint};
/// assert_eq!(decode_uint(&[]), Some(0));
/// assert_eq!(decode_uint(&[0x01, 0x00]), Some(256));
/// assert_eq!(decode_uint(&[1, 2, 3, 4, 5]), None);
/// let mut buf = [0; 4];
/// assert_eq!(encode_uint(256, &mut buf), &[0x01, 0x00]);
/// ```
#[inline]
pub const fn decode_uint(value: &[u8]) -> Option<u32> {
    if value.len() > 4 {
        return None;
    }
    let mut n: u32 = 0;
    let mut i = 0;
    while i < value.len() {
        n = (n << 8) | value[i] as u32;
        i += 1;
    }
    Some(n)
}

/// Encodes `value` as a minimal uint (no leading zero bytes; 0 is the empty value) into
/// `buf` and returns the bytes used.
#[inline]
pub fn encode_uint(value: u32, buf: &mut [u8; 4]) -> &[u8] {
    *buf = value.to_be_bytes();
    let skip = (value.leading_zeros() / 8) as usize;
    &buf[skip..]
}

/// One option of a message: its number and a view of its value.
///
/// `Display` renders the value by the option's registered format, which is what the
/// `decode` example prints:
///
/// ```
/// use coap_proto::wire::{CoapOption, OptionNumber};
/// let opt = CoapOption { number: OptionNumber::CONTENT_FORMAT, value: &[50] };
/// assert_eq!(opt.to_string(), "Content-Format: 50 (application/json)");
/// assert_eq!(opt.as_uint(), Ok(50));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoapOption<'a> {
    /// The option number.
    pub number: OptionNumber,
    /// The value, borrowed from the datagram.
    pub value: &'a [u8],
}

impl<'a> CoapOption<'a> {
    /// The value as a uint (0–4 bytes).
    pub fn as_uint(&self) -> Result<u32, OptionError> {
        decode_uint(self.value).ok_or(OptionError::UintTooLong {
            number: self.number,
            len: self.value.len(),
        })
    }

    /// The value as a UTF-8 string.
    pub fn as_str(&self) -> Result<&'a str, OptionError> {
        core::str::from_utf8(self.value).map_err(|_| OptionError::NotUtf8 {
            number: self.number,
        })
    }

    /// The value as a Block1/Block2 value.
    pub fn as_block(&self) -> Result<Block, OptionError> {
        if self.value.len() > 3 {
            return Err(OptionError::BadLength {
                number: self.number,
                len: self.value.len(),
            });
        }
        let v = self.as_uint()?;
        Block::from_uint(v).ok_or(OptionError::ReservedBlockSize {
            number: self.number,
        })
    }

    /// Checks the value against the registered length range and format (a string must
    /// be UTF-8). Unknown options always pass: only the application knows them.
    pub fn check(&self) -> Result<(), OptionError> {
        let Some(info) = self.number.info() else {
            return Ok(());
        };
        let len = self.value.len();
        if len < info.min_len as usize || len > info.max_len as usize {
            return Err(OptionError::BadLength {
                number: self.number,
                len,
            });
        }
        match info.format {
            OptionFormat::String => self.as_str().map(|_| ()),
            _ if matches!(self.number, OptionNumber::BLOCK1 | OptionNumber::BLOCK2) => {
                self.as_block().map(|_| ())
            }
            _ => Ok(()),
        }
    }
}

/// `Name: value`, the value shown by its registered format: uints in decimal (with the
/// media type for Content-Format and Accept, `NUM/M/size` for blocks), strings quoted,
/// opaque values and anything malformed in hex.
impl fmt::Display for CoapOption<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number)?;
        let format = self.number.info().map(|i| i.format);
        if format == Some(OptionFormat::Empty) && self.value.is_empty() {
            return Ok(());
        }
        f.write_str(": ")?;
        if self.check().is_ok() {
            match (format, self.number) {
                (Some(OptionFormat::Uint), OptionNumber::BLOCK1 | OptionNumber::BLOCK2) => {
                    if let Ok(b) = self.as_block() {
                        return write!(f, "{b}");
                    }
                }
                (Some(OptionFormat::Uint), OptionNumber::CONTENT_FORMAT | OptionNumber::ACCEPT) => {
                    if let Ok(v) = self.as_uint() {
                        let cf = ContentFormat(v as u16);
                        return match cf.media_type() {
                            Some(t) => write!(f, "{v} ({t})"),
                            None => write!(f, "{v}"),
                        };
                    }
                }
                (Some(OptionFormat::Uint), _) => {
                    if let Ok(v) = self.as_uint() {
                        return write!(f, "{v}");
                    }
                }
                (Some(OptionFormat::String), _) => {
                    if let Ok(s) = self.as_str() {
                        return write!(f, "{s:?}");
                    }
                }
                _ => {}
            }
        }
        write_hex(f, self.value)
    }
}

/// Writes `bytes` as `0x…` hex, or `(empty)` for none.
pub(crate) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    if bytes.is_empty() {
        return f.write_str("(empty)");
    }
    f.write_str("0x")?;
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// The No-Response option value (RFC 7967 §2): which response classes the client is not
/// interested in.
///
/// ```
/// use coap_proto::wire::{Code, NoResponse};
/// let nr = NoResponse(NoResponse::SUPPRESS_2XX | NoResponse::SUPPRESS_5XX);
/// assert!(nr.suppresses(Code::CHANGED));
/// assert!(!nr.suppresses(Code::NOT_FOUND));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NoResponse(pub u8);

impl NoResponse {
    /// Not interested in 2.xx responses.
    pub const SUPPRESS_2XX: u8 = 2;
    /// Not interested in 4.xx responses.
    pub const SUPPRESS_4XX: u8 = 8;
    /// Not interested in 5.xx responses.
    pub const SUPPRESS_5XX: u8 = 16;

    /// Whether a response with `code` is to be suppressed.
    pub const fn suppresses(self, code: super::Code) -> bool {
        let bit = match code.class() {
            2 => Self::SUPPRESS_2XX,
            4 => Self::SUPPRESS_4XX,
            5 => Self::SUPPRESS_5XX,
            _ => 0,
        };
        self.0 & bit != 0
    }
}

/// Splits a path at `/` like `split(|&b| b == b'/')`, but looks for the separator eight
/// bytes at a time.
///
/// One leading `/` is ignored, and `""` or `"/"` has no segments at all (RFC 7252 §6.4
/// step 8), so `"/a//b/"` gives `a`, ``, `b`, ``.
#[derive(Clone)]
pub(crate) struct PathSegments<'p> {
    rest: Option<&'p [u8]>,
}

impl<'p> PathSegments<'p> {
    pub(crate) fn new(path: &'p str) -> PathSegments<'p> {
        let path = path.strip_prefix('/').unwrap_or(path).as_bytes();
        PathSegments {
            rest: if path.is_empty() { None } else { Some(path) },
        }
    }
}

impl<'p> Iterator for PathSegments<'p> {
    type Item = &'p [u8];

    #[inline]
    fn next(&mut self) -> Option<&'p [u8]> {
        let rest = self.rest?;
        match find_slash(rest) {
            Some(i) => {
                self.rest = rest.get(i + 1..);
                rest.get(..i)
            }
            None => self.rest.take(),
        }
    }
}

#[inline]
fn find_slash(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])) ^ (ONES * b'/' as u64);
        // A zero byte in `word` is a '/' in the chunk; the lowest flagged byte is exact.
        let found = word.wrapping_sub(ONES) & !word & HIGHS;
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'/')
        .map(|i| at + i)
}
