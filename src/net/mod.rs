//! Ready-made clients and servers over operating-system sockets (feature `std`;
//! `tokio` with feature `tokio`).
//!
//! The adapters here only run the [`Endpoint`](crate::Endpoint) run loop over a socket:
//! every protocol rule (retransmission, deduplication, block-wise transfer, separate
//! responses, 4.04/4.05) is the core's. What this module adds is owned request and
//! response values, so that applications need not handle borrowed messages:
//!
//! - [`Request`]: what a client sends and what a server's handler receives.
//! - [`Response`]: what a handler answers and what a client gets back.
//! - [`Error`]: why a client call got no response.
//!
//! [`blocking`] has a blocking client (the calls of RIOT's nanocoap_sock) and a server
//! with a resource table; `tokio` the same, asynchronous.

use std::borrow::Cow;
use std::fmt;
use std::string::{String, ToString};
use std::vec::Vec;

use crate::TransmissionParams;
use crate::block::{DownloadError, UploadError};
use crate::uri::UriError;
use crate::wire::{BuildError, Code, ContentFormat, Message, MessageBuilder, OptionNumber};
use core::time::Duration;

pub mod blocking;
mod client;
mod group;
pub use group::{Group, GroupResponse};
mod transport;
#[cfg(feature = "dtls")]
pub use transport::Dtls;
pub use transport::{Transport, Udp};
#[cfg(fuzzing)]
pub mod fuzzing;
mod server;
#[cfg(feature = "tokio")]
pub mod tokio;

/// A CoAP request as an owned value: built by a client, handed to a server's handler.
///
/// ```
/// use coap_proto::net::Request;
/// use coap_proto::wire::{Code, ContentFormat};
///
/// let req = Request::post("/sensors/log")
///     .query("unit=C")
///     .content_format(ContentFormat::TEXT_PLAIN)
///     .payload("21.5")
///     .non_confirmable();
/// assert_eq!(req.method, Code::POST);
/// assert_eq!(req.to_string(), "POST /sensors/log?unit=C (4 bytes)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// The method.
    pub method: Code,
    /// The path, `/` separated. For a client: as in a URI (percent-encodings are
    /// decoded into the Uri-Path options). For a handler: the Uri-Path options joined.
    pub path: String,
    /// Uri-Query arguments, e.g. `rt=temperature`.
    pub query: Vec<String>,
    /// Uri-Host, when the target is a name rather than an address.
    pub host: Option<String>,
    /// The body (for a block-wise upload: the whole body).
    pub payload: Vec<u8>,
    /// Content-Format of the body.
    pub content_format: Option<ContentFormat>,
    /// Accept: the Content-Format wanted in the response.
    pub accept: Option<ContentFormat>,
    /// Any other options, by number.
    pub options: Vec<(OptionNumber, Vec<u8>)>,
    /// Client only: send as NON.
    pub non_confirmable: bool,
    /// Client only: the token to use (at most 8 bytes) instead of a random one.
    pub token: Option<Vec<u8>>,
    /// Client only: observe the resource (RFC 7641; GET or FETCH). Used by the clients'
    /// `observe` calls.
    pub observe: bool,
    /// Client only, for an observation: register again when Max-Age of the last
    /// notification ran out without a newer one (RFC 7641 §3.3.1). Both the blocking
    /// and the tokio client do it.
    pub reregister: bool,
    /// Client only: send the payload in Block1 blocks of `2^(szx+4)` bytes. Without it,
    /// a payload over 1024 bytes goes in 1024-byte blocks.
    pub block1_szx: Option<u8>,
    /// Client only: ask for Block2 blocks of `2^(szx+4)` bytes.
    pub block2_szx: Option<u8>,
    /// Client only: start the download at the block holding this byte offset.
    pub block2_offset: usize,
    /// Client only: transmission parameters for this request.
    pub params: Option<TransmissionParams>,
    /// Client only: the most the whole request may take, from the call until the
    /// response (every block of it) is in — CON or NON; then [`Error::TimedOut`].
    /// Default: the RFC 7252 give-up times only.
    pub timeout: Option<Duration>,
    /// Client only: how long a CON request waits for its separate response after the
    /// server's empty ACK (default: EXCHANGE_LIFETIME, 247 s).
    pub separate_timeout: Option<Duration>,
    /// Client only: the largest response body collected (default
    /// [`DEFAULT_MAX_BODY`]); a larger one ends the request with
    /// [`Error::BodyTooLarge`] as soon as Size2 or the bytes received say so. Bodies
    /// handed out block by block are not collected and not limited.
    pub max_body: Option<usize>,
    /// Client only: the request goes to a group (RFC 7252 §8.1) — as NON, and
    /// `timeout` is how long it collects answers. Set by the clients' `group_request`
    /// calls.
    pub group: bool,
    /// Client only: when the server answers 4.29 Too Many Requests or 5.03 Service
    /// Unavailable, wait its Max-Age (default 60 s; RFC 8516 §4, RFC 7252 §5.9.3.4) and
    /// send the request again, at most 3 times, within `timeout` if one is set; the last
    /// answer is returned. Off by default: the answer is returned as it came.
    pub retry_busy: bool,
    /// Client only: keep the request's buffer until its answer is in (set when a
    /// separate response in blocks came to a request released at its empty ACK).
    pub(crate) held: bool,
    /// Client only: how many times it was sent again for `retry_busy`.
    pub(crate) retries: u8,
    /// Handler only: the peer that sent the request.
    pub peer: Option<std::net::SocketAddr>,
    /// Handler only, over DTLS (feature `dtls`): the PSK identity of the peer's
    /// session, to authorize the request by.
    pub identity: Option<Vec<u8>>,
}

impl Request {
    /// A request with `method` for `path`: the path and, after a `?`, the query, as in
    /// a URI (`/sensors?rt=temp&unit=C` gives the query arguments `rt=temp` and
    /// `unit=C`).
    ///
    /// ```
    /// use coap_proto::net::Request;
    /// let req = Request::get("/async?1");
    /// assert_eq!((req.path.as_str(), &req.query[..]), ("/async", &["1".to_string()][..]));
    /// ```
    pub fn new(method: Code, path: &str) -> Self {
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (
                path,
                query
                    .split('&')
                    .filter(|q| !q.is_empty())
                    .map(ToString::to_string)
                    .collect(),
            ),
            None => (path, Vec::new()),
        };
        Request {
            method,
            path: path.to_string(),
            query,
            host: None,
            payload: Vec::new(),
            content_format: None,
            accept: None,
            options: Vec::new(),
            non_confirmable: false,
            token: None,
            observe: false,
            reregister: false,
            block1_szx: None,
            block2_szx: None,
            block2_offset: 0,
            params: None,
            timeout: None,
            separate_timeout: None,
            max_body: None,
            group: false,
            retry_busy: false,
            held: false,
            retries: 0,
            peer: None,
            identity: None,
        }
    }

    /// A GET request.
    pub fn get(path: &str) -> Self {
        Self::new(Code::GET, path)
    }

    /// A POST request.
    pub fn post(path: &str) -> Self {
        Self::new(Code::POST, path)
    }

    /// A PUT request.
    pub fn put(path: &str) -> Self {
        Self::new(Code::PUT, path)
    }

    /// A DELETE request.
    pub fn delete(path: &str) -> Self {
        Self::new(Code::DELETE, path)
    }

    /// A FETCH request (RFC 8132).
    pub fn fetch(path: &str) -> Self {
        Self::new(Code::FETCH, path)
    }

    /// With one more query argument.
    pub fn query(mut self, argument: &str) -> Self {
        self.query.push(argument.to_string());
        self
    }

    /// With this body.
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    /// With a Content-Format.
    pub fn content_format(mut self, format: ContentFormat) -> Self {
        self.content_format = Some(format);
        self
    }

    /// With an Accept option.
    pub fn accept(mut self, format: ContentFormat) -> Self {
        self.accept = Some(format);
        self
    }

    /// With another option.
    pub fn option(mut self, number: OptionNumber, value: impl Into<Vec<u8>>) -> Self {
        self.options.push((number, value.into()));
        self
    }

    /// Sent as NON.
    pub fn non_confirmable(mut self) -> Self {
        self.non_confirmable = true;
        self
    }

    /// Send again after the Max-Age of a 4.29 or 5.03 answer, at most 3 times (see
    /// [`Request::retry_busy`]).
    ///
    /// ```
    /// let req = coap_proto::net::Request::get("/busy").retry_busy();
    /// assert!(req.retry_busy);
    /// ```
    pub fn retry_busy(mut self) -> Self {
        self.retry_busy = true;
        self
    }

    /// Whether `response` asks for this request to be sent again later (4.29 or 5.03,
    /// with `retry_busy` and tries left), and after how long: its Max-Age.
    pub(crate) fn retry_after(&self, response: &Response) -> Option<Duration> {
        let busy = matches!(
            response.code,
            Code::TOO_MANY_REQUESTS | Code::SERVICE_UNAVAILABLE
        );
        (self.retry_busy && busy && self.retries < 3)
            .then(|| Duration::from_secs(u64::from(response.max_age.unwrap_or(60))))
    }

    /// For an observation: register again when the last notification's Max-Age ran
    /// out without a newer one (RFC 7641 §3.3.1).
    pub fn reregister(mut self) -> Self {
        self.reregister = true;
        self
    }

    /// With this token (at most 8 bytes) instead of a random one.
    pub fn token(mut self, token: impl Into<Vec<u8>>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Body sent in Block1 blocks of `2^(szx+4)` bytes (0–6).
    pub fn block1(mut self, szx: u8) -> Self {
        self.block1_szx = Some(szx);
        self
    }

    /// Response asked for in Block2 blocks of `2^(szx+4)` bytes (0–6).
    pub fn block2(mut self, szx: u8) -> Self {
        self.block2_szx = Some(szx);
        self
    }

    /// Download starting at the block that holds byte `offset`.
    pub fn block2_offset(mut self, offset: usize) -> Self {
        self.block2_offset = offset;
        self
    }

    /// With its own transmission parameters.
    pub fn params(mut self, params: TransmissionParams) -> Self {
        self.params = Some(params);
        self
    }

    /// With a bound on the whole request, CON or NON (see [`Request::timeout`]).
    ///
    /// ```
    /// use coap_proto::net::Request;
    /// use std::time::Duration;
    /// let req = Request::get("/slow").timeout(Duration::from_secs(3));
    /// assert_eq!(req.timeout, Some(Duration::from_secs(3)));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// With its own wait for a separate response after an empty ACK.
    pub fn separate_timeout(mut self, timeout: Duration) -> Self {
        self.separate_timeout = Some(timeout);
        self
    }

    /// With the largest response body to collect (see [`Request::max_body`]).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = Some(bytes);
        self
    }

    /// A request for `uri` (`coap://host[:port]/path?query`), and the host and port to
    /// send it to.
    pub fn from_uri(method: Code, uri: &str) -> Result<(Self, String, u16), Error> {
        let parsed = crate::uri::Uri::parse(uri).map_err(Error::Uri)?;
        let mut req = Request::new(method, parsed.path());
        if let Some(q) = parsed.query() {
            req.query = q.split('&').map(ToString::to_string).collect();
        }
        if parsed.ip().is_none() {
            req.host = Some(parsed.host().to_ascii_lowercase());
        }
        Ok((req, parsed.host().to_string(), parsed.port()))
    }

    /// The payload as text, if it is UTF-8.
    pub fn payload_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }

    /// For a handler: the request's conditions (If-Match, If-None-Match; RFC 7252
    /// §5.10.8) against the target's state — its ETag if it exists (empty if it has
    /// none), `None` if not. `Some(4.12 Precondition Failed)` is the answer when one
    /// fails, before anything changes.
    ///
    /// ```
    /// use coap_proto::net::Request;
    /// use coap_proto::wire::{Code, OptionNumber};
    /// let create_only = Request::put("/x").option(OptionNumber::IF_NONE_MATCH, []);
    /// assert_eq!(create_only.preconditions(Some(b"v1")), Some(Code::PRECONDITION_FAILED));
    /// let if_v1 = Request::put("/x").option(OptionNumber::IF_MATCH, *b"v1");
    /// assert_eq!(if_v1.preconditions(Some(b"v1")), None);
    /// assert_eq!(if_v1.preconditions(Some(b"v2")), Some(Code::PRECONDITION_FAILED));
    /// ```
    pub fn preconditions(&self, current: Option<&[u8]>) -> Option<Code> {
        let of = |n: OptionNumber| self.options.iter().filter(move |(o, _)| *o == n);
        crate::resource::check_preconditions(
            of(OptionNumber::IF_NONE_MATCH).next().is_some(),
            of(OptionNumber::IF_MATCH).map(|(_, v)| v.as_slice()),
            current,
        )
    }

    /// The value of a query argument `name=value` (or `""` for a bare `name`).
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query.iter().find_map(|q| match q.split_once('=') {
            Some((n, v)) if n == name => Some(v),
            None if q == name => Some(""),
            _ => None,
        })
    }

    /// Writes the options (and, unless `with_payload` is false, the payload).
    pub(crate) fn write(
        &self,
        b: &mut MessageBuilder<'_>,
        with_payload: bool,
    ) -> Result<(), BuildError> {
        if let Some(host) = &self.host {
            b.uri_host(host)?;
        }
        let query = self.query.join("&");
        crate::uri::write_path_and_query(
            b,
            &self.path,
            (!self.query.is_empty()).then_some(&*query),
        )?;
        if let Some(cf) = self.content_format {
            b.content_format(cf)?;
        }
        if let Some(cf) = self.accept {
            b.accept(cf)?;
        }
        for (number, value) in &self.options {
            b.option(*number, value)?;
        }
        if with_payload {
            b.payload(&self.payload)?;
        }
        Ok(())
    }

    /// Makes this the request a handler sees for `message` from `peer`, with `body` as
    /// payload — in place, so that a server reusing one `Request` allocates only when a
    /// request is larger than every one before it.
    pub(crate) fn fill_from(
        &mut self,
        message: &Message<'_>,
        peer: Option<std::net::SocketAddr>,
        body: &[u8],
    ) {
        self.method = message.code();
        self.path.clear();
        self.content_format = None;
        self.accept = None;
        let (mut queries, mut others) = (0, 0);
        let mut host = None;
        // One walk over the options rather than one per field.
        for o in message.options() {
            match o.number {
                OptionNumber::URI_PATH => {
                    self.path.push('/');
                    push_text(&mut self.path, o.value);
                }
                OptionNumber::URI_QUERY => {
                    match self.query.get_mut(queries) {
                        Some(q) => {
                            q.clear();
                            push_text(q, o.value);
                        }
                        None => self
                            .query
                            .push(String::from_utf8_lossy(o.value).into_owned()),
                    }
                    queries += 1;
                }
                OptionNumber::URI_HOST if host.is_none() => {
                    host = std::str::from_utf8(o.value).ok().filter(|h| !h.is_empty());
                }
                OptionNumber::CONTENT_FORMAT if self.content_format.is_none() => {
                    self.content_format = format_of(o.value);
                }
                OptionNumber::ACCEPT if self.accept.is_none() => self.accept = format_of(o.value),
                number if HANDLED.contains(&number) => {}
                number => {
                    match self.options.get_mut(others) {
                        Some((n, value)) => {
                            *n = number;
                            value.clear();
                            value.extend_from_slice(o.value);
                        }
                        None => self.options.push((number, o.value.to_vec())),
                    }
                    others += 1;
                }
            }
        }
        self.query.truncate(queries);
        self.options.truncate(others);
        if self.path.is_empty() {
            self.path.push('/');
        }
        match (host, &mut self.host) {
            (Some(name), Some(old)) => {
                old.clear();
                old.push_str(name);
            }
            (name, old) => *old = name.map(ToString::to_string),
        }
        self.payload.clear();
        self.payload.extend_from_slice(body);
        self.peer = peer;
    }
}

/// A Content-Format or Accept value (a uint of at most 2 bytes, RFC 7252 §12.3).
fn format_of(value: &[u8]) -> Option<ContentFormat> {
    let v = crate::wire::decode_uint(value).filter(|_| value.len() <= 2)?;
    Some(ContentFormat(v as u16))
}

/// Appends `bytes` as text (invalid UTF-8 replaced), without a copy when it is valid.
fn push_text(s: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => s.push_str(text),
        Err(_) => s.push_str(&String::from_utf8_lossy(bytes)),
    }
}

/// Overwrites `into` with `from`'s items, reusing the elements (and their allocations)
/// already there.
fn refill<T, S>(
    into: &mut Vec<T>,
    from: impl Iterator<Item = S>,
    make: impl Fn(S) -> T,
    set: impl Fn(&mut T, S),
) {
    let mut n = 0;
    for item in from {
        match into.get_mut(n) {
            Some(old) => set(old, item),
            None => into.push(make(item)),
        }
        n += 1;
    }
    into.truncate(n);
}

/// Options that `Request` and `Response` hold in fields of their own, or that the
/// endpoint consumes.
const HANDLED: [OptionNumber; 14] = [
    OptionNumber::URI_HOST,
    OptionNumber::URI_PATH,
    OptionNumber::URI_QUERY,
    OptionNumber::URI_PORT,
    OptionNumber::CONTENT_FORMAT,
    OptionNumber::ACCEPT,
    OptionNumber::BLOCK1,
    OptionNumber::BLOCK2,
    OptionNumber::SIZE1,
    OptionNumber::SIZE2,
    OptionNumber::REQUEST_TAG,
    OptionNumber::LOCATION_PATH,
    OptionNumber::ETAG,
    OptionNumber::MAX_AGE,
];

/// Sets `options` to those of `message` that have no field of their own.
fn fill_other_options(options: &mut Vec<(OptionNumber, Vec<u8>)>, message: &Message<'_>) {
    let others = message.options().filter(|o| !HANDLED.contains(&o.number));
    refill(
        options,
        others,
        |o| (o.number, o.value.to_vec()),
        |(number, value), o| {
            *number = o.number;
            value.clear();
            value.extend_from_slice(o.value);
        },
    );
}

/// A response body: borrowed when it is `'static` (a handler answering with a constant
/// allocates nothing), owned otherwise. It reads as a `[u8]` and compares with byte
/// strings, slices and vectors.
///
/// ```
/// use coap_proto::net::{Payload, Response};
/// let constant = Response::content("hello"); // no allocation
/// let computed = Response::content(format!("{} C", 21.5));
/// assert_eq!(constant.payload, b"hello");
/// assert_eq!(computed.payload.len(), 6);
/// let owned: Vec<u8> = computed.payload.into_vec();
/// assert_eq!(Payload::from(owned), b"21.5 C");
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Payload(Cow<'static, [u8]>);

impl Payload {
    /// The bytes, as an owned vector (copied only if borrowed).
    pub fn into_vec(self) -> Vec<u8> {
        self.0.into_owned()
    }

    /// The bytes, to change (copied into a vector first if borrowed).
    pub fn to_mut(&mut self) -> &mut Vec<u8> {
        self.0.to_mut()
    }

    /// The bytes as text, if they are UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl std::ops::Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(text) => write!(f, "{text:?}"),
            None => write!(f, "{:02x?}", &*self.0),
        }
    }
}

impl From<&'static [u8]> for Payload {
    fn from(bytes: &'static [u8]) -> Self {
        Payload(Cow::Borrowed(bytes))
    }
}

impl<const N: usize> From<&'static [u8; N]> for Payload {
    fn from(bytes: &'static [u8; N]) -> Self {
        Payload(Cow::Borrowed(bytes))
    }
}

impl From<&'static str> for Payload {
    fn from(text: &'static str) -> Self {
        Payload(Cow::Borrowed(text.as_bytes()))
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Payload(Cow::Owned(bytes))
    }
}

impl From<String> for Payload {
    fn from(text: String) -> Self {
        Payload(Cow::Owned(text.into_bytes()))
    }
}

impl From<Payload> for Vec<u8> {
    fn from(p: Payload) -> Self {
        p.into_vec()
    }
}

impl PartialEq<[u8]> for Payload {
    fn eq(&self, other: &[u8]) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&[u8]> for Payload {
    fn eq(&self, other: &&[u8]) -> bool {
        *self.0 == **other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Payload {
    fn eq(&self, other: &[u8; N]) -> bool {
        *self.0 == other[..]
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Payload {
    fn eq(&self, other: &&[u8; N]) -> bool {
        *self.0 == other[..]
    }
}

impl PartialEq<Vec<u8>> for Payload {
    fn eq(&self, other: &Vec<u8>) -> bool {
        *self.0 == other[..]
    }
}

impl PartialEq<&str> for Payload {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == *other.as_bytes()
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        for (i, q) in self.query.iter().enumerate() {
            write!(f, "{}{q}", if i == 0 { '?' } else { '&' })?;
        }
        if !self.payload.is_empty() {
            write!(f, " ({} bytes)", self.payload.len())?;
        }
        Ok(())
    }
}

/// A CoAP response as an owned value: what a handler answers, what a client receives
/// (for a block-wise transfer: the whole body).
///
/// ```
/// use coap_proto::net::Response;
/// use coap_proto::wire::Code;
///
/// let r = Response::content("22.5 C");
/// assert_eq!(r.code, Code::CONTENT);
/// assert_eq!(r.to_string(), "2.05 Content (6 bytes)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response {
    /// The response code.
    pub code: Code,
    /// The body (borrowed when it is `'static`, see [`Payload`]).
    pub payload: Payload,
    /// Content-Format of the body.
    pub content_format: Option<ContentFormat>,
    /// Location-Path (e.g. of a resource a POST created), `/` separated.
    pub location_path: Option<String>,
    /// ETag.
    pub etag: Option<Vec<u8>>,
    /// Max-Age in seconds.
    pub max_age: Option<u32>,
    /// Any other options, by number.
    pub options: Vec<(OptionNumber, Vec<u8>)>,
}

impl Response {
    /// A response with `code` and no body.
    pub fn new(code: Code) -> Self {
        Response {
            code,
            payload: Payload::default(),
            content_format: None,
            location_path: None,
            etag: None,
            max_age: None,
            options: Vec::new(),
        }
    }

    /// 2.05 Content with this body.
    pub fn content(payload: impl Into<Payload>) -> Self {
        Response::new(Code::CONTENT).payload(payload)
    }

    /// With this body.
    pub fn payload(mut self, payload: impl Into<Payload>) -> Self {
        self.payload = payload.into();
        self
    }

    /// With a Content-Format.
    pub fn content_format(mut self, format: ContentFormat) -> Self {
        self.content_format = Some(format);
        self
    }

    /// With a Location-Path.
    pub fn location_path(mut self, path: &str) -> Self {
        self.location_path = Some(path.to_string());
        self
    }

    /// With Max-Age.
    pub fn max_age(mut self, seconds: u32) -> Self {
        self.max_age = Some(seconds);
        self
    }

    /// With another option.
    pub fn option(mut self, number: OptionNumber, value: impl Into<Vec<u8>>) -> Self {
        self.options.push((number, value.into()));
        self
    }

    /// Whether the code is 2.xx.
    pub fn is_success(&self) -> bool {
        self.code.is_success()
    }

    /// The payload as text, if it is UTF-8.
    pub fn payload_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }

    /// Writes every option but the body's.
    pub(crate) fn write_options(&self, b: &mut MessageBuilder<'_>) -> Result<(), BuildError> {
        if let Some(cf) = self.content_format {
            b.content_format(cf)?;
        }
        if let Some(path) = &self.location_path {
            b.location_path(path)?;
        }
        if let Some(etag) = &self.etag {
            b.etag(etag)?;
        }
        if let Some(age) = self.max_age {
            b.max_age(age)?;
        }
        for (number, value) in &self.options {
            b.option(*number, value)?;
        }
        Ok(())
    }

    /// The head of `message` (every option, no body yet).
    pub(crate) fn from_message(message: &Message<'_>) -> Self {
        let mut r = Response::new(message.code());
        r.content_format = message.content_format().ok().flatten();
        let segments: Vec<String> = message
            .location_path()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        r.location_path = (!segments.is_empty()).then(|| segments.join("/"));
        r.etag = message.etag().ok().flatten().map(<[u8]>::to_vec);
        r.max_age = message.max_age().ok().flatten();
        fill_other_options(&mut r.options, message);
        r
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if !self.payload.is_empty() {
            write!(f, " ({} bytes)", self.payload.len())?;
        }
        Ok(())
    }
}

impl From<Code> for Response {
    fn from(code: Code) -> Self {
        Response::new(code)
    }
}

/// The largest response body a client collects unless a request says otherwise: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// Why a client call ended without a response, or a socket could not be set up.
///
/// ```
/// use coap_proto::net::Error;
/// let e = Error::from(std::io::Error::new(std::io::ErrorKind::AddrInUse, "port 5683 taken"));
/// assert_eq!(e.to_string(), "socket error: port 5683 taken");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// No response in time (after every retransmission, or the NON timeout).
    TimedOut,
    /// The server rejected the request with RST.
    Reset,
    /// A block-wise download could not go on.
    Block(DownloadError),
    /// A block-wise upload could not go on.
    Upload(UploadError),
    /// The endpoint refused the request (too many in flight, too large for a message).
    Endpoint(crate::Error),
    /// The URI is not usable.
    Uri(UriError),
    /// The host name did not resolve to an address.
    UnknownHost,
    /// The response body is larger than the request's `max_body` allows.
    BodyTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The body does not fit the caller's buffer; it needs this many bytes.
    BufferTooSmall {
        /// Bytes needed (at least).
        needed: usize,
    },
    /// A socket operation failed (shared, so that the error can be cloned and handed to
    /// every request it ended).
    Io(std::sync::Arc<std::io::Error>),
    /// The client's task is gone (tokio) or the request was cancelled.
    Closed,
    /// The DTLS session to the server failed (feature `dtls`): a wrong key or unknown
    /// identity (the handshake times out), or a fatal DTLS error.
    #[cfg(feature = "dtls")]
    Dtls(crate::dtls::DtlsError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TimedOut => f.write_str("no response in time"),
            Error::Reset => f.write_str("the server reset the request"),
            Error::Block(e) => write!(f, "block-wise download failed: {e}"),
            Error::Upload(e) => write!(f, "block-wise upload failed: {e}"),
            Error::Endpoint(e) => write!(f, "request refused: {e}"),
            Error::Uri(e) => write!(f, "bad URI: {e}"),
            Error::UnknownHost => f.write_str("the host name did not resolve"),
            Error::BodyTooLarge { limit } => {
                write!(f, "the response body is larger than {limit} bytes")
            }
            Error::BufferTooSmall { needed } => {
                write!(f, "the body needs a buffer of at least {needed} bytes")
            }
            Error::Io(e) => write!(f, "socket error: {e}"),
            Error::Closed => f.write_str("the client was closed or the request cancelled"),
            #[cfg(feature = "dtls")]
            Error::Dtls(e) => write!(f, "coaps: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(&**e),
            _ => None,
        }
    }
}

impl PartialEq for Error {
    /// Socket errors compare by kind; everything else by value.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Error::Io(a), Error::Io(b)) => a.kind() == b.kind(),
            (Error::TimedOut, Error::TimedOut)
            | (Error::Reset, Error::Reset)
            | (Error::UnknownHost, Error::UnknownHost)
            | (Error::Closed, Error::Closed) => true,
            (Error::Block(a), Error::Block(b)) => a == b,
            (Error::Upload(a), Error::Upload(b)) => a == b,
            (Error::Endpoint(a), Error::Endpoint(b)) => a == b,
            (Error::Uri(a), Error::Uri(b)) => a == b,
            (Error::BodyTooLarge { limit: a }, Error::BodyTooLarge { limit: b }) => a == b,
            (Error::BufferTooSmall { needed: a }, Error::BufferTooSmall { needed: b }) => a == b,
            #[cfg(feature = "dtls")]
            (Error::Dtls(a), Error::Dtls(b)) => a == b,
            _ => false,
        }
    }
}

impl Error {
    /// The kind of a socket error (`None` for the others).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Error::Io(e) => Some(e.kind()),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(std::sync::Arc::new(e))
    }
}

impl From<crate::Error> for Error {
    fn from(e: crate::Error) -> Self {
        Error::Endpoint(e)
    }
}

/// The adapters' clock: microseconds since the adapter started.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock(std::time::Instant);

impl Clock {
    pub(crate) fn new() -> Self {
        Clock(std::time::Instant::now())
    }

    pub(crate) fn now(&self) -> crate::Instant {
        #[cfg(fuzzing)]
        if let Some(now) = fuzzing::now() {
            return now;
        }
        crate::Instant::from_micros(self.0.elapsed().as_micros() as u64)
    }

    /// How long from now until `deadline` (zero if it passed).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn until(&self, deadline: crate::Instant) -> std::time::Duration {
        deadline.saturating_duration_since(self.now())
    }
}

/// What the core has for its adapter after draining events.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Step<P = std::net::SocketAddr> {
    /// The sender could not take a datagram now: it is in the core's `out` buffer, to
    /// be sent to this peer once the socket can take it.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    Transmit(P),
    /// Wait for a datagram until then.
    Wait(Option<crate::Instant>),
}

pub(crate) use transport::private::Sent;

/// The error for a peer the transport has no session with (only DTLS has sessions).
pub(crate) fn no_session() -> Error {
    #[cfg(feature = "dtls")]
    return Error::Dtls(crate::dtls::DtlsError::UnknownSession);
    #[cfg(not(feature = "dtls"))]
    Error::UnknownHost
}

/// The endpoint type of the adapters, with the capacities of an adapter's parameters
/// (the defaults are the endpoint's).
pub(crate) type Ep<
    P = std::net::SocketAddr,
    const E: usize = 64,
    const B: usize = 16,
    const M: usize = 1152,
    const D: usize = 512,
    const R: usize = 32768,
> = crate::Endpoint<P, E, B, M, D, R>;

pub(crate) use transport::private::NetPeer;

/// Logs a datagram sent or received at debug level (feature `log`), in the message's
/// `Display` form: `CON GET MID 0x1234 token 0x01; Uri-Path: "time"`.
#[inline]
pub(crate) fn log_datagram(direction: &str, peer: impl core::fmt::Display, bytes: &[u8]) {
    #[cfg(feature = "log")]
    if log::log_enabled!(target: "coap_proto", log::Level::Debug) {
        match Message::parse(bytes) {
            Ok(m) => log::debug!(target: "coap_proto", "{direction} {peer}: {m}"),
            Err(e) => log::debug!(
                target: "coap_proto",
                "{direction} {peer}: {} bytes that are not CoAP ({e})",
                bytes.len()
            ),
        }
    }
    #[cfg(not(feature = "log"))]
    let _ = (direction, peer, bytes);
}

/// Whether a socket error is loss as far as CoAP goes (an ICMP error for an earlier
/// datagram, an unreachable peer, a signal), rather than the end of the socket.
pub(crate) fn is_loss(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind;
    matches!(
        kind,
        ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::Interrupted
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::AddrNotAvailable
    )
}

/// The adapters' default configuration: [`Config::default`](crate::Config) with a
/// random seed (from the OS's hash randomness and the clock), so that tokens, message
/// IDs and Echo values differ from run to run and cannot be guessed, and with
/// amplification mitigation on ([`Amplification::RFC9175`](crate::Amplification)): no
/// answer to an address not known to be the peer's is more than 3 times its request on
/// the wire; larger bodies go in smaller blocks, which every block-wise client follows
/// without knowing why. Start from it for the `from_socket` constructors.
///
/// ```
/// let config = coap_proto::Config {
///     max_block_szx: 4,
///     ..coap_proto::net::default_config()
/// };
/// assert_ne!(config.seed, coap_proto::net::default_config().seed);
/// assert_eq!(config.amplification, Some(coap_proto::Amplification::RFC9175));
/// ```
pub fn default_config() -> crate::Config {
    crate::Config {
        seed: random_seed(),
        amplification: Some(crate::Amplification::RFC9175),
        ..crate::Config::default()
    }
}

/// `config` for an endpoint whose peers are DTLS sessions: without amplification
/// mitigation, since the handshake (its cookie exchange first, RFC 6347 §4.2.1) proved
/// every session's address (RFC 9175 §2.4 asks only for addresses not known to be the
/// peer's).
#[cfg(feature = "dtls")]
pub(crate) fn over_dtls(config: crate::Config) -> crate::Config {
    crate::Config {
        amplification: None,
        ..config
    }
}

/// A seed for the PRNG from the OS's hash randomness and the clock.
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The loopback address of `addr`'s family.
pub(crate) fn loopback(addr: std::net::SocketAddr) -> std::net::IpAddr {
    match addr {
        std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    }
}

/// The address a client socket for `peer` binds to: loopback for a loopback peer (so
/// that nothing listens beyond the machine), the unspecified address otherwise; port 0.
/// What `connect` binds, for a socket made for a `from_socket` constructor.
///
/// ```
/// let peer = "127.0.0.1:5683".parse().unwrap();
/// assert_eq!(coap_proto::net::local_for(peer).to_string(), "127.0.0.1:0");
/// ```
pub fn local_for(peer: std::net::SocketAddr) -> std::net::SocketAddr {
    let ip: std::net::IpAddr = match peer {
        _ if peer.ip().is_loopback() => loopback(peer),
        std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    std::net::SocketAddr::new(ip, 0)
}

/// Where a client sends its requests: `"host:port"`, a `coap://host[:port]` URI (the
/// path is ignored), a [`SocketAddr`](std::net::SocketAddr), or `(host, port)`.
///
/// ```
/// use coap_proto::net::ToPeer;
/// # fn show(p: impl ToPeer) {}
/// show("127.0.0.1:5683");
/// show("coap://localhost");
/// show(("::1", 5683));
/// show(std::net::SocketAddr::from(([127, 0, 0, 1], 5683)));
/// ```
pub trait ToPeer {
    /// The address, or the name and port to look up.
    #[doc(hidden)]
    fn to_peer(&self) -> Result<Peer, Error>;

    /// The scheme, for a URI: `Some(true)` for `coaps`, `Some(false)` for `coap`.
    #[doc(hidden)]
    fn secure_scheme(&self) -> Option<bool> {
        None
    }
}

/// `server`'s address, for a client over plain UDP (`secure` false) or DTLS: a URI of
/// the other scheme is refused rather than spoken to in the wrong protocol.
pub(crate) fn resolve_for(
    server: &impl ToPeer,
    secure: bool,
) -> Result<std::net::SocketAddr, Error> {
    if server.secure_scheme().is_some_and(|s| s != secure) {
        return Err(Error::Uri(UriError::UnsupportedScheme));
    }
    server.to_peer()?.resolve()
}

/// A peer before name resolution.
#[doc(hidden)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Known already.
    Addr(std::net::SocketAddr),
    /// To be looked up.
    Name(String, u16),
}

impl Peer {
    /// The address, looked up (blocking) if need be.
    pub fn resolve(self) -> Result<std::net::SocketAddr, Error> {
        use std::net::ToSocketAddrs;
        match self {
            Peer::Addr(a) => Ok(a),
            Peer::Name(host, port) => (host.as_str(), port)
                .to_socket_addrs()?
                .next()
                .ok_or(Error::UnknownHost),
        }
    }
}

impl ToPeer for str {
    fn secure_scheme(&self) -> Option<bool> {
        let (scheme, _) = self.split_once("://")?;
        Some(scheme.eq_ignore_ascii_case("coaps"))
    }

    fn to_peer(&self) -> Result<Peer, Error> {
        if self.contains("://") {
            let uri = crate::uri::Uri::parse(self).map_err(Error::Uri)?;
            return Ok(match uri.ip() {
                Some(ip) => Peer::Addr(std::net::SocketAddr::new(ip, uri.port())),
                None => Peer::Name(uri.host().to_string(), uri.port()),
            });
        }
        if let Ok(addr) = self.parse() {
            return Ok(Peer::Addr(addr));
        }
        match self.rsplit_once(':') {
            Some((host, port)) => {
                let port = port.parse().map_err(|_| Error::Uri(UriError::BadPort))?;
                (host, port).to_peer()
            }
            None => Err(Error::Uri(UriError::BadPort)),
        }
    }
}

impl ToPeer for String {
    fn secure_scheme(&self) -> Option<bool> {
        self.as_str().secure_scheme()
    }

    fn to_peer(&self) -> Result<Peer, Error> {
        self.as_str().to_peer()
    }
}

impl ToPeer for std::net::SocketAddr {
    fn to_peer(&self) -> Result<Peer, Error> {
        Ok(Peer::Addr(*self))
    }
}

impl ToPeer for (&str, u16) {
    fn to_peer(&self) -> Result<Peer, Error> {
        let host = self.0.trim_start_matches('[').trim_end_matches(']');
        Ok(match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Peer::Addr(std::net::SocketAddr::new(ip, self.1)),
            Err(_) => Peer::Name(host.to_string(), self.1),
        })
    }
}

impl ToPeer for (String, u16) {
    fn to_peer(&self) -> Result<Peer, Error> {
        (self.0.as_str(), self.1).to_peer()
    }
}

impl ToPeer for (std::net::IpAddr, u16) {
    fn to_peer(&self) -> Result<Peer, Error> {
        Ok(Peer::Addr((*self).into()))
    }
}

impl ToPeer for (std::net::Ipv4Addr, u16) {
    fn to_peer(&self) -> Result<Peer, Error> {
        Ok(Peer::Addr((*self).into()))
    }
}

impl ToPeer for (std::net::Ipv6Addr, u16) {
    fn to_peer(&self) -> Result<Peer, Error> {
        Ok(Peer::Addr((*self).into()))
    }
}

impl<T: ToPeer + ?Sized> ToPeer for &T {
    fn secure_scheme(&self) -> Option<bool> {
        (**self).secure_scheme()
    }

    fn to_peer(&self) -> Result<Peer, Error> {
        (**self).to_peer()
    }
}
