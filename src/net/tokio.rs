//! An async client and server over tokio's `UdpSocket` (feature `tokio`).
//!
//! Each runs the endpoint's loop in one task that owns the socket: it sends what
//! [`poll_output`](crate::Endpoint::poll_output) has, then waits for a datagram, a
//! command or the next deadline, whichever comes first.
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
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::vec::Vec;

use tokio::net::{ToSocketAddrs, UdpSocket, lookup_host};
use tokio::sync::{mpsc, oneshot};

use super::client::{BlockSource, ClientCore, Outcome};
use super::server::ServerCore;
use super::{Core, Error, Request, Response, Step};
use crate::resource::Resource;
use crate::wire::Code;
use crate::{Config, RequestHandle};

type Blocks = mpsc::UnboundedSender<(usize, Vec<u8>, bool)>;

enum Command {
    Start(
        u64,
        SocketAddr,
        Box<Request>,
        Option<BlockSource>,
        Option<Blocks>,
        oneshot::Sender<Outcome>,
    ),
    Cancel(u64),
}

/// An async CoAP client: cheap to clone, any number of requests in flight at once over
/// one socket. Dropping a request's future cancels the request.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::UnboundedSender<Command>,
    peer: SocketAddr,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl Client {
    /// A client for `server` with a random seed; spawns its task on the current runtime.
    pub async fn connect(server: impl ToSocketAddrs) -> Result<Self, Error> {
        Self::with_config(
            server,
            Config {
                seed: super::random_seed(),
                ..Config::default()
            },
        )
        .await
    }

    /// [`connect`](Self::connect) with an endpoint configuration.
    pub async fn with_config(server: impl ToSocketAddrs, config: Config) -> Result<Self, Error> {
        let peer = resolve(server).await?;
        let socket = UdpSocket::bind(super::local_for(peer)).await?;
        let core = ClientCore::new(config)?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(drive_client(socket, core, rx));
        Ok(Client {
            tx,
            peer,
            next_id: Arc::default(),
        })
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
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

    /// GET `path`.
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

    async fn start(
        &self,
        peer: SocketAddr,
        req: Request,
        source: Option<BlockSource>,
        blocks: Option<Blocks>,
    ) -> Outcome {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Start(
                id,
                peer,
                Box::new(req),
                source,
                blocks,
                reply,
            ))
            .map_err(|_| Error::Closed)?;
        // Cancels the request if this future is dropped before it resolves.
        struct Guard<'a>(&'a mpsc::UnboundedSender<Command>, u64, bool);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                if !self.2 {
                    let _ = self.0.send(Command::Cancel(self.1));
                }
            }
        }
        let mut guard = Guard(&self.tx, id, false);
        let outcome = rx.await.unwrap_or(Err(Error::Closed));
        guard.2 = true;
        outcome
    }
}

async fn drive_client(
    socket: UdpSocket,
    mut core: ClientCore,
    mut rx: mpsc::UnboundedReceiver<Command>,
) {
    let mut buf = std::vec![0u8; 2048];
    let mut waiting: HashMap<RequestHandle, (u64, oneshot::Sender<Outcome>, Option<Blocks>)> =
        HashMap::new();
    let mut ids: HashMap<u64, RequestHandle> = HashMap::new();
    loop {
        // A failed send is loss as far as CoAP goes: go on with the rest.
        let deadline = loop {
            if let Ok(deadline) = flush(&socket, &mut core).await {
                break deadline;
            }
        };
        for (handle, outcome) in core.drain_finished() {
            if let Some((id, reply, _)) = waiting.remove(&handle) {
                ids.remove(&id);
                let _ = reply.send(outcome);
            }
        }
        tokio::select! {
            command = rx.recv() => match command {
                None => return,
                Some(Command::Start(id, peer, req, source, blocks, reply)) => {
                    let req = *req;
                    match core.start(peer, &req, blocks.is_some(), source) {
                        Ok(handle) => {
                            ids.insert(id, handle);
                            waiting.insert(handle, (id, reply, blocks));
                        }
                        Err(e) => drop(reply.send(Err(e))),
                    }
                }
                Some(Command::Cancel(id)) => {
                    if let Some(handle) = ids.remove(&id) {
                        waiting.remove(&handle);
                        core.cancel(handle);
                    }
                }
            },
            received = socket.recv_from(&mut buf) => {
                // Errors (e.g. ICMP port unreachable) are loss as far as CoAP goes.
                if let Ok((n, from)) = received {
                    if let Some(block) = core.handle_datagram(from, &buf[..n]) {
                        let sink = waiting.get(&block.handle).and_then(|w| w.2.as_ref());
                        if sink.is_some_and(|s| s.send((block.offset, block.data.to_vec(), block.last)).is_err()) {
                            let handle = block.handle;
                            core.stop(handle);
                        }
                    }
                }
            }
            () = sleep(deadline.map(|d| core.clock.until(d))) => core.handle_timeout(),
        }
    }
}

/// Sends every datagram the core has; returns its next deadline.
async fn flush(socket: &UdpSocket, core: &mut impl Core) -> Result<Option<crate::Instant>, Error> {
    loop {
        match core.poll() {
            Step::Transmit(to) => {
                socket.send_to(core.out(), to).await?;
            }
            Step::Wait(deadline) => return Ok(deadline),
        }
    }
}

/// Sleeps for `wait`, or forever.
async fn sleep(wait: Option<std::time::Duration>) {
    match wait {
        Some(w) => tokio::time::sleep(w).await,
        None => std::future::pending().await,
    }
}

type Handler = Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

/// An async CoAP server with a resource table: each request runs its handler in a task
/// of its own; the answer is piggybacked if it comes within the endpoint's
/// `empty_ack_delay` (100 ms by default here), else sent as a separate response.
pub struct Server {
    socket: UdpSocket,
    core: ServerCore,
    handlers: Vec<Handler>,
    fallback: Option<Handler>,
}

impl Server {
    /// A server on `addr`, with a random seed and a 100 ms empty-ACK delay.
    pub async fn bind(addr: impl ToSocketAddrs) -> Result<Self, Error> {
        let config = Config {
            seed: super::random_seed(),
            empty_ack_delay: core::time::Duration::from_millis(100),
            ..Config::default()
        };
        Self::with_config(addr, config).await
    }

    /// [`bind`](Self::bind) with an endpoint configuration.
    pub async fn with_config(addr: impl ToSocketAddrs, config: Config) -> Result<Self, Error> {
        let socket = UdpSocket::bind(addr).await?;
        Ok(Server {
            socket,
            core: ServerCore::new(config)?,
            handlers: Vec::new(),
            fallback: None,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.socket.local_addr()?)
    }

    /// Adds a resource and its async handler.
    pub fn resource<F, Fut>(&mut self, resource: Resource<'static>, handler: F) -> &mut Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        self.core.table.push(resource);
        self.handlers.push(Arc::new(move |r| Box::pin(handler(r))));
        self
    }

    /// An async handler for paths not in the table (instead of 4.04).
    pub fn fallback<F, Fut>(&mut self, handler: F) -> &mut Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        self.core.has_fallback = true;
        self.fallback = Some(Arc::new(move |r| Box::pin(handler(r))));
        self
    }

    /// Serves until a socket error.
    pub async fn run(mut self) -> Result<(), Error> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut buf = std::vec![0u8; 2048];
        loop {
            let deadline = flush(&self.socket, &mut self.core).await?;
            let wait = deadline.map(|d| self.core.clock.until(d));
            tokio::select! {
                Some((id, response)) = rx.recv() => self.core.answer(id, response),
                received = self.socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = received else { continue };
                    let Some(work) = self.core.handle_datagram(from, &buf[..n]) else { continue };
                    let handler = match work.resource {
                        Some(i) => self.handlers.get(i),
                        None => self.fallback.as_ref(),
                    };
                    if let Some(handler) = handler.cloned() {
                        let mut answer = Answer(Some((tx.clone(), work.id)));
                        tokio::spawn(async move {
                            let response = handler(work.request).await;
                            answer.send(Some(response));
                        });
                    }
                }
                () = sleep(wait) => {
                    self.core.handle_timeout();
                }
            }
        }
    }
}

/// Sends a handler's response to the server loop; if the handler panics instead, the
/// request is abandoned (the endpoint answers 5.00), so that the client is not left
/// waiting.
struct Answer(Option<(AnswerSender, crate::IncomingHandle)>);

/// Where handlers' answers go: `None` abandons the request.
type AnswerSender = mpsc::UnboundedSender<(crate::IncomingHandle, Option<Response>)>;

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

async fn resolve(addr: impl ToSocketAddrs) -> Result<SocketAddr, Error> {
    lookup_host(addr).await?.next().ok_or(Error::UnknownHost)
}
