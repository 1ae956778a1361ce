//! Message types (RFC 7252 §3, §4) and codes (RFC 7252 §3, §5.8, §5.9, §12.1).

use core::fmt;

/// The message type carried in the two `T` bits of the header (RFC 7252 §3).
///
/// ```
/// use coap_proto::wire::Type;
/// assert_eq!(Type::from_bits(0), Type::Con);
/// assert_eq!(Type::Ack.to_string(), "ACK");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Type {
    /// Confirmable (CON): retransmitted until acknowledged or reset (§4.2).
    Con = 0,
    /// Non-confirmable (NON): sent once, never acknowledged (§4.3).
    Non = 1,
    /// Acknowledgement (ACK) of a confirmable message (§4.2).
    Ack = 2,
    /// Reset (RST): the recipient could not process a message (§4.2, §4.3).
    Rst = 3,
}

impl Type {
    /// The type for the two low bits of `bits`; higher bits are ignored.
    pub const fn from_bits(bits: u8) -> Type {
        match bits & 0b11 {
            0 => Type::Con,
            1 => Type::Non,
            2 => Type::Ack,
            _ => Type::Rst,
        }
    }

    /// The two-bit wire value.
    pub const fn bits(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Type::Con => "CON",
            Type::Non => "NON",
            Type::Ack => "ACK",
            Type::Rst => "RST",
        })
    }
}

/// A message code: a 3-bit class and a 5-bit detail, written `c.dd` (RFC 7252 §3).
///
/// Class 0 holds the Empty message (0.00) and request methods, classes 2, 4 and 5 hold
/// response codes. Classes 1, 6 and 7 are reserved (§12.1); the parser rejects them and
/// [`Code::new`] refuses to make them.
///
/// Every registered method and response code is an associated constant. `Display` prints
/// a method by its name and a response code with its number and description:
///
/// ```
/// use coap_proto::wire::Code;
/// assert_eq!(Code::GET.to_string(), "GET");
/// assert_eq!(Code::CONTENT.to_string(), "2.05 Content");
/// assert_eq!(Code::new(4, 4), Some(Code::NOT_FOUND));
/// assert_eq!(Code::new(2, 7).unwrap().to_string(), "2.07");
/// assert!(Code::CONTINUE.is_success());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(u8);

macro_rules! codes {
    ($( $(#[$doc:meta])* $name:ident = ($class:literal, $detail:literal, $text:literal); )*) => {
        impl Code {
            $( $(#[$doc])* pub const $name: Code = Code(($class << 5) | $detail); )*
        }
        const fn code_name(code: u8) -> Option<&'static str> {
            match code {
                $( c if c == ($class << 5) | $detail => Some($text), )*
                _ => None,
            }
        }
    };
}

codes! {
    /// 0.00 — the Empty message (§4.1).
    EMPTY = (0, 0, "Empty");
    /// 0.01 GET (§5.8.1).
    GET = (0, 1, "GET");
    /// 0.02 POST (§5.8.2).
    POST = (0, 2, "POST");
    /// 0.03 PUT (§5.8.3).
    PUT = (0, 3, "PUT");
    /// 0.04 DELETE (§5.8.4).
    DELETE = (0, 4, "DELETE");
    /// 0.05 FETCH (RFC 8132).
    FETCH = (0, 5, "FETCH");
    /// 0.06 PATCH (RFC 8132).
    PATCH = (0, 6, "PATCH");
    /// 0.07 iPATCH (RFC 8132).
    IPATCH = (0, 7, "iPATCH");
    /// 2.01 Created (§5.9.1.1).
    CREATED = (2, 1, "Created");
    /// 2.02 Deleted (§5.9.1.2).
    DELETED = (2, 2, "Deleted");
    /// 2.03 Valid (§5.9.1.3).
    VALID = (2, 3, "Valid");
    /// 2.04 Changed (§5.9.1.4).
    CHANGED = (2, 4, "Changed");
    /// 2.05 Content (§5.9.1.5).
    CONTENT = (2, 5, "Content");
    /// 2.31 Continue (RFC 7959 §2.9.1).
    CONTINUE = (2, 31, "Continue");
    /// 4.00 Bad Request (§5.9.2.1).
    BAD_REQUEST = (4, 0, "Bad Request");
    /// 4.01 Unauthorized (§5.9.2.2).
    UNAUTHORIZED = (4, 1, "Unauthorized");
    /// 4.02 Bad Option (§5.9.2.3).
    BAD_OPTION = (4, 2, "Bad Option");
    /// 4.03 Forbidden (§5.9.2.4).
    FORBIDDEN = (4, 3, "Forbidden");
    /// 4.04 Not Found (§5.9.2.5).
    NOT_FOUND = (4, 4, "Not Found");
    /// 4.05 Method Not Allowed (§5.9.2.6).
    METHOD_NOT_ALLOWED = (4, 5, "Method Not Allowed");
    /// 4.06 Not Acceptable (§5.9.2.7).
    NOT_ACCEPTABLE = (4, 6, "Not Acceptable");
    /// 4.08 Request Entity Incomplete (RFC 7959 §2.9.2).
    REQUEST_ENTITY_INCOMPLETE = (4, 8, "Request Entity Incomplete");
    /// 4.09 Conflict (RFC 8132).
    CONFLICT = (4, 9, "Conflict");
    /// 4.12 Precondition Failed (§5.9.2.8).
    PRECONDITION_FAILED = (4, 12, "Precondition Failed");
    /// 4.13 Request Entity Too Large (§5.9.2.9, RFC 7959 §2.9.3).
    REQUEST_ENTITY_TOO_LARGE = (4, 13, "Request Entity Too Large");
    /// 4.15 Unsupported Content-Format (§5.9.2.10).
    UNSUPPORTED_CONTENT_FORMAT = (4, 15, "Unsupported Content-Format");
    /// 4.22 Unprocessable Entity (RFC 8132).
    UNPROCESSABLE_ENTITY = (4, 22, "Unprocessable Entity");
    /// 4.29 Too Many Requests (RFC 8516).
    TOO_MANY_REQUESTS = (4, 29, "Too Many Requests");
    /// 5.00 Internal Server Error (§5.9.3.1).
    INTERNAL_SERVER_ERROR = (5, 0, "Internal Server Error");
    /// 5.01 Not Implemented (§5.9.3.2).
    NOT_IMPLEMENTED = (5, 1, "Not Implemented");
    /// 5.02 Bad Gateway (§5.9.3.3).
    BAD_GATEWAY = (5, 2, "Bad Gateway");
    /// 5.03 Service Unavailable (§5.9.3.4).
    SERVICE_UNAVAILABLE = (5, 3, "Service Unavailable");
    /// 5.04 Gateway Timeout (§5.9.3.5).
    GATEWAY_TIMEOUT = (5, 4, "Gateway Timeout");
    /// 5.05 Proxying Not Supported (§5.9.3.6).
    PROXYING_NOT_SUPPORTED = (5, 5, "Proxying Not Supported");
    /// 5.08 Hop Limit Reached (RFC 8768).
    HOP_LIMIT_REACHED = (5, 8, "Hop Limit Reached");
}

impl Code {
    /// The code `class.detail`, or `None` when `detail > 31`, `class > 7`, or the class is
    /// reserved (1, 6, 7 — RFC 7252 §12.1).
    pub const fn new(class: u8, detail: u8) -> Option<Code> {
        if class > 7 || detail > 31 || is_reserved_class(class) {
            None
        } else {
            Some(Code((class << 5) | detail))
        }
    }

    /// The code for a raw header byte, or `None` when its class is reserved.
    pub const fn from_u8(raw: u8) -> Option<Code> {
        if is_reserved_class(raw >> 5) {
            None
        } else {
            Some(Code(raw))
        }
    }

    /// The raw header byte.
    pub const fn to_u8(self) -> u8 {
        self.0
    }

    /// The class: 0 (Empty or request), 2, 4 or 5 (response).
    pub const fn class(self) -> u8 {
        self.0 >> 5
    }

    /// The detail, 0–31.
    pub const fn detail(self) -> u8 {
        self.0 & 0x1f
    }

    /// Whether this is 0.00, the code of the Empty message.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether this is a request method (0.01–0.31), registered or not.
    pub const fn is_request(self) -> bool {
        self.class() == 0 && self.0 != 0
    }

    /// Whether this is a response code (2.00–5.31).
    pub const fn is_response(self) -> bool {
        self.class() >= 2
    }

    /// Whether this is a success response (class 2).
    pub const fn is_success(self) -> bool {
        self.class() == 2
    }

    /// Whether this is a client error response (class 4).
    pub const fn is_client_error(self) -> bool {
        self.class() == 4
    }

    /// Whether this is a server error response (class 5).
    pub const fn is_server_error(self) -> bool {
        self.class() == 5
    }

    /// The registered name: "GET", "Content", "Not Found" …; `None` if unregistered.
    pub const fn name(self) -> Option<&'static str> {
        code_name(self.0)
    }
}

const fn is_reserved_class(class: u8) -> bool {
    matches!(class, 1 | 6 | 7)
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.name(), self.is_request()) {
            (Some(name), true) => f.write_str(name),
            (Some(name), false) => write!(f, "{}.{:02} {}", self.class(), self.detail(), name),
            (None, _) => write!(f, "{}.{:02}", self.class(), self.detail()),
        }
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Code({self})")
    }
}
