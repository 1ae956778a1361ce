//! Exports what a CoAP server's hot path uses from the codec, so that LTO keeps exactly
//! that: parse, a walk over the options, the typed getters a server reads, and a
//! response built with the typed setters. Edition 2021, so `no_mangle` needs no
//! `unsafe` marker (the probe is a measuring tool, not part of the crate).
#![no_std]

use coap_proto::wire::{Block, Code, ContentFormat, Message, MessageBuilder, Type};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// Parses and walks every option; reads the getters a server uses.
#[cfg(not(any(feature = "only-build", feature = "endpoint")))]
#[no_mangle]
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
#[cfg(not(any(feature = "only-parse", feature = "endpoint")))]
#[no_mangle]
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
#[no_mangle]
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

/// With `--features endpoint`: a small endpoint driven through every entry point, both
/// roles and block-wise, as firmware would use it. (The type line is the only one that
/// differs between API versions; measure.sh may swap it.)
#[cfg(feature = "endpoint")]
mod endpoint {
    use coap_proto::block::Block1Assembler;
    use coap_proto::wire::Code;
    use coap_proto::{Config, Incoming, Instant, Output, RequestOptions};

    type Ep = coap_proto::SmallEndpoint<u8>;

    #[no_mangle]
    pub fn probe_endpoint(datagrams: &[&[u8]], now_ms: u64, out: &mut [u8]) -> usize {
        let Ok(mut ep) = Ep::new(Config { seed: now_ms, ..Config::default() }) else {
            return 0;
        };
        let mut assembler: Block1Assembler<u8, 1, 512> = Block1Assembler::new();
        let now = Instant::from_millis(now_ms);
        let mut acc = 0;
        let opts = RequestOptions::default();
        if let Ok(h) = ep.request(now, 1, Code::GET, &opts, |b| b.uri_path("/a").map(drop)) {
            acc += h.to_string_len();
        }
        if let Ok(h) = ep.request_upload(now, 1, Code::PUT, &opts, 2, |b| b.uri_path("/b").map(drop)) {
            let _ = ep.send_block(now, h, &[1; 64], true);
            let _ = ep.cancel(now, h);
        }
        let _ = ep.ping(now, 2);
        #[cfg(feature = "observe")]
        let observing = {
            let opts = RequestOptions { observe: true, ..RequestOptions::default() };
            let h = ep.request(now, 1, Code::GET, &opts, |b| b.uri_path("/o").map(drop));
            let _ = ep.notify(now, 0, now_ms % 2 == 0, Code::CONTENT, |b| b.payload(b"v").map(drop));
            h
        };
        for (i, d) in datagrams.iter().enumerate() {
            match ep.handle_datagram(now, i as u8, d) {
                #[cfg(feature = "observe")]
                Some(Incoming::Request { handle, .. }) if i % 2 == 1 => {
                    let _ = ep.respond_observe(now, handle, 0, Code::CONTENT, |b| b.payload(b"v").map(drop));
                    if let Ok(h) = observing {
                        let _ = ep.cancel_observe(now, h, |b| b.uri_path("/o").map(drop));
                    }
                }
                Some(Incoming::Request { handle, message }) => {
                    if let Ok(Some(body)) = ep.assemble_block1(now, handle, &message, &mut assembler) {
                        acc += body.body.len();
                        let _ = ep.respond_block2(now, handle, &message, Code::CONTENT, &[7; 3000], |_| Ok(()));
                    }
                }
                Some(Incoming::Response { message, .. }) => acc += message.payload().len(),
                None => {}
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

    trait Len {
        fn to_string_len(&self) -> usize;
    }
    impl Len for coap_proto::RequestHandle {
        fn to_string_len(&self) -> usize {
            core::mem::size_of_val(self)
        }
    }
}
