//! Arbitrary bytes into `Message::parse`. Nothing may panic; every accepted datagram
//! must read without failure, rebuild byte-for-byte and re-parse to the same message.
#![no_main]

use coap_proto::wire::{Message, MessageBuilder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    // Every accessor, including formatting.
    let mut sink = msg.token().len() + msg.payload().len();
    for opt in msg.options() {
        sink += opt.value.len();
        let _ = (opt.check(), opt.as_uint(), opt.as_str(), opt.as_block());
        sink += opt.to_string().len();
    }
    let _ = (msg.uri_host(), msg.etag(), msg.observe(), msg.uri_port(), msg.content_format());
    let _ = (msg.max_age(), msg.hop_limit(), msg.accept(), msg.block1(), msg.block2());
    let _ = (msg.size1(), msg.size2(), msg.proxy_uri(), msg.proxy_scheme(), msg.echo());
    let _ = msg.no_response();
    sink += msg.uri_path().count() + msg.uri_query().count() + msg.location_path().count();
    sink += msg.location_query().count() + msg.if_match().count() + msg.etags().count();
    sink += msg.request_tags().count() + msg.uri_path().matches("/a/b") as usize;
    sink += msg.to_string().len() + format!("{msg:?}").len();
    std::hint::black_box(sink);

    let mut buf = vec![0u8; data.len()];
    let mut b = MessageBuilder::from_message(&mut buf, &msg).expect("rebuild fits exactly");
    b.payload(msg.payload()).expect("payload fits exactly");
    let rebuilt = b.finish();
    assert_eq!(rebuilt, data, "rebuild differs");
    let again = Message::parse(rebuilt).expect("rebuilt message parses");
    assert_eq!(again, msg);
});
