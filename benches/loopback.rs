//! Requests per second over loopback UDP: our servers against a bare UDP responder, in
//! the same run, driven by the same load generator.
//!
//! ```text
//! cargo bench --features tokio --bench loopback               # every server, 1 and 64 in flight, CON and NON
//! cargo bench --features tokio --bench loopback -- SECS ROUNDS # seconds per run (default 2), rounds (default 3)
//! cargo bench --features tokio --bench loopback -- serve NAME # one server alone on 127.0.0.1:5699 (for profiling)
//! cargo bench --features tokio --bench loopback -- load ADDR K SECS [NON] # the load generator alone
//! ```
//!
//! The load generator keeps K requests (`GET /hello`) in flight from one socket: each
//! slot sends its next request as soon as the response to its last one is in (slots
//! whose answer was lost are re-armed after 200 ms and counted). It does not
//! retransmit. Every server answers `2.05` with the 5 bytes `hello`, which is exactly
//! what the bare responder sends (it copies message ID and token, nothing else).
//! Reported: requests answered per second, the median and 99th percentile latency, the
//! ratio to the bare responder, and how many answers were not 2.05 — each the median
//! over rounds that take the servers in turn. With `taskset` on the machine, each
//! server runs in a process of its own pinned to core 1 and the load generator is
//! pinned to core 0.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use coap_proto::net::Response;
use coap_proto::resource::{Methods, Resource};
use coap_proto::wire::Code;
use coap_proto::{Config, Endpoint, Incoming, Output};

/// Every server under test, by name.
const SERVERS: [&str; 4] = ["bare", "endpoint", "blocking", "tokio"];

/// A server running on its own thread until `stop`.
struct Running {
    addr: SocketAddr,
    stop: Box<dyn FnOnce()>,
}

fn config() -> Config {
    Config {
        seed: 7,
        ..Config::default()
    }
}

fn start(name: &str, port: u16) -> Running {
    let bind = SocketAddr::from(([127, 0, 0, 1], port));
    match name {
        "bare" => loop_server(bind, bare_responder()),
        "endpoint" => loop_server(bind, endpoint_loop()),
        "blocking" => {
            let mut server = coap_proto::net::blocking::Server::with_config(bind, config())
                .expect("bind the blocking server");
            server.resource(Resource::new("/hello", Methods::GET), |_| {
                Response::content("hello").into()
            });
            let addr = server.local_addr();
            let stopper = server.stopper();
            let thread = thread::spawn(move || server.run().expect("blocking server"));
            Running {
                addr,
                stop: Box::new(move || {
                    stopper.stop();
                    thread.join().unwrap();
                }),
            }
        }
        "tokio" => {
            let (addr_tx, addr_rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let thread = thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let mut server = coap_proto::net::tokio::Server::with_config(bind, config())
                        .await
                        .expect("bind the tokio server");
                    server.resource(Resource::new("/hello", Methods::GET), |_| {
                        Response::content("hello").into()
                    });
                    addr_tx.send(server.local_addr().unwrap()).unwrap();
                    tokio::select! {
                        r = server.run() => r.expect("tokio server"),
                        _ = stop_rx => {}
                    }
                });
            });
            Running {
                addr: addr_rx.recv().unwrap(),
                stop: Box::new(move || {
                    let _ = stop_tx.send(());
                    thread.join().unwrap();
                }),
            }
        }
        other => panic!("no server named {other}; one of {SERVERS:?}"),
    }
}

/// Answers one datagram into `out`; returns the reply's length (0: no reply).
type Answer = Box<dyn FnMut(&UdpSocket, SocketAddr, &[u8]) + Send>;

/// Runs `answer` on every datagram of a socket on `bind`, on a thread of its own.
fn loop_server(bind: SocketAddr, mut answer: Answer) -> Running {
    let socket = UdpSocket::bind(bind).expect("bind");
    // Only to notice `stop`: under load every receive returns at once.
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let addr = socket.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !flag.load(Ordering::Relaxed) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                answer(&socket, from, &buf[..n]);
            }
        }
    });
    Running {
        addr,
        stop: Box::new(move || {
            stop.store(true, Ordering::Relaxed);
            thread.join().unwrap();
        }),
    }
}

/// The floor: copies message ID and token into a canned 2.05 `hello`, sends it.
fn bare_responder() -> Answer {
    let mut next_mid: u16 = 0;
    let mut out = [0u8; 64];
    Box::new(move |socket, from, req| {
        if req.len() < 4 {
            return;
        }
        let tkl = usize::from(req[0] & 0x0f);
        if tkl > 8 || req.len() < 4 + tkl {
            return;
        }
        let con = req[0] & 0x30 == 0;
        out[0] = if con { 0x60 } else { 0x50 } | req[0] & 0x0f;
        out[1] = 0x45;
        if con {
            out[2..4].copy_from_slice(&req[2..4]);
        } else {
            next_mid = next_mid.wrapping_add(1);
            out[2..4].copy_from_slice(&next_mid.to_be_bytes());
        }
        out[4..4 + tkl].copy_from_slice(&req[4..4 + tkl]);
        out[4 + tkl] = 0xff;
        out[5 + tkl..10 + tkl].copy_from_slice(b"hello");
        let _ = socket.send_to(&out[..10 + tkl], from);
    })
}

/// The endpoint driven by a hand-written loop: handle the datagram, answer at once,
/// drain `poll_output`, run the timers when due.
fn endpoint_loop() -> Answer {
    let mut ep = Box::new(Endpoint::<SocketAddr>::new(config()).unwrap());
    let started = Instant::now();
    Box::new(move |socket, from, datagram| {
        let now = coap_proto::Instant::from_micros(started.elapsed().as_micros() as u64);
        if let Some(Incoming::Request { handle, message }) = ep.handle_datagram(now, from, datagram)
        {
            let hello = message.uri_path().matches("/hello");
            let code = if hello {
                Code::CONTENT
            } else {
                Code::NOT_FOUND
            };
            let _ = ep.respond(now, handle, code, |b| {
                if hello {
                    b.payload(b"hello")?;
                }
                Ok(())
            });
        }
        loop {
            match ep.poll_output(now) {
                Output::Transmit(t) => {
                    let _ = socket.send_to(t.data, t.to);
                }
                Output::Event(_) => {}
                Output::Timeout(deadline) => {
                    if deadline.is_some_and(|d| d <= now) {
                        ep.handle_timeout(now);
                        continue;
                    }
                    break;
                }
            }
        }
    })
}

/// What one run of the load generator saw.
struct Run {
    answered: u64,
    not_content: u64,
    lost: u64,
    secs: f64,
    latencies_us: Vec<u32>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.answered as f64 / self.secs
    }

    fn percentile(&self, p: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i]
    }
}

/// Keeps `k` requests in flight against `server` for `secs` seconds (after a warm-up).
fn load(server: SocketAddr, k: usize, con: bool, secs: f64) -> Run {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(server).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut mid: u16 = 0x4000;
    let mut sent_at = vec![None::<Instant>; k];
    let send = |slot: usize, mid: &mut u16, sent_at: &mut Vec<Option<Instant>>| {
        *mid = mid.wrapping_add(1);
        let [m0, m1] = mid.to_be_bytes();
        let token = (slot as u16).to_be_bytes();
        let ty = if con { 0x42 } else { 0x52 };
        let req = [
            ty, 0x01, m0, m1, token[0], token[1], 0xb5, b'h', b'e', b'l', b'l', b'o',
        ];
        sent_at[slot] = Some(Instant::now());
        let _ = socket.send(&req);
    };
    let warmup = Duration::from_millis(300);
    let measure = Duration::from_secs_f64(secs);
    let begin = Instant::now();
    for slot in 0..k {
        send(slot, &mut mid, &mut sent_at);
    }
    let mut run = Run {
        answered: 0,
        not_content: 0,
        lost: 0,
        secs,
        latencies_us: Vec::with_capacity(4_000_000),
    };
    let mut buf = [0u8; 1500];
    let mut last_sweep = Instant::now();
    loop {
        let elapsed = begin.elapsed();
        if elapsed >= warmup + measure {
            break;
        }
        let measuring = elapsed >= warmup;
        if let Ok(n) = socket.recv(&mut buf) {
            // Ignore what is not a response with our 2-byte token (empty ACKs, RSTs).
            if n >= 6 && buf[0] & 0x0f == 2 && buf[1] != 0 {
                let slot = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
                if let Some(at) = sent_at.get(slot).copied().flatten() {
                    if measuring {
                        run.answered += 1;
                        run.latencies_us.push(at.elapsed().as_micros() as u32);
                        if buf[1] != 0x45 {
                            run.not_content += 1;
                        }
                    }
                    if buf[0] & 0x30 == 0 {
                        // A CON response (separate): acknowledge it.
                        let _ = socket.send(&[0x60, 0, buf[2], buf[3]]);
                    }
                    send(slot, &mut mid, &mut sent_at);
                }
            }
        }
        if last_sweep.elapsed() > Duration::from_millis(50) {
            last_sweep = Instant::now();
            for slot in 0..k {
                if sent_at[slot].is_some_and(|at| at.elapsed() > Duration::from_millis(200)) {
                    if measuring {
                        run.lost += 1;
                    }
                    send(slot, &mut mid, &mut sent_at);
                }
            }
        }
    }
    run.latencies_us.sort_unstable();
    run
}

/// A server in a child process pinned to core 1 (when `taskset` is there, as the load
/// generator is pinned to core 0), or else on a thread of this process.
enum Server {
    Child(std::process::Child, SocketAddr),
    Thread(Running),
}

impl Server {
    fn start(name: &str, pinned: bool) -> Server {
        if !pinned {
            return Server::Thread(start(name, 0));
        }
        use std::io::BufRead;
        let exe = std::env::current_exe().unwrap();
        let mut child = std::process::Command::new("taskset")
            .args(["-c", "1"])
            .arg(exe)
            .args(["serve", name, "0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start a server process");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().parse().expect("the server prints its address");
        Server::Child(child, addr)
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Server::Child(_, addr) => *addr,
            Server::Thread(r) => r.addr,
        }
    }

    fn stop(self) {
        match self {
            Server::Child(mut child, _) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Server::Thread(r) => (r.stop)(),
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("serve") {
        let name = args.get(1).map_or("blocking", String::as_str);
        let port = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(5699);
        let running = start(name, port);
        println!("{}", running.addr);
        loop {
            thread::park();
        }
    }
    if args.first().map(String::as_str) == Some("load") {
        let addr: SocketAddr = args.get(1).expect("load ADDR K SECS").parse().unwrap();
        let k = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
        let secs = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(2.0);
        let con = args.get(4).map(String::as_str) != Some("NON");
        let run = load(addr, k, con, secs);
        println!(
            "{} answered ({:.0}/s), {} not 2.05, {} lost",
            run.answered,
            run.rate(),
            run.not_content,
            run.lost
        );
        return;
    }
    // Pin the load generator to core 0 by running again under taskset; servers go to
    // core 1.
    let taskset = std::process::Command::new("taskset")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if taskset && std::env::var_os("LOOPBACK_PINNED").is_none() {
        let status = std::process::Command::new("taskset")
            .args(["-c", "0"])
            .arg(std::env::current_exe().unwrap())
            .args(&args)
            .env("LOOPBACK_PINNED", "1")
            .status()
            .expect("run pinned");
        std::process::exit(status.code().unwrap_or(1));
    }
    let secs: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(2.0);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    println!(
        "{} rounds of {secs} s per run, servers {}; medians over the rounds",
        rounds,
        if taskset {
            "on core 1 and the load generator on core 0"
        } else {
            "and load generator unpinned (no taskset)"
        }
    );
    println!(
        "{:<9} {:>4} {:>3} {:>10} {:>8} {:>8} {:>6} {:>8} {:>5}",
        "server", "type", "k", "req/s", "p50 µs", "p99 µs", "ratio", "not 2.05", "lost"
    );
    for con in [true, false] {
        for k in [1usize, 64] {
            // runs[server][round]
            let mut runs: Vec<Vec<Run>> = SERVERS.iter().map(|_| Vec::new()).collect();
            for _ in 0..rounds {
                for (i, name) in SERVERS.iter().enumerate() {
                    let server = Server::start(name, taskset);
                    runs[i].push(load(server.addr(), k, con, secs));
                    server.stop();
                }
            }
            for (i, name) in SERVERS.iter().enumerate() {
                let rate = median(runs[i].iter().map(Run::rate).collect());
                let ratio = median(
                    runs[i]
                        .iter()
                        .zip(&runs[0])
                        .map(|(r, floor)| r.rate() / floor.rate())
                        .collect(),
                );
                let p50 = median(
                    runs[i]
                        .iter()
                        .map(|r| f64::from(r.percentile(0.5)))
                        .collect(),
                );
                let p99 = median(
                    runs[i]
                        .iter()
                        .map(|r| f64::from(r.percentile(0.99)))
                        .collect(),
                );
                let not_content: u64 = runs[i].iter().map(|r| r.not_content).sum();
                let lost: u64 = runs[i].iter().map(|r| r.lost).sum();
                println!(
                    "{:<9} {:>4} {:>3} {:>10.0} {:>8} {:>8} {:>6.2} {:>8} {:>5}",
                    name,
                    if con { "CON" } else { "NON" },
                    k,
                    rate,
                    p50,
                    p99,
                    ratio,
                    not_content,
                    lost,
                );
            }
        }
    }
}
