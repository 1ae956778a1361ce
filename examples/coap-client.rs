//! A command-line CoAP client with libcoap's `coap-client` flags and output, so that
//! scripts written for libcoap's can use this one.
//!
//! ```text
//! cargo run --features std,log --example coap-client -- [OPTIONS] URI
//!
//!   -m METHOD      get, put, post, delete, fetch, patch or ipatch (default get)
//!   -e TEXT        payload from the argument (%XX is decoded, as libcoap does)
//!   -f FILE        payload from a file ("-" for stdin)
//!   -o FILE        write the response body to FILE ("-" for stdout, the default)
//!   -w             append a newline to the body received
//!   -b [NUM,]SIZE  block size for Block1 and Block2 (16 … 1024); the download starts
//!                  at block NUM
//!   -B SECONDS     give up after this long, CON or NON (default 90); for a group
//!                  request, how long to collect answers (default 8)
//!   -N             send as NON (non-confirmable); a multicast URI needs it
//!   -I INTERFACE   the interface (name or index) of an IPv6 link-local group
//!                  such as ff02::fd; IPv4 group requests leave by -a's interface
//!   -A TYPE        Accept: a Content-Format number or name (text, json, cbor, …)
//!   -t TYPE        Content-Format of the payload
//!   -O NUM,TEXT    add option NUM with value TEXT ("0x…" for bytes in hex); repeatable
//!   -T TOKEN       the token, as text
//!   -P URI         send to this proxy (coap://host[:port]) with Proxy-Uri set to URI
//!   -H HOPS        Hop-Limit for proxies (1 … 255)
//!   -U             never send Uri-Host
//!   -G COUNT       send the request COUNT times, a second apart
//!   -a ADDRESS     local address to send from
//!   -p PORT        local port to send from
//!   -s SECONDS     observe the resource (RFC 7641) for that long from its first answer,
//!                  printing each notification as it comes (appended with -o); exits 1
//!                  if none came; the end is sent to the server (GET with Observe: 1)
//!   -k KEY         pre-shared key for coaps:// (DTLS, feature dtls)
//!   -u IDENTITY    the identity that key belongs to (default "coap-proto")
//!   -v N           verbosity: 6 and more print every message sent and received
//!   -h             this help
//! ```
//!
//! `coaps://` URIs (port 5684 by default) need the `dtls` feature:
//! `cargo run --features std,log,dtls --example coap-client -- -k KEY -u ID coaps://host/path`.
//!
//! A URI whose host is a multicast address (`-N coap://224.0.1.187/.well-known/core`)
//! sends a group request (RFC 7252 §8) and prints every server's answer as it is
//! collected, one line each: `ADDRESS: BODY` on stdout for 2.xx, `ADDRESS: CODE …` on
//! stderr otherwise; the exit status is 0 when at least one server answered.
//!
//! As libcoap's client does, a 2.xx body goes to stdout as received (with a newline
//! after it), and any other code is printed on stderr with the diagnostic payload,
//! e.g. `4.04 Not Found`. The exit status is 0 when a response arrived, whatever its
//! code, and 1 when none did (libcoap's also exits 0 then).
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

use coap_proto::net::blocking::Client;
use coap_proto::net::{Request, Response, ToPeer};
use coap_proto::wire::{Code, ContentFormat, OptionNumber};

#[path = "common/interface.rs"]
mod interface;
#[path = "common/logger.rs"]
mod logger;

const USAGE: &str = "usage: coap-client [-m METHOD] [-e TEXT | -f FILE] [-o FILE] [-w] \
[-b [NUM,]SIZE] [-B SECONDS] [-N] [-I INTERFACE] [-A TYPE] [-t TYPE] [-O NUM,TEXT]... [-T TOKEN] \
[-P PROXY] [-H HOPS] [-U] [-G COUNT] [-s SECONDS] [-a ADDRESS] [-p PORT] [-k KEY] \
[-u IDENTITY] [-v N] [-h] URI";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coap-client: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Options {
    method: Code,
    payload: Option<Vec<u8>>,
    output: Option<String>,
    newline: bool,
    block: Option<(usize, u8)>,
    wait: u64,
    /// Whether `-B` was given (a group request's window is shorter by default).
    wait_given: bool,
    non: bool,
    interface: Option<String>,
    accept: Option<ContentFormat>,
    format: Option<ContentFormat>,
    options: Vec<(OptionNumber, Vec<u8>)>,
    token: Option<Vec<u8>>,
    proxy: Option<String>,
    hops: Option<u8>,
    no_host: bool,
    count: u32,
    local_address: Option<String>,
    local_port: u16,
    observe: Option<u64>,
    key: Option<String>,
    identity: String,
    uri: String,
}

fn parse() -> Result<Options, Box<dyn std::error::Error>> {
    let mut o = Options {
        method: Code::GET,
        payload: None,
        output: None,
        newline: false,
        block: None,
        wait: 90,
        wait_given: false,
        non: false,
        interface: None,
        accept: None,
        format: None,
        options: Vec::new(),
        token: None,
        proxy: None,
        hops: None,
        no_host: false,
        count: 1,
        local_address: None,
        local_port: 0,
        observe: None,
        key: None,
        identity: "coap-proto".to_string(),
        uri: String::new(),
    };
    let mut verbosity = 0u8;
    let mut uri = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "-m" => {
                o.method = match value()?.to_ascii_lowercase().as_str() {
                    "get" => Code::GET,
                    "put" => Code::PUT,
                    "post" => Code::POST,
                    "delete" => Code::DELETE,
                    "fetch" => Code::FETCH,
                    "patch" => Code::PATCH,
                    "ipatch" => Code::IPATCH,
                    other => return Err(format!("unknown method {other}").into()),
                }
            }
            "-e" => o.payload = Some(percent_decode(&value()?)),
            "-f" => {
                let name = value()?;
                let mut data = Vec::new();
                if name == "-" {
                    std::io::stdin().read_to_end(&mut data)?;
                } else {
                    data = std::fs::read(&name).map_err(|e| format!("{name}: {e}"))?;
                }
                o.payload = Some(data);
            }
            "-o" => o.output = Some(value()?).filter(|f| f != "-"),
            "-w" => o.newline = true,
            "-b" => {
                let v = value()?;
                let (num, size) = match v.split_once(',') {
                    Some((num, size)) => (num.parse()?, size),
                    None => (0usize, v.as_str()),
                };
                let size: usize = size.parse()?;
                let szx = (4..=10)
                    .position(|p| 1usize << p == size)
                    .ok_or("block size must be 16 … 1024, a power of two")?;
                o.block = Some((num * size, szx as u8));
            }
            "-B" => {
                o.wait = value()?.parse()?;
                o.wait_given = true;
            }
            "-N" => o.non = true,
            "-I" => o.interface = Some(value()?),
            "-A" => o.accept = Some(content_format(&value()?)?),
            "-t" => o.format = Some(content_format(&value()?)?),
            "-O" => {
                let v = value()?;
                let (num, text) = v.split_once(',').unwrap_or((&v, ""));
                o.options
                    .push((OptionNumber(num.parse()?), option_value(text)?));
            }
            "-T" => o.token = Some(value()?.into_bytes()),
            "-P" => o.proxy = Some(value()?),
            "-H" => o.hops = Some(value()?.parse()?),
            "-U" => o.no_host = true,
            "-G" => o.count = value()?.parse::<u32>()?.clamp(1, 255),
            "-a" => o.local_address = Some(value()?),
            "-p" => o.local_port = value()?.parse()?,
            "-v" => verbosity = value()?.parse()?,
            "-s" => o.observe = Some(value()?.parse()?),
            "-k" => o.key = Some(value()?),
            "-u" => o.identity = value()?,
            "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ if arg.starts_with('-') => {
                return Err(format!("unknown option {arg}\n{USAGE}").into());
            }
            _ => uri = Some(arg),
        }
    }
    logger::init(verbosity);
    o.uri = uri.ok_or(USAGE)?;
    Ok(o)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let o = parse()?;
    let (mut req, target) = match &o.proxy {
        // Everything about the target goes in Proxy-Uri; the datagram goes to the proxy.
        Some(proxy) => {
            let req = Request::new(o.method, "/").option(OptionNumber::PROXY_URI, o.uri.as_str());
            (req, proxy.to_peer()?)
        }
        None => {
            let (req, host, port) = Request::from_uri(o.method, &o.uri)?;
            (req, (host.as_str(), port).to_peer()?)
        }
    };
    if o.no_host {
        req.host = None;
    }
    req = req
        .payload(o.payload.clone().unwrap_or_default())
        .timeout(Duration::from_secs(o.wait));
    for (number, value) in &o.options {
        req = req.option(*number, value.clone());
    }
    if let Some(hops) = o.hops {
        req = req.option(OptionNumber::HOP_LIMIT, [hops]);
    }
    if let Some(token) = &o.token {
        req = req.token(token.clone());
    }
    if let Some(cf) = o.format {
        req = req.content_format(cf);
    }
    if let Some(cf) = o.accept {
        req = req.accept(cf);
    }
    if o.non {
        req = req.non_confirmable();
    }
    if let Some((offset, szx)) = o.block {
        req = req.block2(szx).block2_offset(offset);
        if !req.payload.is_empty() {
            req = req.block1(szx);
        }
    }
    let server = target.resolve()?;
    let local = match &o.local_address {
        Some(a) => SocketAddr::new(a.parse()?, o.local_port),
        None => SocketAddr::new(coap_proto::net::local_for(server).ip(), o.local_port),
    };
    let socket = UdpSocket::bind(local)?;
    if server.ip().is_multicast() {
        return group(&o, req, server, socket);
    }
    let secure = o.proxy.as_deref().unwrap_or(&o.uri).secure_scheme() == Some(true);
    if !secure {
        let mut client = Client::from_socket(socket, server, coap_proto::net::default_config())?;
        return exchange(&o, &req, &mut client);
    }
    #[cfg(feature = "dtls")]
    {
        use coap_proto::dtls::{Limits, Sessions};
        let key = o
            .key
            .clone()
            .ok_or("coaps:// needs a pre-shared key (-k KEY)")?;
        let sessions = Sessions::client(o.identity.clone(), key, Limits::default())?;
        let config = coap_proto::net::default_config();
        let mut client = Client::from_socket_psk(socket, server, sessions, config)?;
        exchange(&o, &req, &mut client)
    }
    #[cfg(not(feature = "dtls"))]
    Err("coaps:// needs the dtls feature (cargo run --features std,log,dtls …)".into())
}

/// A group request to `group`: every member's answer, with its address.
fn group(
    o: &Options,
    req: Request,
    mut group: SocketAddr,
    socket: UdpSocket,
) -> Result<(), Box<dyn std::error::Error>> {
    if !o.non {
        return Err(
            "a request to a multicast address must be non-confirmable: add -N \
                    (RFC 7252 §8.1)"
                .into(),
        );
    }
    if let (SocketAddr::V6(a), Some(name)) = (&mut group, &o.interface) {
        let index = interface::index(name).ok_or(format!("-I {name}: no such interface"))?;
        a.set_scope_id(index);
    }
    let window = if o.wait_given { o.wait } else { 8 };
    let req = req.timeout(Duration::from_secs(window));
    let mut client = Client::from_socket(socket, group, coap_proto::net::default_config())?;
    let answers = client.group_request(group, &req)?;
    let mut stdout = std::io::stdout();
    for a in &answers {
        let r = &a.response;
        let incomplete = if a.complete { "" } else { " (incomplete)" };
        if r.code.is_success() {
            let body = String::from_utf8_lossy(&r.payload);
            writeln!(stdout, "{}: {body}{incomplete}", a.from)?;
        } else {
            let text = r.payload_str().unwrap_or("");
            eprintln!("{}: {} {text}{incomplete}", a.from, r.code);
        }
    }
    if answers.is_empty() {
        return Err(format!("no answer from group {group} within {window} s").into());
    }
    Ok(())
}

/// Sends the request (or observes) over `client`, printing as libcoap's client does.
fn exchange<T: coap_proto::net::Transport>(
    o: &Options,
    req: &Request,
    client: &mut Client<64, 16, 1152, 512, 32768, T>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut written = false;
    if let Some(secs) = o.observe {
        // Observe (RFC 7641) for that long: each notification as it comes, as
        // libcoap's `-s` prints them.
        // As libcoap's: SECONDS count from the first answer, `-o` gets every
        // notification appended, and nothing arriving at all is a failure.
        let mut failed = None;
        let mut arrived = 0;
        if let Some(file) = &o.output {
            std::fs::write(file, b"")?;
        }
        client.observe(req, Some(Duration::from_secs(secs)), |n| {
            arrived += 1;
            match print(o, n, true) {
                Ok(w) => {
                    written |= w;
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        if written {
            std::io::stdout().write_all(b"\n")?;
        }
        if arrived == 0 {
            return Err("the observation ended before any notification arrived".into());
        }
        return Ok(());
    }
    for i in 0..o.count {
        if i > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        let response = match o.block {
            // As libcoap's client does, `-b NUM,SIZE` with NUM > 0 fetches that block only.
            Some((offset, _)) if offset > 0 && req.payload.is_empty() => {
                let mut body = Vec::new();
                let head = client.request_streamed(req, |_, bytes, _| {
                    body.extend_from_slice(bytes);
                    false
                })?;
                head.payload(body)
            }
            _ => client.request(req)?,
        };
        written |= print(o, &response, false)?;
    }
    // libcoap's client ends what it wrote to stdout with a newline.
    if written {
        std::io::stdout().write_all(b"\n")?;
    }
    Ok(())
}

/// libcoap's output: a 2.xx body as received (to the `-o` file, appended to it when
/// `append`), any other code on stderr with its diagnostic payload. Returns whether it
/// wrote to stdout.
fn print(o: &Options, response: &Response, append: bool) -> std::io::Result<bool> {
    if !response.code.is_success() {
        let (class, detail) = (response.code.class(), response.code.detail());
        let mut line = format!("{class}.{detail:02}");
        if !response.payload.is_empty() {
            line.push(' ');
            line.extend(response.payload.iter().map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    char::from(b)
                } else {
                    '.'
                }
            }));
        }
        eprintln!("{line}");
        return Ok(false);
    }
    let mut body = response.payload.to_vec();
    if o.newline {
        body.push(b'\n');
    }
    match &o.output {
        Some(file) if append => std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(file)
            .and_then(|mut f| f.write_all(&body))
            .map(|()| false),
        Some(file) => std::fs::write(file, &body).map(|()| false),
        None if body.is_empty() => Ok(false),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&body)?;
            out.flush().map(|()| true)
        }
    }
}

/// A Content-Format by number or by (a short form of) its name.
fn content_format(name: &str) -> Result<ContentFormat, String> {
    if let Ok(n) = name.parse() {
        return Ok(ContentFormat(n));
    }
    let short = [
        ("text", ContentFormat::TEXT_PLAIN),
        ("link", ContentFormat::LINK_FORMAT),
        ("xml", ContentFormat::XML),
        ("binary", ContentFormat::OCTET_STREAM),
        ("octet-stream", ContentFormat::OCTET_STREAM),
        ("exi", ContentFormat::EXI),
        ("json", ContentFormat::JSON),
        ("cbor", ContentFormat::CBOR),
    ];
    let name = name.to_ascii_lowercase();
    let name = name.strip_prefix("application/").unwrap_or(&name);
    short
        .iter()
        .find(|(n, _)| {
            *n == name || name == format!("text/{n}") || name.starts_with(&format!("{n};"))
        })
        .map(|(_, cf)| *cf)
        .or_else(|| {
            (0..=u16::MAX).map(ContentFormat).take(12_000).find(|cf| {
                cf.media_type()
                    .is_some_and(|t| t.trim_start_matches("application/") == name)
            })
        })
        .ok_or(format!("unknown content format {name}"))
}

/// An option value: `0x…` is hex, anything else text.
fn option_value(text: &str) -> Result<Vec<u8>, String> {
    let Some(hex) = text.strip_prefix("0x") else {
        return Ok(text.as_bytes().to_vec());
    };
    if hex.len() % 2 != 0 {
        return Err(format!("odd number of hex digits in {text}"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|e| format!("{text}: {e}")))
        .collect()
}

/// `%XX` decoded, as libcoap's `-e` does.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}
