//! A blocking client and server over `std::net::UdpSocket` (feature `std`).
//!
//! Both run the endpoint's loop on the calling thread: send what
//! [`poll_output`](crate::Endpoint::poll_output) has, wait for a datagram until its
//! deadline, hand the datagram or the timeout back.
//!
//! ```no_run
//! use coap_proto::net::blocking::Client;
//!
//! let mut client = Client::connect("127.0.0.1:5683")?;
//! let response = client.get("/time")?;
//! println!("{} {}", response.code, response.payload_str().unwrap_or(""));
//! # Ok::<(), coap_proto::net::Error>(())
//! ```

use std::boxed::Box;
use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::vec::Vec;

use super::client::{BlockSource, Outcome};
use super::server::{Handled, Node, Received};
use super::{Error, Request, Response, Sent, Step, ToPeer, Transport, Udp};
use crate::resource::Resource;
use crate::wire::Code;
use crate::{Config, IncomingHandle, RequestHandle};
use std::time::Duration;

/// A blocking CoAP client talking to one server (any other with
/// [`request_to`](Self::request_to) or the `*_url` calls).
///
/// ```no_run
/// use coap_proto::net::Request;
/// use coap_proto::net::blocking::Client;
/// use coap_proto::wire::ContentFormat;
///
/// let mut client = Client::connect("coap://127.0.0.1")?;
/// let temp = client.get("/sensors/temp?unit=C")?;
/// println!("{} {}", temp.code, temp.payload_str().unwrap_or("(binary)"));
/// let req = Request::put("/config")
///     .content_format(ContentFormat::JSON)
///     .payload(r#"{"interval":60}"#)
///     .timeout(std::time::Duration::from_secs(10));
/// assert!(client.request(&req)?.is_success());
/// # Ok::<(), coap_proto::net::Error>(())
/// ```
///
/// Its capacities are the endpoint's defaults (64 exchange records, 16 message buffers
/// of 1,152 bytes); a client of other sizes is made by
/// [`from_socket_sized`](Self::from_socket_sized). Each call waits for its answer, so
/// one request is in flight at a time (with its block-wise follow-ups, and an
/// observation's re-registrations); for many at once, use the tokio client.
/// [`Request::retry_busy`] sends a request refused with 4.29 or 5.03 again after its
/// Max-Age.
pub struct Client<
    const EXCHANGES: usize = 64,
    const BUFFERS: usize = 16,
    const MSG_BYTES: usize = 1152,
    const DEDUP_ENTRIES: usize = 512,
    const REPLY_BYTES: usize = 32768,
    T: Transport = Udp,
> {
    socket: UdpSocket,
    core: Node<T::Peer, EXCHANGES, BUFFERS, MSG_BYTES, DEDUP_ENTRIES, REPLY_BYTES>,
    /// The server: its address, and the peer the endpoint knows it as (the address,
    /// or the DTLS session).
    server: SocketAddr,
    peer: T::Peer,
    transport: T,
    buf: Vec<u8>,
    receiver: Receiver,
}

impl Client {
    /// A client for `server` (`"host:port"`, `coap://host[:port]`, a socket address, see
    /// [`ToPeer`]), on a new socket (bound to loopback for a loopback server, else to
    /// any address), with a random seed.
    pub fn connect(server: impl ToPeer) -> Result<Self, Error> {
        Self::with_config(server, super::default_config())
    }

    /// [`connect`](Self::connect) with an endpoint configuration.
    pub fn with_config(server: impl ToPeer, config: Config) -> Result<Self, Error> {
        let peer = super::resolve_for(&server, false)?;
        let socket = UdpSocket::bind(super::local_for(peer))?;
        Self::from_socket(socket, peer, config)
    }

    /// A client on a socket the caller set up (bound, with its multicast hops,
    /// interface or buffer sizes), for `server`.
    ///
    /// ```no_run
    /// use coap_proto::net::blocking::Client;
    /// let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    /// socket.set_ttl(4)?;
    /// let mut client = Client::from_socket(socket, "127.0.0.1:5683", coap_proto::net::default_config())?;
    /// # Ok::<(), coap_proto::net::Error>(())
    /// ```
    pub fn from_socket(
        socket: UdpSocket,
        server: impl ToPeer,
        config: Config,
    ) -> Result<Self, Error> {
        Self::from_socket_sized(socket, server, config)
    }
}

impl<
    const EXCHANGES: usize,
    const BUFFERS: usize,
    const MSG_BYTES: usize,
    const DEDUP_ENTRIES: usize,
    const REPLY_BYTES: usize,
> Client<EXCHANGES, BUFFERS, MSG_BYTES, DEDUP_ENTRIES, REPLY_BYTES, Udp>
{
    /// [`from_socket`](Client::from_socket) for a client of other capacities than the
    /// default ones (the parameters of [`Endpoint`](crate::Endpoint)).
    ///
    /// ```no_run
    /// use coap_proto::net::blocking::Client;
    /// // Messages of up to 256 bytes, 8 exchanges at once.
    /// type Small = Client<8, 4, 256, 16, 1024>;
    /// let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    /// let client = Small::from_socket_sized(socket, "127.0.0.1:5683", coap_proto::net::default_config())?;
    /// # Ok::<(), coap_proto::net::Error>(())
    /// ```
    pub fn from_socket_sized(
        socket: UdpSocket,
        server: impl ToPeer,
        config: Config,
    ) -> Result<Self, Error> {
        let peer = super::resolve_for(&server, false)?;
        // The receive loop sets its own read timeouts.
        socket.set_nonblocking(false)?;
        Ok(Client {
            socket,
            core: Node::new(config)?,
            server: peer,
            peer,
            transport: Udp::default(),
            buf: std::vec![0; 2048],
            receiver: Receiver::default(),
        })
    }

    /// Sends `req` to `group` (RFC 7252 §8.1: a multicast address and port, e.g.
    /// [`ALL_COAP_NODES_V4`](crate::multicast::ALL_COAP_NODES_V4) on 5683; for a
    /// link-local IPv6 group, with the interface as scope id) as NON, collects the
    /// answers of every member for `req.timeout` (default
    /// [`TransmissionParams::group_window`](crate::TransmissionParams::group_window),
    /// 8 s), and returns them with their sources, in the order they came. A member's
    /// block-wise answer is fetched from that member by unicast (RFC 7959 §2.8), and a
    /// member that challenges with Echo is asked again by unicast (RFC 9175 §2.4). The
    /// members answer at random points within their Leisure; no answer at all is an
    /// empty list, not an error.
    ///
    /// ```no_run
    /// use coap_proto::multicast::ALL_COAP_NODES_V4;
    /// use coap_proto::net::Request;
    /// use coap_proto::net::blocking::Client;
    ///
    /// let group = (ALL_COAP_NODES_V4, 5683).into();
    /// let mut client = Client::connect(group)?;
    /// for answer in client.group_request(group, &Request::get("/.well-known/core"))? {
    ///     println!("{}: {}", answer.from, answer.response.payload_str().unwrap_or(""));
    /// }
    /// # Ok::<(), coap_proto::net::Error>(())
    /// ```
    pub fn group_request(
        &mut self,
        group: SocketAddr,
        req: &Request,
    ) -> Result<Vec<super::GroupResponse>, Error> {
        let mut req = req.clone();
        req.group = true;
        req.non_confirmable = true;
        req.observe = false;
        let handle = self
            .core
            .start(self.core.clock().now(), group, &req, false, &mut None)?;
        let mut now = self.core.clock().now();
        loop {
            let deadline = flush(&self.socket, &mut self.core, &mut self.transport, now)?;
            if let Some(answers) = self.core.requests.take_group(handle) {
                return Ok(answers);
            }
            if let Some(outcome) = self.core.requests.take(handle) {
                return outcome.map(|_| Vec::new());
            }
            now = self.receive(deadline, deadline, &mut |_| {})?;
        }
    }

    /// The IPv4 multicast TTL of this client's group requests (default 1: the link),
    /// as libcoap's `coap_mcast_set_hops`. The standard library has no setter for
    /// IPv6's hop limit: for an IPv6 socket this fails with
    /// [`std::io::ErrorKind::Unsupported`].
    pub fn multicast_hops(&self, hops: u32) -> Result<(), Error> {
        Ok(super::group::set_hops(&self.socket, hops)?)
    }
}

impl<
    const EXCHANGES: usize,
    const BUFFERS: usize,
    const MSG_BYTES: usize,
    const DEDUP_ENTRIES: usize,
    const REPLY_BYTES: usize,
    T: Transport,
> Client<EXCHANGES, BUFFERS, MSG_BYTES, DEDUP_ENTRIES, REPLY_BYTES, T>
{
    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.server
    }

    /// The endpoint's counters (messages, retransmissions, duplicates, refusals).
    pub fn stats(&self) -> crate::Stats {
        self.core.ep.stats()
    }

    /// The local socket address.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.socket.local_addr()?)
    }

    /// Sends `req` to the server and waits for the response (the whole body of a
    /// block-wise one), or for the end of retransmission.
    pub fn request(&mut self, req: &Request) -> Result<Response, Error> {
        self.send(self.peer, req)
    }

    /// [`request`](Self::request) to another peer (over DTLS: one this client has a
    /// session with, which is only its server).
    pub fn request_to(&mut self, peer: SocketAddr, req: &Request) -> Result<Response, Error> {
        let peer = self.transport.peer_for(peer).ok_or_else(no_session)?;
        self.send(peer, req)
    }

    /// Sends `req` and waits for its answer; a 4.29 or 5.03 is waited out and the
    /// request sent again when it asks ([`Request::retry_busy`]).
    fn send(&mut self, peer: T::Peer, req: &Request) -> Result<Response, Error> {
        let mut again: Option<Request> = None;
        loop {
            let req = again.as_ref().unwrap_or(req);
            let now = self.core.clock().now();
            let handle = self.core.start(now, peer, req, false, &mut None)?;
            let response = self.run(handle, &mut |_, _, _| true)?;
            match req.retry_after(&response) {
                Some(wait) if req.timeout.is_none_or(|t| wait < t) => {
                    std::thread::sleep(wait);
                    let mut next = req.clone();
                    next.retries += 1;
                    again = Some(next);
                }
                _ => return Ok(response),
            }
        }
    }

    /// GET `path`.
    pub fn get(&mut self, path: &str) -> Result<Response, Error> {
        self.request(&Request::get(path))
    }

    /// PUT `payload` to `path` (block-wise if over 1024 bytes).
    pub fn put(&mut self, path: &str, payload: &[u8]) -> Result<Response, Error> {
        self.request(&Request::put(path).payload(payload))
    }

    /// POST `payload` to `path` (block-wise if over 1024 bytes).
    pub fn post(&mut self, path: &str, payload: &[u8]) -> Result<Response, Error> {
        self.request(&Request::post(path).payload(payload))
    }

    /// FETCH `path` with `payload` (RFC 8132).
    pub fn fetch(&mut self, path: &str, payload: &[u8]) -> Result<Response, Error> {
        self.request(&Request::fetch(path).payload(payload))
    }

    /// DELETE `path`.
    pub fn delete(&mut self, path: &str) -> Result<Response, Error> {
        self.request(&Request::delete(path))
    }

    /// GET `path` as NON.
    pub fn get_non(&mut self, path: &str) -> Result<Response, Error> {
        self.request(&Request::get(path).non_confirmable())
    }

    /// PUT as NON.
    pub fn put_non(&mut self, path: &str, payload: &[u8]) -> Result<Response, Error> {
        self.request(&Request::put(path).payload(payload).non_confirmable())
    }

    /// POST as NON.
    pub fn post_non(&mut self, path: &str, payload: &[u8]) -> Result<Response, Error> {
        self.request(&Request::post(path).payload(payload).non_confirmable())
    }

    /// A request with `method` to `url` (`coap://host[:port]/path?query`), wherever it
    /// points.
    pub fn request_url(
        &mut self,
        method: Code,
        url: &str,
        payload: &[u8],
    ) -> Result<Response, Error> {
        let (req, host, port) = Request::from_uri(method, url)?;
        let peer = (host.as_str(), port).to_peer()?.resolve()?;
        self.request_to(peer, &req.payload(payload))
    }

    /// GET `url`.
    pub fn get_url(&mut self, url: &str) -> Result<Response, Error> {
        self.request_url(Code::GET, url, &[])
    }

    /// GET `path` in blocks of `2^(szx+4)` bytes, handing each to `on_block(offset,
    /// bytes, last)` as it arrives; `on_block` returns `false` to stop early. Returns the
    /// response head (without payload).
    pub fn get_blockwise(
        &mut self,
        path: &str,
        szx: u8,
        on_block: impl FnMut(usize, &[u8], bool) -> bool,
    ) -> Result<Response, Error> {
        self.request_streamed(&Request::get(path).block2(szx), on_block)
    }

    /// Sends `req` and hands the response's body to `on_block(offset, bytes, last)` as
    /// it arrives, block by block (one call for a response in one piece); `on_block`
    /// returns `false` to stop early. Returns the response head (without payload).
    ///
    /// ```no_run
    /// use coap_proto::net::Request;
    /// let mut client = coap_proto::net::blocking::Client::connect("127.0.0.1:5683")?;
    /// // Only the second 64-byte block of a large resource.
    /// let req = Request::get("/firmware").block2(2).block2_offset(64);
    /// let mut block = Vec::new();
    /// client.request_streamed(&req, |_, bytes, _| {
    ///     block.extend_from_slice(bytes);
    ///     false
    /// })?;
    /// # Ok::<(), coap_proto::net::Error>(())
    /// ```
    pub fn request_streamed(
        &mut self,
        req: &Request,
        mut on_block: impl FnMut(usize, &[u8], bool) -> bool,
    ) -> Result<Response, Error> {
        let handle = self
            .core
            .start(self.core.clock().now(), self.peer, req, true, &mut None)?;
        self.run(handle, &mut on_block)
    }

    /// GET `path` into `buf`; returns the body's length. Fails with
    /// [`Error::BufferTooSmall`] if it does not fit.
    pub fn get_into(&mut self, path: &str, buf: &mut [u8]) -> Result<usize, Error> {
        self.get_slice(path, 6, 0, buf).and_then(|(n, whole)| {
            if whole {
                Ok(n)
            } else {
                Err(Error::BufferTooSmall {
                    needed: buf.len() + 1,
                })
            }
        })
    }

    /// GET the bytes of `path` from `offset` into `buf`, asking only for the blocks
    /// (of `2^(szx+4)` bytes) that hold them. Returns how many bytes were written and
    /// whether they reach the end of the body.
    pub fn get_slice(
        &mut self,
        path: &str,
        szx: u8,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<(usize, bool), Error> {
        let req = Request::get(path).block2(szx).block2_offset(offset);
        let handle = self
            .core
            .start(self.core.clock().now(), self.peer, &req, true, &mut None)?;
        let (mut written, mut end) = (0, false);
        self.run(handle, &mut |at, data, last| {
            // The first block may start before `offset`.
            let skip = offset.saturating_sub(at).min(data.len());
            let take = (data.len() - skip).min(buf.len() - written);
            buf[written..written + take].copy_from_slice(&data[skip..skip + take]);
            written += take;
            end = last && take == data.len() - skip;
            !last && written < buf.len()
        })?;
        Ok((written, end))
    }

    /// Uploads block by block: `method` to `path`, Block1 blocks of `2^(szx+4)` bytes
    /// produced by `next(offset, block) -> (length, more)`.
    pub fn upload_with(
        &mut self,
        method: Code,
        path: &str,
        szx: u8,
        next: impl FnMut(usize, &mut [u8]) -> (usize, bool) + Send + 'static,
    ) -> Result<Response, Error> {
        let source: BlockSource = Box::new(next);
        let req = Request::new(method, path).block1(szx);
        let handle = self.core.start(
            self.core.clock().now(),
            self.peer,
            &req,
            false,
            &mut Some(source),
        )?;
        self.run(handle, &mut |_, _, _| true)
    }

    /// Observes `req`'s resource (RFC 7641): sends it with Observe: 0 and hands every
    /// notification — the first answer included, the newest state only — to
    /// `on_notification`, until it returns `false`, `duration` passes (counted from the
    /// first answer, as libcoap's `coap-client -s` counts), or the observation ends (the
    /// server declined it, sent a final response, or stopped answering). When the
    /// caller ends it, the server is told so with a GET with Observe: 1 (RFC 7641 §3.6),
    /// whose answer this call waits for (5 s at most).
    ///
    /// ```no_run
    /// use coap_proto::net::Request;
    /// use std::time::Duration;
    /// let mut client = coap_proto::net::blocking::Client::connect("127.0.0.1:5683")?;
    /// client.observe(&Request::get("/time"), Some(Duration::from_secs(10)), |n| {
    ///     println!("{}", n.payload_str().unwrap_or("?"));
    ///     true
    /// })?;
    /// # Ok::<(), coap_proto::net::Error>(())
    /// ```
    pub fn observe(
        &mut self,
        req: &Request,
        duration: Option<Duration>,
        mut on_notification: impl FnMut(&Response) -> bool,
    ) -> Result<(), Error> {
        let mut req = req.clone();
        req.observe = true;
        let clock = self.core.clock();
        let mut now = clock.now();
        // As libcoap's `-s`: the duration counts from the first answer, the
        // registration's own retransmissions bound the wait for it.
        let mut end = None;
        let handle = self.core.start(now, self.peer, &req, false, &mut None)?;
        loop {
            let deadline = flush(&self.socket, &mut self.core, &mut self.transport, now)?;
            if let Some(e) = self.transport.failure() {
                self.core.cancel(now, handle);
                let _ = self.core.requests.take(handle);
                return Err(e);
            }
            let notifications: Vec<Response> =
                self.core.requests.take_notifications(handle).collect();
            if !notifications.is_empty() && end.is_none() {
                end = Some(duration.map(|d| now + d));
            }
            let mut done = end.flatten().is_some_and(|e| now >= e);
            for n in &notifications {
                if !on_notification(n) {
                    done = true;
                    break;
                }
            }
            if done {
                return self.end_observation(now, handle);
            }
            if let Some(outcome) = self.core.requests.take(handle) {
                return outcome.map(drop);
            }
            let until = super::server::earliest(deadline, end.flatten());
            now = self.receive(until, deadline, &mut |_| {})?;
        }
    }

    /// Ends observation `handle` with a GET with Observe: 1 (RFC 7641 §3.6) and waits
    /// for its answer, 5 s at most: the observation is over for the caller either way.
    fn end_observation(
        &mut self,
        now: crate::Instant,
        handle: crate::RequestHandle,
    ) -> Result<(), Error> {
        let clock = self.core.clock();
        let mut now = now;
        if self.core.cancel_observation(now, handle) {
            let give_up = now + Duration::from_secs(5);
            while self.core.requests.take(handle).is_none() && now < give_up {
                let deadline = flush(&self.socket, &mut self.core, &mut self.transport, now)?;
                let until = super::server::earliest(deadline, Some(give_up));
                now = self.receive(until, deadline, &mut |_| {})?;
                let _ = self.core.requests.take_notifications(handle).count();
            }
            now = clock.now();
        }
        self.core.cancel(now, handle);
        let _ = self.core.requests.take(handle);
        flush(&self.socket, &mut self.core, &mut self.transport, now).map(drop)
    }

    /// Waits for a datagram until `until` and hands what it carries to the core (each
    /// streamed block to `on_block`), or runs the timers if `deadline` passed. Returns
    /// the time after.
    fn receive(
        &mut self,
        until: Option<crate::Instant>,
        deadline: Option<crate::Instant>,
        on_block: &mut dyn FnMut(super::client::Streamed<'_>),
    ) -> Result<crate::Instant, Error> {
        let clock = self.core.clock();
        let got = self
            .receiver
            .recv(&self.socket, wait(clock.now(), until), &mut self.buf)?;
        let now = clock.now();
        match got {
            Some((n, from)) => {
                let datagram = &self.buf[..n];
                self.transport.receive(now, from, datagram);
                while let Some((peer, bytes, _, _)) = self.transport.next_message(from, datagram) {
                    let received = self
                        .core
                        .handle_datagram(now, peer, bytes, |_, _, _| None::<Handled<()>>);
                    if let Received::Block(block) = received {
                        on_block(block);
                    }
                }
            }
            None if deadline.is_some_and(|d| d <= now) => {
                self.core.handle_timeout(now);
                self.transport.handle_timeout(now);
            }
            None => {}
        }
        Ok(now)
    }

    /// Sends a CoAP ping (empty CON); `Ok` once the server answers with RST.
    pub fn ping(&mut self) -> Result<(), Error> {
        let handle = self.core.ping(self.core.clock().now(), self.peer)?;
        self.run(handle, &mut |_, _, _| true).map(drop)
    }

    fn run(
        &mut self,
        handle: RequestHandle,
        on_block: &mut dyn FnMut(usize, &[u8], bool) -> bool,
    ) -> Outcome {
        let mut now = self.core.clock().now();
        loop {
            let deadline = flush(&self.socket, &mut self.core, &mut self.transport, now)?;
            if let Some(outcome) = self.core.requests.take(handle) {
                return outcome;
            }
            if let Some(e) = self.transport.failure() {
                self.core.cancel(now, handle);
                let _ = self.core.requests.take(handle);
                return Err(e);
            }
            let mut stop = false;
            now = self.receive(deadline, deadline, &mut |block| {
                if block.handle == handle && !on_block(block.offset, block.data, block.last) {
                    stop = true;
                }
            })?;
            if stop {
                self.core.stop(now, handle);
            }
        }
    }
}

#[cfg(feature = "dtls")]
impl Client<64, 16, 1152, 512, 32768, super::Dtls> {
    /// A `coaps://` client (RFC 7252 §9.1, feature `dtls`): DTLS 1.2 with the pre-shared
    /// key `key` under `identity`, to `server` (`coaps://host[:port]`, default port
    /// 5684, or an address). The handshake runs with the first request; a wrong key or
    /// an identity the server does not know ends it with [`Error::Dtls`] after
    /// [`Limits::handshake_timeout`](crate::dtls::Limits::handshake_timeout) (10 s by
    /// default).
    ///
    /// ```no_run
    /// use coap_proto::net::blocking::Client;
    /// let mut client = Client::connect_psk("coaps://127.0.0.1", "sensor-7", "secret")?;
    /// let temp = client.get("/temp")?;
    /// # Ok::<(), coap_proto::net::Error>(())
    /// ```
    pub fn connect_psk(
        server: impl ToPeer,
        identity: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Result<Self, Error> {
        let addr = super::resolve_for(&server, true)?;
        let socket = UdpSocket::bind(super::local_for(addr))?;
        let sessions = crate::dtls::Sessions::client(identity, key, crate::dtls::Limits::default())
            .map_err(Error::Dtls)?;
        Self::from_socket_psk(socket, addr, sessions, super::default_config())
    }

    /// [`connect_psk`](Self::connect_psk) on a socket the caller set up, with a session
    /// table ([`Sessions::client`](crate::dtls::Sessions::client)) and an endpoint
    /// configuration of the caller's.
    pub fn from_socket_psk(
        socket: UdpSocket,
        server: impl ToPeer,
        sessions: crate::dtls::Sessions,
        config: Config,
    ) -> Result<Self, Error> {
        let server = super::resolve_for(&server, true)?;
        socket.set_nonblocking(false)?;
        let core = Node::new(config)?;
        let mut transport = super::Dtls::new(sessions);
        let peer = transport
            .connect(core.clock().now(), server)
            .map_err(Error::Dtls)?;
        Ok(Client {
            socket,
            core,
            server,
            peer,
            transport,
            buf: std::vec![0; 2048],
            receiver: Receiver::default(),
        })
    }

    /// The DTLS sessions (one: the server's).
    pub fn sessions(&self) -> &crate::dtls::Sessions {
        self.transport.sessions()
    }
}

#[cfg(feature = "dtls")]
impl Server<64, 16, 1152, 512, 32768, super::Dtls> {
    /// A `coaps://` server on `addr` (RFC 7252 §9.1, feature `dtls`): clients connect
    /// with an identity and key of `keys`; each request's handler sees the client's
    /// identity in [`Request::identity`].
    ///
    /// ```no_run
    /// use coap_proto::dtls::KeyStore;
    /// use coap_proto::net::blocking::Server;
    /// use coap_proto::net::Response;
    /// use coap_proto::resource::{Methods, Resource};
    ///
    /// let keys = KeyStore::new().with("sensor-7", "secret");
    /// let mut server = Server::bind_psk("127.0.0.1:5684", keys)?;
    /// server.resource(Resource::new("/whoami", Methods::GET), |req| {
    ///     Response::content(req.identity.clone().unwrap_or_default()).into()
    /// });
    /// server.run()?;
    /// # Ok::<(), coap_proto::net::Error>(())
    /// ```
    pub fn bind_psk(addr: impl ToSocketAddrs, keys: crate::dtls::KeyStore) -> Result<Self, Error> {
        let sessions = crate::dtls::Sessions::server(keys, crate::dtls::Limits::default())
            .map_err(Error::Dtls)?;
        Self::from_socket_psk(UdpSocket::bind(addr)?, sessions, super::default_config())
    }

    /// [`bind_psk`](Self::bind_psk) on a socket the caller set up, with a session table
    /// ([`Sessions::server`](crate::dtls::Sessions::server), its limits) and an
    /// endpoint configuration of the caller's.
    pub fn from_socket_psk(
        socket: UdpSocket,
        sessions: crate::dtls::Sessions,
        config: Config,
    ) -> Result<Self, Error> {
        Self::over(socket, super::over_dtls(config), super::Dtls::new(sessions))
    }
}

/// What a blocking handler answers: at once, or later through a [`Responder`].
///
/// ```no_run
/// use coap_proto::net::blocking::{Reply, Server};
/// use coap_proto::net::Response;
/// use coap_proto::resource::{Methods, Resource};
///
/// let mut server = Server::bind("127.0.0.1:5683")?;
/// server.resource(Resource::new("/now", Methods::GET), |_| Response::content("at once").into());
/// server.resource(Resource::new("/later", Methods::GET), |_| {
///     Reply::later(|responder| {
///         std::thread::spawn(move || {
///             std::thread::sleep(std::time::Duration::from_secs(3));
///             responder.respond(Response::content("separate response"));
///         });
///     })
/// });
/// # Ok::<(), coap_proto::net::Error>(())
/// ```
pub enum Reply {
    /// The response, sent at once (piggybacked on the ACK).
    Now(Response),
    /// Answer later: the function gets a [`Responder`] to answer with from any thread
    /// (a separate response; the request is acknowledged meanwhile).
    Later(Box<dyn FnOnce(Responder) + Send>),
}

impl From<Response> for Reply {
    fn from(r: Response) -> Self {
        Reply::Now(r)
    }
}

impl Reply {
    /// [`Reply::Later`] from a closure.
    pub fn later(f: impl FnOnce(Responder) + Send + 'static) -> Self {
        Reply::Later(Box::new(f))
    }
}

type Handler = Box<dyn FnMut(&Request) -> Reply + Send>;

/// What other threads ask of a running server.
enum Command {
    /// A handler's answer (`None`: abandoned).
    Answer(IncomingHandle, Option<Response>),
    /// A request to send from the server's socket.
    Start(SocketAddr, Box<Request>, mpsc::Sender<Outcome>),
    /// The endpoint's counters.
    Stats(mpsc::Sender<crate::Stats>),
    /// An observable resource (its index) changed: notify its observers.
    Notify(u16, bool, Response),
    /// A datagram from this source came to a group with this Leisure.
    Group(SocketAddr, Vec<u8>, Duration),
}

/// Tells the observers of one observable resource (RFC 7641) that it changed, from any
/// thread: see [`Server::observable`].
#[derive(Clone)]
pub struct Notifier {
    wake: Waker,
    resource: u16,
}

impl Notifier {
    /// Every observer gets `response` as a notification (NON; CON at least once a day
    /// per observer). A response with a code other than 2.xx is the last one.
    pub fn notify(&self, response: Response) {
        self.wake
            .send(Command::Notify(self.resource, false, response));
    }

    /// [`notify`](Self::notify) with CON notifications, each retransmitted until
    /// acknowledged; an observer that never acknowledges is forgotten.
    pub fn notify_confirmable(&self, response: Response) {
        self.wake
            .send(Command::Notify(self.resource, true, response));
    }
}

/// Answers one request from any thread (see [`Reply::later`]). Dropped unused, the
/// request is abandoned: the endpoint answers 5.00 so the client is not left waiting.
pub struct Responder {
    id: IncomingHandle,
    wake: Waker,
    sent: bool,
}

impl Responder {
    /// Sends the response.
    pub fn respond(mut self, response: Response) {
        self.sent = true;
        self.wake.send(Command::Answer(self.id, Some(response)));
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.sent {
            self.wake.send(Command::Answer(self.id, None));
        }
    }
}

/// Hands the server loop a command and wakes it with an empty datagram to its own
/// socket, after raising a flag that tells the loop to look at its command channel (so
/// that the loop need not look for every datagram, and a command is found even if the
/// wake-up is lost).
#[derive(Clone)]
struct Waker {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    tx: mpsc::Sender<Command>,
    flag: Arc<AtomicBool>,
}

impl Waker {
    fn send(&self, command: Command) {
        let _ = self.tx.send(command);
        self.wake();
    }

    fn wake(&self) {
        self.flag.store(true, Ordering::Release);
        let mut to = self.local;
        if to.ip().is_unspecified() {
            to.set_ip(super::loopback(to));
        }
        let _ = self.socket.send_to(&[], to);
    }
}

/// Stops a running [`Server`] from another thread.
///
/// ```
/// let mut server = coap_proto::net::blocking::Server::bind("127.0.0.1:0")?;
/// let stopper = server.stopper();
/// let running = std::thread::spawn(move || server.run());
/// stopper.stop();
/// running.join().unwrap()?;
/// # Ok::<(), coap_proto::net::Error>(())
/// ```
#[derive(Clone)]
pub struct Stopper(Arc<AtomicBool>, Waker);

impl Stopper {
    /// Makes [`Server::run`] return.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
        self.1.wake();
    }
}

/// Reaches a running [`Server`] from any thread: its counters, and requests sent from
/// its socket — a device that serves resources and asks others, on one port.
///
/// ```no_run
/// use coap_proto::net::blocking::Server;
/// use coap_proto::net::Request;
///
/// let mut server = Server::bind("127.0.0.1:5683")?;
/// let handle = server.handle();
/// std::thread::spawn(move || server.run());
/// let gateway = "127.0.0.1:5684".parse().unwrap();
/// let response = handle.request_to(gateway, Request::get("/temperature"))?;
/// println!("{response}; {}", handle.stats()?);
/// # Ok::<(), coap_proto::net::Error>(())
/// ```
#[derive(Clone)]
pub struct ServerHandle(Waker);

impl ServerHandle {
    /// Sends `req` to `peer` from the server's socket and waits for the response (the
    /// whole body of a block-wise one). Requests beyond what the endpoint holds at once
    /// wait their turn. [`Error::Closed`] if the server is not running.
    pub fn request_to(&self, peer: SocketAddr, req: Request) -> Result<Response, Error> {
        let (tx, rx) = mpsc::channel();
        self.0.send(Command::Start(peer, Box::new(req), tx));
        rx.recv().unwrap_or(Err(Error::Closed))
    }

    /// The running server's counters.
    pub fn stats(&self) -> Result<crate::Stats, Error> {
        let (tx, rx) = mpsc::channel();
        self.0.send(Command::Stats(tx));
        rx.recv().map_err(|_| Error::Closed)
    }
}

/// A blocking CoAP server with a resource table: requests are routed by path and
/// method (4.04 and 4.05 answered for you), bodies assembled from Block1 and served in
/// Block2, `/.well-known/core` generated from the table. A handler gets the request as
/// `&Request` (as the tokio server's do) and answers with a [`Reply`].
///
/// The capacities are the endpoint's parameters, with its defaults (64 exchanges, 16
/// buffers of 1152 bytes, 512 dedup entries, 32 KiB of stored replies); a server of
/// other sizes is made by [`from_socket_sized`](Self::from_socket_sized).
///
/// ```no_run
/// use coap_proto::net::blocking::Server;
/// use coap_proto::net::Response;
/// use coap_proto::resource::{Methods, Resource};
///
/// let mut server = Server::bind("127.0.0.1:5683")?;
/// server.resource(Resource::new("/hello", Methods::GET), |_req| Response::content("hi").into());
/// server.run()?;
/// # Ok::<(), coap_proto::net::Error>(())
/// ```
pub struct Server<
    const EXCHANGES: usize = 64,
    const BUFFERS: usize = 16,
    const MSG_BYTES: usize = 1152,
    const DEDUP_ENTRIES: usize = 512,
    const REPLY_BYTES: usize = 32768,
    T: Transport = Udp,
> {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    core: Node<T::Peer, EXCHANGES, BUFFERS, MSG_BYTES, DEDUP_ENTRIES, REPLY_BYTES>,
    transport: T,
    handlers: Vec<Handler>,
    fallback: Option<Handler>,
    rx: mpsc::Receiver<Command>,
    waker: Waker,
    stop: Arc<AtomicBool>,
    /// Requests sent for [`ServerHandle`]s: in flight, and waiting for room.
    asked: HashMap<RequestHandle, mpsc::Sender<Outcome>>,
    queued: VecDeque<(SocketAddr, Box<Request>, mpsc::Sender<Outcome>)>,
    /// The groups joined, each with the flag that stops its receiving thread.
    groups: Vec<(super::Group, Arc<AtomicBool>)>,
}

impl Server {
    /// A server on `addr` with a random seed.
    pub fn bind(addr: impl ToSocketAddrs) -> Result<Self, Error> {
        Self::with_config(addr, super::default_config())
    }

    /// [`bind`](Self::bind) with an endpoint configuration.
    pub fn with_config(addr: impl ToSocketAddrs, config: Config) -> Result<Self, Error> {
        Self::from_socket(UdpSocket::bind(addr)?, config)
    }

    /// A server on a socket the caller set up (joined to a multicast group, bound to an
    /// interface, with larger buffers).
    ///
    /// ```no_run
    /// use coap_proto::net::blocking::Server;
    /// let socket = std::net::UdpSocket::bind("127.0.0.1:5683")?;
    /// let server = Server::from_socket(socket, coap_proto::net::default_config())?;
    /// # Ok::<(), coap_proto::net::Error>(())
    /// ```
    pub fn from_socket(socket: UdpSocket, config: Config) -> Result<Self, Error> {
        Self::from_socket_sized(socket, config)
    }
}

impl<
    const EXCHANGES: usize,
    const BUFFERS: usize,
    const MSG_BYTES: usize,
    const DEDUP_ENTRIES: usize,
    const REPLY_BYTES: usize,
> Server<EXCHANGES, BUFFERS, MSG_BYTES, DEDUP_ENTRIES, REPLY_BYTES, Udp>
{
    /// [`from_socket`](Server::from_socket) for a server of other capacities than the
    /// default ones (the parameters of [`Endpoint`](crate::Endpoint)).
    ///
    /// ```no_run
    /// use coap_proto::net::blocking::Server;
    /// // 1024 requests at once, 8192 remembered for deduplication.
    /// type Big = Server<1024, 32, 1152, 8192, 262144>;
    /// let socket = std::net::UdpSocket::bind("127.0.0.1:5683")?;
    /// let server = Big::from_socket_sized(socket, coap_proto::net::default_config())?;
    /// # Ok::<(), coap_proto::net::Error>(())
    /// ```
    pub fn from_socket_sized(socket: UdpSocket, config: Config) -> Result<Self, Error> {
        Self::over(socket, config, Udp::default())
    }

    /// Joins `group` (RFC 7252 §8): requests that come to the group address on this
    /// server's port are served as group requests — answered at a random point within
    /// the group's Leisure, from the server's own address, and not at all when the
    /// answer would be an error or a `/.well-known/core` query matches no link (§8.2,
    /// RFC 6690 §4.1). The group's datagrams are received on a socket of their own, by
    /// a thread that lives as long as the membership, so the server must be bound to a
    /// unicast address (not `0.0.0.0` or `::`) to share its port with it. Joining a
    /// group twice is an error.
    ///
    /// ```no_run
    /// use coap_proto::multicast::ALL_COAP_NODES_V4;
    /// use coap_proto::net::Group;
    /// use coap_proto::net::blocking::Server;
    ///
    /// let mut server = Server::bind("10.0.0.7:5683")?;
    /// server.join_group(Group::new(ALL_COAP_NODES_V4.into()).interface_v4("10.0.0.7".parse().unwrap()))?;
    /// server.run()?;
    /// # Ok::<(), coap_proto::net::Error>(())
    /// ```
    pub fn join_group(&mut self, group: super::Group) -> Result<(), Error> {
        let socket = group.join_once(self.groups(), self.local.port())?;
        let stop = Arc::new(AtomicBool::new(false));
        let (waker, flag) = (self.waker.clone(), stop.clone());
        std::thread::Builder::new()
            .name(std::format!("coap group {}", group.address))
            .spawn(move || receive_group(socket, group, waker, flag))?;
        self.groups.push((group, stop));
        Ok(())
    }

    /// Leaves a group joined with [`join_group`](Self::join_group): its socket closes
    /// within a second. `false` if it was not joined.
    pub fn leave_group(&mut self, address: std::net::IpAddr) -> bool {
        let Some(i) = self.groups.iter().position(|(g, _)| g.address == address) else {
            return false;
        };
        let (_, stop) = self.groups.swap_remove(i);
        stop.store(true, Ordering::Relaxed);
        true
    }

    /// The groups joined.
    pub fn groups(&self) -> impl Iterator<Item = &super::Group> {
        self.groups.iter().map(|(g, _)| g)
    }
}

impl<
    const EXCHANGES: usize,
    const BUFFERS: usize,
    const MSG_BYTES: usize,
    const DEDUP_ENTRIES: usize,
    const REPLY_BYTES: usize,
    T: Transport,
> Server<EXCHANGES, BUFFERS, MSG_BYTES, DEDUP_ENTRIES, REPLY_BYTES, T>
{
    /// A server on `socket` over `transport`.
    fn over(socket: UdpSocket, config: Config, transport: T) -> Result<Self, Error> {
        socket.set_nonblocking(false)?;
        let local = socket.local_addr()?;
        let socket = Arc::new(socket);
        let (tx, rx) = mpsc::channel();
        let waker = Waker {
            socket: socket.clone(),
            local,
            tx,
            flag: Arc::default(),
        };
        Ok(Server {
            socket,
            local,
            core: Node::new(config)?,
            transport,
            handlers: Vec::new(),
            fallback: None,
            rx,
            waker,
            stop: Arc::new(AtomicBool::new(false)),
            asked: HashMap::new(),
            queued: VecDeque::new(),
            groups: Vec::new(),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The endpoint's counters so far; while [`run`](Self::run) runs, ask a
    /// [`ServerHandle`].
    pub fn stats(&self) -> crate::Stats {
        self.core.ep.stats()
    }

    /// Adds a resource and its handler.
    pub fn resource(
        &mut self,
        resource: Resource<'static>,
        handler: impl FnMut(&Request) -> Reply + Send + 'static,
    ) -> &mut Self {
        self.core.table.push(resource);
        self.handlers.push(Box::new(handler));
        self
    }

    /// A handler for paths not in the table (instead of 4.04).
    pub fn fallback(
        &mut self,
        handler: impl FnMut(&Request) -> Reply + Send + 'static,
    ) -> &mut Self {
        self.core.has_fallback = true;
        self.fallback = Some(Box::new(handler));
        self
    }

    /// Adds an observable resource (RFC 7641; listed with `obs` in
    /// `/.well-known/core`): a GET with Observe: 0 that its handler answers with 2.xx
    /// registers the client, and the returned [`Notifier`] sends every observer the new
    /// state when it changes.
    ///
    /// ```no_run
    /// use coap_proto::net::blocking::Server;
    /// use coap_proto::net::Response;
    /// use coap_proto::resource::{Methods, Resource};
    ///
    /// let mut server = Server::bind("127.0.0.1:5683")?;
    /// let temperature = server.observable(Resource::new("/temp", Methods::GET), |_| {
    ///     Response::content("21.5").into()
    /// });
    /// std::thread::spawn(move || loop {
    ///     std::thread::sleep(std::time::Duration::from_secs(5));
    ///     temperature.notify(Response::content("21.6"));
    /// });
    /// server.run()?;
    /// # Ok::<(), coap_proto::net::Error>(())
    /// ```
    pub fn observable(
        &mut self,
        resource: Resource<'static>,
        handler: impl FnMut(&Request) -> Reply + Send + 'static,
    ) -> Notifier {
        let index = self.core.table.len() as u16;
        self.resource(resource.obs(), handler);
        Notifier {
            wake: self.waker.clone(),
            resource: index,
        }
    }

    /// A handle that stops [`run`](Self::run) from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.stop.clone(), self.waker.clone())
    }

    /// A handle for the running server's counters and for requests sent from its
    /// socket.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle(self.waker.clone())
    }

    /// Serves until stopped or a socket error.
    ///
    /// Per request answered at once, the loop reads the clock once and makes two system
    /// calls (receive, send); a handler that answers with a `'static` body allocates
    /// nothing (`tests/alloc.rs` counts).
    pub fn run(&mut self) -> Result<(), Error> {
        let mut buf = std::vec![0u8; 2048];
        let mut receiver = Receiver::default();
        let clock = self.core.clock();
        let mut now = clock.now();
        while !self.stop.load(Ordering::Relaxed) {
            if self.waker.flag.swap(false, Ordering::Acquire) {
                while let Ok(command) = self.rx.try_recv() {
                    self.on_command(now, command);
                }
            }
            let deadline = flush(&self.socket, &mut self.core, &mut self.transport, now)?;
            if !self.asked.is_empty() || !self.queued.is_empty() {
                self.settle(now);
            }
            let got = receiver.recv(&self.socket, wait(now, deadline), &mut buf)?;
            now = clock.now();
            match got {
                // Empty datagrams are never CoAP: this one is a Responder or Stopper waking us.
                Some((0, _)) => {}
                Some((n, from)) => {
                    let datagram = &buf[..n];
                    self.transport.receive(now, from, datagram);
                    while let Some((peer, bytes, addr, identity)) =
                        self.transport.next_message(from, datagram)
                    {
                        self.core.set_origin(addr, identity);
                        let serving = (&mut self.handlers, &mut self.fallback, &self.waker);
                        dispatch(&mut self.core, serving, now, peer, bytes, None);
                    }
                }
                None if deadline.is_some_and(|d| d <= now) => {
                    self.core.handle_timeout(now);
                    self.transport.handle_timeout(now);
                }
                None => {}
            }
        }
        Ok(())
    }

    fn on_command(&mut self, now: crate::Instant, command: Command) {
        match command {
            Command::Answer(id, response) => self.core.answer(now, id, response),
            Command::Start(peer, req, reply) => {
                self.queued.push_back((peer, req, reply));
                self.settle(now);
            }
            Command::Stats(reply) => drop(reply.send(self.core.ep.stats())),
            Command::Notify(index, confirmable, response) => {
                self.core.notify(now, index, confirmable, response, false);
            }
            Command::Group(from, datagram, leisure) => {
                if let Some(peer) = self.transport.peer_for(from) {
                    self.core.set_origin(None, None);
                    let serving = (&mut self.handlers, &mut self.fallback, &self.waker);
                    dispatch(&mut self.core, serving, now, peer, &datagram, Some(leisure));
                }
            }
        }
    }

    /// Hands finished requests their outcome; starts waiting ones while there is room.
    fn settle(&mut self, now: crate::Instant) {
        for (handle, outcome) in self.core.requests.drain_finished() {
            if let Some(reply) = self.asked.remove(&handle) {
                let _ = reply.send(outcome);
            }
        }
        while let Some((addr, req, reply)) = self.queued.pop_front() {
            let Some(peer) = self.transport.peer_for(addr) else {
                let _ = reply.send(Err(no_session()));
                continue;
            };
            match self.core.start(now, peer, &req, false, &mut None) {
                Ok(handle) => drop(self.asked.insert(handle, reply)),
                Err(Error::Endpoint(crate::Error::TableFull | crate::Error::BuffersFull)) => {
                    self.queued.push_front((addr, req, reply));
                    return;
                }
                Err(e) => drop(reply.send(Err(e))),
            }
        }
    }
}

use super::no_session;

impl<
    const EXCHANGES: usize,
    const BUFFERS: usize,
    const MSG_BYTES: usize,
    const DEDUP_ENTRIES: usize,
    const REPLY_BYTES: usize,
    T: Transport,
> Drop for Server<EXCHANGES, BUFFERS, MSG_BYTES, DEDUP_ENTRIES, REPLY_BYTES, T>
{
    /// The groups' receiving threads end with the server.
    fn drop(&mut self) {
        for (_, stop) in &self.groups {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

/// Hands a datagram (`leisure`: one that came to a group) to the core, a request in it
/// to its handler; a handler that answers later gets a [`Responder`].
fn dispatch<
    P: super::NetPeer,
    const E: usize,
    const B: usize,
    const M: usize,
    const D: usize,
    const R: usize,
>(
    core: &mut Node<P, E, B, M, D, R>,
    (handlers, fallback, waker): (&mut Vec<Handler>, &mut Option<Handler>, &Waker),
    now: crate::Instant,
    peer: P,
    bytes: &[u8],
    leisure: Option<Duration>,
) {
    let handle = |resource: Option<usize>, request: &Request, _: &crate::wire::Message<'_>| {
        let handler = match resource {
            Some(i) => handlers.get_mut(i),
            None => fallback.as_mut(),
        }?;
        Some(match handler(request) {
            Reply::Now(response) => Handled::Now(response),
            Reply::Later(f) => Handled::Later(f),
        })
    };
    if let Received::Later(id, f) = core.dispatch(now, peer, bytes, leisure, handle) {
        f(Responder {
            id,
            wake: waker.clone(),
            sent: false,
        });
    }
}

/// Receives a group's datagrams on `socket` and hands them to the server loop until
/// `stop` is raised (checked at least once a second) or the server is gone.
fn receive_group(socket: UdpSocket, group: super::Group, waker: Waker, stop: Arc<AtomicBool>) {
    let _ = socket.set_read_timeout(Some(MAX_BLOCK));
    let mut buf = std::vec![0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            // Empty datagrams are never CoAP.
            Ok((0, _)) => {}
            Ok((n, from)) => {
                let command = Command::Group(from, buf[..n].to_vec(), group.leisure);
                if waker.tx.send(command).is_err() {
                    return;
                }
                waker.wake();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if super::is_loss(e.kind()) => {}
            Err(_) => return,
        }
    }
}

/// How long to wait from `now` for a datagram before `deadline` is due.
fn wait(now: crate::Instant, deadline: Option<crate::Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(now))
}

/// Sends every datagram the core and the transport have; returns the next deadline of
/// either.
fn flush<
    T: Transport,
    const E: usize,
    const B: usize,
    const M: usize,
    const D: usize,
    const R: usize,
>(
    socket: &UdpSocket,
    core: &mut Node<T::Peer, E, B, M, D, R>,
    transport: &mut T,
    now: crate::Instant,
) -> Result<Option<crate::Instant>, Error> {
    let step = core.poll(now, |to, datagram| {
        transport.send(now, to, datagram, &mut |to, datagram| {
            super::transport::send_to(socket, datagram, to).map(|()| Sent::Done)
        })
    })?;
    while let Some((to, datagram)) = transport.pop_transmit() {
        super::transport::send_to(socket, &datagram, to)?;
    }
    let deadline = match step {
        Step::Wait(deadline) => deadline,
        // A blocking send always takes the datagram.
        Step::Transmit(_) => Some(now),
    };
    Ok(super::server::earliest(deadline, transport.next_timeout()))
}

/// The longest a receive blocks: a deadline further away is reached by waking up again.
const MAX_BLOCK: Duration = Duration::from_secs(1);

/// Receives datagrams with no system call but the receive itself while the deadline is
/// more than [`MAX_BLOCK`] away: the socket's read timeout is changed only when the
/// next deadline needs a shorter one (or the one set would wake the loop much too
/// often), not once per datagram.
#[derive(Debug, Default)]
struct Receiver {
    /// The read timeout the socket has.
    timeout: Option<Duration>,
}

impl Receiver {
    /// Waits up to `wait` (for ever: `None`) for one datagram; `None` if none came.
    fn recv(
        &mut self,
        socket: &UdpSocket,
        wait: Option<Duration>,
        buf: &mut [u8],
    ) -> Result<Option<(usize, SocketAddr)>, Error> {
        self.recv_with(
            wait,
            buf,
            |t| socket.set_read_timeout(Some(t)),
            |b| socket.recv_from(b),
        )
    }

    /// [`recv`](Self::recv) over any socket calls (the tests inject errors).
    fn recv_with(
        &mut self,
        wait: Option<Duration>,
        buf: &mut [u8],
        set_timeout: impl FnOnce(Duration) -> std::io::Result<()>,
        mut recv_from: impl FnMut(&mut [u8]) -> std::io::Result<(usize, SocketAddr)>,
    ) -> Result<Option<(usize, SocketAddr)>, Error> {
        let want = wait.map_or(MAX_BLOCK, |w| w.min(MAX_BLOCK));
        if want.is_zero() {
            return Ok(None);
        }
        // A timeout longer than the wait would miss the deadline; one much shorter
        // than the wait would spin.
        if self.timeout.is_none_or(|t| t > want || t < want / 2) {
            set_timeout(want)?;
            self.timeout = Some(want);
        }
        loop {
            match recv_from(buf) {
                Ok(got) => return Ok(Some(got)),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None);
                }
                // A signal (EINTR) is not a reason to stop serving; an ICMP error for
                // something sent earlier is loss.
                Err(e) if super::is_loss(e.kind()) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5683))
    }

    #[test]
    fn a_signal_during_a_receive_is_retried_not_fatal() {
        let mut errors = [ErrorKind::Interrupted, ErrorKind::Interrupted].into_iter();
        let got = Receiver::default().recv_with(
            None,
            &mut [0; 8],
            |_| Ok(()),
            |_| match errors.next() {
                Some(kind) => Err(io::Error::from(kind)),
                None => Ok((4, addr())),
            },
        );
        assert_eq!(got, Ok(Some((4, addr()))));
    }

    #[test]
    fn an_icmp_error_is_loss_and_a_closed_socket_is_an_error() {
        let mut errors = [ErrorKind::ConnectionRefused].into_iter();
        let got = Receiver::default().recv_with(
            None,
            &mut [0; 8],
            |_| Ok(()),
            |_| match errors.next() {
                Some(kind) => Err(io::Error::from(kind)),
                None => Ok((1, addr())),
            },
        );
        assert_eq!(got, Ok(Some((1, addr()))));
        let got = Receiver::default().recv_with(
            None,
            &mut [0; 8],
            |_| Ok(()),
            |_| Err(io::Error::from(ErrorKind::NotConnected)),
        );
        assert_eq!(got.unwrap_err().io_kind(), Some(ErrorKind::NotConnected));
    }

    #[test]
    fn the_read_timeout_is_set_only_when_the_deadline_needs_it() {
        let mut r = Receiver::default();
        let mut sets = 0;
        let mut recv = |wait: Option<Duration>, sets: &mut u32| {
            r.recv_with(
                wait,
                &mut [0; 8],
                |_| {
                    *sets += 1;
                    Ok(())
                },
                |_| Err(io::Error::from(ErrorKind::WouldBlock)),
            )
        };
        // Far deadlines (or none) all block at most MAX_BLOCK: set once.
        for wait in [
            None,
            Some(Duration::from_secs(200)),
            Some(Duration::from_secs(3)),
        ] {
            assert_eq!(recv(wait, &mut sets), Ok(None));
        }
        assert_eq!(sets, 1);
        // A nearer deadline shortens it; a due one does not wait at all.
        assert_eq!(recv(Some(Duration::from_millis(20)), &mut sets), Ok(None));
        assert_eq!(recv(Some(Duration::ZERO), &mut sets), Ok(None));
        assert_eq!(sets, 2);
    }
}
