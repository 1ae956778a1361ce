//! The zero-copy message view: checked once at construction, then read without failure
//! (RFC 7252 §3, §3.1, §4.1, §5.4; RFC 8974 §2.1).

use core::fmt;

use super::option::{PathSegments, registered_len, write_hex};
use super::{
    Block, CoapOption, Code, ContentFormat, NoResponse, OptionError, OptionNumber, Type,
    decode_uint,
};

/// Why a datagram is not a well-formed CoAP message (RFC 7252 §3, §4.1; RFC 8974 §2.1).
///
/// Each variant is one class of format error. What to do about it is the message
/// layer's business (§4.2, §4.3: reject a CON with RST, silently ignore the rest; ignore a
/// message with an unknown version altogether, §3).
///
/// ```
/// use coap_proto::wire::{Message, ParseError};
/// assert_eq!(Message::parse(&[0x40, 0x01]), Err(ParseError::TruncatedHeader));
/// // Version 2.
/// assert_eq!(Message::parse(&[0x80, 0x01, 0, 0]), Err(ParseError::BadVersion(2)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseError {
    /// Fewer than the 4 bytes of the fixed header.
    TruncatedHeader,
    /// The version field is not 1 (§3). Such a message is silently ignored.
    BadVersion(u8),
    /// The code is in a reserved class: 1, 6 or 7 (§12.1).
    ReservedCodeClass(u8),
    /// Token length (TKL) 15, which is reserved (RFC 8974 §2.1).
    ReservedTokenLength,
    /// An Empty message (0.00) with a token, options or a payload (§4.1).
    EmptyMessageWithContent,
    /// TKL 13 or 14, but the datagram ends inside the extended token length.
    TruncatedTokenLength,
    /// The datagram ends inside the token.
    TruncatedToken,
    /// An option header with the reserved nibble 15 that is not the payload marker
    /// 0xFF (§3.1).
    ReservedOptionNibble,
    /// The datagram ends inside an option's extended delta.
    TruncatedOptionDelta,
    /// The datagram ends inside an option's extended length.
    TruncatedOptionLength,
    /// The datagram ends inside an option value.
    TruncatedOptionValue,
    /// The option deltas add up to a number above 65535.
    OptionNumberOverflow,
    /// A payload marker followed by no payload (§3).
    EmptyPayload,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ParseError::TruncatedHeader => f.write_str("datagram shorter than the 4-byte header"),
            ParseError::BadVersion(v) => write!(f, "unsupported CoAP version {v}"),
            ParseError::ReservedCodeClass(c) => write!(f, "code class {c} is reserved"),
            ParseError::ReservedTokenLength => f.write_str("token length 15 is reserved"),
            ParseError::EmptyMessageWithContent => {
                f.write_str("Empty message (0.00) with a token, options or payload")
            }
            ParseError::TruncatedTokenLength => f.write_str("datagram ends in the token length"),
            ParseError::TruncatedToken => f.write_str("datagram ends in the token"),
            ParseError::ReservedOptionNibble => f.write_str("option uses the reserved nibble 15"),
            ParseError::TruncatedOptionDelta => f.write_str("datagram ends in an option delta"),
            ParseError::TruncatedOptionLength => f.write_str("datagram ends in an option length"),
            ParseError::TruncatedOptionValue => f.write_str("datagram ends in an option value"),
            ParseError::OptionNumberOverflow => f.write_str("option number exceeds 65535"),
            ParseError::EmptyPayload => f.write_str("payload marker without payload"),
        }
    }
}

impl core::error::Error for ParseError {}

/// The fixed 4-byte header, readable even when the rest of the datagram is malformed —
/// the message layer needs the type and message ID to reject a bad CON with RST (§4.2).
///
/// ```
/// use coap_proto::wire::{Header, Type};
/// let h = Header::peek(&[0x40, 0x01, 0x12, 0x34, 0xff]).unwrap();
/// assert_eq!((h.version, h.ty, h.code, h.message_id), (1, Type::Con, 0x01, 0x1234));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// The version field (1 for RFC 7252).
    pub version: u8,
    /// The message type.
    pub ty: Type,
    /// The raw code byte, which may be in a reserved class.
    pub code: u8,
    /// The message ID.
    pub message_id: u16,
}

impl Header {
    /// The header of `datagram`, or `None` if it is shorter than 4 bytes.
    pub fn peek(datagram: &[u8]) -> Option<Header> {
        let [b0, code, m0, m1, ..] = *datagram else {
            return None;
        };
        Some(Header {
            version: b0 >> 6,
            ty: Type::from_bits(b0 >> 4),
            code,
            message_id: u16::from_be_bytes([m0, m1]),
        })
    }
}

/// Reads an extended option delta or length (§3.1): nibbles 13 and 14 take one or two
/// more bytes from `rest`.
#[inline]
fn read_extended(nibble: u8, rest: &mut &[u8], truncated: ParseError) -> Result<usize, ParseError> {
    match nibble {
        0..=12 => Ok(nibble as usize),
        13 => match rest.split_first() {
            Some((&b, tail)) => {
                *rest = tail;
                Ok(b as usize + 13)
            }
            None => Err(truncated),
        },
        14 => match rest.split_first_chunk::<2>() {
            Some((&b, tail)) => {
                *rest = tail;
                Ok(u16::from_be_bytes(b) as usize + 269)
            }
            None => Err(truncated),
        },
        _ => Err(ParseError::ReservedOptionNibble),
    }
}

/// Reads one option header and value from `rest` (which must not start at the payload
/// marker): its delta and value.
#[inline]
pub(crate) fn read_option<'a>(rest: &mut &'a [u8]) -> Result<(usize, &'a [u8]), ParseError> {
    let Some((&first, mut tail)) = rest.split_first() else {
        return Err(ParseError::TruncatedOptionDelta);
    };
    let delta = read_extended(first >> 4, &mut tail, ParseError::TruncatedOptionDelta)?;
    let len = read_extended(first & 0x0f, &mut tail, ParseError::TruncatedOptionLength)?;
    let Some((value, tail)) = tail.split_at_checked(len) else {
        return Err(ParseError::TruncatedOptionValue);
    };
    *rest = tail;
    Ok((delta, value))
}

/// A CoAP message: a checked view over the bytes of one datagram (RFC 7252 §3).
///
/// [`Message::parse`] validates the whole datagram once; after that every accessor reads
/// without failing and nothing is copied — tokens, option values and the payload are
/// slices of the datagram.
///
/// The view is four slices — 64 bytes on 64-bit targets, 32 on 32-bit ones — and
/// `Copy`.
///
/// Typed getters return `Ok(None)` when the option is absent, `Ok(Some(_))` for a valid
/// value, and an [`OptionError`] for a value outside its registered length or format
/// (which RFC 7252 §5.4.3 says to treat like an unrecognized option). For options that
/// must not repeat, the first occurrence counts (§5.4.5).
///
/// ```
/// use coap_proto::wire::{Code, ContentFormat, Message, Type};
///
/// let bytes = [
///     0x44, 0x01, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, // CON GET, MID 0x1234, token
///     0xb7, b's', b'e', b'n', b's', b'o', b'r', b's', // Uri-Path "sensors"
///     0x0b, b't', b'e', b'm', b'p', b'e', b'r', b'a', b't', b'u', b'r', b'e',
///     0x61, 0x32, // Accept 50
/// ];
/// let msg = Message::parse(&bytes)?;
/// assert_eq!((msg.ty(), msg.code(), msg.message_id()), (Type::Con, Code::GET, 0x1234));
/// assert_eq!(msg.token(), &[0xde, 0xad, 0xbe, 0xef]);
/// assert!(msg.uri_path().matches("/sensors/temperature"));
/// assert_eq!(msg.accept(), Ok(Some(ContentFormat::JSON)));
/// assert_eq!(msg.options().count(), 3);
/// assert!(msg.payload().is_empty());
/// # Ok::<(), coap_proto::wire::ParseError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Message<'a> {
    bytes: &'a [u8],
    token: &'a [u8],
    /// The option headers and values, without the payload marker.
    options: &'a [u8],
    payload: &'a [u8],
}

impl<'a> Message<'a> {
    /// Checks `datagram` and returns a view of it.
    ///
    /// Token lengths follow RFC 8974 (up to 65804 bytes); which lengths to accept is the
    /// endpoint's policy, not the codec's. Option values are not checked against their
    /// registered formats here: that is for the typed getters and [`CoapOption::check`].
    #[inline]
    pub fn parse(datagram: &'a [u8]) -> Result<Message<'a>, ParseError> {
        let [b0, code, _, _, after_header @ ..] = datagram else {
            return Err(ParseError::TruncatedHeader);
        };
        if b0 >> 6 != 1 {
            return Err(ParseError::BadVersion(b0 >> 6));
        }
        if matches!(code >> 5, 1 | 6 | 7) {
            return Err(ParseError::ReservedCodeClass(code >> 5));
        }
        let tkl = b0 & 0x0f;
        if *code == 0 {
            return if tkl == 0 && after_header.is_empty() {
                Ok(Message {
                    bytes: datagram,
                    token: &[],
                    options: &[],
                    payload: &[],
                })
            } else if tkl == 15 {
                Err(ParseError::ReservedTokenLength)
            } else {
                Err(ParseError::EmptyMessageWithContent)
            };
        }
        let (token_start, token_len) = match tkl {
            0..=12 => (4, tkl as usize),
            13 => match after_header.first() {
                Some(&b) => (5, b as usize + 13),
                None => return Err(ParseError::TruncatedTokenLength),
            },
            14 => match after_header.first_chunk::<2>() {
                Some(&b) => (6, u16::from_be_bytes(b) as usize + 269),
                None => return Err(ParseError::TruncatedTokenLength),
            },
            _ => return Err(ParseError::ReservedTokenLength),
        };
        let Some((token, options)) = datagram
            .get(token_start..)
            .and_then(|t| t.split_at_checked(token_len))
        else {
            return Err(ParseError::TruncatedToken);
        };
        let mut rest = options;
        let mut number = 0usize;
        while let Some(&first) = rest.first() {
            if first == 0xff {
                if rest.len() == 1 {
                    return Err(ParseError::EmptyPayload);
                }
                break;
            }
            let (delta, _) = read_option(&mut rest)?;
            number += delta;
        }
        // The number only grows, so one check at the end finds any overflow. It cannot
        // wrap: each delta is at most 65804 and takes at least one byte.
        if number > u16::MAX as usize {
            return Err(ParseError::OptionNumberOverflow);
        }
        let options = options.get(..options.len() - rest.len()).unwrap_or(options);
        Ok(Message {
            bytes: datagram,
            token,
            options,
            // Skips the marker; empty when there is no payload.
            payload: rest.get(1..).unwrap_or(&[]),
        })
    }

    /// The whole datagram.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The message type.
    pub fn ty(&self) -> Type {
        Type::from_bits(self.first_byte() >> 4)
    }

    /// The code (never in a reserved class).
    pub fn code(&self) -> Code {
        // parse() refused the reserved classes, so the fallback is never taken.
        self.bytes
            .get(1)
            .and_then(|&c| Code::from_u8(c))
            .unwrap_or(Code::EMPTY)
    }

    /// The message ID.
    pub fn message_id(&self) -> u16 {
        match self.bytes {
            [_, _, a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => 0,
        }
    }

    /// The token (0 to 65804 bytes).
    pub fn token(&self) -> &'a [u8] {
        self.token
    }

    /// Whether this is an Empty message (code 0.00): a ping, an empty ACK or a RST.
    pub fn is_empty(&self) -> bool {
        self.code().is_empty()
    }

    /// All options in the order they appear, which is ascending by number; repeated
    /// options keep their order.
    pub fn options(&self) -> Options<'a> {
        Options {
            rest: self.options,
            number: 0,
        }
    }

    /// The values of every occurrence of option `number`, in order.
    pub fn option_values(&self, number: OptionNumber) -> Values<'a> {
        Values {
            options: self.options(),
            number,
        }
    }

    /// The first occurrence of option `number`, if any.
    pub fn option(&self, number: OptionNumber) -> Option<CoapOption<'a>> {
        self.option_values(number)
            .next()
            .map(|value| CoapOption { number, value })
    }

    /// Whether option `number` occurs at all.
    pub fn has_option(&self, number: OptionNumber) -> bool {
        self.option(number).is_some()
    }

    /// The payload; empty when there is none.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    fn first_byte(&self) -> u8 {
        self.bytes.first().copied().unwrap_or(0)
    }

    /// The first occurrence of option `N`, its length checked against the registration.
    #[inline]
    fn ranged<const N: u16>(&self) -> Result<Option<CoapOption<'a>>, OptionError> {
        let (min, max) = const { registered_len::<N>() };
        match self.option(OptionNumber(N)) {
            Some(opt) if opt.value.len() < min || opt.value.len() > max => {
                Err(OptionError::BadLength {
                    number: opt.number,
                    len: opt.value.len(),
                })
            }
            found => Ok(found),
        }
    }

    #[inline]
    fn uint<const N: u16>(&self) -> Result<Option<u32>, OptionError> {
        // Registered uints are at most 4 bytes, so decoding cannot fail.
        Ok(self
            .ranged::<N>()?
            .map(|o| decode_uint(o.value).unwrap_or(0)))
    }

    #[inline]
    fn string<const N: u16>(&self) -> Result<Option<&'a str>, OptionError> {
        self.ranged::<N>()?.map(|o| o.as_str()).transpose()
    }

    #[inline]
    fn opaque<const N: u16>(&self) -> Result<Option<&'a [u8]>, OptionError> {
        Ok(self.ranged::<N>()?.map(|o| o.value))
    }

    #[inline]
    fn block<const N: u16>(&self) -> Result<Option<Block>, OptionError> {
        self.ranged::<N>()?.map(|o| o.as_block()).transpose()
    }

    /// If-Match values (RFC 7252 §5.10.8.1), each 0–8 bytes.
    pub fn if_match(&self) -> Values<'a> {
        self.option_values(OptionNumber::IF_MATCH)
    }

    /// Uri-Host (§5.10.1).
    pub fn uri_host(&self) -> Result<Option<&'a str>, OptionError> {
        self.string::<{ OptionNumber::URI_HOST.0 }>()
    }

    /// The first ETag (§5.10.6): the entity tag of a response.
    pub fn etag(&self) -> Result<Option<&'a [u8]>, OptionError> {
        self.opaque::<{ OptionNumber::ETAG.0 }>()
    }

    /// Every ETag, as a request may carry several (§5.10.6.2).
    pub fn etags(&self) -> Values<'a> {
        self.option_values(OptionNumber::ETAG)
    }

    /// Whether If-None-Match is present (§5.10.8.2).
    pub fn if_none_match(&self) -> bool {
        self.has_option(OptionNumber::IF_NONE_MATCH)
    }

    /// Observe (RFC 7641 §2): a registration value in a request, a sequence number in a
    /// notification.
    pub fn observe(&self) -> Result<Option<u32>, OptionError> {
        self.uint::<{ OptionNumber::OBSERVE.0 }>()
    }

    /// Uri-Port (§5.10.1).
    pub fn uri_port(&self) -> Result<Option<u16>, OptionError> {
        Ok(self
            .uint::<{ OptionNumber::URI_PORT.0 }>()?
            .map(|v| v as u16))
    }

    /// Location-Path segments (§5.10.7).
    pub fn location_path(&self) -> Values<'a> {
        self.option_values(OptionNumber::LOCATION_PATH)
    }

    /// Uri-Path segments (§5.10.1), without copying. Each is the raw segment; see
    /// [`Values::matches`] to compare against a path.
    pub fn uri_path(&self) -> Values<'a> {
        self.option_values(OptionNumber::URI_PATH)
    }

    /// Content-Format (§5.10.3).
    pub fn content_format(&self) -> Result<Option<ContentFormat>, OptionError> {
        Ok(self
            .uint::<{ OptionNumber::CONTENT_FORMAT.0 }>()?
            .map(|v| ContentFormat(v as u16)))
    }

    /// Max-Age in seconds (§5.10.5); absent means the default of 60.
    pub fn max_age(&self) -> Result<Option<u32>, OptionError> {
        self.uint::<{ OptionNumber::MAX_AGE.0 }>()
    }

    /// Uri-Query arguments (§5.10.1).
    pub fn uri_query(&self) -> Values<'a> {
        self.option_values(OptionNumber::URI_QUERY)
    }

    /// Hop-Limit (RFC 8768 §3).
    pub fn hop_limit(&self) -> Result<Option<u8>, OptionError> {
        Ok(self
            .uint::<{ OptionNumber::HOP_LIMIT.0 }>()?
            .map(|v| v as u8))
    }

    /// Accept (§5.10.4).
    pub fn accept(&self) -> Result<Option<ContentFormat>, OptionError> {
        Ok(self
            .uint::<{ OptionNumber::ACCEPT.0 }>()?
            .map(|v| ContentFormat(v as u16)))
    }

    /// Location-Query arguments (§5.10.7).
    pub fn location_query(&self) -> Values<'a> {
        self.option_values(OptionNumber::LOCATION_QUERY)
    }

    /// Block2 (RFC 7959 §2.1).
    pub fn block2(&self) -> Result<Option<Block>, OptionError> {
        self.block::<{ OptionNumber::BLOCK2.0 }>()
    }

    /// Block1 (RFC 7959 §2.1).
    pub fn block1(&self) -> Result<Option<Block>, OptionError> {
        self.block::<{ OptionNumber::BLOCK1.0 }>()
    }

    /// Size2 (RFC 7959 §4): the size of the response body, or 0 in a request that asks
    /// for it.
    pub fn size2(&self) -> Result<Option<u32>, OptionError> {
        self.uint::<{ OptionNumber::SIZE2.0 }>()
    }

    /// Proxy-Uri (§5.10.2).
    pub fn proxy_uri(&self) -> Result<Option<&'a str>, OptionError> {
        self.string::<{ OptionNumber::PROXY_URI.0 }>()
    }

    /// Proxy-Scheme (§5.10.2).
    pub fn proxy_scheme(&self) -> Result<Option<&'a str>, OptionError> {
        self.string::<{ OptionNumber::PROXY_SCHEME.0 }>()
    }

    /// Size1 (§5.10.9, RFC 7959 §4): the size of the request body, or in a 4.13 response
    /// the largest body the server accepts.
    pub fn size1(&self) -> Result<Option<u32>, OptionError> {
        self.uint::<{ OptionNumber::SIZE1.0 }>()
    }

    /// Echo (RFC 9175 §2.2.1).
    pub fn echo(&self) -> Result<Option<&'a [u8]>, OptionError> {
        self.opaque::<{ OptionNumber::ECHO.0 }>()
    }

    /// No-Response (RFC 7967 §2).
    pub fn no_response(&self) -> Result<Option<NoResponse>, OptionError> {
        Ok(self
            .uint::<{ OptionNumber::NO_RESPONSE.0 }>()?
            .map(|v| NoResponse(v as u8)))
    }

    /// Every Request-Tag (RFC 9175 §3.2); a request may carry several.
    pub fn request_tags(&self) -> Values<'a> {
        self.option_values(OptionNumber::REQUEST_TAG)
    }
}

/// One line: type, code, message ID, token, options and payload size, e.g.
/// `CON GET MID 0x1234 token 0xdeadbeef; Uri-Path: "sensors"; Accept: 50 (application/json)`.
impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} MID {:#06x}",
            self.ty(),
            self.code(),
            self.message_id()
        )?;
        if !self.token().is_empty() {
            f.write_str(" token ")?;
            write_hex(f, self.token())?;
        }
        for opt in self.options() {
            write!(f, "; {opt}")?;
        }
        if !self.payload().is_empty() {
            write!(f, "; {} payload bytes", self.payload().len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Hex<'a>(&'a [u8]);
        impl fmt::Debug for Hex<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, self.0)
            }
        }
        f.debug_struct("Message")
            .field("ty", &self.ty())
            .field("code", &self.code())
            .field("message_id", &self.message_id())
            .field("token", &Hex(self.token()))
            .field("options", &DebugList(self.options()))
            .field("payload", &Hex(self.payload()))
            .finish()
    }
}

struct DebugList<'a>(Options<'a>);

impl fmt::Debug for DebugList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.clone().map(DisplayAsDebug))
            .finish()
    }
}

struct DisplayAsDebug<'a>(CoapOption<'a>);

impl fmt::Debug for DisplayAsDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Iterator over the options of a [`Message`], in wire order.
#[derive(Clone, Debug)]
pub struct Options<'a> {
    rest: &'a [u8],
    number: usize,
}

impl<'a> Iterator for Options<'a> {
    type Item = CoapOption<'a>;

    #[inline]
    fn next(&mut self) -> Option<CoapOption<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        // The region was validated by Message::parse, so this cannot fail; stopping is
        // the answer if it ever did.
        match read_option(&mut self.rest) {
            Ok((delta, value)) => {
                self.number += delta;
                Some(CoapOption {
                    number: OptionNumber(self.number as u16),
                    value,
                })
            }
            Err(_) => {
                self.rest = &[];
                None
            }
        }
    }
}

impl core::iter::FusedIterator for Options<'_> {}

/// Iterator over the values of one option number — Uri-Path segments, Uri-Query
/// arguments, ETags … — borrowed from the datagram.
///
/// ```
/// use coap_proto::wire::Message;
/// // CON GET /a/bc?x=1
/// let m = Message::parse(b"\x40\x01\x00\x01\xb1a\x02bc\x43x=1")?;
/// assert_eq!(m.uri_path().collect::<Vec<_>>(), [&b"a"[..], b"bc"]);
/// assert!(m.uri_path().matches("/a/bc"));
/// assert_eq!(m.uri_query().next(), Some(&b"x=1"[..]));
/// # Ok::<(), coap_proto::wire::ParseError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Values<'a> {
    options: Options<'a>,
    number: OptionNumber,
}

impl<'a> Values<'a> {
    /// Whether the values, read as path segments, spell `path`: segments separated by
    /// `/`, one leading `/` ignored. `""` and `"/"` match no segments at all.
    ///
    /// Segments are compared byte for byte, without percent-decoding `path`.
    ///
    /// ```
    /// # use coap_proto::wire::{Code, MessageBuilder, Message, Type};
    /// # let mut buf = [0u8; 64];
    /// # let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::GET, 1)?;
    /// # b.uri_path("a/b")?;
    /// # let len = b.finish().len();
    /// let msg = Message::parse(&buf[..len])?;
    /// assert!(msg.uri_path().matches("/a/b"));
    /// assert!(msg.uri_path().matches("a/b"));
    /// assert!(!msg.uri_path().matches("/a"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn matches(self, path: &str) -> bool {
        self.eq(PathSegments::new(path))
    }
}

impl<'a> Iterator for Values<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        for opt in self.options.by_ref() {
            if opt.number == self.number {
                return Some(opt.value);
            }
            if opt.number > self.number {
                // Options are sorted, so no later one can match.
                self.options.rest = &[];
                return None;
            }
        }
        None
    }
}

impl core::iter::FusedIterator for Values<'_> {}
