//! A command-line CoAP client in the spirit of libcoap's `coap-client`.
//!
//! ```text
//! cargo run --features std --example coap-client -- [OPTIONS] URI
//!
//!   -m METHOD   get, put, post, delete or fetch (default get)
//!   -e TEXT     payload from the argument
//!   -f FILE     payload from a file ("-" for stdin)
//!   -o FILE     write the response body to FILE instead of stdout
//!   -N          send as NON (non-confirmable)
//!   -b SIZE     block size for Block1 and Block2: 16, 32, …, 1024 (libcoap's
//!               "[num,]size" form is accepted; num is ignored)
//!   -B SECONDS  how long to wait for a NON response (default 90, as libcoap)
//!   -q          do not print the response code
//! ```
//!
//! Prints the response code (`2.05 Content`) on stderr and the body on stdout. The exit
//! status is 0 when a response arrived, whatever its code, and 1 otherwise. Observe
//! (`-s`) is not supported yet.
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use coap_proto::net::Request;
use coap_proto::net::blocking::Client;
use coap_proto::wire::Code;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coap-client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (mut method, mut payload, mut output) = (Code::GET, None, None);
    let (mut non, mut szx, mut wait, mut quiet, mut uri) = (false, None, 90u64, false, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "-m" => {
                method = match value()?.to_ascii_lowercase().as_str() {
                    "get" => Code::GET,
                    "put" => Code::PUT,
                    "post" => Code::POST,
                    "delete" => Code::DELETE,
                    "fetch" => Code::FETCH,
                    other => return Err(format!("unknown method {other}").into()),
                }
            }
            "-e" => payload = Some(value()?.into_bytes()),
            "-f" => {
                let name = value()?;
                let mut data = Vec::new();
                if name == "-" {
                    std::io::stdin().read_to_end(&mut data)?;
                } else {
                    data = std::fs::read(&name)?;
                }
                payload = Some(data);
            }
            "-o" => output = Some(value()?),
            "-N" => non = true,
            "-b" => {
                let v = value()?;
                let size: usize = v.rsplit(',').next().unwrap_or(&v).parse()?;
                let s = (4..=10)
                    .position(|p| 1usize << p == size)
                    .ok_or("block size must be 16..1024, a power of two")?;
                szx = Some(s as u8);
            }
            "-B" => wait = value()?.parse()?,
            "-q" => quiet = true,
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}").into()),
            _ => uri = Some(arg),
        }
    }
    let uri = uri.ok_or("usage: coap-client [-m METHOD] [-e TEXT | -f FILE] [-o FILE] [-N] [-b SIZE] [-B SECONDS] URI")?;
    let (mut req, host, port) = Request::from_uri(method, &uri)?;
    req = req
        .payload(payload.unwrap_or_default())
        .timeout(Duration::from_secs(wait));
    if non {
        req = req.non_confirmable();
    }
    if let Some(szx) = szx {
        req = req.block2(szx);
        if !req.payload.is_empty() {
            req = req.block1(szx);
        }
    }
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let mut client = Client::connect(format!("{host}:{port}"))?;
    let response = client.request(&req)?;
    if !quiet {
        eprintln!("{}", response.code);
    }
    match output {
        Some(file) => std::fs::write(file, &response.payload)?,
        None => {
            let mut out = std::io::stdout();
            out.write_all(&response.payload)?;
            if !response.payload.is_empty() && !response.payload.ends_with(b"\n") {
                out.write_all(b"\n")?;
            }
        }
    }
    Ok(())
}
