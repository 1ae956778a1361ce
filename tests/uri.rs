//! URIs (RFC 7252 §6.4, §6.5, Appendix B) and the resource table (RFC 6690).

use coap_proto::resource::{LinkFormat, Methods, Resource, Route, route};
use coap_proto::uri::{RequestUri, Uri, UriError};
use coap_proto::wire::{Code, Message, MessageBuilder, OptionNumber, Type};
use proptest::prelude::*;

fn request(code: Code, build: impl FnOnce(&mut MessageBuilder<'_>)) -> Vec<u8> {
    let mut buf = [0u8; 1024];
    let mut b = MessageBuilder::new(&mut buf, Type::Con, code, 1).unwrap();
    build(&mut b);
    b.finish().to_vec()
}

fn options_of(uri: &str) -> Vec<(u16, Vec<u8>)> {
    let uri = Uri::parse(uri).unwrap();
    let bytes = request(Code::GET, |b| uri.write_options(b).unwrap());
    Message::parse(&bytes)
        .unwrap()
        .options()
        .map(|o| (o.number.0, o.value.to_vec()))
        .collect()
}

fn compose(destination: &str, build: impl FnOnce(&mut MessageBuilder<'_>)) -> String {
    let bytes = request(Code::GET, build);
    let msg = Message::parse(&bytes).unwrap();
    RequestUri::new(&msg, destination.parse().unwrap()).to_string()
}

#[test]
fn appendix_b_examples_compose_as_the_rfc_shows() {
    let v6 = "[2001:db8::2:1]:5683";
    assert_eq!(compose(v6, |_| {}), "coap://[2001:db8::2:1]/");
    assert_eq!(
        compose(v6, |b| {
            b.uri_host("example.net").unwrap();
        }),
        "coap://example.net/"
    );
    assert_eq!(
        compose(v6, |b| {
            b.uri_host("example.net")
                .unwrap()
                .uri_path("/.well-known/core")
                .unwrap();
        }),
        "coap://example.net/.well-known/core"
    );
    assert_eq!(
        compose(v6, |b| {
            b.uri_host("xn--18j4d.example")
                .unwrap()
                .uri_path("こんにちは")
                .unwrap();
        }),
        "coap://xn--18j4d.example/%E3%81%93%E3%82%93%E3%81%AB%E3%81%A1%E3%81%AF"
    );
    // The last example prints the query as `?%2F%2F&?%26`, but step 8 of §6.5 keeps
    // "/" and "?" in a query unencoded; we follow the normative text.
    let odd = compose("198.51.100.1:61616", |b| {
        for segment in ["", "/", "", ""] {
            b.option(OptionNumber::URI_PATH, segment.as_bytes())
                .unwrap();
        }
        b.uri_query("//").unwrap().uri_query("?&").unwrap();
    });
    assert_eq!(odd, "coap://198.51.100.1:61616//%2F//?//&?%26");
    // …and decomposing it gives the options back.
    assert_eq!(
        options_of(&odd),
        vec![
            (11, b"".to_vec()),
            (11, b"/".to_vec()),
            (11, b"".to_vec()),
            (11, b"".to_vec()),
            (15, b"//".to_vec()),
            (15, b"?&".to_vec()),
        ]
    );
}

#[test]
fn uri_decomposes_into_host_path_and_query_options() {
    assert_eq!(
        options_of("coap://Example.NET:61616/a%2Fb/c?x=1&y=%26"),
        vec![
            (3, b"example.net".to_vec()),
            (11, b"a/b".to_vec()),
            (11, b"c".to_vec()),
            (15, b"x=1".to_vec()),
            (15, b"y=&".to_vec()),
        ]
    );
    // IP literals are the destination, not a Uri-Host; "/" and "" add no path.
    assert!(options_of("coap://[::1]/").is_empty());
    assert!(options_of("coap://127.0.0.1").is_empty());
    let u = Uri::parse("COAP://[::1]:1234/x").unwrap();
    assert_eq!((u.host(), u.port(), u.path()), ("::1", 1234, "/x"));
    assert_eq!(u.ip(), Some("::1".parse().unwrap()));
    assert_eq!(Uri::parse("coap://h").unwrap().port(), 5683);
    assert_eq!(u.to_string(), "coap://[::1]:1234/x");
}

#[test]
fn bad_uris_are_refused_with_the_reason() {
    for (uri, err) in [
        ("/just/a/path", UriError::NotAbsolute),
        ("http://example.com/", UriError::UnsupportedScheme),
        #[cfg(not(feature = "dtls"))]
        ("coaps://example.com/", UriError::UnsupportedScheme),
        ("coap://example.com/a#frag", UriError::Fragment),
        ("coap:///path", UriError::MissingHost),
        ("coap://user@host/", UriError::UserInfo),
        ("coap://host:99999/", UriError::BadPort),
        ("coap://host:8x/", UriError::BadPort),
        ("coap://[::g]/", UriError::BadIpLiteral),
        ("coap://[::1/", UriError::BadIpLiteral),
        ("coap://host/%4", UriError::BadPercentEncoding),
        ("coap://host/%zz", UriError::BadPercentEncoding),
        ("coap://host/a b", UriError::BadCharacter),
    ] {
        assert_eq!(Uri::parse(uri), Err(err), "{uri}");
        assert!(!err.to_string().is_empty());
    }
    let long = format!("coap://host/{}", "a".repeat(256));
    assert_eq!(Uri::parse(&long), Err(UriError::ValueTooLong));
    let fits = format!("coap://host/{}", "%41".repeat(255));
    assert!(Uri::parse(&fits).is_ok());
}

#[test]
#[cfg(feature = "dtls")]
fn coaps_uris_parse_with_the_dtls_feature() {
    // RFC 7252 §6.2: default port 5684.
    let u = Uri::parse("coaps://example.com/temp").unwrap();
    assert!(u.is_secure());
    assert_eq!(
        (u.host(), u.port(), u.path()),
        ("example.com", 5684, "/temp")
    );
    assert_eq!(u.to_string(), "coaps://example.com/temp");
    assert_eq!(
        Uri::parse("coaps://h:5700/").unwrap().to_string(),
        "coaps://h:5700/"
    );
    assert!(!Uri::parse("coap://h/").unwrap().is_secure());
}

proptest! {
    /// Options → URI (§6.5) → options (§6.4) gives the same options, for any bytes.
    #[test]
    fn composed_uri_decomposes_to_the_same_options(
        segments in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..5),
        queries in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..4),
        port in 1u16..,
    ) {
        // A single empty segment is the same URI as no path (§6.5 step 7).
        prop_assume!(!(segments.len() == 1 && segments[0].is_empty()));
        let bytes = request(Code::GET, |b| {
            for s in &segments { b.option(OptionNumber::URI_PATH, s).unwrap(); }
            for q in &queries { b.option(OptionNumber::URI_QUERY, q).unwrap(); }
        });
        let msg = Message::parse(&bytes).unwrap();
        let text = RequestUri::new(&msg, std::net::SocketAddr::from(([127, 0, 0, 1], port))).to_string();
        let uri = Uri::parse(&text).unwrap();
        prop_assert_eq!(uri.port(), port);
        let again = request(Code::GET, |b| uri.write_options(b).unwrap());
        let msg2 = Message::parse(&again).unwrap();
        let opts = |m: &Message<'_>| m.options().map(|o| (o.number, o.value.to_vec())).collect::<Vec<_>>();
        prop_assert_eq!(opts(&msg), opts(&msg2));
    }

    /// Parsing never panics, whatever the string.
    #[test]
    fn uri_parse_never_panics(s in ".{0,80}") {
        let _ = Uri::parse(&s);
        let _ = Uri::parse(&format!("coap://{s}"));
    }

    /// Any window of the link document equals the same slice of the whole.
    #[test]
    fn link_format_windows_match_the_whole(offset in 0usize..200, len in 0usize..80) {
        let table = table();
        let doc = LinkFormat::new(&table, None);
        let whole = doc.to_string();
        prop_assert_eq!(doc.len(), whole.len());
        let mut out = vec![0u8; len];
        let n = doc.write_at(offset, &mut out);
        let start = offset.min(whole.len());
        let end = (offset + len).min(whole.len());
        prop_assert_eq!(&out[..n], &whole.as_bytes()[start..end]);
    }
}

fn table() -> [Resource<'static>; 4] {
    [
        Resource::new("/", Methods::GET).title("General Info").ct(0),
        Resource::new("/sensors/temp", Methods::GET)
            .rt("temperature-c sensor")
            .if_("sensor")
            .obs(),
        Resource::new("/led", Methods::GET.and(Methods::PUT)).if_("actuator"),
        Resource::new("/secret", Methods::ALL).hidden(),
    ]
}

#[test]
fn link_format_lists_visible_resources_with_their_attributes() {
    let table = table();
    assert_eq!(
        LinkFormat::new(&table, None).to_string(),
        "</>;ct=0;title=\"General Info\",</sensors/temp>;rt=\"temperature-c sensor\";if=\"sensor\";obs,</led>;if=\"actuator\""
    );
    // RFC 6690 §4.1 filtering: exact, prefix with `*`, one of several values, ct.
    let only = |q| LinkFormat::new(&table, Some(q)).to_string();
    assert_eq!(
        only("rt=sensor"),
        "</sensors/temp>;rt=\"temperature-c sensor\";if=\"sensor\";obs"
    );
    assert_eq!(only("rt=temp*"), only("rt=sensor"));
    assert_eq!(only("if=actuator"), "</led>;if=\"actuator\"");
    assert_eq!(only("ct=0"), "</>;ct=0;title=\"General Info\"");
    assert_eq!(only("href=/led"), "</led>;if=\"actuator\"");
    assert_eq!(only("rt=nothing"), "");
    assert!(LinkFormat::new(&table, Some("rt=nothing")).is_empty());
}

#[test]
fn routing_answers_not_found_and_method_not_allowed() {
    let table = table();
    let go = |code, path: &str| {
        let bytes = request(code, |b| {
            b.uri_path(path).unwrap();
        });
        route(&table, &Message::parse(&bytes).unwrap())
    };
    assert_eq!(go(Code::GET, "/"), Route::Resource(0));
    assert_eq!(go(Code::GET, "/sensors/temp"), Route::Resource(1));
    assert_eq!(go(Code::PUT, "/led"), Route::Resource(2));
    assert_eq!(go(Code::POST, "/led"), Route::MethodNotAllowed);
    assert_eq!(
        go(Code::POST, "/led").error_code(),
        Some(Code::METHOD_NOT_ALLOWED)
    );
    assert_eq!(go(Code::GET, "/nope"), Route::NotFound);
    assert_eq!(go(Code::GET, "/nope").error_code(), Some(Code::NOT_FOUND));
    assert_eq!(go(Code::GET, "/.well-known/core"), Route::WellKnownCore);
    assert_eq!(go(Code::PUT, "/.well-known/core"), Route::MethodNotAllowed);
    assert!(Methods::GET.and(Methods::FETCH).allows(Code::FETCH));
    assert!(!Methods::ALL.allows(Code::CONTENT));
}
