//! Codec benchmarks: parse-and-walk and build of the three fixtures of issue 2.
//!
//! ```text
//! cargo bench --bench codec                  # ns/message, median of 21 samples
//! cargo bench --bench codec -- count OP FIX N  # run OP on fixture FIX N times (for callgrind)
//! benches/instructions.sh                    # instructions/message via callgrind
//! ```
//!
//! OP is `parse` (parse + walk every option), `minimal` (a hand-written minimal validating
//! walk, the baseline) or `build`; FIX is `a`, `b` or `c`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use coap_proto::wire::{Block, Code, ContentFormat, Message, MessageBuilder, Type};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

fn fixture(name: &str) -> Vec<u8> {
    match name {
        "a" => hex("44011234deadbeefb773656e736f72730b74656d70657261747572656132"),
        "b" => [hex("64451234deadbeefc132ff"), payload(64)].concat(),
        "c" => [hex("64451234deadbeef4401020304d1063eff"), payload(1024)].concat(),
        _ => panic!("fixture is a, b or c"),
    }
}

/// Parse, then walk every option and touch token, numbers, values and payload.
#[inline(never)]
fn parse_walk(bytes: &[u8]) -> usize {
    match Message::parse(bytes) {
        Ok(m) => {
            let mut acc = m.token().len() + m.payload().len();
            for o in m.options() {
                acc += o.number.0 as usize + o.value.len();
            }
            acc
        }
        Err(_) => 0,
    }
}

/// The least a validating walk can do: check the header, skip the token, walk the option
/// headers with bounds checks, and find the payload. It is the baseline the issue's
/// "1.5× a minimal validating walk" refers to; it builds no view and offers no accessors.
#[inline(never)]
fn minimal_walk(b: &[u8]) -> usize {
    if b.len() < 4 || b[0] >> 6 != 1 {
        return 0;
    }
    let tkl = (b[0] & 0xf) as usize;
    if tkl > 12 {
        return 0;
    }
    let mut i = 4 + tkl;
    if i > b.len() {
        return 0;
    }
    let mut acc = tkl;
    let mut num = 0usize;
    while i < b.len() {
        let h = b[i];
        if h == 0xff {
            return acc + b.len() - i - 1;
        }
        i += 1;
        let mut ext = |n: usize| -> Option<usize> {
            match n {
                13 => {
                    let v = *b.get(i)? as usize + 13;
                    i += 1;
                    Some(v)
                }
                14 => {
                    let v = u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]) as usize + 269;
                    i += 2;
                    Some(v)
                }
                15 => None,
                n => Some(n),
            }
        };
        let (Some(d), Some(l)) = (ext((h >> 4) as usize), ext((h & 0xf) as usize)) else {
            return 0;
        };
        num += d;
        i += l;
        if i > b.len() || num > 0xffff {
            return 0;
        }
        acc += num + l;
    }
    acc
}

const TOKEN: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

#[inline(never)]
fn build_a(buf: &mut [u8], _body: &[u8]) -> usize {
    let mut b = MessageBuilder::new(buf, Type::Con, Code::GET, 0x1234).unwrap();
    b.token(&TOKEN).unwrap();
    b.uri_path("/sensors/temperature").unwrap();
    b.accept(ContentFormat::JSON).unwrap();
    b.finish().len()
}

#[inline(never)]
fn build_b(buf: &mut [u8], body: &[u8]) -> usize {
    let mut b = MessageBuilder::new(buf, Type::Ack, Code::CONTENT, 0x1234).unwrap();
    b.token(&TOKEN).unwrap();
    b.content_format(ContentFormat::JSON).unwrap();
    b.payload(body).unwrap();
    b.finish().len()
}

#[inline(never)]
fn build_c(buf: &mut [u8], body: &[u8]) -> usize {
    let mut b = MessageBuilder::new(buf, Type::Ack, Code::CONTENT, 0x1234).unwrap();
    b.token(&TOKEN).unwrap();
    b.etag(&[1, 2, 3, 4]).unwrap();
    b.block2(Block::new(3, true, 6).unwrap()).unwrap();
    b.payload(body).unwrap();
    b.finish().len()
}

fn run(op: &str, name: &str, iters: u64) -> usize {
    let bytes = fixture(name);
    let body = match name {
        "b" => payload(64),
        "c" => payload(1024),
        _ => Vec::new(),
    };
    let mut buf = vec![0u8; 1500];
    if op == "build" {
        let built = [build_a, build_b, build_c]["abc".find(name).unwrap()](&mut buf, &body);
        assert_eq!(
            &buf[..built],
            &bytes[..],
            "build output differs from fixture"
        );
    }
    // One loop per operation, so that the loop itself costs only its counter.
    let mut acc = 0;
    match op {
        "parse" => (0..iters).for_each(|_| acc += parse_walk(black_box(&bytes))),
        "minimal" => (0..iters).for_each(|_| acc += minimal_walk(black_box(&bytes))),
        "build" => {
            let builder = match name {
                "a" => build_a as fn(&mut [u8], &[u8]) -> usize,
                "b" => build_b,
                _ => build_c,
            };
            (0..iters).for_each(|_| acc += builder(black_box(&mut buf), black_box(&body)))
        }
        _ => panic!("op is parse, minimal or build"),
    }
    black_box(acc)
}

/// Median ns per call over `samples` samples of about 20 ms each.
fn time(op: &str, name: &str, samples: usize) -> f64 {
    let mut per_sample = 1u64;
    loop {
        let t = Instant::now();
        run(op, name, per_sample);
        if t.elapsed() > Duration::from_millis(20) {
            break;
        }
        per_sample *= 2;
    }
    let mut ns: Vec<f64> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            run(op, name, per_sample);
            t.elapsed().as_nanos() as f64 / per_sample as f64
        })
        .collect();
    ns.sort_by(|a, b| a.total_cmp(b));
    ns[samples / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let [cmd, op, name, n] = &args[..] {
        if cmd == "count" {
            run(op, name, n.parse().expect("N is a number"));
            return;
        }
    }
    println!("codec, median ns/message of 21 samples");
    println!(
        "{:<8} {:>10} {:>10} {:>10}",
        "fixture", "parse+walk", "minimal", "build"
    );
    for name in ["a", "b", "c"] {
        let p = time("parse", name, 21);
        let m = time("minimal", name, 21);
        let b = time("build", name, 21);
        println!("{name:<8} {p:>10.1} {m:>10.1} {b:>10.1}");
    }
}
