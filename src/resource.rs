//! A server's resource table: routing with 4.04/4.05 and its `/.well-known/core`.
//!
//! Implements RFC 7252 §5.9.2.5 and §5.9.2.6 (4.04 Not Found, 4.05 Method Not Allowed),
//! §7.2 (resource discovery at `/.well-known/core`) and the CoRE Link Format of
//! RFC 6690 §2 (links with `rt`, `if`, `ct`, `obs`, `title`) with the query filtering of
//! §4.1. The link document is never held in memory: [`LinkFormat::write_at`] renders any
//! window of it, so a server can serve it block-wise from a fill function.
//!
//! ```
//! use coap_proto::resource::{LinkFormat, Methods, Resource, Route, route};
//!
//! let table = [
//!     Resource::new("/temp", Methods::GET).rt("temperature").ct(0).obs(),
//!     Resource::new("/led", Methods::GET.and(Methods::PUT)).if_("actuator"),
//! ];
//! let doc = LinkFormat::new(&table, None);
//! assert_eq!(
//!     doc.to_string(),
//!     r#"</temp>;rt="temperature";ct=0;obs,</led>;if="actuator""#
//! );
//! assert_eq!(LinkFormat::new(&table, Some("rt=temp*")).to_string(), r#"</temp>;rt="temperature";ct=0;obs"#);
//! ```

use core::fmt::{self, Write};

use crate::wire::{Code, Message};

/// The path of the resource discovery document (§7.2).
pub const WELL_KNOWN_CORE: &str = "/.well-known/core";

/// A set of request methods.
///
/// ```
/// use coap_proto::resource::Methods;
/// use coap_proto::wire::Code;
/// let rw = Methods::GET.and(Methods::PUT);
/// assert!(rw.allows(Code::PUT) && !rw.allows(Code::POST));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Methods(u8);

impl Methods {
    /// No method.
    pub const NONE: Methods = Methods(0);
    /// GET.
    pub const GET: Methods = Methods(1 << 1);
    /// POST.
    pub const POST: Methods = Methods(1 << 2);
    /// PUT.
    pub const PUT: Methods = Methods(1 << 3);
    /// DELETE.
    pub const DELETE: Methods = Methods(1 << 4);
    /// FETCH (RFC 8132).
    pub const FETCH: Methods = Methods(1 << 5);
    /// PATCH (RFC 8132).
    pub const PATCH: Methods = Methods(1 << 6);
    /// iPATCH (RFC 8132).
    pub const IPATCH: Methods = Methods(1 << 7);
    /// Every method above.
    pub const ALL: Methods = Methods(0xfe);

    /// Both sets.
    pub const fn and(self, other: Methods) -> Methods {
        Methods(self.0 | other.0)
    }

    /// Whether `code` is one of these methods.
    pub const fn allows(self, code: Code) -> bool {
        code.class() == 0
            && code.detail() >= 1
            && code.detail() <= 7
            && self.0 & (1 << code.detail()) != 0
    }
}

/// One entry of a resource table: where it lives, what it accepts, how it is described
/// in `/.well-known/core`. Built in `const` context, so a table can be a `static`.
///
/// ```
/// use coap_proto::resource::{LinkFormat, Methods, Resource};
///
/// static TABLE: [Resource<'static>; 2] = [
///     Resource::new("/sensors/temp", Methods::GET).rt("temperature").ct(0),
///     Resource::new("/config", Methods::GET.and(Methods::PUT)).hidden(),
/// ];
/// assert_eq!(
///     LinkFormat::new(&TABLE, None).to_string(),
///     "</sensors/temp>;rt=\"temperature\";ct=0"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Resource<'a> {
    /// The path, e.g. `/sensors/temp` (as written in a URI, percent-encoded).
    pub path: &'a str,
    /// The methods it answers; others get 4.05.
    pub methods: Methods,
    /// Resource type (`rt`).
    pub rt: Option<&'a str>,
    /// Interface description (`if`).
    pub if_: Option<&'a str>,
    /// Content-Format (`ct`).
    pub ct: Option<u16>,
    /// Observable (`obs`, RFC 7641).
    pub obs: bool,
    /// Human-readable title.
    pub title: Option<&'a str>,
    /// Left out of `/.well-known/core`.
    pub hidden: bool,
    /// The Content-Formats its representations come in, beyond `ct`: a request whose
    /// Accept names none of them (nor `ct`) gets 4.06 Not Acceptable (RFC 7252 §5.10.4).
    /// Empty, with no `ct`: anything is acceptable.
    pub produces: &'a [u16],
    /// The Content-Formats it takes in a request payload: another gets 4.15
    /// Unsupported Content-Format (§5.10.3). Empty: any.
    pub accepts: &'a [u16],
    /// Unsafe requests (any method but GET and FETCH) must be fresh (RFC 9175 §2.3):
    /// they must carry an Echo value the server made at most this long ago, or they
    /// are answered 4.01 Unauthorized with a new one before anything runs. For
    /// actuators, where a delayed request must not act. The `net` servers check it; a
    /// loop of its own does with [`Endpoint::echo_age`](crate::Endpoint::echo_age) and
    /// [`Endpoint::challenge`](crate::Endpoint::challenge).
    pub fresh: Option<core::time::Duration>,
}

impl<'a> Resource<'a> {
    /// A resource at `path` answering `methods`, with no link attributes.
    pub const fn new(path: &'a str, methods: Methods) -> Self {
        Resource {
            path,
            methods,
            rt: None,
            if_: None,
            ct: None,
            obs: false,
            title: None,
            hidden: false,
            produces: &[],
            accepts: &[],
            fresh: None,
        }
    }

    /// Unsafe requests to it must carry an Echo value at most `max_age` old (see
    /// [`fresh`](Self::fresh)).
    ///
    /// ```
    /// use core::time::Duration;
    /// use coap_proto::resource::{Methods, Resource};
    /// use coap_proto::wire::Code;
    ///
    /// let lock = Resource::new("/lock", Methods::GET.and(Methods::PUT)).fresh(Duration::from_secs(5));
    /// assert_eq!(lock.needs_fresh(Code::PUT), Some(Duration::from_secs(5)));
    /// assert_eq!(lock.needs_fresh(Code::GET), None);
    /// ```
    pub const fn fresh(mut self, max_age: core::time::Duration) -> Self {
        self.fresh = Some(max_age);
        self
    }

    /// How fresh a request with method `code` must be: `None` for GET and FETCH, which
    /// change nothing, and for a resource not marked [`fresh`](Self::fresh).
    pub fn needs_fresh(&self, code: Code) -> Option<core::time::Duration> {
        self.fresh
            .filter(|_| !matches!(code, Code::GET | Code::FETCH))
    }

    /// With the Content-Formats its representations come in (see
    /// [`produces`](Self::produces)).
    pub const fn produces(mut self, formats: &'a [u16]) -> Self {
        self.produces = formats;
        self
    }

    /// With the Content-Formats it takes in a payload (see [`accepts`](Self::accepts)).
    pub const fn accepts(mut self, formats: &'a [u16]) -> Self {
        self.accepts = formats;
        self
    }

    /// Whether a request asking for `accept` can be answered (§5.10.4).
    fn can_produce(&self, accept: u16) -> bool {
        (self.produces.is_empty() && self.ct.is_none())
            || self.ct == Some(accept)
            || self.produces.contains(&accept)
    }

    /// With resource type `rt`.
    pub const fn rt(mut self, rt: &'a str) -> Self {
        self.rt = Some(rt);
        self
    }

    /// With interface description `if`.
    pub const fn if_(mut self, interface: &'a str) -> Self {
        self.if_ = Some(interface);
        self
    }

    /// With Content-Format `ct`.
    pub const fn ct(mut self, format: u16) -> Self {
        self.ct = Some(format);
        self
    }

    /// Marked observable.
    pub const fn obs(mut self) -> Self {
        self.obs = true;
        self
    }

    /// With a title.
    pub const fn title(mut self, title: &'a str) -> Self {
        self.title = Some(title);
        self
    }

    /// Left out of `/.well-known/core`.
    pub const fn hidden(mut self) -> Self {
        self.hidden = true;
        self
    }

    /// The value of link attribute `name` as a string, for query filtering.
    fn attribute<'s>(&'s self, name: &str, out: &'s mut NumBuf) -> Option<&'s str> {
        match name {
            "href" => Some(self.path),
            "rt" => self.rt,
            "if" => self.if_,
            "title" => self.title,
            "ct" => self.ct.map(|ct| out.format(ct)),
            "obs" => self.obs.then_some(""),
            _ => None,
        }
    }
}

/// Where a request goes.
///
/// ```
/// use coap_proto::resource::{Methods, Resource, Route, route};
/// use coap_proto::wire::{Code, Message};
///
/// let table = [Resource::new("/led", Methods::PUT)];
/// // CON GET /led
/// let get = Message::parse(&[0x40, 0x01, 0, 1, 0xb3, b'l', b'e', b'd'])?;
/// assert_eq!(route(&table, &get), Route::MethodNotAllowed);
/// assert_eq!(route(&table, &get).error_code(), Some(Code::METHOD_NOT_ALLOWED));
/// # Ok::<(), coap_proto::wire::ParseError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Route {
    /// The resource at this index of the table.
    Resource(usize),
    /// `GET /.well-known/core` (and the path is not in the table).
    WellKnownCore,
    /// No resource at the path: answer 4.04 Not Found.
    NotFound,
    /// The resource does not take the method: answer 4.05 Method Not Allowed.
    MethodNotAllowed,
    /// The resource has no representation in the Content-Format the request's Accept
    /// asks for: answer 4.06 Not Acceptable (RFC 7252 §5.10.4).
    NotAcceptable,
    /// The resource does not take the request payload's Content-Format: answer 4.15
    /// Unsupported Content-Format (§5.10.3).
    UnsupportedContentFormat,
}

impl Route {
    /// The error code to answer with, if the route is not a resource.
    pub fn error_code(self) -> Option<Code> {
        match self {
            Route::NotFound => Some(Code::NOT_FOUND),
            Route::MethodNotAllowed => Some(Code::METHOD_NOT_ALLOWED),
            Route::NotAcceptable => Some(Code::NOT_ACCEPTABLE),
            Route::UnsupportedContentFormat => Some(Code::UNSUPPORTED_CONTENT_FORMAT),
            _ => None,
        }
    }
}

/// The conditions of a request (RFC 7252 §5.10.8) against the target's state: `current`
/// is the resource's ETag if it exists (an empty slice if it has none), `None` if it
/// does not. Returns 4.12 Precondition Failed when a condition fails — If-Match names
/// no current ETag (an empty If-Match asks only that the resource exist), or
/// If-None-Match finds it existing — and `None` when the request may go on.
///
/// ```
/// use coap_proto::resource::preconditions;
/// use coap_proto::wire::{Code, Message};
///
/// // PUT /x with If-None-Match: create only.
/// let put = Message::parse(&[0x40, 0x03, 0, 1, 0x50, 0x61, b'x'])?;
/// assert_eq!(preconditions(&put, Some(b"v1")), Some(Code::PRECONDITION_FAILED));
/// assert_eq!(preconditions(&put, None), None);
/// # Ok::<(), coap_proto::wire::ParseError>(())
/// ```
pub fn preconditions(request: &Message<'_>, current: Option<&[u8]>) -> Option<Code> {
    check_preconditions(request.if_none_match(), request.if_match(), current)
}

/// [`preconditions`] over the options themselves: whether If-None-Match is present, and
/// the If-Match values.
pub(crate) fn check_preconditions<'v>(
    if_none_match: bool,
    if_match: impl Iterator<Item = &'v [u8]>,
    current: Option<&[u8]>,
) -> Option<Code> {
    let failed = Some(Code::PRECONDITION_FAILED);
    if if_none_match && current.is_some() {
        return failed;
    }
    let mut wanted = if_match.peekable();
    if wanted.peek().is_some() {
        let Some(etag) = current else {
            return failed;
        };
        if !wanted.any(|v| v.is_empty() || v == etag) {
            return failed;
        }
    }
    None
}

/// Routes `request` by its Uri-Path and method through `table`, then checks it
/// against the resource's Content-Formats (Accept, and the payload's Content-Format).
pub fn route(table: &[Resource<'_>], request: &Message<'_>) -> Route {
    let path = || request.uri_path();
    match table.iter().position(|r| path().matches(r.path)) {
        Some(i) if table[i].methods.allows(request.code()) => {
            let r = &table[i];
            if let Ok(Some(accept)) = request.accept() {
                if !r.can_produce(accept.0) {
                    return Route::NotAcceptable;
                }
            }
            if let Ok(Some(format)) = request.content_format() {
                if !r.accepts.is_empty() && !r.accepts.contains(&format.0) {
                    return Route::UnsupportedContentFormat;
                }
            }
            Route::Resource(i)
        }
        Some(_) => Route::MethodNotAllowed,
        None if path().matches(WELL_KNOWN_CORE) => {
            if request.code() == Code::GET {
                Route::WellKnownCore
            } else {
                Route::MethodNotAllowed
            }
        }
        None => Route::NotFound,
    }
}

/// The CoRE Link Format document (RFC 6690) of a resource table, optionally filtered
/// by one query argument such as `rt=temp*` (§4.1). Render it with `Display`, or a
/// window of it with [`write_at`](Self::write_at).
#[derive(Clone, Copy, Debug)]
pub struct LinkFormat<'t, 'a> {
    table: &'t [Resource<'a>],
    filter: Option<&'t str>,
}

impl<'t, 'a> LinkFormat<'t, 'a> {
    /// The links of the table's visible resources matching `filter`
    /// (`name=value`, a trailing `*` matching any suffix).
    pub fn new(table: &'t [Resource<'a>], filter: Option<&'t str>) -> Self {
        LinkFormat { table, filter }
    }

    /// The filter from a request's Uri-Query options: the first that is valid UTF-8.
    pub fn for_request(table: &'t [Resource<'a>], request: &Message<'t>) -> Self {
        let filter = request
            .uri_query()
            .find_map(|q| core::str::from_utf8(q).ok());
        LinkFormat { table, filter }
    }

    fn visible(&self) -> impl Iterator<Item = &'t Resource<'a>> + '_ {
        self.table
            .iter()
            .filter(|r| !r.hidden && self.filter.is_none_or(|q| matches_filter(r, q)))
    }

    /// Length of the whole document in bytes.
    pub fn len(&self) -> usize {
        let mut w = Window::new(0, &mut []);
        let _ = write!(w, "{self}");
        w.total
    }

    /// Whether the document is empty (no visible resource matches).
    pub fn is_empty(&self) -> bool {
        self.visible().next().is_none()
    }

    /// Writes the document's bytes from `offset` into `out`; returns how many were
    /// written (less than `out.len()` only at the end of the document).
    pub fn write_at(&self, offset: usize, out: &mut [u8]) -> usize {
        let mut w = Window::new(offset, out);
        let _ = write!(w, "{self}");
        w.written
    }
}

impl fmt::Display for LinkFormat<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.visible().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            write!(f, "<{}>", r.path)?;
            if let Some(rt) = r.rt {
                write!(f, ";rt=\"{rt}\"")?;
            }
            if let Some(i) = r.if_ {
                write!(f, ";if=\"{i}\"")?;
            }
            if let Some(ct) = r.ct {
                write!(f, ";ct={ct}")?;
            }
            if r.obs {
                f.write_str(";obs")?;
            }
            if let Some(t) = r.title {
                write!(f, ";title=\"{t}\"")?;
            }
        }
        Ok(())
    }
}

fn matches_filter(r: &Resource<'_>, query: &str) -> bool {
    let (name, pattern) = query.split_once('=').unwrap_or((query, ""));
    let mut buf = NumBuf::default();
    let Some(value) = r.attribute(name, &mut buf) else {
        return false;
    };
    // A space-separated attribute (rt, if) matches if any of its values does.
    let values = value.split(' ');
    match pattern.strip_suffix('*') {
        Some(prefix) => values.into_iter().any(|v| v.starts_with(prefix)),
        None => values.into_iter().any(|v| v == pattern),
    }
}

/// Room to format a `u16` without allocating.
#[derive(Default)]
struct NumBuf([u8; 5]);

impl NumBuf {
    fn format(&mut self, mut n: u16) -> &str {
        let mut i = self.0.len();
        loop {
            i -= 1;
            self.0[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        core::str::from_utf8(&self.0[i..]).unwrap_or("")
    }
}

/// A `fmt::Write` sink keeping only the bytes from `skip` on that fit `out`.
struct Window<'o> {
    skip: usize,
    out: &'o mut [u8],
    written: usize,
    total: usize,
}

impl<'o> Window<'o> {
    fn new(skip: usize, out: &'o mut [u8]) -> Self {
        Window {
            skip,
            out,
            written: 0,
            total: 0,
        }
    }
}

impl Write for Window<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        let start = self.total;
        self.total += bytes.len();
        // The part of `bytes` at or after `skip`, as far as `out` has room.
        let from = self.skip.saturating_sub(start).min(bytes.len());
        let room = self.out.len() - self.written;
        let take = (bytes.len() - from).min(room);
        self.out[self.written..self.written + take].copy_from_slice(&bytes[from..from + take]);
        self.written += take;
        Ok(())
    }
}
