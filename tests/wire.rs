//! Wire-format vectors: the byte fixtures parsed and rebuilt byte-exactly, one
//! test per class of malformed datagram (RFC 7252 §3, §3.1, §4.1; RFC 8974 §2.1), and the
//! builder's contracts.

use coap_proto::wire::{
    Block, BuildError, CoapOption, Code, ContentFormat, Header, MAX_TOKEN_LEN, Message,
    MessageBuilder, NoResponse, OptionError, OptionNumber, ParseError, Type, decode_uint,
};

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn payload_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

fn fixture_a() -> Vec<u8> {
    hex("44011234deadbeefb773656e736f72730b74656d70657261747572656132")
}

fn fixture_b() -> Vec<u8> {
    let mut v = hex("64451234deadbeefc132ff");
    v.extend(payload_bytes(64));
    v
}

fn fixture_c() -> Vec<u8> {
    let mut v = hex("64451234deadbeef4401020304d1063eff");
    v.extend(payload_bytes(1024));
    v
}

/// Copies a parsed message through the builder, option values as on the wire.
fn rebuild(msg: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; msg.as_bytes().len() + 16];
    let mut b = MessageBuilder::from_message(&mut buf, msg).unwrap();
    b.payload(msg.payload()).unwrap();
    b.finish().to_vec()
}

#[test]
fn fixture_a_con_get_sensors_temperature() {
    let bytes = fixture_a();
    let msg = Message::parse(&bytes).unwrap();
    assert_eq!(msg.ty(), Type::Con);
    assert_eq!(msg.code(), Code::GET);
    assert_eq!(msg.message_id(), 0x1234);
    assert_eq!(msg.token(), &[0xde, 0xad, 0xbe, 0xef]);
    let path: Vec<&[u8]> = msg.uri_path().collect();
    assert_eq!(path, [&b"sensors"[..], b"temperature"]);
    assert!(msg.uri_path().matches("/sensors/temperature"));
    assert_eq!(msg.accept(), Ok(Some(ContentFormat::JSON)));
    assert_eq!(msg.content_format(), Ok(None));
    assert!(msg.payload().is_empty());
    assert_eq!(rebuild(&msg), bytes);
}

#[test]
fn fixture_a_built_with_typed_setters_is_byte_exact() {
    let mut buf = [0u8; 64];
    let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::GET, 0x1234).unwrap();
    b.token(&[0xde, 0xad, 0xbe, 0xef]).unwrap();
    b.uri_path("/sensors/temperature").unwrap();
    b.accept(ContentFormat::JSON).unwrap();
    assert_eq!(b.finish(), fixture_a());
}

#[test]
fn fixture_b_ack_content_json_payload() {
    let bytes = fixture_b();
    let msg = Message::parse(&bytes).unwrap();
    assert_eq!(msg.ty(), Type::Ack);
    assert_eq!(msg.code(), Code::CONTENT);
    assert_eq!(msg.content_format(), Ok(Some(ContentFormat::JSON)));
    assert_eq!(msg.payload(), payload_bytes(64));
    assert_eq!(rebuild(&msg), bytes);

    let mut buf = [0u8; 128];
    let mut b = MessageBuilder::new(&mut buf, Type::Ack, Code::CONTENT, 0x1234).unwrap();
    b.token(&[0xde, 0xad, 0xbe, 0xef]).unwrap();
    b.content_format(ContentFormat::JSON).unwrap();
    b.payload(&payload_bytes(64)).unwrap();
    assert_eq!(b.finish(), bytes);
}

#[test]
fn fixture_c_ack_content_etag_block2() {
    let bytes = fixture_c();
    let msg = Message::parse(&bytes).unwrap();
    assert_eq!(msg.code(), Code::CONTENT);
    assert_eq!(msg.etag(), Ok(Some(&[1u8, 2, 3, 4][..])));
    let block = msg.block2().unwrap().unwrap();
    assert_eq!((block.num(), block.more(), block.szx()), (3, true, 6));
    assert_eq!((block.size(), block.offset()), (1024, 3072));
    assert_eq!(msg.payload().len(), 1024);
    assert_eq!(rebuild(&msg), bytes);

    let mut buf = [0u8; 1100];
    let mut b = MessageBuilder::new(&mut buf, Type::Ack, Code::CONTENT, 0x1234).unwrap();
    b.token(&[0xde, 0xad, 0xbe, 0xef]).unwrap();
    b.block2(Block::new(3, true, 6).unwrap()).unwrap();
    b.etag(&[1, 2, 3, 4]).unwrap(); // out of order on purpose
    b.payload(&payload_bytes(1024)).unwrap();
    assert_eq!(b.finish(), bytes);
}

#[test]
fn display_reads_well() {
    let bytes = fixture_a();
    let msg = Message::parse(&bytes).unwrap();
    assert_eq!(
        msg.to_string(),
        "CON GET MID 0x1234 token 0xdeadbeef; Uri-Path: \"sensors\"; \
         Uri-Path: \"temperature\"; Accept: 50 (application/json)"
    );
    let bytes = fixture_c();
    let msg = Message::parse(&bytes).unwrap();
    assert_eq!(
        msg.to_string(),
        "ACK 2.05 Content MID 0x1234 token 0xdeadbeef; ETag: 0x01020304; Block2: 3/1/1024; \
         1024 payload bytes"
    );
    let dbg = format!("{msg:?}");
    assert!(dbg.starts_with("Message { ty: Ack, code: Code(2.05 Content), message_id: 4660"));
}

// ---- malformed datagrams: one test per class, each with its own error ----

fn err(bytes: &[u8]) -> ParseError {
    Message::parse(bytes).expect_err("must be rejected")
}

#[test]
fn truncated_header_is_rejected() {
    for n in 0..4 {
        assert_eq!(err(&fixture_a()[..n]), ParseError::TruncatedHeader);
    }
}

#[test]
fn version_other_than_1_is_rejected() {
    for v in [0u8, 2, 3] {
        let mut bytes = fixture_a();
        bytes[0] = (bytes[0] & 0x3f) | (v << 6);
        assert_eq!(err(&bytes), ParseError::BadVersion(v));
    }
}

#[test]
fn tkl_15_is_rejected() {
    assert_eq!(err(&hex("4f011234")), ParseError::ReservedTokenLength);
    assert_eq!(err(&hex("4f001234")), ParseError::ReservedTokenLength);
}

#[test]
fn reserved_code_classes_are_rejected() {
    for class in [1u8, 6, 7] {
        let code = (class << 5) | 3;
        assert_eq!(
            err(&[0x40, code, 0, 1]),
            ParseError::ReservedCodeClass(class)
        );
    }
    for class in [0u8, 2, 3, 4, 5] {
        assert!(Message::parse(&[0x40, (class << 5) | 3, 0, 1]).is_ok());
    }
}

#[test]
fn empty_message_with_anything_after_header_is_rejected() {
    assert!(Message::parse(&hex("40001234")).is_ok());
    assert!(Message::parse(&hex("70001234")).unwrap().is_empty());
    // a token, a token length alone, an option, a payload
    assert_eq!(err(&hex("4100123401")), ParseError::EmptyMessageWithContent);
    assert_eq!(err(&hex("41001234")), ParseError::EmptyMessageWithContent);
    assert_eq!(err(&hex("4000123410")), ParseError::EmptyMessageWithContent);
    assert_eq!(
        err(&hex("40001234ff01")),
        ParseError::EmptyMessageWithContent
    );
    assert_eq!(err(&hex("40001234ff")), ParseError::EmptyMessageWithContent);
}

#[test]
fn truncated_token_is_rejected() {
    assert_eq!(err(&hex("44011234deadbe")), ParseError::TruncatedToken);
    assert_eq!(err(&hex("4d011234")), ParseError::TruncatedTokenLength);
    assert_eq!(err(&hex("4e01123400")), ParseError::TruncatedTokenLength);
    assert_eq!(err(&hex("4d01123400")), ParseError::TruncatedToken); // 13 bytes announced
}

#[test]
fn extended_token_lengths_parse_per_rfc8974() {
    for len in [13usize, 200, 268, 269, 1000, MAX_TOKEN_LEN] {
        let token = payload_bytes(len);
        let mut buf = vec![0u8; len + 16];
        let mut b = MessageBuilder::new(&mut buf, Type::Non, Code::POST, 7).unwrap();
        b.token(&token).unwrap().payload(b"x").unwrap();
        let bytes = b.finish().to_vec();
        let expect_tkl = if len < 269 { 13 } else { 14 };
        assert_eq!(bytes[0] & 0x0f, expect_tkl, "len {len}");
        let msg = Message::parse(&bytes).unwrap();
        assert_eq!(msg.token(), token);
        assert_eq!(msg.payload(), b"x");
    }
    let mut buf = vec![0u8; MAX_TOKEN_LEN + 16];
    let mut b = MessageBuilder::new(&mut buf, Type::Non, Code::POST, 7).unwrap();
    assert_eq!(
        b.token(&vec![0; MAX_TOKEN_LEN + 1]).err(),
        Some(BuildError::TokenTooLong)
    );
}

#[test]
fn truncated_option_and_extended_fields_are_rejected() {
    // delta 13 with no extended byte
    assert_eq!(err(&hex("40011234d0")), ParseError::TruncatedOptionDelta);
    // delta 14 with one of two extended bytes
    assert_eq!(err(&hex("40011234e001")), ParseError::TruncatedOptionDelta);
    // length 13 / 14 with missing extended bytes
    assert_eq!(err(&hex("40011234bd")), ParseError::TruncatedOptionLength);
    assert_eq!(err(&hex("400112340e00")), ParseError::TruncatedOptionLength);
    // value shorter than announced
    assert_eq!(
        err(&hex("40011234b3616263"[..14].as_ref())),
        ParseError::TruncatedOptionValue
    );
    assert_eq!(
        err(&hex("40011234bd0061")),
        ParseError::TruncatedOptionValue
    );
}

#[test]
fn nibble_15_outside_payload_marker_is_rejected() {
    assert_eq!(err(&hex("40011234f1")), ParseError::ReservedOptionNibble);
    assert_eq!(err(&hex("40011234bf")), ParseError::ReservedOptionNibble);
    assert_eq!(err(&hex("40011234f0")), ParseError::ReservedOptionNibble);
}

#[test]
fn option_number_above_65535_is_rejected() {
    // delta 14 with 0xffff + 269 overflows at once
    assert_eq!(
        err(&hex("40011234e0ffff")),
        ParseError::OptionNumberOverflow
    );
    // 65535 exactly is fine, one more is not
    let at_max = hex("40011234e0fef2"); // 0xfef2 + 269 = 65535
    let msg = Message::parse(&at_max).unwrap();
    assert_eq!(msg.options().next().unwrap().number, OptionNumber(65535));
    assert_eq!(
        err(&hex("40011234e0fef210")),
        ParseError::OptionNumberOverflow
    );
}

#[test]
fn payload_marker_without_payload_is_rejected() {
    assert_eq!(err(&hex("40011234ff")), ParseError::EmptyPayload);
    assert_eq!(
        err(&hex("44011234deadbeefb161ff")),
        ParseError::EmptyPayload
    );
}

#[test]
fn header_peek_reads_malformed_datagrams() {
    let h = Header::peek(&hex("4f011234")).unwrap();
    assert_eq!((h.ty, h.message_id), (Type::Con, 0x1234));
    assert_eq!(Header::peek(&[0x40, 0, 0]), None);
}

#[test]
fn errors_display_in_words() {
    assert_eq!(
        ParseError::EmptyPayload.to_string(),
        "payload marker without payload"
    );
    assert_eq!(
        ParseError::BadVersion(2).to_string(),
        "unsupported CoAP version 2"
    );
    assert_eq!(
        BuildError::BufferTooSmall { needed: 40 }.to_string(),
        "buffer too small: the message needs 40 bytes"
    );
}

// ---- option values ----

fn one_option(number: OptionNumber, value: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; value.len() + 16];
    let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::GET, 1).unwrap();
    b.option(number, value).unwrap();
    b.finish().to_vec()
}

#[test]
fn uint_longer_than_4_bytes_is_reported_not_truncated() {
    assert_eq!(decode_uint(&[0, 0, 0, 0, 1]), None);
    let opt = CoapOption {
        number: OptionNumber(65000),
        value: &[1, 2, 3, 4, 5],
    };
    assert_eq!(
        opt.as_uint(),
        Err(OptionError::UintTooLong {
            number: OptionNumber(65000),
            len: 5
        })
    );
    let bytes = one_option(OptionNumber::MAX_AGE, &[0, 0, 0, 0, 60]);
    let msg = Message::parse(&bytes).unwrap();
    assert_eq!(
        msg.max_age(),
        Err(OptionError::BadLength {
            number: OptionNumber::MAX_AGE,
            len: 5
        })
    );
}

#[test]
fn uint_with_leading_zeros_decodes_and_round_trips() {
    let bytes = one_option(OptionNumber::MAX_AGE, &[0, 0, 0x3c]);
    let msg = Message::parse(&bytes).unwrap();
    assert_eq!(msg.max_age(), Ok(Some(60)));
    assert_eq!(rebuild(&msg), bytes);
}

#[test]
fn typed_getters_report_bad_values() {
    let bytes = one_option(OptionNumber::BLOCK2, &[0x0f]);
    assert_eq!(
        Message::parse(&bytes).unwrap().block2(),
        Err(OptionError::ReservedBlockSize {
            number: OptionNumber::BLOCK2
        })
    );
    let bytes = one_option(OptionNumber::BLOCK1, &[0, 0, 0, 6]);
    assert!(matches!(
        Message::parse(&bytes).unwrap().block1(),
        Err(OptionError::BadLength { .. })
    ));
    let bytes = one_option(OptionNumber::URI_HOST, &[0xc3, 0x28]);
    assert_eq!(
        Message::parse(&bytes).unwrap().uri_host(),
        Err(OptionError::NotUtf8 {
            number: OptionNumber::URI_HOST
        })
    );
    let bytes = one_option(OptionNumber::ETAG, &[]);
    assert!(Message::parse(&bytes).unwrap().etag().is_err());
    let bytes = one_option(OptionNumber::CONTENT_FORMAT, &[0, 0, 50]);
    assert!(Message::parse(&bytes).unwrap().content_format().is_err());
}

#[test]
fn every_registered_getter_reads_what_the_builder_wrote() {
    let mut buf = [0u8; 512];
    let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::FETCH, 9).unwrap();
    b.token(&[1, 2]).unwrap();
    b.request_tag(&[9]).unwrap();
    b.no_response(NoResponse(NoResponse::SUPPRESS_2XX)).unwrap();
    b.echo(b"echo!").unwrap();
    b.size1(5000).unwrap();
    b.proxy_scheme("coap").unwrap();
    b.proxy_uri("coap://example/x").unwrap();
    b.size2(0).unwrap();
    b.block1(Block::new(2, true, 4).unwrap()).unwrap();
    b.block2(Block::new(0, false, 2).unwrap()).unwrap();
    b.location_query("q=1").unwrap();
    b.accept(ContentFormat::CBOR).unwrap();
    b.hop_limit(16).unwrap();
    b.uri_query("a=1").unwrap();
    b.uri_query("b=2").unwrap();
    b.max_age(3600).unwrap();
    b.content_format(ContentFormat::TEXT_PLAIN).unwrap();
    b.uri_path("x/y/z").unwrap();
    b.location_path("/new/1").unwrap();
    b.uri_port(5684).unwrap();
    b.observe(0).unwrap();
    b.if_none_match().unwrap();
    b.etag(&[7, 7]).unwrap();
    b.uri_host("example.org").unwrap();
    b.if_match(&[]).unwrap();
    b.payload(b"body").unwrap();
    let bytes = b.finish().to_vec();

    let m = Message::parse(&bytes).unwrap();
    let numbers: Vec<u16> = m.options().map(|o| o.number.0).collect();
    let mut sorted = numbers.clone();
    sorted.sort();
    assert_eq!(numbers, sorted);
    assert_eq!(m.if_match().collect::<Vec<_>>(), [&[][..]]);
    assert_eq!(m.uri_host(), Ok(Some("example.org")));
    assert_eq!(m.etag(), Ok(Some(&[7u8, 7][..])));
    assert!(m.if_none_match());
    assert_eq!(m.observe(), Ok(Some(0)));
    assert_eq!(m.uri_port(), Ok(Some(5684)));
    assert!(m.location_path().matches("new/1"));
    assert!(m.uri_path().matches("/x/y/z"));
    assert_eq!(m.content_format(), Ok(Some(ContentFormat::TEXT_PLAIN)));
    assert_eq!(m.max_age(), Ok(Some(3600)));
    assert_eq!(m.uri_query().collect::<Vec<_>>(), [&b"a=1"[..], b"b=2"]);
    assert_eq!(m.hop_limit(), Ok(Some(16)));
    assert_eq!(m.accept(), Ok(Some(ContentFormat::CBOR)));
    assert_eq!(m.location_query().collect::<Vec<_>>(), [&b"q=1"[..]]);
    assert_eq!(m.block2(), Ok(Block::new(0, false, 2)));
    assert_eq!(m.block1(), Ok(Block::new(2, true, 4)));
    assert_eq!(m.size2(), Ok(Some(0)));
    assert_eq!(m.proxy_uri(), Ok(Some("coap://example/x")));
    assert_eq!(m.proxy_scheme(), Ok(Some("coap")));
    assert_eq!(m.size1(), Ok(Some(5000)));
    assert_eq!(m.echo(), Ok(Some(&b"echo!"[..])));
    assert_eq!(m.no_response(), Ok(Some(NoResponse(2))));
    assert_eq!(m.request_tags().collect::<Vec<_>>(), [&[9u8][..]]);
    assert_eq!(m.payload(), b"body");
    assert_eq!(rebuild(&m), bytes);
}

#[test]
fn option_properties_follow_the_number_bits() {
    use OptionNumber as N;
    for n in [
        N::IF_MATCH,
        N::URI_HOST,
        N::URI_PORT,
        N::URI_PATH,
        N::URI_QUERY,
        N::ACCEPT,
    ] {
        assert!(n.is_critical(), "{n}");
    }
    for n in [
        N::ETAG,
        N::CONTENT_FORMAT,
        N::MAX_AGE,
        N::LOCATION_PATH,
        N::SIZE2,
    ] {
        assert!(n.is_elective(), "{n}");
    }
    for n in [
        N::URI_HOST,
        N::URI_PORT,
        N::MAX_AGE,
        N::URI_PATH,
        N::URI_QUERY,
        N::PROXY_URI,
    ] {
        assert!(n.is_unsafe(), "{n}");
    }
    assert!(!N::ETAG.is_unsafe());
    // §5.4.6: Size1 (60) is NoCacheKey, and so is Size2 (28); Request-Tag (292) is not.
    assert!(N::SIZE1.is_no_cache_key());
    assert!(N::SIZE2.is_no_cache_key());
    assert!(!N::REQUEST_TAG.is_no_cache_key());
    assert!(!N::CONTENT_FORMAT.is_no_cache_key());
}

// ---- codes and types ----

#[test]
fn codes_display_by_name_and_number() {
    let cases = [
        (Code::GET, "GET"),
        (Code::IPATCH, "iPATCH"),
        (Code::EMPTY, "0.00 Empty"),
        (Code::CONTENT, "2.05 Content"),
        (Code::CONTINUE, "2.31 Continue"),
        (
            Code::REQUEST_ENTITY_INCOMPLETE,
            "4.08 Request Entity Incomplete",
        ),
        (
            Code::REQUEST_ENTITY_TOO_LARGE,
            "4.13 Request Entity Too Large",
        ),
        (Code::TOO_MANY_REQUESTS, "4.29 Too Many Requests"),
        (Code::SERVICE_UNAVAILABLE, "5.03 Service Unavailable"),
        (Code::new(0, 9).unwrap(), "0.09"),
        (Code::new(3, 1).unwrap(), "3.01"),
    ];
    for (code, text) in cases {
        assert_eq!(code.to_string(), text);
    }
    assert_eq!(Code::new(1, 0), None);
    assert_eq!(Code::new(6, 0), None);
    assert_eq!(Code::new(7, 31), None);
    assert_eq!(Code::new(2, 32), None);
    assert_eq!(Code::from_u8(0xe1), None);
    assert!(Code::POST.is_request() && !Code::EMPTY.is_request());
    assert!(Code::BAD_OPTION.is_client_error() && Code::BAD_GATEWAY.is_server_error());
    assert_eq!(format!("{:>5}|", Type::Non), "  NON|");
}

#[test]
fn block_values_encode_in_0_to_3_bytes() {
    assert_eq!(Block::from_uint(0).unwrap().size(), 16);
    let max = Block::new(Block::MAX_NUM, true, 6).unwrap();
    assert_eq!(max.to_uint(), 0xff_ff_fe);
    assert_eq!(Block::new(Block::MAX_NUM + 1, false, 0), None);
    assert_eq!(Block::from_uint(0x1_00_00_00), None);
    assert_eq!(Block::from_uint(7), None);
    let mut buf = [0u8; 16];
    let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::GET, 1).unwrap();
    b.block2(max).unwrap();
    assert_eq!(
        b.finish(),
        &hex("40010001d30aff_fffe".replace('_', "").as_str())
    );
}

// ---- builder contracts ----

#[test]
fn options_added_out_of_order_are_sorted_stably() {
    let mut buf = [0u8; 64];
    let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::GET, 1).unwrap();
    b.option(OptionNumber(11), b"b").unwrap();
    b.option(OptionNumber(300), b"z").unwrap();
    b.option(OptionNumber(11), b"c").unwrap(); // after the other 11
    b.option(OptionNumber(3), b"h").unwrap();
    b.option(OptionNumber(290), b"y").unwrap(); // splits the 289 delta: 2 ext bytes -> 1 + 0
    let bytes = b.finish().to_vec();
    let got: Vec<(u16, &[u8])> = Message::parse(&bytes)
        .unwrap()
        .options()
        .map(|o| (o.number.0, o.value))
        .collect();
    assert_eq!(
        got,
        [
            (3, &b"h"[..]),
            (11, b"b"),
            (11, b"c"),
            (290, b"y"),
            (300, b"z")
        ]
    );
}

#[test]
fn buffer_too_small_reports_need_and_changes_nothing() {
    let mut buf = [0u8; 12];
    let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::GET, 1).unwrap();
    b.uri_path("abc").unwrap(); // 8 bytes
    assert_eq!(
        b.uri_path("de/fg").err(),
        Some(BuildError::BufferTooSmall { needed: 14 })
    );
    assert_eq!(
        b.option(OptionNumber::URI_HOST, b"hostname").err(),
        Some(BuildError::BufferTooSmall { needed: 17 })
    );
    assert_eq!(
        b.payload(b"12345").err(),
        Some(BuildError::BufferTooSmall { needed: 14 })
    );
    assert_eq!(b.len(), 8);
    b.payload(b"123").unwrap();
    let bytes = b.finish().to_vec();
    assert_eq!(bytes, hex("40010001b3616263ff313233"));
    let mut tiny = [0u8; 3];
    assert_eq!(
        MessageBuilder::new(&mut tiny, Type::Con, Code::GET, 1).err(),
        Some(BuildError::BufferTooSmall { needed: 4 })
    );
}

#[test]
fn builder_misuse_is_an_error_not_bad_bytes() {
    let mut buf = [0u8; 64];
    let mut b = MessageBuilder::new(&mut buf, Type::Ack, Code::EMPTY, 5).unwrap();
    assert_eq!(
        b.token(&[1]).err(),
        Some(BuildError::EmptyMessageWithContent)
    );
    assert_eq!(
        b.option(OptionNumber::ETAG, &[1]).err(),
        Some(BuildError::EmptyMessageWithContent)
    );
    assert_eq!(
        b.payload(b"x").err(),
        Some(BuildError::EmptyMessageWithContent)
    );
    b.token(&[]).unwrap();
    assert_eq!(b.finish(), hex("60000005"));

    let mut buf = [0u8; 64];
    let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::PUT, 5).unwrap();
    b.uri_path("a").unwrap();
    assert_eq!(b.token(&[1]).err(), Some(BuildError::TokenAfterOptions));
    b.payload(b"p").unwrap();
    assert_eq!(b.uri_query("x").err(), Some(BuildError::OptionAfterPayload));
    assert_eq!(b.payload(b"q").err(), Some(BuildError::PayloadAlreadySet));
    assert_eq!(b.etag(&[1]).err(), Some(BuildError::OptionAfterPayload));

    let mut buf = [0u8; 64];
    let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::PUT, 5).unwrap();
    assert!(matches!(
        b.etag(&[0; 9]).err(),
        Some(BuildError::InvalidOption(_))
    ));
    assert!(matches!(
        b.observe(1 << 24).err(),
        Some(BuildError::InvalidOption(_))
    ));
    assert!(matches!(
        b.uri_path(&"x/".repeat(3).replace("x/x/x/", &"s".repeat(256)))
            .err(),
        Some(BuildError::InvalidOption(_))
    ));
    assert_eq!(b.len(), 4);
    b.payload(&[]).unwrap(); // an empty payload writes no marker
    assert_eq!(b.finish(), hex("40030005"));
}

#[test]
fn payload_mut_writes_in_place() {
    let mut buf = [0u8; 32];
    let mut b = MessageBuilder::new(&mut buf, Type::Non, Code::CONTENT, 2).unwrap();
    assert_eq!(b.payload_capacity(), 27);
    b.payload_mut(3).unwrap().copy_from_slice(b"abc");
    assert_eq!(b.payload_capacity(), 0);
    let bytes = b.finish().to_vec();
    assert_eq!(Message::parse(&bytes).unwrap().payload(), b"abc");
}

#[test]
fn message_view_is_four_slices() {
    assert_eq!(
        std::mem::size_of::<Message<'_>>(),
        4 * std::mem::size_of::<&[u8]>()
    );
}
