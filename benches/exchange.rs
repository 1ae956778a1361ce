//! In-memory client↔server request/response pairs per second.
//!
//! ```text
//! cargo bench --bench exchange                 # pairs/s, median of 11 samples
//! cargo bench --bench exchange -- count MODE K N # N batches of K (for callgrind)
//! ```
//!
//! A batch issues K requests from one client to one server, delivers them, answers
//! them (piggybacked, or separate: empty ACK first, then a CON response that the client
//! acknowledges), and delivers everything back, draining `poll_output` after every
//! step as the run loop does. The client's NSTART is K so that K are in flight at once.

use std::hint::black_box;
use std::time::{Duration, Instant as Clock};

use coap_proto::wire::Code;
use coap_proto::{
    Config, Endpoint, Incoming, IncomingHandle, Instant, Output, RequestOptions, TransmissionParams,
};

const E: usize = 64;
// Records and buffers for E in flight, and the 2 of each kept for answers given at once.
type Ep = Endpoint<u8, { E + 2 }, { E + 2 }, 256, 256, 16384>;

struct Pair {
    client: Ep,
    server: Ep,
    now: Instant,
    wire: Vec<Vec<u8>>,
    pending: Vec<IncomingHandle>,
}

impl Pair {
    fn new(k: usize) -> Pair {
        let config = |seed| Config {
            seed,
            params: TransmissionParams {
                nstart: k as u8,
                ..TransmissionParams::RFC7252
            },
            // One client holds every request in flight: its share is the whole table.
            peer_share_percent: 100,
            ..Config::default()
        };
        Pair {
            client: Ep::new(config(1)).unwrap(),
            server: Ep::new(config(2)).unwrap(),
            now: Instant::ZERO,
            wire: Vec::with_capacity(2 * E),
            pending: Vec::with_capacity(E),
        }
    }

    fn drain(ep: &mut Ep, now: Instant, wire: &mut Vec<Vec<u8>>) {
        loop {
            match ep.poll_output(now) {
                // Reuse the vectors' allocations: the benchmark measures the endpoints.
                Output::Transmit(t) => match wire.iter_mut().find(|v| v.is_empty()) {
                    Some(v) => v.extend_from_slice(t.data),
                    None => wire.push(t.data.to_vec()),
                },
                Output::Event(e) => {
                    black_box(e);
                }
                Output::Timeout(_) => return,
            }
        }
    }

    /// One batch of `k` exchanges; returns the responses received.
    fn batch(&mut self, k: usize, separate: bool) -> usize {
        // Time moves a little each batch, as it would.
        self.now = self.now + Duration::from_micros(10);
        let now = self.now;
        for _ in 0..k {
            self.client
                .request(now, 2, Code::GET, &RequestOptions::default(), |b| {
                    b.uri_path("/sensors/temperature")?;
                    Ok(())
                })
                .unwrap();
        }
        Self::drain(&mut self.client, now, &mut self.wire);
        for i in 0..self.wire.len() {
            if self.wire[i].is_empty() {
                continue;
            }
            if let Some(Incoming::Request { handle, .. }) =
                self.server.handle_datagram(now, 1, &self.wire[i])
            {
                if separate {
                    self.pending.push(handle);
                } else {
                    self.server
                        .respond(now, handle, Code::CONTENT, |b| {
                            b.payload(b"22.5 C")?;
                            Ok(())
                        })
                        .unwrap();
                }
            }
            self.wire[i].clear();
        }
        Self::drain(&mut self.server, now, &mut self.wire);
        for handle in self.pending.drain(..) {
            self.server
                .respond(now, handle, Code::CONTENT, |b| {
                    b.payload(b"22.5 C")?;
                    Ok(())
                })
                .unwrap();
        }
        Self::drain(&mut self.server, now, &mut self.wire);
        let mut responses = 0;
        for i in 0..self.wire.len() {
            if self.wire[i].is_empty() {
                continue;
            }
            if let Some(Incoming::Response { message, .. }) =
                self.client.handle_datagram(now, 2, &self.wire[i])
            {
                responses += black_box(message.payload()).len().min(1);
            }
            self.wire[i].clear();
        }
        Self::drain(&mut self.client, now, &mut self.wire);
        // The client's ACKs of separate responses go back to the server.
        for i in 0..self.wire.len() {
            if !self.wire[i].is_empty() {
                self.server.handle_datagram(now, 1, &self.wire[i]);
                self.wire[i].clear();
            }
        }
        Self::drain(&mut self.server, now, &mut self.wire);
        responses
    }
}

fn run(separate: bool, k: usize, batches: usize) -> usize {
    let mut pair = Pair::new(k);
    let mut total = 0;
    for _ in 0..batches {
        let got = pair.batch(k, separate);
        assert_eq!(got, k, "every request answered");
        total += got;
    }
    total
}

fn pairs_per_second(separate: bool, k: usize) -> f64 {
    let batches = (200_000 / k).max(1);
    let mut rates: Vec<f64> = (0..11)
        .map(|_| {
            let t = Clock::now();
            let n = run(separate, k, batches);
            n as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[rates.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let [cmd, mode, k, n] = &args[..] {
        if cmd == "count" {
            run(mode == "separate", k.parse().unwrap(), n.parse().unwrap());
            return;
        }
    }
    println!("exchange: request/response pairs per second, median of 11 samples");
    println!(
        "{:>12} {:>14} {:>14}",
        "in flight", "piggybacked", "separate"
    );
    for k in [1, 4, 16, 64] {
        let p = pairs_per_second(false, k);
        let s = pairs_per_second(true, k);
        println!("{k:>12} {p:>14.0} {s:>14.0}");
    }
}
