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
use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::vec::Vec;

use super::client::{BlockSource, Outcome};
use super::server::{Handled, Node, Received};
use super::{Error, Request, Response, Sent, Step, ToPeer};
use crate::resource::Resource;
use crate::wire::Code;
use crate::{Config, IncomingHandle, RequestHandle};
use std::time::Duration;

/// A blocking CoAP client talking to one server (any other with
/// [`request_to`](Self::request_to) or the `*_url` calls).
pub struct Client {
    socket: UdpSocket,
    core: Node,
    peer: SocketAddr,
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
        let peer = server.to_peer()?.resolve()?;
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
    /// let mut client = Client::from_socket(socket, "127.0.0.1:5683", coap_proto::Config::default())?;
    /// # Ok::<(), coap_proto::net::Error>(())
    /// ```
    pub fn from_socket(
        socket: UdpSocket,
        server: impl ToPeer,
        config: Config,
    ) -> Result<Self, Error> {
        let peer = server.to_peer()?.resolve()?;
        // The receive loop sets its own read timeouts.
        socket.set_nonblocking(false)?;
        Ok(Client {
            socket,
            core: Node::new(config)?,
            peer,
            buf: std::vec![0; 2048],
            receiver: Receiver::default(),
        })
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
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
        self.request_to(self.peer, req)
    }

    /// [`request`](Self::request) to another peer.
    pub fn request_to(&mut self, peer: SocketAddr, req: &Request) -> Result<Response, Error> {
        let handle = self
            .core
            .start(self.core.clock().now(), peer, req, false, &mut None)?;
        self.run(handle, &mut |_, _, _| true)
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
        mut on_block: impl FnMut(usize, &[u8], bool) -> bool,
    ) -> Result<Response, Error> {
        let req = Request::get(path).block2(szx);
        let handle = self
            .core
            .start(self.core.clock().now(), self.peer, &req, true, &mut None)?;
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
        let clock = self.core.clock();
        let mut now = clock.now();
        loop {
            let deadline = flush(&self.socket, &mut self.core, now)?;
            if let Some(outcome) = self.core.requests.take(handle) {
                return outcome;
            }
            let got = self
                .receiver
                .recv(&self.socket, wait(now, deadline), &mut self.buf)?;
            now = clock.now();
            match got {
                Some((n, from)) => {
                    let received =
                        self.core
                            .handle_datagram(now, from, &self.buf[..n], |_, _, _| {
                                None::<Handled<()>>
                            });
                    if let Received::Block(block) = received {
                        if block.handle == handle && !on_block(block.offset, block.data, block.last)
                        {
                            self.core.stop(now, handle);
                        }
                    }
                }
                None if deadline.is_some_and(|d| d <= now) => self.core.handle_timeout(now),
                None => {}
            }
        }
    }
}

/// What a blocking handler answers.
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

/// Answers one request from any thread. Dropped unused, the request is abandoned: the
/// endpoint answers 5.00 so the client is not left waiting.
pub struct Responder {
    id: IncomingHandle,
    tx: mpsc::Sender<(IncomingHandle, Option<Response>)>,
    wake: Waker,
    sent: bool,
}

impl Responder {
    /// Sends the response.
    pub fn respond(mut self, response: Response) {
        self.sent = true;
        let _ = self.tx.send((self.id, Some(response)));
        self.wake.wake();
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.sent {
            let _ = self.tx.send((self.id, None));
            self.wake.wake();
        }
    }
}

/// Wakes the server loop with an empty datagram to its own socket, after raising a
/// flag that tells the loop to look at its answer channel (so that the loop need not
/// look for every datagram, and an answer is found even if the wake-up is lost).
#[derive(Clone)]
struct Waker(Arc<UdpSocket>, SocketAddr, Arc<AtomicBool>);

impl Waker {
    fn wake(&self) {
        self.2.store(true, Ordering::Release);
        let mut to = self.1;
        if to.ip().is_unspecified() {
            to.set_ip(super::loopback(to));
        }
        let _ = self.0.send_to(&[], to);
    }
}

/// Stops a running [`Server`] from another thread.
#[derive(Clone)]
pub struct Stopper(Arc<AtomicBool>, Waker);

impl Stopper {
    /// Makes [`Server::run`] return.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
        self.1.wake();
    }
}

/// A blocking CoAP server with a resource table: requests are routed by path and
/// method (4.04 and 4.05 answered for you), bodies assembled from Block1 and served in
/// Block2, `/.well-known/core` generated from the table.
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
pub struct Server {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    core: Node,
    handlers: Vec<Handler>,
    fallback: Option<Handler>,
    rx: mpsc::Receiver<(IncomingHandle, Option<Response>)>,
    tx: mpsc::Sender<(IncomingHandle, Option<Response>)>,
    /// Raised when an answer was sent on `tx`.
    answered: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
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
    /// let server = Server::from_socket(socket, coap_proto::Config::default())?;
    /// # Ok::<(), coap_proto::net::Error>(())
    /// ```
    pub fn from_socket(socket: UdpSocket, config: Config) -> Result<Self, Error> {
        socket.set_nonblocking(false)?;
        let local = socket.local_addr()?;
        let (tx, rx) = mpsc::channel();
        Ok(Server {
            socket: Arc::new(socket),
            local,
            core: Node::new(config)?,
            handlers: Vec::new(),
            fallback: None,
            rx,
            tx,
            answered: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The endpoint's counters so far (from the thread that runs the server, or
    /// after [`run`](Self::run) returned).
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

    /// A handle that stops [`run`](Self::run) from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.stop.clone(), self.waker())
    }

    fn waker(&self) -> Waker {
        Waker(self.socket.clone(), self.local, self.answered.clone())
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
            if self.answered.swap(false, Ordering::Acquire) {
                for (id, response) in self.rx.try_iter() {
                    self.core.answer(now, id, response);
                }
            }
            let deadline = flush(&self.socket, &mut self.core, now)?;
            let got = receiver.recv(&self.socket, wait(now, deadline), &mut buf)?;
            now = clock.now();
            match got {
                // Empty datagrams are never CoAP: this one is a Responder or Stopper waking us.
                Some((0, _)) => {}
                Some((n, from)) => {
                    let (handlers, fallback) = (&mut self.handlers, &mut self.fallback);
                    let later =
                        self.core
                            .handle_datagram(now, from, &buf[..n], |resource, request, _| {
                                let handler = match resource {
                                    Some(i) => handlers.get_mut(i),
                                    None => fallback.as_mut(),
                                }?;
                                Some(match handler(request) {
                                    Reply::Now(response) => Handled::Now(response),
                                    Reply::Later(f) => Handled::Later(f),
                                })
                            });
                    if let Received::Later(id, f) = later {
                        f(Responder {
                            id,
                            tx: self.tx.clone(),
                            wake: self.waker(),
                            sent: false,
                        });
                    }
                }
                None if deadline.is_some_and(|d| d <= now) => self.core.handle_timeout(now),
                None => {}
            }
        }
        Ok(())
    }
}

/// How long to wait from `now` for a datagram before `deadline` is due.
fn wait(now: crate::Instant, deadline: Option<crate::Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(now))
}

/// Sends every datagram the core has; returns its next deadline.
fn flush(
    socket: &UdpSocket,
    core: &mut Node,
    now: crate::Instant,
) -> Result<Option<crate::Instant>, Error> {
    let step = core.poll(now, |to, datagram| {
        loop {
            match socket.send_to(datagram, to) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if super::is_loss(e.kind()) => return Ok(Sent::Done),
                Err(e) => return Err(e),
                Ok(_) => return Ok(Sent::Done),
            }
        }
    })?;
    match step {
        Step::Wait(deadline) => Ok(deadline),
        // A blocking send always takes the datagram.
        Step::Transmit(_) => Ok(Some(now)),
    }
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
        let want = wait.map_or(MAX_BLOCK, |w| w.min(MAX_BLOCK));
        if want.is_zero() {
            return Ok(None);
        }
        // A timeout longer than the wait would miss the deadline; one much shorter
        // than the wait would spin.
        if self.timeout.is_none_or(|t| t > want || t < want / 2) {
            socket.set_read_timeout(Some(want))?;
            self.timeout = Some(want);
        }
        loop {
            match socket.recv_from(buf) {
                Ok(got) => return Ok(Some(got)),
                // A signal: not a reason to stop serving.
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None);
                }
                // ICMP port unreachable for something we sent earlier: loss.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
