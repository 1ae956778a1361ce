//! What `coap-server` (blocking) and `tokio_server` share: libcoap's example-server
//! flags, its resources, and a logger for `-v`. Only the adapter and `/async`'s way of
//! waiting differ between the two.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coap_proto::net::{Request, Response};
use coap_proto::resource::{Methods, Resource};
use coap_proto::wire::{Code, ContentFormat};

pub const USAGE: &str = "\
usage: coap-server [-A ADDRESS] [-p PORT] [-d MAX] [-g GROUP]... [-G INTERFACE] [-k KEY [-h HINT]] [-v N] [-h]

  -A ADDRESS  the address to listen on (default 127.0.0.1; :: or 0.0.0.0 for all)
  -p PORT     the port (default 5683)
  -d MAX      at most MAX resources created by PUT or POST (default 64): past it,
              creating one more gets 4.06 Not Acceptable until one is deleted
  -g GROUP    join this multicast group (224.0.1.187, ff02::fd, ff05::fd …; repeatable),
              as libcoap's: group requests are answered within Leisure (5 s), never
              with an error. Needs a unicast -A, which also picks the IPv4 interface
  -G INTERFACE  the interface to join the groups on: a name or index (IPv6), an
              address (IPv4); default: the interface of -A
  -k KEY      also serve coaps:// (DTLS with pre-shared keys, feature dtls) on PORT + 1,
              as libcoap's does: a client with any identity and this key connects
  -h HINT     with -k: the identity hint sent to clients
  -v N        verbosity as libcoap's: 5 logs each request and its answer, 6 and more
              every message sent and received, with retransmissions and refusals
  -h          (alone, or before another option) this help

Resources: / (about), /time (UTC, Max-Age 1, observable: notifies every second), /async?N (answered after N seconds,
default 2, as a separate response), /example_data (GET/PUT/POST/DELETE, 1500 bytes);
PUT or POST to any other path creates it. /.well-known/core lists them.";

/// The command line.
pub struct Options {
    pub address: String,
    pub port: u16,
    pub max_dynamic: usize,
    pub verbosity: u8,
    /// `-k`: the pre-shared key for coaps on `port + 1`.
    pub key: Option<String>,
    /// `-h HINT`: the PSK identity hint.
    pub hint: Option<String>,
    /// `-g GROUP`: multicast groups to join.
    pub groups: Vec<String>,
    /// `-G INTERFACE`: where to join them.
    pub group_interface: Option<String>,
}

impl Options {
    /// Parses the arguments; prints the help and exits for `-h`.
    pub fn parse() -> Result<Options, String> {
        let mut o = Options {
            address: "127.0.0.1".into(),
            port: 5683,
            max_dynamic: 64,
            verbosity: 0,
            key: None,
            hint: None,
            groups: Vec::new(),
            group_interface: None,
        };
        let mut args = std::env::args().skip(1).peekable();
        while let Some(arg) = args.next() {
            // libcoap's `-h HINT`; `-h` alone (or before another option) asks for help.
            if arg == "-h" && args.peek().is_some_and(|next| !next.starts_with('-')) {
                o.hint = args.next();
                continue;
            }
            let mut value = || args.next().ok_or(format!("{arg} needs a value\n{USAGE}"));
            let bad = |e: &dyn std::fmt::Display| format!("{arg}: {e}");
            match arg.as_str() {
                "-A" => o.address = value()?,
                "-p" => o.port = value()?.parse().map_err(|e| bad(&e))?,
                "-d" => o.max_dynamic = value()?.parse().map_err(|e| bad(&e))?,
                "-v" => o.verbosity = value()?.parse().map_err(|e| bad(&e))?,
                "-k" => o.key = Some(value()?),
                "-g" => o.groups.push(value()?),
                "-G" => o.group_interface = Some(value()?),
                "-h" => {
                    let program = std::env::args().next().unwrap_or_default();
                    let name = std::path::Path::new(&program)
                        .file_name()
                        .map_or("coap-server".into(), |n| n.to_string_lossy());
                    println!("{}", USAGE.replacen("coap-server", &name, 1));
                    std::process::exit(0);
                }
                _ => return Err(format!("unknown option {arg}\n{USAGE}")),
            }
        }
        crate::logger::init(o.verbosity);
        Ok(o)
    }

    /// `address:port`, with brackets around an IPv6 address.
    pub fn listen(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }

    /// The groups of `-g`, joined on the interface `-G` names (IPv4: by its address,
    /// else `-A`'s; IPv6: by its index, or by its name on Linux).
    pub fn groups(&self) -> Result<Vec<coap_proto::net::Group>, String> {
        use std::net::{IpAddr, Ipv4Addr};
        let interface = self.group_interface.as_deref();
        let v4 = match interface.map(str::parse::<Ipv4Addr>) {
            Some(Ok(a)) => a,
            _ => self.address.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
        };
        let index = match interface {
            None => 0,
            Some(i) if i.parse::<Ipv4Addr>().is_ok() => 0,
            Some(i) => crate::interface::index(i).ok_or(format!("-G {i}: no such interface"))?,
        };
        self.groups
            .iter()
            .map(|g| {
                let address: IpAddr = g.parse().map_err(|e| format!("-g {g}: {e}"))?;
                Ok(coap_proto::net::Group::new(address)
                    .interface_v4(v4)
                    .interface_index(index))
            })
            .collect()
    }

    /// `address:(port + 1)`, where coaps is served with `-k`.
    #[cfg_attr(not(feature = "dtls"), allow(dead_code))]
    pub fn listen_secure(&self) -> String {
        let port = self.port.wrapping_add(1);
        if self.address.contains(':') {
            format!("[{}]:{port}", self.address)
        } else {
            format!("{}:{port}", self.address)
        }
    }

    /// Whether each request and its answer are logged.
    pub fn log_requests(&self) -> bool {
        self.verbosity >= 5
    }
}

/// Resources that are there from the start and do not count toward `-d`.
const BUILT_IN: usize = 1;

/// The resource table in the order both servers add them: `/`, `/time`, `/async`,
/// `/example_data`; other paths go to the fallback (created resources).
pub fn root() -> Resource<'static> {
    Resource::new("/", Methods::GET).ct(0).title("General Info")
}

pub fn time() -> Resource<'static> {
    Resource::new("/time", Methods::GET)
        .rt("ticks")
        .ct(0)
        .title("Internal Clock")
}

pub fn async_resource() -> Resource<'static> {
    Resource::new("/async", Methods::GET).title("Separate response")
}

pub fn example_data() -> Resource<'static> {
    let all = Methods::GET
        .and(Methods::PUT)
        .and(Methods::POST)
        .and(Methods::DELETE);
    Resource::new("/example_data", all).title("Example Data")
}

pub fn about() -> Response {
    Response::content(
        "This is a test server made with coap-proto, a sans-IO CoAP library in Rust.\n",
    )
    .content_format(ContentFormat::TEXT_PLAIN)
}

pub fn now() -> Response {
    Response::content(utc_now())
        .content_format(ContentFormat::TEXT_PLAIN)
        .max_age(1)
}

/// How long `/async?N` waits: N seconds (default 2, at most 60).
pub fn async_delay(req: &Request) -> Duration {
    let secs = req
        .query
        .first()
        .and_then(|q| q.parse().ok())
        .unwrap_or(2u64)
        .min(60);
    Duration::from_secs(secs)
}

/// How often `/time` notifies its observers: at the next full second.
pub fn tick() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_nanos(1_000_000_000 - u64::from(nanos))
}

pub fn async_done() -> Response {
    Response::content("done")
}

/// The bodies of `/example_data` and of created resources.
#[derive(Clone)]
pub struct Store {
    map: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    /// The ETag key: SipHash with random keys, new for every run of the server.
    etags: std::hash::RandomState,
    max_dynamic: usize,
    log: bool,
}

impl Store {
    pub fn new(options: &Options) -> Store {
        let example: Vec<u8> = (0..1500u32).map(|i| b'a' + (i % 26) as u8).collect();
        let map = HashMap::from([("/example_data".to_string(), example)]);
        Store {
            map: Arc::new(Mutex::new(map)),
            etags: std::hash::RandomState::new(),
            max_dynamic: options.max_dynamic,
            log: options.log_requests(),
        }
    }

    /// `/example_data` and resources created by PUT or POST (at most `-d`).
    pub fn handle(&self, req: &Request) -> Response {
        let mut map = self.map.lock().unwrap();
        let exists = map.contains_key(&req.path);
        // If-Match / If-None-Match against the stored body's ETag (RFC 7252 §5.10.8).
        let etag = map.get(&req.path).map(|body| self.etag_of(body));
        if let Some(code) = req.preconditions(etag.as_ref().map(|e| &e[..])) {
            return Response::new(code);
        }
        let creating = !exists && matches!(req.method, Code::PUT | Code::POST);
        let response = match (req.method, exists) {
            _ if creating && map.len() >= BUILT_IN + self.max_dynamic => {
                Response::new(Code::NOT_ACCEPTABLE).payload("too many dynamic resources")
            }
            (Code::GET, true) => {
                let body = map[&req.path].clone();
                let mut r = Response::content(body);
                r.etag = Some(self.etag_of(&r.payload).to_vec());
                r
            }
            (Code::PUT, _) | (Code::POST, _) => {
                map.insert(req.path.clone(), req.payload.clone());
                match (exists, req.method) {
                    (true, _) => Response::new(Code::CHANGED),
                    (false, Code::POST) => Response::new(Code::CREATED).location_path(&req.path),
                    (false, _) => Response::new(Code::CREATED),
                }
            }
            (Code::DELETE, true) => {
                map.remove(&req.path);
                Response::new(Code::DELETED)
            }
            (Code::GET | Code::DELETE, false) => Response::new(Code::NOT_FOUND),
            _ => Response::new(Code::METHOD_NOT_ALLOWED),
        };
        if self.log {
            eprintln!("{req} -> {response}");
        }
        response
    }
}

impl Store {
    /// A stored body's ETag: 8 bytes of a keyed hash of its length and bytes, so that
    /// no client can make two bodies of one length share an ETag (and so get blocks of
    /// both joined into one body by a client, RFC 7959 §2.4).
    fn etag_of(&self, body: &[u8]) -> [u8; 8] {
        use std::hash::{BuildHasher, Hasher};
        let mut h = self.etags.build_hasher();
        h.write_usize(body.len());
        h.write(body);
        h.finish().to_be_bytes()
    }
}

/// "YYYY-MM-DD hh:mm:ss UTC" without a date library (civil-from-days).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
