//! RFC 7252 server rules beyond the basics (issue 12): repeated non-repeatable critical
//! options (§5.4.5) and proxy options at a server that is not a proxy (§5.7.2).

mod common;

use coap_proto::wire::{Code, Message, MessageBuilder, OptionNumber, Type};
use coap_proto::{Config, Incoming};
use common::*;

/// The server's answer to `request`, or what it did with it.
fn answer(ep: &mut Ep, request: &[u8]) -> Result<Vec<u8>, &'static str> {
    match ep.handle_datagram(t(0), CLIENT, request) {
        Some(Incoming::Request { handle, .. }) => {
            ep.respond(t(0), handle, Code::CONTENT, |b| b.payload(b"ok").map(drop))
                .unwrap();
            Ok(drain(ep, t(0)).sent.remove(0).1)
        }
        Some(Incoming::Response { .. }) => Err("a response?"),
        None => drain(ep, t(0))
            .sent
            .pop()
            .map(|(_, m)| m)
            .ok_or("nothing sent"),
    }
}

fn code_of(bytes: &[u8]) -> (Type, Code) {
    let m = Message::parse(bytes).unwrap();
    (m.ty(), m.code())
}

fn get_with(ty: Type, f: impl FnOnce(&mut MessageBuilder<'_>)) -> Vec<u8> {
    msg(ty, Code::GET, 0x0700, &[1], |b| {
        b.uri_path("/x").unwrap();
        f(b);
    })
}

#[test]
fn a_repeated_critical_option_that_may_not_repeat_is_bad() {
    let twice = |n: OptionNumber, v: &[u8]| {
        get_with(Type::Con, |b| {
            b.option(n, v).unwrap();
            b.option(n, v).unwrap();
        })
    };
    for (name, n, v) in [
        ("Uri-Host", OptionNumber::URI_HOST, &b"h"[..]),
        ("Uri-Port", OptionNumber::URI_PORT, &[0x16, 0x33][..]),
        ("Accept", OptionNumber::ACCEPT, &[0][..]),
        ("If-None-Match", OptionNumber::IF_NONE_MATCH, &[][..]),
        ("Block2", OptionNumber::BLOCK2, &[0x06][..]),
    ] {
        let mut ep = endpoint(1);
        let got = answer(&mut ep, &twice(n, v)).unwrap();
        assert_eq!(code_of(&got), (Type::Ack, Code::BAD_OPTION), "two {name}");
    }
    // Once each is fine, and so are repeatable ones (Uri-Path, ETag) and extra copies
    // of an elective one (Content-Format: the first counts).
    let mut ep = endpoint(1);
    let fine = get_with(Type::Con, |b| {
        b.option(OptionNumber::URI_HOST, b"h").unwrap();
        b.option(OptionNumber::ACCEPT, &[0]).unwrap();
        b.option(OptionNumber::ETAG, &[1]).unwrap();
        b.option(OptionNumber::ETAG, &[2]).unwrap();
        b.option(OptionNumber::CONTENT_FORMAT, &[0]).unwrap();
        b.option(OptionNumber::CONTENT_FORMAT, &[50]).unwrap();
    });
    assert_eq!(
        code_of(&answer(&mut ep, &fine).unwrap()),
        (Type::Ack, Code::CONTENT)
    );
    // A NON request with such a repetition is rejected with RST (§5.4.1).
    let mut ep = endpoint(1);
    let non = get_with(Type::Non, |b| {
        b.option(OptionNumber::URI_HOST, b"a").unwrap();
        b.option(OptionNumber::URI_HOST, b"b").unwrap();
    });
    let got = answer(&mut ep, &non).unwrap();
    assert_eq!(code_of(&got).0, Type::Rst);
}

#[test]
fn proxy_requests_get_5_05_unless_the_server_is_a_proxy() {
    let proxy_uri = get_with(Type::Con, |b| {
        b.option(OptionNumber::PROXY_URI, b"coap://example.com/x")
            .unwrap();
    });
    let proxy_scheme = get_with(Type::Con, |b| {
        b.option(OptionNumber::PROXY_SCHEME, b"coap").unwrap();
    });
    for request in [&proxy_uri, &proxy_scheme] {
        let mut ep = endpoint(1);
        let got = answer(&mut ep, request).unwrap();
        assert_eq!(
            code_of(&got),
            (Type::Ack, Code::PROXYING_NOT_SUPPORTED),
            "§5.7.2"
        );
    }
    // A forward proxy gets them.
    let mut ep = Ep::new(Config {
        forward_proxy: true,
        ..config(1)
    })
    .unwrap();
    match ep.handle_datagram(t(0), CLIENT, &proxy_uri) {
        Some(Incoming::Request { message, .. }) => {
            let target = message.proxy_uri().unwrap().unwrap();
            assert_eq!(target, "coap://example.com/x");
            // Where to forward it, by the `uri` module (§6.4).
            let uri = coap_proto::uri::Uri::parse(target).unwrap();
            assert_eq!(
                (uri.host(), uri.port(), uri.path()),
                ("example.com", 5683, "/x")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn content_negotiation_answers_before_the_handler_runs() {
    use coap_proto::resource::{Methods, Resource, Route, route};
    let table = [
        Resource::new("/", Methods::GET).ct(0),
        Resource::new("/conf", Methods::GET.and(Methods::PUT))
            .produces(&[50, 60])
            .accepts(&[50]),
        Resource::new("/any", Methods::GET.and(Methods::PUT)),
    ];
    let req = |code, path: &'static str, accept: Option<u16>, format: Option<u16>| {
        msg(Type::Con, code, 1, &[], |b| {
            b.uri_path(path).unwrap();
            if let Some(a) = accept {
                b.accept(coap_proto::wire::ContentFormat(a)).unwrap();
            }
            if let Some(f) = format {
                b.content_format(coap_proto::wire::ContentFormat(f))
                    .unwrap();
                b.payload(b"{}").unwrap();
            }
        })
    };
    let at = |bytes: Vec<u8>| route(&table, &Message::parse(&bytes).unwrap());
    // §5.10.4: GET with an Accept the resource cannot produce.
    assert_eq!(
        at(req(Code::GET, "/", Some(65000), None)),
        Route::NotAcceptable
    );
    assert_eq!(at(req(Code::GET, "/", Some(0), None)), Route::Resource(0));
    assert_eq!(
        at(req(Code::GET, "/conf", Some(60), None)),
        Route::Resource(1)
    );
    assert_eq!(
        at(req(Code::GET, "/conf", Some(0), None)),
        Route::NotAcceptable
    );
    // §5.10.3: a payload in a format the resource does not take.
    assert_eq!(
        at(req(Code::PUT, "/conf", None, Some(0))),
        Route::UnsupportedContentFormat
    );
    assert_eq!(
        at(req(Code::PUT, "/conf", None, Some(50))),
        Route::Resource(1)
    );
    // Nothing declared: anything goes.
    assert_eq!(
        at(req(Code::PUT, "/any", Some(65000), Some(42))),
        Route::Resource(2)
    );
    assert_eq!(
        Route::NotAcceptable.error_code(),
        Some(Code::NOT_ACCEPTABLE)
    );
}

#[cfg(feature = "std")]
#[test]
fn the_std_server_answers_4_06_and_4_15_without_running_the_handler() {
    use coap_proto::net::Response;
    use coap_proto::net::blocking::{Client, Server};
    use coap_proto::resource::{Methods, Resource};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let runs = Arc::new(AtomicUsize::new(0));
    let mut server = Server::bind("127.0.0.1:0").unwrap();
    let r = runs.clone();
    server.resource(
        Resource::new("/", Methods::GET.and(Methods::PUT))
            .ct(0)
            .accepts(&[0]),
        move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            Response::content("text").into()
        },
    );
    let addr = server.local_addr();
    std::thread::spawn(move || server.run());
    let mut c = Client::connect(addr).unwrap();
    let get = coap_proto::net::Request::get("/").accept(coap_proto::wire::ContentFormat(65000));
    assert_eq!(c.request(&get).unwrap().code, Code::NOT_ACCEPTABLE);
    let put = coap_proto::net::Request::put("/")
        .content_format(coap_proto::wire::ContentFormat::JSON)
        .payload("{}");
    assert_eq!(
        c.request(&put).unwrap().code,
        Code::UNSUPPORTED_CONTENT_FORMAT
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(c.get("/").unwrap().code, Code::CONTENT);
}

#[test]
fn the_endpoints_own_errors_carry_a_diagnostic_payload() {
    let bad = get_with(Type::Con, |b| {
        b.option(OptionNumber::URI_HOST, b"a").unwrap();
        b.option(OptionNumber::URI_HOST, b"b").unwrap();
    });
    let proxy = get_with(Type::Con, |b| {
        b.option(OptionNumber::PROXY_URI, b"coap://h/").unwrap();
    });
    for (request, text) in [(&bad, "Bad Option"), (&proxy, "Proxying Not Supported")] {
        let mut ep = endpoint(1);
        let got = answer(&mut ep, request).unwrap();
        assert_eq!(
            Message::parse(&got).unwrap().payload(),
            text.as_bytes(),
            "§5.5.2"
        );
        // Off for footprint or policy: the same code, no payload.
        let mut ep = Ep::new(Config {
            diagnostic_payloads: false,
            ..config(1)
        })
        .unwrap();
        let got = answer(&mut ep, request).unwrap();
        assert!(Message::parse(&got).unwrap().payload().is_empty());
    }
}
