//! Writing messages into a caller's buffer (RFC 7252 §3, §3.1; RFC 8974 §2.1).

use core::fmt;

use super::message::read_option;
use super::option::{PathSegments, registered_len};
use super::{
    Block, CoapOption, Code, ContentFormat, Message, NoResponse, OptionError, OptionNumber, Type,
    encode_uint,
};

/// The longest token RFC 8974 can express: TKL 14 with 0xffff + 269.
pub const MAX_TOKEN_LEN: usize = 65535 + 269;
/// The longest option value the option length field can express (§3.1).
pub const MAX_OPTION_LEN: usize = 65535 + 269;

/// Why a [`MessageBuilder`] call was refused. A refused call leaves the message as it was.
///
/// ```
/// use coap_proto::wire::{BuildError, Code, MessageBuilder, Type};
/// let mut buf = [0u8; 8];
/// let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::GET, 1)?;
/// assert_eq!(b.payload(b"too long").err(), Some(BuildError::BufferTooSmall { needed: 13 }));
/// assert_eq!(b.finish().len(), 4, "unchanged");
/// # Ok::<(), BuildError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BuildError {
    /// The buffer cannot hold the message; it would need `needed` bytes in all.
    BufferTooSmall {
        /// The buffer length the call would have needed.
        needed: usize,
    },
    /// An Empty message (0.00) cannot carry a token, options or a payload (§4.1).
    EmptyMessageWithContent,
    /// The token is longer than [`MAX_TOKEN_LEN`].
    TokenTooLong,
    /// The token must be set before any option or payload.
    TokenAfterOptions,
    /// Options must be added before the payload.
    OptionAfterPayload,
    /// The payload was already written.
    PayloadAlreadySet,
    /// An option value longer than [`MAX_OPTION_LEN`].
    OptionTooLong,
    /// A typed setter was given a value its option does not permit.
    InvalidOption(OptionError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BuildError::BufferTooSmall { needed } => {
                write!(f, "buffer too small: the message needs {needed} bytes")
            }
            BuildError::EmptyMessageWithContent => {
                f.write_str("an Empty message cannot carry a token, options or payload")
            }
            BuildError::TokenTooLong => write!(f, "token longer than {MAX_TOKEN_LEN} bytes"),
            BuildError::TokenAfterOptions => f.write_str("token set after options or payload"),
            BuildError::OptionAfterPayload => f.write_str("option added after the payload"),
            BuildError::PayloadAlreadySet => f.write_str("payload already written"),
            BuildError::OptionTooLong => {
                write!(f, "option value longer than {MAX_OPTION_LEN} bytes")
            }
            BuildError::InvalidOption(e) => write!(f, "invalid option: {e}"),
        }
    }
}

impl core::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            BuildError::InvalidOption(e) => Some(e),
            _ => None,
        }
    }
}

impl From<OptionError> for BuildError {
    fn from(e: OptionError) -> Self {
        BuildError::InvalidOption(e)
    }
}

/// Bytes an extended delta or length field takes for `v` (§3.1).
#[inline]
const fn extended_len(v: usize) -> usize {
    if v < 13 {
        0
    } else if v < 269 {
        1
    } else {
        2
    }
}

/// Bytes an option header takes for `delta` and a value of `len` bytes.
#[inline]
const fn header_len(delta: usize, len: usize) -> usize {
    1 + extended_len(delta) + extended_len(len)
}

/// Writes the extended bytes for `v` at `out[*at..]` and returns its nibble (§3.1; also
/// the TKL encoding of RFC 8974). `out` was sized with `extended_len`, so the writes
/// always land; a short `out` would only lose bytes, never panic.
#[inline]
fn put_extended(out: &mut [u8], at: &mut usize, v: usize) -> u8 {
    let (nibble, ext) = if v < 13 {
        return v as u8;
    } else if v < 269 {
        (13, [(v - 13) as u8, 0])
    } else {
        (14, ((v - 269) as u16).to_be_bytes())
    };
    for &b in &ext[..extended_len(v)] {
        if let Some(slot) = out.get_mut(*at) {
            *slot = b;
        }
        *at += 1;
    }
    nibble
}

/// Writes an option header into `out`, which holds at least `header_len(delta, len)`
/// bytes; returns the bytes written.
#[inline]
fn write_header(out: &mut [u8], delta: usize, len: usize) -> usize {
    let mut at = 1;
    let d = put_extended(out, &mut at, delta);
    let l = put_extended(out, &mut at, len);
    if let Some(first) = out.first_mut() {
        *first = (d << 4) | l;
    }
    at
}

/// The error for a value longer than `max_len`: a raw option beyond what the length
/// field can express, or a typed one beyond its registration.
fn bad_length(number: OptionNumber, len: usize, max_len: usize) -> BuildError {
    if max_len == MAX_OPTION_LEN {
        BuildError::OptionTooLong
    } else {
        BuildError::InvalidOption(OptionError::BadLength { number, len })
    }
}

/// The option in front of which an insertion goes.
#[derive(Clone, Copy)]
struct NextOption {
    number: usize,
    value_len: usize,
    header_len: usize,
}

/// Copies `src` into `dst` (same length). Values up to 16 bytes — most tokens and
/// options — are copied with two overlapping fixed-size moves instead of a call to
/// `memcpy`, which costs more than the copy at these sizes.
#[inline]
fn copy_value(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if n != dst.len() {
        return;
    }
    match n {
        0 => {}
        1..=3 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..=7 => {
            dst[..4].copy_from_slice(&src[..4]);
            dst[n - 4..].copy_from_slice(&src[n - 4..]);
        }
        8..=16 => {
            dst[..8].copy_from_slice(&src[..8]);
            dst[n - 8..].copy_from_slice(&src[n - 8..]);
        }
        _ => dst.copy_from_slice(src),
    }
}

/// What adds a message's options and payload once its header and token are written.
/// The endpoint's internal paths take it as a trait object, so that each closure an
/// application passes instantiates only a thin wrapper, not the whole path again (code
/// size on firmware, where every `respond` call site would otherwise copy it).
pub(crate) type Fill<'f> = dyn FnMut(&mut MessageBuilder<'_>) -> Result<(), BuildError> + 'f;

/// A one-shot `build` closure as a [`Fill`]; called again, it adds nothing.
pub(crate) fn once<'f>(
    build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError> + 'f,
) -> impl FnMut(&mut MessageBuilder<'_>) -> Result<(), BuildError> + 'f {
    let mut build = Some(build);
    move |b| build.take().map_or(Ok(()), |f| f(b))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Token,
    Options,
    Payload,
}

/// Writes one CoAP message into a caller-provided buffer (RFC 7252 §3).
///
/// Call order: [`new`](Self::new) writes the header; then optionally
/// [`token`](Self::token); then options in **any order**; then at most one payload;
/// then [`finish`](Self::finish). Options added out of order are inserted where they
/// belong (equal numbers keep the order they were added in), so the result is always
/// sorted as §3.1 requires. Appending in ascending order is the fast path.
///
/// Every call either succeeds or returns a [`BuildError`] and leaves the message as it
/// was — in particular [`BuildError::BufferTooSmall`] reports the buffer size the call
/// needed. Whatever the builder produces, [`Message::parse`](super::Message::parse)
/// accepts and reads back the same.
///
/// Typed setters (`uri_path`, `content_format`, `block2` …) encode minimally and check
/// the value against the option's registration; [`option`](Self::option) writes any
/// value as given.
///
/// ```
/// use coap_proto::wire::{Code, ContentFormat, Message, MessageBuilder, Type};
///
/// let mut buf = [0u8; 128];
/// let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::GET, 0x1234)?;
/// b.token(&[0xde, 0xad, 0xbe, 0xef])?;
/// b.accept(ContentFormat::JSON)?; // out of order: inserted after the path
/// b.uri_path("/sensors/temperature")?;
/// let bytes = b.finish();
/// assert_eq!(bytes.len(), 30);
///
/// let msg = Message::parse(bytes)?;
/// assert!(msg.uri_path().matches("/sensors/temperature"));
/// assert_eq!(msg.accept()?, Some(ContentFormat::JSON));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MessageBuilder<'b> {
    buf: &'b mut [u8],
    len: usize,
    options_start: usize,
    last_number: u16,
    stage: Stage,
    /// Code 0.00: nothing may follow the header (§4.1).
    empty_code: bool,
}

// A builder always holds at least the header, so an `is_empty` would always be false.
#[allow(clippy::len_without_is_empty)]
impl<'b> MessageBuilder<'b> {
    /// Starts a message: writes the 4-byte header into `buf`.
    #[inline]
    pub fn new(
        buf: &'b mut [u8],
        ty: Type,
        code: Code,
        message_id: u16,
    ) -> Result<MessageBuilder<'b>, BuildError> {
        let Some(header) = buf.first_chunk_mut::<4>() else {
            return Err(BuildError::BufferTooSmall { needed: 4 });
        };
        let [m0, m1] = message_id.to_be_bytes();
        *header = [0x40 | (ty.bits() << 4), code.to_u8(), m0, m1];
        Ok(MessageBuilder {
            buf,
            len: 4,
            options_start: 4,
            last_number: 0,
            stage: Stage::Token,
            empty_code: code.is_empty(),
        })
    }

    /// Starts a copy of `msg` in `buf`: header, token and options, each option value as
    /// it was on the wire. The payload is left to the caller, so options may still be
    /// added. Followed by `.payload(msg.payload())` the result is byte-identical to `msg`.
    ///
    /// ```
    /// use coap_proto::wire::{Message, MessageBuilder};
    /// let bytes = b"\x44\x01\x12\x34\xde\xad\xbe\xef\xb1a\xff!";
    /// let msg = Message::parse(bytes)?;
    /// let mut buf = [0u8; 32];
    /// let mut b = MessageBuilder::from_message(&mut buf, &msg)?;
    /// b.payload(msg.payload())?;
    /// assert_eq!(b.finish(), bytes);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn from_message(
        buf: &'b mut [u8],
        msg: &Message<'_>,
    ) -> Result<MessageBuilder<'b>, BuildError> {
        let mut b = MessageBuilder::new(buf, msg.ty(), msg.code(), msg.message_id())?;
        b.token(msg.token())?;
        for opt in msg.options() {
            b.option(opt.number, opt.value)?;
        }
        Ok(b)
    }

    #[inline]
    fn is_empty_code(&self) -> bool {
        self.empty_code
    }

    #[inline]
    fn ensure(&self, needed: usize) -> Result<(), BuildError> {
        if needed > self.buf.len() {
            Err(BuildError::BufferTooSmall { needed })
        } else {
            Ok(())
        }
    }

    /// Sets the token (0–65804 bytes, RFC 8974 §2.1). It may be set again, but only
    /// before any option or payload.
    #[inline]
    pub fn token(&mut self, token: &[u8]) -> Result<&mut Self, BuildError> {
        if self.stage != Stage::Token {
            return Err(BuildError::TokenAfterOptions);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(BuildError::TokenTooLong);
        }
        if !token.is_empty() && self.is_empty_code() {
            return Err(BuildError::EmptyMessageWithContent);
        }
        let token_at = 4 + extended_len(token.len());
        let end = token_at + token.len();
        self.ensure(end)?;
        let mut at = 4;
        let tkl = put_extended(self.buf, &mut at, token.len());
        self.buf[0] = (self.buf[0] & 0xf0) | tkl;
        copy_value(&mut self.buf[token_at..end], token);
        self.len = end;
        self.options_start = end;
        Ok(self)
    }

    /// Adds an option with `value` written as given (not checked against the registry).
    ///
    /// Options may come in any order; see the type's documentation.
    #[inline]
    pub fn option(&mut self, number: OptionNumber, value: &[u8]) -> Result<&mut Self, BuildError> {
        self.put(number, core::iter::once(value), MAX_OPTION_LEN)?;
        Ok(self)
    }

    /// Writes a run of options that share `number`, each value at most `max_len` bytes,
    /// where they belong. A refused call leaves `len` — and so the message — as it was.
    #[inline]
    fn put<'v>(
        &mut self,
        number: OptionNumber,
        values: impl Iterator<Item = &'v [u8]> + Clone,
        max_len: usize,
    ) -> Result<(), BuildError> {
        if self.stage == Stage::Payload {
            return Err(BuildError::OptionAfterPayload);
        }
        if self.is_empty_code() {
            return Err(BuildError::EmptyMessageWithContent);
        }
        if number.0 >= self.last_number {
            self.append_run(number, values, max_len)
        } else {
            self.insert_run(number, values, max_len)
        }
    }

    /// The fast path: options at the end. They are written straight into the buffer
    /// beyond `len`, which only moves once all of them fit.
    #[inline]
    fn append_run<'v>(
        &mut self,
        number: OptionNumber,
        mut values: impl Iterator<Item = &'v [u8]>,
        max_len: usize,
    ) -> Result<(), BuildError> {
        let mut pos = self.len;
        let mut delta = (number.0 - self.last_number) as usize;
        while let Some(v) = values.next() {
            if v.len() > max_len {
                return Err(bad_length(number, v.len(), max_len));
            }
            let value_at = pos + header_len(delta, v.len());
            let end = value_at + v.len();
            if end > self.buf.len() {
                let mut needed = end;
                for v in values {
                    if v.len() > max_len {
                        return Err(bad_length(number, v.len(), max_len));
                    }
                    needed += header_len(0, v.len()) + v.len();
                }
                return Err(BuildError::BufferTooSmall { needed });
            }
            write_header(&mut self.buf[pos..], delta, v.len());
            copy_value(&mut self.buf[value_at..end], v);
            pos = end;
            delta = 0;
        }
        if pos != self.len {
            self.len = pos;
            self.last_number = number.0;
            self.stage = Stage::Options;
        }
        Ok(())
    }

    /// Options below the largest so far go in front of the first option with a larger
    /// number, whose delta then shrinks and is re-encoded. The size is computed first.
    #[cold]
    #[inline(never)]
    fn insert_run<'v>(
        &mut self,
        number: OptionNumber,
        values: impl Iterator<Item = &'v [u8]> + Clone,
        max_len: usize,
    ) -> Result<(), BuildError> {
        let number = number.0 as usize;
        let (at, prev, next) = self.slot(number);
        let mut run = 0;
        let mut delta = number - prev;
        for v in values.clone() {
            if v.len() > max_len {
                return Err(bad_length(OptionNumber(number as u16), v.len(), max_len));
            }
            run += header_len(delta, v.len()) + v.len();
            delta = 0;
        }
        if run == 0 {
            return Ok(());
        }
        let next_header = next.map_or(0, |n| header_len(n.number - number, n.value_len));
        let old_header = next.map_or(0, |n| n.header_len);
        // Never below self.len: splitting a delta saves at most one extended byte, and
        // the run's own header is at least one byte.
        let new_len = self.len + run + next_header - old_header;
        self.ensure(new_len)?;
        if let Some(next) = next {
            crate::shift::shift(self.buf, at + old_header..self.len, at + run + next_header);
            write_header(
                &mut self.buf[at + run..],
                next.number - number,
                next.value_len,
            );
        }
        let mut pos = at;
        let mut delta = number - prev;
        for v in values {
            pos += write_header(&mut self.buf[pos..], delta, v.len());
            self.buf[pos..pos + v.len()].copy_from_slice(v);
            pos += v.len();
            delta = 0;
        }
        self.len = new_len;
        self.stage = Stage::Options;
        Ok(())
    }

    /// Where an option numbered `number` (below the largest so far) goes: the offset of
    /// the first option with a larger number, the number before it, and that option.
    fn slot(&self, number: usize) -> (usize, usize, Option<NextOption>) {
        let mut rest = self.buf.get(self.options_start..self.len).unwrap_or(&[]);
        let mut prev = 0;
        // The region holds only options this builder wrote, so reading cannot fail,
        // and since number < last_number a larger option exists.
        while let Some(at) = self.len.checked_sub(rest.len()) {
            let Ok((delta, value)) = read_option(&mut rest) else {
                break;
            };
            if prev + delta > number {
                let header_len = (self.len - rest.len()) - at - value.len();
                let next = NextOption {
                    number: prev + delta,
                    value_len: value.len(),
                    header_len,
                };
                return (at, prev, Some(next));
            }
            prev += delta;
        }
        (self.len, prev, None)
    }

    /// Adds option `N` after checking the length of `value` against its registration;
    /// the range is known at compile time.
    #[inline]
    fn checked<const N: u16>(&mut self, value: &[u8]) -> Result<&mut Self, BuildError> {
        let (min, max) = const { registered_len::<N>() };
        if value.len() < min {
            return Err(BuildError::InvalidOption(OptionError::BadLength {
                number: OptionNumber(N),
                len: value.len(),
            }));
        }
        self.put(OptionNumber(N), core::iter::once(value), max)?;
        Ok(self)
    }

    /// Adds a uint option, minimally encoded (RFC 7252 §3.2), after checking its length
    /// against the registry.
    #[inline]
    pub fn uint_option(
        &mut self,
        number: OptionNumber,
        value: u32,
    ) -> Result<&mut Self, BuildError> {
        let mut tmp = [0; 4];
        let bytes = encode_uint(value, &mut tmp);
        CoapOption {
            number,
            value: bytes,
        }
        .check()?;
        self.option(number, bytes)
    }

    /// A uint option whose type already guarantees a permitted length.
    #[inline]
    fn small_uint(&mut self, number: OptionNumber, value: u32) -> Result<&mut Self, BuildError> {
        let mut tmp = [0; 4];
        let bytes = encode_uint(value, &mut tmp);
        self.put(number, core::iter::once(bytes), 4)?;
        Ok(self)
    }

    /// Adds one Uri-Path option per segment of `path`, split at `/`; one leading `/` is
    /// ignored and `""` or `"/"` adds nothing (RFC 7252 §6.4 step 8). Segments are
    /// written as given, without percent-decoding.
    #[inline]
    pub fn uri_path(&mut self, path: &str) -> Result<&mut Self, BuildError> {
        self.segments(OptionNumber::URI_PATH, path)
    }

    /// Adds one Location-Path option per segment of `path`, as [`uri_path`](Self::uri_path) does.
    #[inline]
    pub fn location_path(&mut self, path: &str) -> Result<&mut Self, BuildError> {
        self.segments(OptionNumber::LOCATION_PATH, path)
    }

    #[inline]
    fn segments(&mut self, number: OptionNumber, path: &str) -> Result<&mut Self, BuildError> {
        // A &str is UTF-8 already, so only the length needs checking.
        self.put(number, PathSegments::new(path), 255)?;
        Ok(self)
    }

    /// Adds one Uri-Query option (one `name=value` argument, §5.10.1).
    #[inline]
    pub fn uri_query(&mut self, argument: &str) -> Result<&mut Self, BuildError> {
        self.checked::<{ OptionNumber::URI_QUERY.0 }>(argument.as_bytes())
    }

    /// Adds one Location-Query option (§5.10.7).
    #[inline]
    pub fn location_query(&mut self, argument: &str) -> Result<&mut Self, BuildError> {
        self.checked::<{ OptionNumber::LOCATION_QUERY.0 }>(argument.as_bytes())
    }

    /// Adds Uri-Host (§5.10.1).
    #[inline]
    pub fn uri_host(&mut self, host: &str) -> Result<&mut Self, BuildError> {
        self.checked::<{ OptionNumber::URI_HOST.0 }>(host.as_bytes())
    }

    /// Adds Uri-Port (§5.10.1).
    #[inline]
    pub fn uri_port(&mut self, port: u16) -> Result<&mut Self, BuildError> {
        self.small_uint(OptionNumber::URI_PORT, port as u32)
    }

    /// Adds Content-Format (§5.10.3).
    #[inline]
    pub fn content_format(&mut self, format: ContentFormat) -> Result<&mut Self, BuildError> {
        self.small_uint(OptionNumber::CONTENT_FORMAT, format.0 as u32)
    }

    /// Adds Accept (§5.10.4).
    #[inline]
    pub fn accept(&mut self, format: ContentFormat) -> Result<&mut Self, BuildError> {
        self.small_uint(OptionNumber::ACCEPT, format.0 as u32)
    }

    /// Adds Max-Age in seconds (§5.10.5).
    #[inline]
    pub fn max_age(&mut self, seconds: u32) -> Result<&mut Self, BuildError> {
        self.small_uint(OptionNumber::MAX_AGE, seconds)
    }

    /// Adds an ETag of 1–8 bytes (§5.10.6).
    #[inline]
    pub fn etag(&mut self, etag: &[u8]) -> Result<&mut Self, BuildError> {
        self.checked::<{ OptionNumber::ETAG.0 }>(etag)
    }

    /// Adds an If-Match of 0–8 bytes (§5.10.8.1).
    #[inline]
    pub fn if_match(&mut self, etag: &[u8]) -> Result<&mut Self, BuildError> {
        self.checked::<{ OptionNumber::IF_MATCH.0 }>(etag)
    }

    /// Adds If-None-Match (§5.10.8.2).
    #[inline]
    pub fn if_none_match(&mut self) -> Result<&mut Self, BuildError> {
        self.option(OptionNumber::IF_NONE_MATCH, &[])
    }

    /// Adds Observe, a value of at most 24 bits (RFC 7641 §2).
    #[inline]
    pub fn observe(&mut self, value: u32) -> Result<&mut Self, BuildError> {
        self.uint_option(OptionNumber::OBSERVE, value)
    }

    /// Adds Block1 (RFC 7959 §2.1).
    #[inline]
    pub fn block1(&mut self, block: Block) -> Result<&mut Self, BuildError> {
        self.small_uint(OptionNumber::BLOCK1, block.to_uint())
    }

    /// Adds Block2 (RFC 7959 §2.1).
    #[inline]
    pub fn block2(&mut self, block: Block) -> Result<&mut Self, BuildError> {
        self.small_uint(OptionNumber::BLOCK2, block.to_uint())
    }

    /// Adds Size1 (RFC 7959 §4).
    #[inline]
    pub fn size1(&mut self, size: u32) -> Result<&mut Self, BuildError> {
        self.small_uint(OptionNumber::SIZE1, size)
    }

    /// Adds Size2 (RFC 7959 §4).
    #[inline]
    pub fn size2(&mut self, size: u32) -> Result<&mut Self, BuildError> {
        self.small_uint(OptionNumber::SIZE2, size)
    }

    /// Adds Proxy-Uri (§5.10.2).
    #[inline]
    pub fn proxy_uri(&mut self, uri: &str) -> Result<&mut Self, BuildError> {
        self.checked::<{ OptionNumber::PROXY_URI.0 }>(uri.as_bytes())
    }

    /// Adds Proxy-Scheme (§5.10.2).
    #[inline]
    pub fn proxy_scheme(&mut self, scheme: &str) -> Result<&mut Self, BuildError> {
        self.checked::<{ OptionNumber::PROXY_SCHEME.0 }>(scheme.as_bytes())
    }

    /// Adds No-Response (RFC 7967 §2).
    #[inline]
    pub fn no_response(&mut self, value: NoResponse) -> Result<&mut Self, BuildError> {
        self.small_uint(OptionNumber::NO_RESPONSE, value.0 as u32)
    }

    /// Adds Echo, 1–40 bytes (RFC 9175 §2.2.1).
    #[inline]
    pub fn echo(&mut self, value: &[u8]) -> Result<&mut Self, BuildError> {
        self.checked::<{ OptionNumber::ECHO.0 }>(value)
    }

    /// Adds a Request-Tag of 0–8 bytes (RFC 9175 §3.2).
    #[inline]
    pub fn request_tag(&mut self, tag: &[u8]) -> Result<&mut Self, BuildError> {
        self.checked::<{ OptionNumber::REQUEST_TAG.0 }>(tag)
    }

    /// Adds Hop-Limit (RFC 8768 §3).
    #[inline]
    pub fn hop_limit(&mut self, limit: u8) -> Result<&mut Self, BuildError> {
        self.checked::<{ OptionNumber::HOP_LIMIT.0 }>(&[limit])
    }

    /// How many payload bytes still fit after the payload marker; 0 if not even the
    /// marker and one byte fit, or the payload was already written.
    #[inline]
    pub fn payload_capacity(&self) -> usize {
        if self.stage == Stage::Payload || self.is_empty_code() {
            return 0;
        }
        self.buf.len().saturating_sub(self.len + 1)
    }

    /// Writes the payload marker and `payload`. An empty payload writes nothing (§3: no
    /// marker without payload).
    #[inline]
    pub fn payload(&mut self, payload: &[u8]) -> Result<&mut Self, BuildError> {
        self.payload_mut(payload.len())?.copy_from_slice(payload);
        Ok(self)
    }

    /// Writes the payload marker and reserves `len` payload bytes, returned for the
    /// caller to fill in place (e.g. straight from flash). The bytes start zeroed only if
    /// the buffer was; whatever is left in them is sent.
    #[inline]
    pub fn payload_mut(&mut self, len: usize) -> Result<&mut [u8], BuildError> {
        if self.stage == Stage::Payload {
            return Err(BuildError::PayloadAlreadySet);
        }
        if len == 0 {
            self.stage = Stage::Payload;
            return Ok(&mut []);
        }
        if self.is_empty_code() {
            return Err(BuildError::EmptyMessageWithContent);
        }
        let start = self.len + 1;
        self.ensure(start + len)?;
        self.buf[self.len] = 0xff;
        self.len = start + len;
        self.stage = Stage::Payload;
        Ok(&mut self.buf[start..start + len])
    }

    /// The length of the message written so far.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The message written so far.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Finishes the message and returns its bytes.
    #[inline]
    pub fn finish(self) -> &'b [u8] {
        let len = self.len;
        let buf: &'b [u8] = self.buf;
        &buf[..len]
    }
}
