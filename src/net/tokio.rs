//! An async client and server over tokio's `UdpSocket` (feature `tokio`).
//!
//! Each runs the endpoint's loop in one task that owns the socket: it sends what
//! [`poll_output`](crate::Endpoint::poll_output) has, then takes the next datagram, a
//! command, an answer or the next deadline, whichever comes first. Handlers that answer
//! at once run inline in that task (no task, no channel per request); those that
//! answer later get a task of their own.
//!
//! ```no_run
//! use coap_proto::net::tokio::Client;
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), coap_proto::net::Error> {
//!     let client = Client::connect("127.0.0.1:5683").await?;
//!     // Many requests at once over one socket.
//!     let (a, b) = tokio::join!(client.get("/time"), client.get("/"));
//!     println!("{} / {}", a?.code, b?.code);
//!     Ok(())
//! }
//! ```

use std::boxed::Box;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::vec::Vec;

use tokio::net::{UdpSocket, lookup_host};
use tokio::sync::{mpsc, oneshot};

use super::client::{BlockSource, Outcome};
use super::server::{Handled, Node, Received};
use super::{
    Error, Group, GroupResponse, Peer, Request, Response, Sent, Step, ToPeer, Transport, Udp,
    is_loss,
};
use crate::resource::Resource;
use crate::wire::Code;
use crate::{Config, IncomingHandle, RequestHandle, Stats};

type Blocks = mpsc::UnboundedSender<(usize, Vec<u8>, bool)>;

/// A request for the loop to start.
struct Start {
    id: u64,
    peer: SocketAddr,
    req: Box<Request>,
    source: Option<BlockSource>,
    blocks: Option<Blocks>,
    /// For an observation: where its notifications go.
    notifications: Option<mpsc::UnboundedSender<Response>>,
    /// For a group request: where its members' answers go when it ends.
    group: Option<oneshot::Sender<Vec<GroupResponse>>>,
    reply: oneshot::Sender<Outcome>,
}

enum Command {
    Start(Start),
    Cancel(u64),
    Stats(oneshot::Sender<Stats>),
    /// An observable resource (its index) changed.
    Notify(u16, bool, Response),
}

/// Tells the observers of one observable resource (RFC 7641) that it changed, from any
/// task or thread: see [`Server::observable`].
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::UnboundedSender<Command>,
    resource: u16,
}

impl Notifier {
    /// Every observer gets `response` as a notification (NON; CON at least once a day
    /// per observer). A response with a code other than 2.xx is the last one.
    pub fn notify(&self, response: Response) {
        let _ = self
            .tx
            .send(Command::Notify(self.resource, false, response));
    }

    /// [`notify`](Self::notify) with CON notifications, each retransmitted until
    /// acknowledged; an observer that never acknowledges is forgotten.
    pub fn notify_confirmable(&self, response: Response) {
        let _ = self.tx.send(Command::Notify(self.resource, true, response));
    }
}

/// An async CoAP client: cheap to clone, any number of requests at once over one
/// socket. Requests beyond what the endpoint can hold in flight wait their turn, first
/// come first served; dropping a request's future cancels it, waiting or in flight.
///
/// In flight with the default capacities (256 exchange records, 16 message buffers of
/// 1,152 bytes; see [`from_socket_sized`](Self::from_socket_sized)): over 250 requests
/// waiting for separate responses (a GET or FETCH gives its buffer back at the empty
/// ACK, RFC 7252 §5.2.2, and is sent again, keeping it, if the answer then comes in
/// blocks), and 14 whose buffer must stay until acknowledged or answered (CON requests
/// not yet acknowledged, uploads, other methods), two buffers being kept for answers
/// given at once. NSTART (RFC 7252 §4.7, default 1) paces how many are unacknowledged
/// at once per server. [`Request::retry_busy`](super::Request::retry_busy) sends a
/// request refused with 4.29 or 5.03 again after its Max-Age.
///
/// ```no_run
/// use coap_proto::net::tokio::Client;
/// use coap_proto::net::Request;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), coap_proto::net::Error> {
/// let client = Client::connect("coap://127.0.0.1").await?;
/// let temperature = client.get("/sensors/temp?unit=C").await?;
/// let stored = client.request(Request::put("/config").payload("on")).await?;
/// println!("{temperature} / {stored}");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    tx: mpsc::UnboundedSender<Command>,
    peer: SocketAddr,
    next_id: Arc<AtomicU64>,
}

impl Client {
    /// A client for `server` (see [`ToPeer`]) with a random seed; spawns its task on the
    /// current runtime.
    pub async fn connect(server: impl ToPeer) -> Result<Self, Error> {
        Self::with_config(server, super::default_config()).await
    }

    /// [`connect`](Self::connect) with an endpoint configuration.
    pub async fn with_config(server: impl ToPeer, config: Config) -> Result<Self, Error> {
        let peer = resolve(server).await?;
        let socket = UdpSocket::bind(super::local_for(peer)).await?;
        Self::from_socket(socket, peer, config)
    }

    /// A client on a socket the caller set up (bound to an interface, with multicast
    /// hops or buffer sizes), for `server`.
    pub fn from_socket(
        socket: UdpSocket,
        server: SocketAddr,
        config: Config,
    ) -> Result<Self, Error> {
        Self::from_socket_sized::<256, 16, 1152, 512, 32768>(socket, server, config)
    }

    /// [`from_socket`](Self::from_socket) with an endpoint of other capacities than the
    /// default ones (the parameters of [`Endpoint`](crate::Endpoint)): requests beyond
    /// what it holds wait their turn.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), coap_proto::net::Error> {
    /// use coap_proto::net::tokio::Client;
    /// let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    /// let server = "127.0.0.1:5683".parse().unwrap();
    /// // 256 requests in flight at once.
    /// let client = Client::from_socket_sized::<256, 258, 1152, 512, 32768>(
    ///     socket,
    ///     server,
    ///     coap_proto::net::default_config(),
    /// )?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_socket_sized<
        const EXCHANGES: usize,
        const BUFFERS: usize,
        const MSG_BYTES: usize,
        const DEDUP_ENTRIES: usize,
        const REPLY_BYTES: usize,
    >(
        socket: UdpSocket,
        server: SocketAddr,
        config: Config,
    ) -> Result<Self, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let node =
            Node::<SocketAddr, EXCHANGES, BUFFERS, MSG_BYTES, DEDUP_ENTRIES, REPLY_BYTES>::new(
                config,
            )?;
        let driver =
            Driver::new(socket, node, Udp::default(), Handlers::default(), rx).for_client(&tx);
        tokio::spawn(async move {
            // A client's task ends when every handle is gone or the socket fails; the
            // requests still open then end with `Error::Closed`.
            let _ = driver.run().await;
        });
        Ok(Client::on(tx, server))
    }

    /// A `coaps://` client (RFC 7252 §9.1, feature `dtls`) with the pre-shared `key`
    /// under `identity`, for `server` (`coaps://host[:port]`, default port 5684). The
    /// handshake runs with the first request; a wrong key or unknown identity ends
    /// every request with [`Error::Dtls`] after the handshake timeout (10 s).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), coap_proto::net::Error> {
    /// let client = coap_proto::net::tokio::Client::connect_psk("coaps://127.0.0.1", "sensor-7", "secret").await?;
    /// let temp = client.get("/temp").await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "dtls")]
    pub async fn connect_psk(
        server: impl ToPeer,
        identity: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Result<Self, Error> {
        if server.secure_scheme() == Some(false) {
            return Err(Error::Uri(crate::uri::UriError::UnsupportedScheme));
        }
        let peer = resolve(server).await?;
        let socket = UdpSocket::bind(super::local_for(peer)).await?;
        let sessions = crate::dtls::Sessions::client(identity, key, crate::dtls::Limits::default())
            .map_err(Error::Dtls)?;
        Self::from_socket_psk(socket, peer, sessions, super::default_config())
    }

    /// [`connect_psk`](Self::connect_psk) on a socket, with a session table and an
    /// endpoint configuration of the caller's.
    #[cfg(feature = "dtls")]
    pub fn from_socket_psk(
        socket: UdpSocket,
        server: SocketAddr,
        sessions: crate::dtls::Sessions,
        config: Config,
    ) -> Result<Self, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let node = Node::<crate::dtls::SessionId>::new(config)?;
        let mut transport = super::Dtls::new(sessions);
        transport
            .connect(node.clock().now(), server)
            .map_err(Error::Dtls)?;
        let driver = Driver::new(socket, node, transport, Handlers::default(), rx).for_client(&tx);
        tokio::spawn(async move {
            let _ = driver.run().await;
        });
        Ok(Client::on(tx, server))
    }

    fn on(tx: mpsc::UnboundedSender<Command>, peer: SocketAddr) -> Self {
        Client {
            tx,
            peer,
            next_id: Arc::default(),
        }
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The endpoint's counters (messages, retransmissions, duplicates, refusals).
    pub async fn stats(&self) -> Result<Stats, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Stats(tx))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Sends `req` to the server; resolves to the response (the whole body of a
    /// block-wise one).
    pub async fn request(&self, req: Request) -> Result<Response, Error> {
        self.request_to(self.peer, req).await
    }

    /// [`request`](Self::request) to another peer.
    pub async fn request_to(&self, peer: SocketAddr, req: Request) -> Result<Response, Error> {
        self.start(peer, req, None, None).await
    }

    /// GET `path` (`/path?query`).
    pub async fn get(&self, path: &str) -> Result<Response, Error> {
        self.request(Request::get(path)).await
    }

    /// PUT `payload` to `path` (block-wise if over 1024 bytes).
    pub async fn put(&self, path: &str, payload: &[u8]) -> Result<Response, Error> {
        self.request(Request::put(path).payload(payload)).await
    }

    /// POST `payload` to `path` (block-wise if over 1024 bytes).
    pub async fn post(&self, path: &str, payload: &[u8]) -> Result<Response, Error> {
        self.request(Request::post(path).payload(payload)).await
    }

    /// DELETE `path`.
    pub async fn delete(&self, path: &str) -> Result<Response, Error> {
        self.request(Request::delete(path)).await
    }

    /// A request with `method` to `url` (`coap://host[:port]/path?query`).
    pub async fn request_url(
        &self,
        method: Code,
        url: &str,
        payload: &[u8],
    ) -> Result<Response, Error> {
        let (req, host, port) = Request::from_uri(method, url)?;
        let peer = resolve((host.as_str(), port)).await?;
        self.request_to(peer, req.payload(payload)).await
    }

    /// Sends `req` (asking for Block2 blocks of `2^(szx+4)` bytes) and hands each block
    /// to `on_block(offset, bytes, last)` as it arrives; resolves to the response head.
    pub async fn get_blockwise(
        &self,
        req: Request,
        mut on_block: impl FnMut(usize, &[u8], bool),
    ) -> Result<Response, Error> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let response = self.start(self.peer, req, None, Some(tx));
        tokio::pin!(response);
        loop {
            tokio::select! {
                biased;
                Some((offset, data, last)) = rx.recv() => on_block(offset, &data, last),
                result = &mut response => {
                    while let Ok((offset, data, last)) = rx.try_recv() {
                        on_block(offset, &data, last);
                    }
                    return result;
                }
            }
        }
    }

    /// Observes `req`'s resource (RFC 7641): sends it with Observe: 0; the returned
    /// [`Observation`] yields every notification — the first answer included, newest
    /// states only — until the observation ends. Dropping it forgets the observation
    /// (the server's next notification gets RST).
    ///
    /// ```no_run
    /// use coap_proto::net::Request;
    /// # async fn f(client: coap_proto::net::tokio::Client) -> Result<(), coap_proto::net::Error> {
    /// let mut time = client.observe(Request::get("/time")).await?;
    /// while let Some(n) = time.next().await {
    ///     println!("{}", n.payload_str().unwrap_or("?"));
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn observe(&self, mut req: Request) -> Result<Observation, Error> {
        req.observe = true;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, done) = oneshot::channel();
        let (tx, notifications) = mpsc::unbounded_channel();
        let start = Start {
            id,
            peer: self.peer,
            req: Box::new(req),
            source: None,
            blocks: None,
            notifications: Some(tx),
            group: None,
            reply,
        };
        self.tx
            .send(Command::Start(start))
            .map_err(|_| Error::Closed)?;
        Ok(Observation {
            notifications,
            done,
            cancel: (self.tx.clone(), id),
        })
    }

    /// Uploads `method` to `path` in Block1 blocks of `2^(szx+4)` bytes produced by
    /// `next(offset, block) -> (length, more)`.
    pub async fn upload_with(
        &self,
        method: Code,
        path: &str,
        szx: u8,
        next: impl FnMut(usize, &mut [u8]) -> (usize, bool) + Send + 'static,
    ) -> Result<Response, Error> {
        let req = Request::new(method, path).block1(szx);
        self.start(self.peer, req, Some(Box::new(next)), None).await
    }

    /// Sends `req` to `group` as NON and resolves to every member's answer, with its
    /// source, once the collection window (`req.timeout`, default 8 s) closed: the
    /// blocking client's [`group_request`](super::blocking::Client::group_request). The
    /// socket's multicast TTL and interface are set on the socket given to
    /// [`from_socket`](Self::from_socket).
    pub async fn group_request(
        &self,
        group: SocketAddr,
        mut req: Request,
    ) -> Result<Vec<GroupResponse>, Error> {
        req.group = true;
        req.non_confirmable = true;
        req.observe = false;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        let (answers_tx, answers) = oneshot::channel();
        let start = Start {
            id,
            peer: group,
            req: Box::new(req),
            source: None,
            blocks: None,
            notifications: None,
            group: Some(answers_tx),
            reply,
        };
        self.tx
            .send(Command::Start(start))
            .map_err(|_| Error::Closed)?;
        let cancel = CancelOnDrop(&self.tx, id, false);
        // The answers are sent just before the request's reply sender is dropped: look
        // at them first.
        let got = tokio::select! {
            biased;
            answers = answers => answers.map_err(|_| Error::Closed),
            outcome = rx => match outcome {
                Ok(Err(e)) => Err(e),
                _ => Err(Error::Closed),
            },
        };
        cancel.disarm();
        got
    }

    async fn start(
        &self,
        peer: SocketAddr,
        req: Request,
        source: Option<BlockSource>,
        blocks: Option<Blocks>,
    ) -> Outcome {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        let start = Start {
            id,
            peer,
            req: Box::new(req),
            source,
            blocks,
            notifications: None,
            group: None,
            reply,
        };
        self.tx
            .send(Command::Start(start))
            .map_err(|_| Error::Closed)?;
        let cancel = CancelOnDrop(&self.tx, id, false);
        let outcome = rx.await.unwrap_or(Err(Error::Closed));
        cancel.disarm();
        outcome
    }
}

/// Cancels request `.1` if the future waiting for it is dropped before it resolved.
struct CancelOnDrop<'a>(&'a mpsc::UnboundedSender<Command>, u64, bool);

impl CancelOnDrop<'_> {
    fn disarm(mut self) {
        self.2 = true;
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.2 {
            let _ = self.0.send(Command::Cancel(self.1));
        }
    }
}

/// An observation started by [`Client::observe`]: its notifications, newest state
/// only. Dropped, the observation ends: the server is sent a GET with Observe: 1 and the
/// observation's token (RFC 7641 §3.6), as libcoap's and aiocoap's clients do.
pub struct Observation {
    notifications: mpsc::UnboundedReceiver<Response>,
    done: oneshot::Receiver<Outcome>,
    cancel: (mpsc::UnboundedSender<Command>, u64),
}

impl Observation {
    /// The next notification; `None` once the observation ended (the server declined
    /// it or sent a final response, which came before; or it stopped answering: see
    /// [`end`](Self::end)).
    pub async fn next(&mut self) -> Option<Response> {
        self.notifications.recv().await
    }

    /// How the observation ended, once [`next`](Self::next) returned `None`: `Ok` for
    /// a declined or final answer, the error otherwise.
    pub async fn end(mut self) -> Result<(), Error> {
        match (&mut self.done).await {
            Ok(outcome) => outcome.map(drop),
            Err(_) => Err(Error::Closed),
        }
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        let _ = self.cancel.0.send(Command::Cancel(self.cancel.1));
    }
}

/// What a handler answers: at once, or later from a future.
///
/// ```no_run
/// use coap_proto::net::Response;
/// use coap_proto::net::tokio::{Reply, Server};
/// use coap_proto::resource::{Methods, Resource};
///
/// # async fn f() -> Result<(), coap_proto::net::Error> {
/// let mut server = Server::bind("127.0.0.1:5683").await?;
/// server.resource(Resource::new("/now", Methods::GET), |_| Response::content("at once").into());
/// server.resource(Resource::new("/later", Methods::GET), |req| {
///     let who = req.peer;
///     Reply::later(async move {
///         tokio::time::sleep(std::time::Duration::from_secs(3)).await;
///         Response::content(format!("later, {who:?}"))
///     })
/// });
/// # Ok(())
/// # }
/// ```
pub enum Reply {
    /// The response, sent at once (piggybacked on the ACK).
    Now(Response),
    /// A future that resolves to the response. It runs in a task of its own; the
    /// request is acknowledged (empty ACK) if it takes longer than the endpoint's
    /// `empty_ack_delay`, and answered as a separate response.
    Later(Pin<Box<dyn Future<Output = Response> + Send>>),
}

impl From<Response> for Reply {
    fn from(r: Response) -> Self {
        Reply::Now(r)
    }
}

impl Reply {
    /// [`Reply::Later`] from a future.
    pub fn later(future: impl Future<Output = Response> + Send + 'static) -> Self {
        Reply::Later(Box::pin(future))
    }
}

type Handler = Box<dyn FnMut(&Request) -> Reply + Send>;

/// The server's handlers: one per resource, and the fallback.
#[derive(Default)]
struct Handlers {
    resources: Vec<Handler>,
    fallback: Option<Handler>,
}

/// An async CoAP server with a resource table. A handler gets the request as
/// `&Request` (as the blocking server's do) and answers with a [`Reply`]: at once, run
/// inline in the server's task, or with a future that gets a task of its own (see
/// [`resource_async`](Self::resource_async)). The server sends requests too, from the
/// same socket: see [`client`](Self::client).
///
/// ```no_run
/// use coap_proto::net::tokio::{Reply, Server};
/// use coap_proto::net::Response;
/// use coap_proto::resource::{Methods, Resource};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), coap_proto::net::Error> {
/// let mut server = Server::bind("127.0.0.1:5683").await?;
/// server.resource(Resource::new("/hello", Methods::GET), |_req| {
///     Response::content("hello").into()
/// });
/// server.resource_async(Resource::new("/slow", Methods::GET), |_req| async {
///     tokio::time::sleep(std::time::Duration::from_secs(2)).await;
///     Response::content("done")
/// });
/// server.run().await
/// # }
/// ```
pub struct Server<
    const EXCHANGES: usize = 64,
    const BUFFERS: usize = 16,
    const MSG_BYTES: usize = 1152,
    const DEDUP_ENTRIES: usize = 512,
    const REPLY_BYTES: usize = 32768,
    T: Transport = Udp,
> {
    driver: Driver<T, EXCHANGES, BUFFERS, MSG_BYTES, DEDUP_ENTRIES, REPLY_BYTES>,
    tx: mpsc::UnboundedSender<Command>,
}

impl Server {
    /// A server on `addr`, with a random seed and a 100 ms empty-ACK delay (so that a
    /// handler answering within 100 ms still gets its answer piggybacked).
    pub async fn bind(addr: impl tokio::net::ToSocketAddrs) -> Result<Self, Error> {
        let config = Config {
            empty_ack_delay: core::time::Duration::from_millis(100),
            ..super::default_config()
        };
        Self::with_config(addr, config).await
    }

    /// [`bind`](Self::bind) with an endpoint configuration.
    pub async fn with_config(
        addr: impl tokio::net::ToSocketAddrs,
        config: Config,
    ) -> Result<Self, Error> {
        Self::from_socket(UdpSocket::bind(addr).await?, config)
    }

    /// A server on a socket the caller set up (joined to a multicast group, bound to an
    /// interface, with larger buffers).
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
    pub fn from_socket_sized(socket: UdpSocket, config: Config) -> Result<Self, Error> {
        Self::over(socket, config, Udp::default())
    }

    /// Joins `group` (RFC 7252 §8), as the blocking server's
    /// [`join_group`](super::blocking::Server::join_group) does: its datagrams are
    /// served as group requests once [`run`](Self::run) runs, in a task of their own;
    /// the server must be bound to a unicast address. Memberships are set before `run`
    /// (which takes the server); they end with it.
    pub fn join_group(&mut self, group: Group) -> Result<(), Error> {
        let port = self.driver.socket.local_addr()?.port();
        let socket = group.join_once(self.groups(), port)?;
        socket.set_nonblocking(true)?;
        self.driver.groups.push((group, socket));
        Ok(())
    }

    /// Leaves a group joined with [`join_group`](Self::join_group) before `run`.
    /// `false` if it was not joined.
    pub fn leave_group(&mut self, address: std::net::IpAddr) -> bool {
        let before = self.driver.groups.len();
        self.driver.groups.retain(|(g, _)| g.address != address);
        self.driver.groups.len() != before
    }

    /// The groups joined.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.driver.groups.iter().map(|(g, _)| g)
    }
}

#[cfg(feature = "dtls")]
impl Server<64, 16, 1152, 512, 32768, super::Dtls> {
    /// A `coaps://` server on `addr` (RFC 7252 §9.1, feature `dtls`): clients connect
    /// with an identity and key of `keys`; handlers see the identity in
    /// [`Request::identity`]. A 100 ms empty-ACK delay, as [`bind`](Server::bind).
    pub async fn bind_psk(
        addr: impl tokio::net::ToSocketAddrs,
        keys: crate::dtls::KeyStore,
    ) -> Result<Self, Error> {
        let sessions = crate::dtls::Sessions::server(keys, crate::dtls::Limits::default())
            .map_err(Error::Dtls)?;
        let config = Config {
            empty_ack_delay: core::time::Duration::from_millis(100),
            ..super::default_config()
        };
        Self::from_socket_psk(UdpSocket::bind(addr).await?, sessions, config)
    }

    /// [`bind_psk`](Self::bind_psk) on a socket, with a session table and an endpoint
    /// configuration of the caller's.
    pub fn from_socket_psk(
        socket: UdpSocket,
        sessions: crate::dtls::Sessions,
        config: Config,
    ) -> Result<Self, Error> {
        Self::over(socket, super::over_dtls(config), super::Dtls::new(sessions))
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
    fn over(socket: UdpSocket, config: Config, transport: T) -> Result<Self, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Server {
            driver: Driver::new(
                socket,
                Node::new(config)?,
                transport,
                Handlers::default(),
                rx,
            ),
            tx,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.driver.socket.local_addr()?)
    }

    /// The endpoint's counters so far.
    pub fn stats(&self) -> Stats {
        self.driver.node.ep.stats()
    }

    /// A client that sends its requests from this server's socket (to `peer` unless
    /// told otherwise): a device that serves resources and asks others on one port. Its
    /// requests start once [`run`](Self::run) runs.
    pub fn client(&self, peer: SocketAddr) -> Client {
        Client::on(self.tx.clone(), peer)
    }

    /// Adds a resource and its handler, which answers with a [`Reply`].
    pub fn resource(
        &mut self,
        resource: Resource<'static>,
        handler: impl FnMut(&Request) -> Reply + Send + 'static,
    ) -> &mut Self {
        self.driver.node.table.push(resource);
        self.driver.handlers.resources.push(Box::new(handler));
        self
    }

    /// Adds a resource whose handler is async: it gets its own copy of the request, and
    /// its future a task of its own.
    pub fn resource_async<F, Fut>(&mut self, resource: Resource<'static>, handler: F) -> &mut Self
    where
        F: Fn(Request) -> Fut + Send + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        self.resource(resource, move |req| Reply::later(handler(req.clone())))
    }

    /// Adds an observable resource (RFC 7641; listed with `obs` in
    /// `/.well-known/core`): a GET with Observe: 0 that its handler answers with 2.xx
    /// registers the client; the returned [`Notifier`] sends every observer the new state.
    ///
    /// ```no_run
    /// use coap_proto::net::Response;
    /// use coap_proto::net::tokio::Server;
    /// use coap_proto::resource::{Methods, Resource};
    ///
    /// # async fn f() -> Result<(), coap_proto::net::Error> {
    /// let mut server = Server::bind("127.0.0.1:5683").await?;
    /// let temp = server.observable(Resource::new("/temp", Methods::GET), |_| {
    ///     Response::content("21.5").into()
    /// });
    /// tokio::spawn(async move {
    ///     tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    ///     temp.notify(Response::content("21.6"));
    /// });
    /// server.run().await
    /// # }
    /// ```
    pub fn observable(
        &mut self,
        resource: Resource<'static>,
        handler: impl FnMut(&Request) -> Reply + Send + 'static,
    ) -> Notifier {
        let index = self.driver.node.table.len() as u16;
        self.resource(resource.obs(), handler);
        Notifier {
            tx: self.tx.clone(),
            resource: index,
        }
    }

    /// A handler for paths not in the table (instead of 4.04).
    pub fn fallback(
        &mut self,
        handler: impl FnMut(&Request) -> Reply + Send + 'static,
    ) -> &mut Self {
        self.driver.node.has_fallback = true;
        self.driver.handlers.fallback = Some(Box::new(handler));
        self
    }

    /// An async handler for paths not in the table (instead of 4.04).
    pub fn fallback_async<F, Fut>(&mut self, handler: F) -> &mut Self
    where
        F: Fn(Request) -> Fut + Send + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        self.fallback(move |req| Reply::later(handler(req.clone())))
    }

    /// Serves until a socket error.
    pub async fn run(self) -> Result<(), Error> {
        let Server { driver, tx } = self;
        // The server's own sender keeps the command channel open while it runs.
        let _keep = tx;
        driver.run().await
    }
}

/// A request the client role has in flight.
struct InFlight {
    id: u64,
    reply: oneshot::Sender<Outcome>,
    blocks: Option<Blocks>,
    notifications: Option<mpsc::UnboundedSender<Response>>,
    group: Option<oneshot::Sender<Vec<GroupResponse>>>,
    /// The request and its target, to send it again (a block-wise separate response
    /// after its buffer was released; a 4.29 or 5.03 with `retry_busy`). `None` for an
    /// upload from a block source, which cannot be sent twice.
    again: Option<(SocketAddr, Box<Request>)>,
}

/// The loop both roles run in: one socket, one endpoint, the handlers, the client's
/// requests (in flight, and waiting their turn).
struct Driver<
    T: Transport,
    const E: usize,
    const B: usize,
    const M: usize,
    const D: usize,
    const R: usize,
> {
    socket: UdpSocket,
    node: Node<T::Peer, E, B, M, D, R>,
    transport: T,
    handlers: Handlers,
    commands: mpsc::UnboundedReceiver<Command>,
    in_flight: HashMap<RequestHandle, InFlight>,
    ids: HashMap<u64, RequestHandle>,
    /// Requests the endpoint had no room for yet, in the order they came.
    queued: VecDeque<Start>,
    /// The groups joined, with their sockets, until `run` starts receiving on them.
    groups: Vec<(Group, std::net::UdpSocket)>,
    /// A client's own command channel, weakly (it must not keep the driver alive),
    /// for requests sent again later (`finish`).
    again: Option<mpsc::WeakUnboundedSender<Command>>,
    /// Requests started so far (a change means datagrams to flush).
    starts: u64,
}

/// Where async handlers' answers go: `None` abandons the request.
type AnswerSender = mpsc::UnboundedSender<(IncomingHandle, Option<Response>)>;

impl<T: Transport, const E: usize, const B: usize, const M: usize, const D: usize, const R: usize>
    Driver<T, E, B, M, D, R>
{
    fn new(
        socket: UdpSocket,
        node: Node<T::Peer, E, B, M, D, R>,
        transport: T,
        handlers: Handlers,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        Driver {
            socket,
            node,
            transport,
            handlers,
            commands,
            in_flight: HashMap::new(),
            ids: HashMap::new(),
            queued: VecDeque::new(),
            groups: Vec::new(),
            again: None,
            starts: 0,
        }
    }

    /// A client's driver: requests sent again go through `commands`, and a GET or
    /// FETCH waiting for its separate response holds no message buffer.
    fn for_client(mut self, commands: &mpsc::UnboundedSender<Command>) -> Self {
        self.again = Some(commands.downgrade());
        self.node.release_on_ack = true;
        self
    }

    async fn run(mut self) -> Result<(), Error> {
        let (answer_tx, mut answers) = mpsc::unbounded_channel();
        let mut buf = std::vec![0u8; 2048];
        let clock = self.node.clock();
        let mut now = clock.now();
        let sleep = tokio::time::sleep(std::time::Duration::ZERO);
        tokio::pin!(sleep);
        let mut armed: Option<crate::Instant> = None;
        let mut commands_open = true;
        // Each group's datagrams come from a task of its own, which ends with the loop.
        let (group_tx, mut group_rx) = mpsc::unbounded_channel();
        let in_groups = !self.groups.is_empty();
        for (group, socket) in self.groups.drain(..) {
            let socket = UdpSocket::from_std(socket)?;
            tokio::spawn(receive_group(socket, group.leisure, group_tx.clone()));
        }
        drop(group_tx);
        loop {
            self.settle(now);
            let deadline = flush(&self.socket, &mut self.node, &mut self.transport, now).await?;
            let starts = self.starts;
            self.settle(now);
            if self.starts != starts {
                // A request started after the flush (room freed, or one sent again):
                // its datagram goes out before the loop waits.
                continue;
            }
            // Under load the next datagram is there already: take it without a trip
            // through the select below.
            match self.socket.try_recv_from(&mut buf) {
                Ok((n, from)) => {
                    now = clock.now();
                    self.on_datagram(now, from, &buf[..n], &answer_tx);
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if is_loss(e.kind()) => continue,
                Err(e) => return Err(e.into()),
            }
            // A client every handle of which is gone, with nothing left to do.
            let serving = !self.handlers.resources.is_empty() || self.handlers.fallback.is_some();
            if !commands_open && !serving && self.in_flight.is_empty() && self.queued.is_empty() {
                return Ok(());
            }
            if deadline != armed {
                if let Some(d) = deadline {
                    let at = tokio::time::Instant::now() + clock.until(d);
                    sleep.as_mut().reset(at);
                }
                armed = deadline;
            }
            tokio::select! {
                biased;
                Some((id, response)) = answers.recv() => {
                    now = clock.now();
                    self.node.answer(now, id, response);
                }
                command = self.commands.recv(), if commands_open => {
                    now = clock.now();
                    match command {
                        Some(command) => self.on_command(now, command),
                        None => commands_open = false,
                    }
                }
                ready = self.socket.readable() => {
                    ready?;
                }
                Some((from, datagram, leisure)) = group_rx.recv(), if in_groups => {
                    now = clock.now();
                    if let Some(peer) = self.transport.peer_for(from) {
                        self.node.set_origin(None, None);
                        on_message(
                            &mut self.node,
                            &mut self.handlers,
                            &self.in_flight,
                            now,
                            (peer, Some(leisure)),
                            &datagram,
                            &answer_tx,
                        );
                    }
                }
                () = &mut sleep, if armed.is_some() => {
                    now = clock.now();
                    armed = None;
                    self.node.handle_timeout(now);
                    self.transport.handle_timeout(now);
                }
            }
        }
    }

    fn on_datagram(
        &mut self,
        now: crate::Instant,
        from: SocketAddr,
        datagram: &[u8],
        answer_tx: &AnswerSender,
    ) {
        self.transport.receive(now, from, datagram);
        while let Some((peer, bytes, addr, identity)) = self.transport.next_message(from, datagram)
        {
            self.node.set_origin(addr, identity);
            on_message(
                &mut self.node,
                &mut self.handlers,
                &self.in_flight,
                now,
                (peer, None),
                bytes,
                answer_tx,
            );
        }
    }
}

/// One message for the core: a request for the handlers, or a response (a block of a
/// streamed one goes to its request's sink).
fn on_message<
    P: super::NetPeer,
    const E: usize,
    const B: usize,
    const M: usize,
    const D: usize,
    const R: usize,
>(
    node: &mut Node<P, E, B, M, D, R>,
    handlers: &mut Handlers,
    in_flight: &HashMap<RequestHandle, InFlight>,
    now: crate::Instant,
    (from, leisure): (P, Option<core::time::Duration>),
    datagram: &[u8],
    answer_tx: &AnswerSender,
) {
    {
        let handler = |resource: Option<usize>, request: &Request, _: &crate::wire::Message<'_>| {
            let handler = match resource {
                Some(i) => handlers.resources.get_mut(i),
                None => handlers.fallback.as_mut(),
            }?;
            Some(match handler(request) {
                Reply::Now(response) => Handled::Now(response),
                Reply::Later(future) => Handled::Later(future),
            })
        };
        match node.dispatch(now, from, datagram, leisure, handler) {
            Received::Nothing => {}
            Received::Later(id, future) => {
                let mut answer = Answer(Some((answer_tx.clone(), id)));
                tokio::spawn(async move {
                    let response = future.await;
                    answer.send(Some(response));
                });
            }
            Received::Block(block) => {
                let sink = in_flight.get(&block.handle).and_then(|r| r.blocks.as_ref());
                if sink.is_some_and(|s| {
                    s.send((block.offset, block.data.to_vec(), block.last))
                        .is_err()
                }) {
                    let handle = block.handle;
                    node.stop(now, handle);
                }
            }
        }
    }
}

impl<T: Transport, const E: usize, const B: usize, const M: usize, const D: usize, const R: usize>
    Driver<T, E, B, M, D, R>
{
    fn on_command(&mut self, now: crate::Instant, command: Command) {
        match command {
            Command::Start(start) => {
                self.queued.push_back(start);
                self.start_queued(now);
            }
            Command::Cancel(id) => {
                if let Some(handle) = self.ids.remove(&id) {
                    self.in_flight.remove(&handle);
                    // An observation is ended on the wire (RFC 7641 §3.6); the driver
                    // sends the deregistration and absorbs its answer.
                    self.node.cancel_observation(now, handle);
                } else {
                    self.queued.retain(|s| s.id != id);
                }
            }
            Command::Stats(reply) => drop(reply.send(self.node.ep.stats())),
            Command::Notify(index, confirmable, response) => {
                self.node.notify(now, index, confirmable, response, false);
            }
        }
    }

    /// Starts waiting requests in their order while the endpoint has room.
    fn start_queued(&mut self, now: crate::Instant) {
        while let Some(mut start) = self.queued.pop_front() {
            if start.reply.is_closed() {
                continue;
            }
            let stream = start.blocks.is_some();
            let Some(peer) = self.transport.peer_for(start.peer) else {
                let _ = start.reply.send(Err(super::no_session()));
                continue;
            };
            let repeatable = start.source.is_none();
            match self
                .node
                .start(now, peer, &start.req, stream, &mut start.source)
            {
                Ok(handle) => {
                    self.starts += 1;
                    self.ids.insert(start.id, handle);
                    let in_flight = InFlight {
                        id: start.id,
                        reply: start.reply,
                        blocks: start.blocks,
                        notifications: start.notifications,
                        group: start.group,
                        again: repeatable.then_some((start.peer, start.req)),
                    };
                    self.in_flight.insert(handle, in_flight);
                }
                Err(Error::Endpoint(crate::Error::TableFull | crate::Error::BuffersFull)) => {
                    // No room until a request in flight finishes (`settle` calls
                    // again then); the others behind this one keep their place.
                    self.queued.push_front(start);
                    return;
                }
                Err(e) => drop(start.reply.send(Err(e))),
            }
        }
    }

    /// Hands a finished request its outcome, or sends it again: at once, keeping its
    /// buffer, when its separate response came in blocks after the buffer was released
    /// at the empty ACK; after the answer's Max-Age for a 4.29 or 5.03 when the request
    /// asked (`Request::retry_busy`).
    fn finish(&mut self, r: InFlight, outcome: Outcome) {
        let InFlight {
            id,
            reply,
            blocks,
            notifications,
            group,
            again,
        } = r;
        let Some((peer, mut req)) = again else {
            let _ = reply.send(outcome);
            return;
        };
        let delay = match &outcome {
            Err(Error::Block(crate::block::DownloadError::Released)) if !req.held => {
                req.held = true;
                None
            }
            Ok(response) => match req.retry_after(response) {
                Some(d) if req.timeout.is_none_or(|t| d < t) => Some(d),
                _ => {
                    let _ = reply.send(outcome);
                    return;
                }
            },
            _ => {
                let _ = reply.send(outcome);
                return;
            }
        };
        let start = Start {
            id,
            peer,
            req,
            source: None,
            blocks,
            notifications,
            group,
            reply,
        };
        let Some(delay) = delay else {
            self.queued.push_front(start);
            return;
        };
        let Some(commands) = self.again.clone() else {
            let _ = start.reply.send(outcome);
            return;
        };
        let mut start = start;
        start.req.retries += 1;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // The client may be gone by now: then nobody waits for the answer either.
            if let Some(tx) = commands.upgrade() {
                let _ = tx.send(Command::Start(start));
            }
        });
    }

    /// Hands finished requests their outcome and lets waiting ones take their place
    /// (records and buffers free up as requests finish and as served exchanges end).
    fn settle(&mut self, now: crate::Instant) {
        if let Some(e) = self.transport.failure() {
            // The client's DTLS session failed: every request ends with the reason.
            for (handle, r) in self.in_flight.drain() {
                self.node.cancel(now, handle);
                let _ = r.reply.send(Err(e.clone()));
            }
            self.ids.clear();
            for start in self.queued.drain(..) {
                let _ = start.reply.send(Err(e.clone()));
            }
        }
        let mut unwanted = Vec::new();
        for (handle, response) in self.node.requests.drain_notifications() {
            let sink = self
                .in_flight
                .get(&handle)
                .and_then(|r| r.notifications.as_ref());
            if sink.is_none_or(|s| s.send(response).is_err()) {
                unwanted.push(handle);
            }
        }
        for handle in unwanted {
            // Its `Observation` is gone: forget it (the next notification gets RST).
            if let Some(r) = self.in_flight.remove(&handle) {
                self.ids.remove(&r.id);
            }
            self.node.cancel(now, handle);
        }
        // Taken out whole, since `finish` needs the driver (no allocation per request).
        let mut finished = self.node.requests.take_finished();
        for (handle, outcome) in finished.drain(..) {
            if let Some(r) = self.in_flight.remove(&handle) {
                self.ids.remove(&r.id);
                self.finish(r, outcome);
            }
        }
        self.node.requests.give_back(finished);
        for (handle, answers) in self.node.requests.drain_groups() {
            if let Some(r) = self.in_flight.remove(&handle) {
                self.ids.remove(&r.id);
                if let Some(group) = r.group {
                    let _ = group.send(answers);
                }
            }
        }
        if !self.queued.is_empty() {
            self.start_queued(now);
        }
    }
}

/// Sends every datagram the core has (at once while the socket takes them, else
/// waiting until it can); returns its next deadline.
async fn flush<
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
    loop {
        let step = core.poll(now, |to, datagram| {
            transport.send(now, to, datagram, &mut |to, datagram| match socket
                .try_send_to(datagram, to)
            {
                Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(Sent::WouldBlock),
                Err(e) if is_loss(e.kind()) => Ok(Sent::Done),
                Err(e) => Err(e),
                Ok(_) => Ok(Sent::Done),
            })
        })?;
        // The transport's own datagrams (DTLS records) wait for the socket if need be.
        while let Some((to, datagram)) = transport.pop_transmit() {
            match socket.send_to(&datagram, to).await {
                Err(e) if !is_loss(e.kind()) => return Err(e.into()),
                _ => {}
            }
        }
        match step {
            // Only plain UDP hands a datagram back (DTLS queues its records).
            Step::Transmit(to) => {
                if let Some(to) = super::NetPeer::socket_addr(to) {
                    match socket.send_to(core.out(), to).await {
                        Err(e) if !is_loss(e.kind()) => return Err(e.into()),
                        _ => {}
                    }
                }
            }
            Step::Wait(deadline) => {
                return Ok(super::server::earliest(deadline, transport.next_timeout()));
            }
        }
    }
}

/// Sends a handler's response to the server loop; if the handler panics instead, the
/// request is abandoned (the endpoint answers 5.00), so that the client is not left
/// waiting.
struct Answer(Option<(AnswerSender, IncomingHandle)>);

impl Answer {
    fn send(&mut self, response: Option<Response>) {
        if let Some((tx, id)) = self.0.take() {
            let _ = tx.send((id, response));
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.send(None);
    }
}

/// Receives a group's datagrams and hands them to the server loop, until the loop ends.
async fn receive_group(
    socket: UdpSocket,
    leisure: core::time::Duration,
    to_loop: mpsc::UnboundedSender<(SocketAddr, Vec<u8>, core::time::Duration)>,
) {
    let mut buf = std::vec![0u8; 2048];
    loop {
        tokio::select! {
            got = socket.recv_from(&mut buf) => match got {
                Ok((0, _)) => {}
                Ok((n, from)) => {
                    if to_loop.send((from, buf[..n].to_vec(), leisure)).is_err() {
                        return;
                    }
                }
                Err(e) if is_loss(e.kind()) => {}
                Err(_) => return,
            },
            () = to_loop.closed() => return,
        }
    }
}

async fn resolve(peer: impl ToPeer) -> Result<SocketAddr, Error> {
    match peer.to_peer()? {
        Peer::Addr(a) => Ok(a),
        Peer::Name(host, port) => lookup_host((host.as_str(), port))
            .await?
            .next()
            .ok_or(Error::UnknownHost),
    }
}
