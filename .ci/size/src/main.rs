//! A firmware image for Cortex-M4 that uses one part of the crate, so that the linker
//! keeps exactly that part (and what it needs of `core` and `compiler_builtins`):
//! - `codec-parse`: parse, a walk over the options, the typed getters a server reads;
//! - `codec-build`: a block-wise response built with the typed setters;
//! - `codec`: both (the whole codec, as nanocoap.o is measured);
//! - `fmt`: both, plus `Display` for messages (which links `core::fmt`);
//! - `endpoint`: a `SmallEndpoint<u8>` driven through every entry point of both roles,
//!   block-wise and Observe included; `endpoint-client` and `endpoint-server`: one role;
//!   with `no-echo`, an endpoint without places for verified peers (no amplification
//!   mitigation, RFC 9175 §2.4).
//! `_start` calls the probe with inputs the optimizer cannot see through
//! (`black_box`); `probe.x` places the sections. The image's `RAM_SMALL`, `RAM_ONE`
//! and `RAM_DEFAULT` statics hold the `size_of` of three endpoint configurations on the
//! target. Edition 2021, so `no_mangle` needs no `unsafe` marker (the probe is a
//! measuring tool, not part of the crate).
#![no_std]
#![no_main]

use core::hint::black_box;

#[allow(unused_imports)]
use coap_proto::wire::{Block, Code, ContentFormat, Message, MessageBuilder, Type};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// A configuration for small firmware: 4 exchange records, 2 buffers of 256 bytes, 8
/// dedup entries, 260 bytes of stored replies, 2 observers, 2 verified peers.
pub type Small = coap_proto::Endpoint<u8, 4, 2, 256, 8, 260, 2, 2>;

#[no_mangle]
#[used]
pub static RAM_SMALL: u32 = core::mem::size_of::<Small>() as u32;
/// The small configuration with nanocoap_sock's capacities: one buffer (one CON
/// request, notification or separate response in flight at a time), 4 dedup entries,
/// one observer, no verified peers (no amplification mitigation); stored replies and
/// exchange records as in `Small`.
pub type One = coap_proto::Endpoint<u8, 4, 1, 256, 4, 260, 1, 0>;

#[no_mangle]
#[used]
pub static RAM_ONE: u32 = core::mem::size_of::<One>() as u32;
#[no_mangle]
#[used]
pub static RAM_DEFAULT: u32 = core::mem::size_of::<coap_proto::Endpoint>() as u32;

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let input: &[u8] = black_box(&[0x40, 0x01, 0x12, 0x34]);
    #[cfg(any(feature = "codec-parse", feature = "codec", feature = "fmt"))]
    black_box(probe_parse(input));
    // The output buffer only where something is written (zeroing it links `memclr`).
    #[cfg(not(feature = "codec-parse"))]
    {
        #[allow(unused_mut)]
        let mut buf = [0u8; 512];
        #[cfg(any(feature = "codec-build", feature = "codec", feature = "fmt"))]
        black_box(probe_build(&mut buf, input, "/a", input, black_box(1)));
        #[cfg(feature = "fmt")]
        black_box(probe_display(input, &mut buf));
        #[cfg(any(feature = "endpoint", feature = "endpoint-client", feature = "endpoint-server"))]
        black_box(endpoint::probe_endpoint(black_box(&[input, input]), black_box(5), &mut buf));
        black_box(&buf);
    }
    black_box((&RAM_SMALL, &RAM_ONE, &RAM_DEFAULT));
    loop {}
}

/// Parses and walks every option; reads the getters a server uses.
#[cfg(any(feature = "codec-parse", feature = "codec", feature = "fmt"))]
#[inline(never)]
pub fn probe_parse(datagram: &[u8]) -> usize {
    let Ok(msg) = Message::parse(datagram) else {
        return 0;
    };
    let mut acc = msg.token().len() + msg.payload().len() + msg.message_id() as usize;
    for o in msg.options() {
        acc += o.number.0 as usize + o.value.len();
    }
    acc += msg.uri_path().matches("/sensors/temperature") as usize;
    acc += msg.uri_query().count();
    if let Ok(Some(b)) = msg.block2() {
        acc += b.offset();
    }
    if let Ok(Some(b)) = msg.block1() {
        acc += b.offset();
    }
    if let Ok(Some(cf)) = msg.content_format() {
        acc += cf.0 as usize;
    }
    if let Ok(Some(cf)) = msg.accept() {
        acc += cf.0 as usize;
    }
    acc + msg.code().to_u8() as usize + msg.ty() as usize
}

/// Builds a block-wise response with the typed setters.
#[cfg(any(feature = "codec-build", feature = "codec", feature = "fmt"))]
#[inline(never)]
pub fn probe_build(buf: &mut [u8], token: &[u8], path: &str, body: &[u8], num: u32) -> usize {
    let Ok(mut b) = MessageBuilder::new(buf, Type::Ack, Code::CONTENT, 0x1234) else {
        return 0;
    };
    let block = Block::new(num, true, 6).unwrap_or(Block::new(0, false, 0).unwrap());
    let ok = b.token(token).is_ok()
        && b.location_path(path).is_ok()
        && b.etag(&[1, 2, 3, 4]).is_ok()
        && b.content_format(ContentFormat::JSON).is_ok()
        && b.block2(block).is_ok()
        && b.size2(5000).is_ok()
        && b.payload(body).is_ok();
    if ok {
        b.finish().len()
    } else {
        0
    }
}

/// With `--features fmt`: formats a message, which links core::fmt.
#[cfg(feature = "fmt")]
#[inline(never)]
pub fn probe_display(datagram: &[u8], out: &mut [u8]) -> usize {
    use core::fmt::Write;
    struct W<'a>(&'a mut [u8], usize);
    impl Write for W<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.1 + s.len();
            let dst = self.0.get_mut(self.1..end).ok_or(core::fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }
    let mut w = W(out, 0);
    if let Ok(msg) = Message::parse(datagram) {
        let _ = write!(w, "{msg}");
    }
    w.1
}

/// A small endpoint driven through the entry points of one role or both, block-wise and
/// Observe included, as firmware would use it.
#[cfg(any(feature = "endpoint", feature = "endpoint-client", feature = "endpoint-server"))]
mod endpoint {
    use coap_proto::wire::Code;
    use coap_proto::{Config, Incoming, Instant, Output, RequestOptions};

    /// `SmallEndpoint<u8>`; with `no-echo`, the same without places for verified peers,
    /// which leaves out amplification mitigation (RFC 9175 §2.4).
    #[cfg(not(feature = "no-echo"))]
    type Ep = coap_proto::SmallEndpoint<u8>;
    #[cfg(feature = "no-echo")]
    type Ep = coap_proto::Endpoint<u8, 8, 4, 256, 16, 1024, 4, 0>;

    const CLIENT: bool = cfg!(any(feature = "endpoint", feature = "endpoint-client"));
    const SERVER: bool = cfg!(any(feature = "endpoint", feature = "endpoint-server"));

    #[inline(never)]
    pub fn probe_endpoint(datagrams: &[&[u8]], now_ms: u64, out: &mut [u8]) -> usize {
        let Ok(mut ep) = Ep::new(Config { seed: now_ms, ..Config::default() }) else {
            return 0;
        };
        let now = Instant::from_millis(now_ms);
        let mut acc = 0;
        let mut observing = None;
        if CLIENT {
            let opts = RequestOptions::default();
            let _ = ep.request(now, 1, Code::GET, &opts, |b| b.uri_path("/a").map(drop));
            if let Ok(h) = ep.request_upload(now, 1, Code::PUT, &opts, 2, |b| b.uri_path("/b").map(drop)) {
                let _ = ep.send_block(now, h, &[1; 64], true);
                let _ = ep.cancel(now, h);
            }
            let _ = ep.ping(now, 2);
            let opts = RequestOptions { observe: true, ..RequestOptions::default() };
            observing = ep.request(now, 1, Code::GET, &opts, |b| b.uri_path("/o").map(drop)).ok();
        }
        let mut assembler: coap_proto::block::Block1Assembler<u8, 1, 512> =
            coap_proto::block::Block1Assembler::new();
        if SERVER {
            let _ = ep.notify(now, 0, now_ms % 2 == 0, Code::CONTENT, |b| b.payload(b"v").map(drop));
        }
        for (i, d) in datagrams.iter().enumerate() {
            // One role's entry point, so that the other role's code is not linked.
            let incoming = match (CLIENT, SERVER) {
                (true, false) => ep.handle_client_datagram(now, i as u8, d),
                (false, true) => ep.handle_server_datagram(now, i as u8, d),
                _ => ep.handle_datagram(now, i as u8, d),
            };
            match incoming {
                Some(Incoming::Request { handle, .. }) if SERVER && i % 2 == 1 => {
                    let _ = ep.respond_observe(now, handle, 0, Code::CONTENT, |b| b.payload(b"v").map(drop));
                }
                Some(Incoming::Request { handle, message }) if SERVER => {
                    if let Ok(Some(body)) = ep.assemble_block1(now, handle, &message, &mut assembler) {
                        acc += body.body.len();
                        let _ = ep.respond_block2(now, handle, &message, Code::CONTENT, &[7; 3000], |_| Ok(()));
                    }
                }
                Some(Incoming::Response { message, .. }) if CLIENT => {
                    acc += message.payload().len();
                    if let Some(h) = observing {
                        let _ = ep.cancel_observe(now, h, |b| b.uri_path("/o").map(drop));
                    }
                }
                _ => {}
            }
            ep.handle_timeout(now);
            loop {
                match ep.poll_output(now) {
                    Output::Transmit(t) => {
                        let n = t.data.len().min(out.len());
                        out[..n].copy_from_slice(&t.data[..n]);
                        acc += n;
                    }
                    Output::Event(_) => acc += 1,
                    Output::Timeout(_) => break,
                }
            }
        }
        acc
    }
}
