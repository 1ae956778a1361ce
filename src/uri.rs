//! `coap://` URIs and the options they stand for (RFC 7252 §6).
//!
//! Implements §6.1 (the `coap` scheme, default port 5683), §6.4 (decomposing a URI into
//! Uri-Host, Uri-Port, Uri-Path and Uri-Query) and §6.5 (composing a URI from a
//! request's options). Everything borrows the input; percent-decoding happens while the
//! options are written, so no buffer beyond the message is needed.
//!
//! ```
//! use coap_proto::uri::Uri;
//! use coap_proto::wire::{Code, Message, MessageBuilder, Type};
//!
//! let uri = Uri::parse("coap://sensor.local:5684/temp/out%20side?unit=C")?;
//! assert_eq!((uri.host(), uri.port()), ("sensor.local", 5684));
//!
//! let mut buf = [0u8; 64];
//! let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::GET, 1)?;
//! uri.write_options(&mut b)?;
//! let msg = Message::parse(b.finish())?;
//! assert!(msg.uri_path().matches("/temp/out side"));
//! assert_eq!(msg.uri_host()?, Some("sensor.local"));
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

use core::fmt;
use core::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::wire::{BuildError, Message, MessageBuilder, OptionNumber};

/// The default port of the `coap` scheme (§6.1).
pub const DEFAULT_PORT: u16 = 5683;
/// The default port of the `coaps` scheme (§6.2).
pub const DEFAULT_SECURE_PORT: u16 = 5684;

/// Longest value of Uri-Host, Uri-Path and Uri-Query (§5.10).
const MAX_VALUE: usize = 255;

/// Why a string is not a usable `coap://` URI.
///
/// ```
/// use coap_proto::uri::{Uri, UriError};
/// assert_eq!(Uri::parse("coap://host/#frag"), Err(UriError::Fragment));
/// assert_eq!(Uri::parse("http://host/"), Err(UriError::UnsupportedScheme));
/// assert_eq!(Uri::parse("coap://host:99999/"), Err(UriError::BadPort));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UriError {
    /// Not an absolute URI: no `scheme://` in front (§6.4 step 1).
    NotAbsolute,
    /// A scheme other than `coap` (§6.4 step 3), or `coaps` (§6.2) without the feature
    /// `dtls`.
    UnsupportedScheme,
    /// The URI has a `#fragment` (§6.4 step 4).
    Fragment,
    /// No host between `//` and the path.
    MissingHost,
    /// `user@` in front of the host, which CoAP has no use for.
    UserInfo,
    /// A port that is not a decimal number up to 65535.
    BadPort,
    /// An IPv6 literal in brackets that does not parse.
    BadIpLiteral,
    /// `%` not followed by two hexadecimal digits.
    BadPercentEncoding,
    /// A host, path segment or query argument longer than 255 bytes once decoded.
    ValueTooLong,
    /// A character that may not appear in a URI (space, control, non-ASCII).
    BadCharacter,
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UriError::NotAbsolute => "not an absolute URI (expected coap://host/path)",
            UriError::UnsupportedScheme => {
                "only the coap scheme is supported (and coaps with the feature dtls)"
            }
            UriError::Fragment => "CoAP URIs cannot have a #fragment",
            UriError::MissingHost => "the URI has no host",
            UriError::UserInfo => "CoAP URIs cannot carry user information (user@host)",
            UriError::BadPort => "the port is not a number from 0 to 65535",
            UriError::BadIpLiteral => "the bracketed IPv6 address does not parse",
            UriError::BadPercentEncoding => "'%' must be followed by two hexadecimal digits",
            UriError::ValueTooLong => "a host, path segment or query argument exceeds 255 bytes",
            UriError::BadCharacter => "the URI contains a character that must be percent-encoded",
        })
    }
}

impl core::error::Error for UriError {}

/// A parsed `coap://host[:port][/path][?query]` URI, borrowing the string.
///
/// ```
/// use coap_proto::uri::Uri;
/// let uri = Uri::parse("coap://[::1]:5684/sensors/temp?unit=C")?;
/// assert_eq!((uri.host(), uri.port(), uri.path()), ("::1", 5684, "/sensors/temp"));
/// assert_eq!(uri.query(), Some("unit=C"));
/// assert!(uri.ip().is_some_and(|ip| ip.is_loopback()));
/// # Ok::<(), coap_proto::uri::UriError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Uri<'a> {
    host: &'a str,
    port: u16,
    secure: bool,
    path: &'a str,
    query: Option<&'a str>,
}

impl<'a> Uri<'a> {
    /// Checks `uri` as §6.4 does: absolute, scheme `coap` (any case; `coaps` too with
    /// the feature `dtls`, §6.2), no fragment, valid percent-encodings, values within
    /// 255 bytes.
    pub fn parse(uri: &'a str) -> Result<Uri<'a>, UriError> {
        if uri.bytes().any(|c| !c.is_ascii_graphic()) {
            return Err(UriError::BadCharacter);
        }
        let (scheme, rest) = uri.split_once("://").ok_or(UriError::NotAbsolute)?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
        {
            return Err(UriError::NotAbsolute);
        }
        let secure = cfg!(feature = "dtls") && scheme.eq_ignore_ascii_case("coaps");
        if !scheme.eq_ignore_ascii_case("coap") && !secure {
            return Err(UriError::UnsupportedScheme);
        }
        if rest.contains('#') {
            return Err(UriError::Fragment);
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(i) => before_query.split_at(i),
            None => (before_query, ""),
        };
        if authority.contains('@') {
            return Err(UriError::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        let port = port.unwrap_or(if secure {
            DEFAULT_SECURE_PORT
        } else {
            DEFAULT_PORT
        });
        if host.is_empty() {
            return Err(UriError::MissingHost);
        }
        check_encoded(host)?;
        path.split('/').try_for_each(check_encoded)?;
        if let Some(q) = query {
            q.split('&').try_for_each(check_encoded)?;
        }
        Ok(Uri {
            host,
            port,
            secure,
            path,
            query,
        })
    }

    /// Whether the scheme is `coaps` (CoAP over DTLS, §6.2).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The host as written, IPv6 literals without their brackets.
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// The host as an IP address, when it is an IP literal or IPv4 address.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The port, [`DEFAULT_PORT`] when none was given.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path as written (percent-encoded), `""` or starting with `/`.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The query as written, without `?`.
    pub fn query(&self) -> Option<&'a str> {
        self.query
    }

    /// Writes the options of §6.4 for a request sent to the address this URI names:
    /// Uri-Host when the host is a name rather than an IP address (lowercase,
    /// percent-decoded), then Uri-Path and Uri-Query, percent-decoded. No Uri-Port: the
    /// destination port is the URI's port (step 7).
    pub fn write_options(&self, b: &mut MessageBuilder<'_>) -> Result<(), BuildError> {
        if self.ip().is_none() {
            let mut buf = [0u8; MAX_VALUE];
            let host = decode(self.host, &mut buf);
            host.make_ascii_lowercase();
            b.option(OptionNumber::URI_HOST, host)?;
        }
        self.write_path_and_query(b)
    }

    /// Writes only Uri-Path and Uri-Query (steps 8 and 9).
    pub fn write_path_and_query(&self, b: &mut MessageBuilder<'_>) -> Result<(), BuildError> {
        write_path_and_query(b, self.path, self.query)
    }
}

/// Writes a percent-encoded path (`/a/b%20c`) and query (`x=1&y`) as Uri-Path and
/// Uri-Query options (§6.4 steps 8 and 9). A path of `""` or `"/"` adds no option.
///
/// Fails with [`BuildError::OptionTooLong`] for a value over 255 bytes once decoded.
pub fn write_path_and_query(
    b: &mut MessageBuilder<'_>,
    path: &str,
    query: Option<&str>,
) -> Result<(), BuildError> {
    let mut buf = [0u8; MAX_VALUE];
    let path = path.strip_prefix('/').unwrap_or(path);
    if !path.is_empty() {
        for segment in path.split('/') {
            check_encoded(segment).map_err(|_| BuildError::OptionTooLong)?;
            b.option(OptionNumber::URI_PATH, decode(segment, &mut buf))?;
        }
    }
    for argument in query.into_iter().flat_map(|q| q.split('&')) {
        check_encoded(argument).map_err(|_| BuildError::OptionTooLong)?;
        b.option(OptionNumber::URI_QUERY, decode(argument, &mut buf))?;
    }
    Ok(())
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "coaps" } else { "coap" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]", self.host)?;
        } else {
            write!(f, "{scheme}://{}", self.host)?;
        }
        let default = if self.secure {
            DEFAULT_SECURE_PORT
        } else {
            DEFAULT_PORT
        };
        if self.port != default {
            write!(f, ":{}", self.port)?;
        }
        f.write_str(if self.path.is_empty() { "/" } else { self.path })?;
        match self.query {
            Some(q) => write!(f, "?{q}"),
            None => Ok(()),
        }
    }
}

/// The URI of a request, composed from its options and destination as §6.5 says; shown
/// with `Display`.
///
/// ```
/// use coap_proto::uri::RequestUri;
/// use coap_proto::wire::{Code, Message, MessageBuilder, Type};
///
/// let mut buf = [0u8; 64];
/// let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::GET, 1)?;
/// b.uri_path("/a b/c")?.uri_query("x=1&2")?;
/// let msg = Message::parse(b.finish())?;
/// let uri = RequestUri::new(&msg, "[::1]:5683".parse()?);
/// assert_eq!(uri.to_string(), "coap://[::1]/a%20b/c?x=1%262");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RequestUri<'m, 'a> {
    message: &'m Message<'a>,
    destination: SocketAddr,
}

impl<'m, 'a> RequestUri<'m, 'a> {
    /// The URI of `message` sent to `destination`.
    pub fn new(message: &'m Message<'a>, destination: SocketAddr) -> Self {
        RequestUri {
            message,
            destination,
        }
    }
}

impl fmt::Display for RequestUri<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("coap://")?;
        match self.message.uri_host() {
            Ok(Some(host)) => encode(f, host.as_bytes(), |c| c.is_ascii_graphic())?,
            _ => match self.destination.ip() {
                IpAddr::V4(ip) => write!(f, "{ip}")?,
                IpAddr::V6(ip) => write!(f, "[{ip}]")?,
            },
        }
        let port = match self.message.uri_port() {
            Ok(Some(port)) => port,
            _ => self.destination.port(),
        };
        if port != DEFAULT_PORT {
            write!(f, ":{port}")?;
        }
        let mut empty = true;
        for segment in self.message.uri_path() {
            empty = false;
            f.write_str("/")?;
            encode(f, segment, |c| {
                unreserved(c) || sub_delim(c) || b":@".contains(&c)
            })?;
        }
        if empty {
            f.write_str("/")?;
        }
        for (i, argument) in self.message.uri_query().enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            encode(f, argument, |c| {
                unreserved(c) || (sub_delim(c) && c != b'&') || b":@/?".contains(&c)
            })?;
        }
        Ok(())
    }
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~".contains(&c)
}

fn sub_delim(c: u8) -> bool {
    b"!$&'()*+,;=".contains(&c)
}

fn encode(f: &mut fmt::Formatter<'_>, bytes: &[u8], keep: impl Fn(u8) -> bool) -> fmt::Result {
    for &c in bytes {
        if keep(c) {
            fmt::Write::write_char(f, c as char)?;
        } else {
            write!(f, "%{c:02X}")?;
        }
    }
    Ok(())
}

/// The host, and the port if the authority names one.
fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), UriError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (literal, after) = rest.split_once(']').ok_or(UriError::BadIpLiteral)?;
        literal
            .parse::<Ipv6Addr>()
            .map_err(|_| UriError::BadIpLiteral)?;
        match after {
            "" => (literal, None),
            _ => (
                literal,
                Some(after.strip_prefix(':').ok_or(UriError::BadPort)?),
            ),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.bytes().all(|c| c.is_ascii_digit()) => {
            Some(p.parse().map_err(|_| UriError::BadPort)?)
        }
        Some(_) => return Err(UriError::BadPort),
    };
    Ok((host, port))
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Checks the percent-encodings of `s` and that it decodes to at most 255 bytes.
fn check_encoded(s: &str) -> Result<(), UriError> {
    let bytes = s.as_bytes();
    let (mut i, mut len) = (0, 0);
    while i < bytes.len() {
        if bytes[i] == b'%' {
            match (
                bytes.get(i + 1).and_then(|&c| hex(c)),
                bytes.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(_), Some(_)) => i += 3,
                _ => return Err(UriError::BadPercentEncoding),
            }
        } else {
            i += 1;
        }
        len += 1;
    }
    if len > MAX_VALUE {
        return Err(UriError::ValueTooLong);
    }
    Ok(())
}

/// Percent-decodes `s` (already checked by [`check_encoded`]) into `buf`.
fn decode<'b>(s: &str, buf: &'b mut [u8; MAX_VALUE]) -> &'b mut [u8] {
    let bytes = s.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < bytes.len() && n < MAX_VALUE {
        let hi = bytes.get(i + 1).and_then(|&c| hex(c));
        let lo = bytes.get(i + 2).and_then(|&c| hex(c));
        buf[n] = match (bytes[i], hi, lo) {
            (b'%', Some(hi), Some(lo)) => {
                i += 3;
                hi << 4 | lo
            }
            (c, _, _) => {
                i += 1;
                c
            }
        };
        n += 1;
    }
    &mut buf[..n]
}
