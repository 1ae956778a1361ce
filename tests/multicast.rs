//! Group communication over real sockets (RFC 7252 §8), each test in a private network
//! of its own (`tests/common/netns.rs`): a bridge with the test on it, and one network
//! namespace per server. Nothing leaves the machine; nothing else on it can answer.
//!
//! The matrix: IPv4 224.0.1.187, IPv6 ff02::fd (link-local) and ff05::fd (site-local);
//! our client against three of our servers (blocking and tokio), our client with
//! libcoap's `coap-server-notls -g` among the responders, libcoap's `coap-client-notls
//! -N` answered by our servers, and our `coap-client -N` command line.
#![cfg(feature = "tokio")]

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use coap_proto::net::blocking::Client;
use coap_proto::net::{GroupResponse, Request, default_config};
use coap_proto::wire::Code;
use common::example::example;
use common::libcoap::available;
use common::netns::{Host, Link, Proc, private_network};

const WINDOW: Duration = Duration::from_secs(7);

/// Our example servers on `hosts`, in `group`: blocking ones, and a tokio one on the
/// second host. `v6`: bound to the host's IPv6 address, joined on its `eth0`.
fn our_servers(hosts: &[Host], group: &str, v6: bool) -> Vec<Proc> {
    hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let name = if i == 1 {
                "tokio_server"
            } else {
                "coap-server"
            };
            let address = if v6 { h.v6 } else { h.v4 }.to_string();
            // The first server names its interface, the others give its index: both
            // ways of `-G` are resolved inside the host's own namespace.
            let interface = if i == 0 {
                "eth0".to_string()
            } else {
                h.index().to_string()
            };
            let mut args = vec!["-A", &address, "-g", group];
            if v6 {
                args.extend(["-G", &interface]);
            }
            h.spawn(&example(name), &args, Some("listening"))
        })
        .collect()
}

/// A group request from our blocking client on `local`, timed.
fn ask(local: &str, group: SocketAddr, req: Request) -> (Vec<GroupResponse>, Duration) {
    let socket = UdpSocket::bind(local).unwrap();
    let mut client = Client::from_socket(socket, group, default_config()).unwrap();
    let started = Instant::now();
    let answers = client.group_request(group, &req.timeout(WINDOW)).unwrap();
    (answers, started.elapsed())
}

/// The answers by source; each source answers once.
fn by_source(answers: &[GroupResponse]) -> BTreeMap<SocketAddr, &GroupResponse> {
    let map: BTreeMap<_, _> = answers.iter().map(|a| (a.from, a)).collect();
    assert_eq!(
        map.len(),
        answers.len(),
        "a source answered twice: {answers:?}"
    );
    map
}

/// Discovery, a block-wise body, and two requests nobody has anything useful to say
/// to, against our three servers.
fn three_of_ours(link: &Link, local: &str, group: SocketAddr, v6: bool) {
    let servers: Vec<SocketAddr> = link
        .hosts
        .iter()
        .map(|h| SocketAddr::new(if v6 { h.v6 } else { h.v4 }, 5683))
        .collect();
    let (answers, took) = ask(local, group, Request::get("/.well-known/core"));
    let got = by_source(&answers);
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        servers,
        "{answers:?}"
    );
    for a in got.values() {
        assert!(a.complete && a.response.code == Code::CONTENT, "{a}");
        assert!(a.response.payload_str().unwrap().contains("</time>"), "{a}");
    }
    eprintln!("discovery: {} answers in {took:?}", answers.len());
    // 1500 bytes each: the first block by multicast, the rest from each server alone.
    let (answers, _) = ask(local, group, Request::get("/example_data"));
    let got = by_source(&answers);
    assert_eq!(got.len(), 3, "{answers:?}");
    for a in got.values() {
        assert!(a.complete, "{a}");
        assert_eq!(a.response.payload.len(), 1500, "{a}");
    }
    // A path nobody serves: a 4.04 from each would be noise (§8.2); nothing comes.
    let (answers, _) = ask(local, group, Request::get("/nothing-here"));
    assert!(answers.is_empty(), "{answers:?}");
    // A discovery query that matches no link: no answer (RFC 6690 §4.1).
    let (answers, _) = ask(
        local,
        group,
        Request::get("/.well-known/core?rt=no-such-type"),
    );
    assert!(answers.is_empty(), "{answers:?}");
}

#[test]
fn v4_our_client_collects_three_of_our_servers() {
    if !private_network("v4_our_client_collects_three_of_our_servers") {
        return;
    }
    let link = Link::new(3);
    let _servers = our_servers(&link.hosts, "224.0.1.187", false);
    let group: SocketAddr = "224.0.1.187:5683".parse().unwrap();
    three_of_ours(&link, "10.9.0.1:0", group, false);
    // The tokio client's group request too.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answers = runtime.block_on(async {
        let socket = tokio::net::UdpSocket::bind("10.9.0.1:0").await.unwrap();
        let client =
            coap_proto::net::tokio::Client::from_socket(socket, group, default_config()).unwrap();
        let req = Request::get("/example_data").timeout(WINDOW);
        client.group_request(group, req).await.unwrap()
    });
    let got = by_source(&answers);
    assert_eq!(got.len(), 3, "{answers:?}");
    assert!(
        got.values()
            .all(|a| a.complete && a.response.payload.len() == 1500)
    );
}

#[test]
fn v6_link_local_our_client_collects_three_of_our_servers() {
    if !private_network("v6_link_local_our_client_collects_three_of_our_servers") {
        return;
    }
    let link = Link::new(3);
    let _servers = our_servers(&link.hosts, "ff02::fd", true);
    let group = SocketAddr::from(std::net::SocketAddrV6::new(
        coap_proto::multicast::ALL_COAP_NODES_LINK_LOCAL,
        5683,
        0,
        link.index,
    ));
    three_of_ours(&link, "[fd00::1]:0", group, true);
}

#[test]
fn v6_site_local_our_client_collects_three_of_our_servers() {
    if !private_network("v6_site_local_our_client_collects_three_of_our_servers") {
        return;
    }
    let link = Link::new(3);
    let _servers = our_servers(&link.hosts, "ff05::fd", true);
    three_of_ours(
        &link,
        "[fd00::1]:0",
        "[ff05::fd]:5683".parse().unwrap(),
        true,
    );
}

/// libcoap's example server and two of ours answer one group request.
fn libcoap_among_the_responders(group: &str, v6: bool) {
    let link = Link::new(3);
    let mut servers = our_servers(&link.hosts[..2], group, v6);
    let h = &link.hosts[2];
    // Bound to the unspecified address, as by default: a socket bound to a unicast
    // address does not get the group's datagrams.
    let mut args = vec!["-g", group];
    if v6 {
        args.extend(["-G", "eth0"]);
    }
    servers.push(h.spawn(Path::new("coap-server-notls"), &args, None));
    let (local, target) = if v6 {
        ("[fd00::1]:0", format!("[{group}]:5683"))
    } else {
        ("10.9.0.1:0", format!("{group}:5683"))
    };
    let mut target: SocketAddr = target.parse().unwrap();
    if let SocketAddr::V6(a) = &mut target {
        if group.starts_with("ff02") {
            a.set_scope_id(link.index);
        }
    }
    let (answers, _) = ask(local, target, Request::get("/"));
    let got = by_source(&answers);
    assert_eq!(got.len(), 3, "{answers:?}");
    let libcoap = SocketAddr::new(h.v4_or_v6(v6), 5683);
    let theirs = got.get(&libcoap).expect("libcoap's server answered");
    assert!(
        theirs.response.payload_str().unwrap().contains("libcoap"),
        "{theirs}"
    );
    let (answers, _) = ask(local, target, Request::get("/.well-known/core"));
    assert_eq!(by_source(&answers).len(), 3, "{answers:?}");
}

trait Address {
    fn v4_or_v6(&self, v6: bool) -> std::net::IpAddr;
}

impl Address for Host {
    fn v4_or_v6(&self, v6: bool) -> std::net::IpAddr {
        if v6 { self.v6 } else { self.v4 }
    }
}

#[test]
fn v4_our_client_with_libcoap_among_the_responders() {
    if !available("coap-server-notls")
        || !private_network("v4_our_client_with_libcoap_among_the_responders")
    {
        return;
    }
    libcoap_among_the_responders("224.0.1.187", false);
}

#[test]
fn v6_our_client_with_libcoap_among_the_responders() {
    if !available("coap-server-notls")
        || !private_network("v6_our_client_with_libcoap_among_the_responders")
    {
        return;
    }
    libcoap_among_the_responders("ff05::fd", true);
}

/// libcoap's client sends group GETs from the test's namespace; our servers answer.
///
/// With one server, the whole discovery document: larger than three times the request,
/// it comes in blocks small enough for the factor (RFC 9175 §2.4), which libcoap
/// continues by unicast. With two, a query whose answer fits one message: libcoap 4.3.1
/// continues only the first member's answer of a group request (it then forgets the
/// token).
fn libcoap_client_answered_by_ours(group: &str, base: &str, v6: bool) {
    let link = Link::new(2);
    let libcoap = |uri: &str| {
        let out = Command::new("coap-client-notls")
            .args(["-N", "-B", "7", uri])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    {
        let _one = our_servers(&link.hosts[..1], group, v6);
        let (stdout, stderr) = libcoap(&format!("{base}/.well-known/core"));
        assert_eq!(
            stdout.matches("</example_data>").count(),
            1,
            "{stdout}\n{stderr}"
        );
    }
    let _two = our_servers(&link.hosts, group, v6);
    let (stdout, stderr) = libcoap(&format!("{base}/.well-known/core?rt=ticks"));
    // libcoap prints each answer's body as it comes.
    assert_eq!(
        stdout.matches("</time>").count(),
        2,
        "both of our servers answered libcoap's group GET:\n{stdout}\n{stderr}"
    );
}

#[test]
fn v4_libcoap_client_group_get_is_answered_by_our_servers() {
    if !available("coap-client-notls")
        || !private_network("v4_libcoap_client_group_get_is_answered_by_our_servers")
    {
        return;
    }
    libcoap_client_answered_by_ours("224.0.1.187", "coap://224.0.1.187", false);
}

#[test]
fn v6_libcoap_client_group_get_is_answered_by_our_servers() {
    if !available("coap-client-notls")
        || !private_network("v6_libcoap_client_group_get_is_answered_by_our_servers")
    {
        return;
    }
    libcoap_client_answered_by_ours("ff05::fd", "coap://[ff05::fd]", true);
}

/// `coap-client -N coap://224.0.1.187/.well-known/core` prints each answer with its
/// server's address; without -N it refuses (RFC 7252 §8.1).
#[test]
fn v4_our_coap_client_prints_each_servers_answer_with_its_address() {
    if !private_network("v4_our_coap_client_prints_each_servers_answer_with_its_address") {
        return;
    }
    let link = Link::new(2);
    let _servers = our_servers(&link.hosts, "224.0.1.187", false);
    let out = Command::new(example("coap-client"))
        .args([
            "-N",
            "-B",
            "7",
            "-a",
            "10.9.0.1",
            "coap://224.0.1.187/.well-known/core",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("10.9.0.2:5683: </"), "{stdout}");
    assert!(lines[1].starts_with("10.9.0.3:5683: </"), "{stdout}");
    let out = Command::new(example("coap-client"))
        .args(["-a", "10.9.0.1", "coap://224.0.1.187/.well-known/core"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("-N"));
}

#[test]
fn v6_ula_group_get_from_an_unbound_client_reaches_members_sharing_a_port() {
    // Issue 23: hosts with ULA addresses beside their link-local ones. The client's
    // socket is bound to [::], so its group request to ff02::fd leaves from its
    // link-local address and the unicast follow-ups (the rest of a block-wise answer)
    // from its ULA: the members must serve both (no Echo bound to the first source).
    // Two of our servers share one host and the group's port (SO_REUSEADDR), beside
    // libcoap's server on another host.
    if !available("coap-server-notls")
        || !private_network(
            "v6_ula_group_get_from_an_unbound_client_reaches_members_sharing_a_port",
        )
    {
        return;
    }
    let link = Link::new(2);
    let (h, other) = (&link.hosts[0], &link.hosts[1]);
    h.run(&[
        "ip",
        "-6",
        "addr",
        "add",
        "fd00::12/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    let group = "ff02::fd";
    let _ours = [
        h.spawn(
            &example("coap-server"),
            &["-A", "fd00::2", "-g", group, "-G", "eth0"],
            Some("listening"),
        ),
        h.spawn(
            &example("tokio_server"),
            &["-A", "fd00::12", "-g", group, "-G", "eth0"],
            Some("listening"),
        ),
    ];
    let _libcoap = other.spawn(
        Path::new("coap-server-notls"),
        &["-g", group, "-G", "eth0"],
        None,
    );
    // The bridge's link-local address must be usable (DAD done) for the group request
    // to leave from it.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let out = Command::new("ip")
            .args(["-6", "addr", "show", "dev", "br0", "scope", "link"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("fe80") && !text.contains("tentative") {
            break;
        }
        assert!(
            Instant::now() < until,
            "br0 has no link-local address: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let target = SocketAddr::from(std::net::SocketAddrV6::new(
        coap_proto::multicast::ALL_COAP_NODES_LINK_LOCAL,
        5683,
        0,
        link.index,
    ));
    let (answers, _) = ask("[::]:0", target, Request::get("/"));
    let got = by_source(&answers);
    assert_eq!(got.len(), 3, "every member answered: {answers:?}");
    for a in got.values() {
        assert!(a.complete && a.response.code == Code::CONTENT, "{a}");
    }
    let ours: Vec<SocketAddr> = ["[fd00::2]:5683", "[fd00::12]:5683"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    for a in &ours {
        assert!(got.contains_key(a), "{a} answered: {answers:?}");
    }
    // 1,500 bytes from each of ours: the first block by multicast, the rest by unicast
    // from the client's other address.
    let (answers, _) = ask("[::]:0", target, Request::get("/example_data"));
    let got = by_source(&answers);
    for a in &ours {
        let answer = got
            .get(a)
            .unwrap_or_else(|| panic!("{a} answered: {answers:?}"));
        assert!(answer.complete, "{answer}");
        assert_eq!(answer.response.payload.len(), 1500, "{answer}");
    }
}
