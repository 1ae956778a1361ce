//! Arbitrary sequences of builder calls into a buffer of arbitrary size. Every call must
//! succeed or fail with a typed error that leaves the message unchanged; after every
//! call the bytes so far must parse; raw options must land where the sort order says.
#![no_main]

use arbitrary::Arbitrary;
use coap_proto::wire::{
    Block, BuildError, Code, ContentFormat, Message, MessageBuilder, NoResponse, OptionNumber,
    Type,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Token(Vec<u8>),
    Option(u16, Vec<u8>),
    UintOption(u16, u32),
    UriPath(String),
    UriQuery(String),
    UriHost(String),
    LocationPath(String),
    ContentFormat(u16),
    Accept(u16),
    Block1(u32),
    Block2(u32),
    Size1(u32),
    Size2(u32),
    Observe(u32),
    ETag(Vec<u8>),
    NoResponse(u8),
    IfNoneMatch,
    Payload(Vec<u8>),
    PayloadMut(u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u16,
    ty: u8,
    code: u8,
    mid: u16,
    ops: Vec<Op>,
}

fn options_of(bytes: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let msg = Message::parse(bytes).expect("builder output parses");
    msg.options().map(|o| (o.number.0, o.value.to_vec())).collect()
}

fn apply(b: &mut MessageBuilder<'_>, op: &Op) -> Result<(), BuildError> {
    let block = |v: u32| Block::from_uint(v).unwrap_or(Block::new(0, false, 0).unwrap());
    match op {
        Op::Token(t) => b.token(t).map(drop),
        Op::Option(n, v) => b.option(OptionNumber(*n), v).map(drop),
        Op::UintOption(n, v) => b.uint_option(OptionNumber(*n), *v).map(drop),
        Op::UriPath(p) => b.uri_path(p).map(drop),
        Op::UriQuery(q) => b.uri_query(q).map(drop),
        Op::UriHost(h) => b.uri_host(h).map(drop),
        Op::LocationPath(p) => b.location_path(p).map(drop),
        Op::ContentFormat(c) => b.content_format(ContentFormat(*c)).map(drop),
        Op::Accept(c) => b.accept(ContentFormat(*c)).map(drop),
        Op::Block1(v) => b.block1(block(*v)).map(drop),
        Op::Block2(v) => b.block2(block(*v)).map(drop),
        Op::Size1(v) => b.size1(*v).map(drop),
        Op::Size2(v) => b.size2(*v).map(drop),
        Op::Observe(v) => b.observe(*v).map(drop),
        Op::ETag(e) => b.etag(e).map(drop),
        Op::NoResponse(v) => b.no_response(NoResponse(*v)).map(drop),
        Op::IfNoneMatch => b.if_none_match().map(drop),
        Op::Payload(p) => b.payload(p).map(drop),
        Op::PayloadMut(n) => b.payload_mut(*n as usize).map(|s| s.fill(0xa5)),
    }
}

fuzz_target!(|input: Input| {
    let cap = input.capacity as usize;
    let mut buf = vec![0u8; cap];
    let code = Code::from_u8(input.code).unwrap_or(Code::GET);
    let Ok(mut b) = MessageBuilder::new(&mut buf, Type::from_bits(input.ty), code, input.mid)
    else {
        assert!(cap < 4);
        return;
    };
    for op in input.ops.iter().take(64) {
        let before = b.as_bytes().to_vec();
        let before_opts = options_of(&before);
        match apply(&mut b, op) {
            Ok(()) => {
                let after_opts = options_of(b.as_bytes());
                if let Op::Option(n, v) = op {
                    let mut expected = before_opts;
                    let at = expected.iter().position(|(m, _)| m > n).unwrap_or(expected.len());
                    expected.insert(at, (*n, v.clone()));
                    assert_eq!(after_opts, expected);
                } else {
                    assert!(after_opts.len() >= before_opts.len());
                }
            }
            Err(e) => {
                if let BuildError::BufferTooSmall { needed } = e {
                    assert!(needed > cap);
                }
                assert_eq!(b.as_bytes(), &before[..], "refused call changed the message");
                let _ = e.to_string();
            }
        }
    }
    let bytes = b.finish();
    let msg = Message::parse(bytes).expect("finished message parses");
    assert_eq!(msg.code(), code);
    assert_eq!(msg.message_id(), input.mid);
});
