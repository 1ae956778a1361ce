//! The core of the blocking and tokio adapters, both roles on one endpoint: as a server
//! it routes requests through a resource table, assembles Block1 bodies, serves
//! `/.well-known/core`, and answers with a [`Response`] (block-wise when large); as a
//! client it runs [`Requests`]. No I/O, no handlers: the adapter runs the handler of the
//! resource index it is given. The server policies themselves — kept responses for the
//! follow-ups of unsafe requests, ETags of block-wise bodies, 5.00 for an abandoned
//! request — are the endpoint's.

use std::boxed::Box;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::vec::Vec;

use super::client::{Requests, Streamed};
use super::{Clock, Ep, Error, NetPeer, Request, Response, Sent, Step};
use crate::block::{Block1Assembler, KeptResponses};
use crate::resource::{LinkFormat, Resource, Route, route};
use crate::wire::{Block, Code, ContentFormat, Message, OptionNumber};
use crate::{Event, Incoming, IncomingHandle};

/// Largest Block1 body a server assembles.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// A request waiting for its handler's response.
struct Waiting {
    /// The request datagram: the Block2 it asks for decides the slice served.
    request: Vec<u8>,
    /// The Block1 to echo in the response.
    echo: Option<Block>,
    /// The resource it is for, if observable (its answer may register an observer).
    observable: Option<u16>,
}

/// Block-wise responses of unsafe requests kept at once for their follow-ups.
const KEPT: usize = 4;

/// What an adapter's handler made of a request: the response, or what the adapter
/// needs to answer later (a task, a responder).
pub(crate) enum Handled<L> {
    Now(Response),
    Later(L),
}

/// Whether `message` carries Block1 or Block2 (a block of an upload, or a request for a
/// block of the response).
fn is_blockwise(message: &Message<'_>) -> bool {
    message
        .options()
        .any(|o| matches!(o.number, OptionNumber::BLOCK1 | OptionNumber::BLOCK2))
}

/// The earlier of two optional instants.
pub(crate) fn earliest(
    a: Option<crate::Instant>,
    b: Option<crate::Instant>,
) -> Option<crate::Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What a datagram brought.
pub(crate) enum Received<'b, L> {
    /// Nothing for the adapter: handled, answered, or not for us.
    Nothing,
    /// A request whose handler will answer later, with what the handler gave for that.
    Later(IncomingHandle, L),
    /// A block of a streamed response.
    Block(Streamed<'b>),
}

/// Both roles of an adapter on one endpoint (of the adapter's capacities).
pub(crate) struct Node<
    P: NetPeer = SocketAddr,
    const E: usize = 64,
    const B: usize = 16,
    const M: usize = 1152,
    const D: usize = 512,
    const R: usize = 32768,
> {
    pub(crate) ep: Box<Ep<P, E, B, M, D, R>>,
    /// The client role.
    pub(crate) requests: Requests<P>,
    pub(crate) clock: Clock,
    pub(crate) table: Vec<Resource<'static>>,
    pub(crate) has_fallback: bool,
    assembler: Box<Block1Assembler<P, 4, MAX_BODY>>,
    waiting: HashMap<IncomingHandle, Waiting>,
    /// Block-wise responses to unsafe methods (POST, PUT …), kept for the client's
    /// follow-up Block2 requests: running the handler again would repeat the action.
    kept: Box<KeptResponses<P, KEPT, MAX_BODY>>,
    /// Answers that found no message buffer free, tried again at every drain.
    retry: VecDeque<(IncomingHandle, Response)>,
    /// Whether this drain has tried them already.
    retried: bool,
    /// The request handed to handlers, refilled in place for each one.
    request: Request,
    /// The latest state notified per observable resource, for observers still due.
    latest: HashMap<u16, (bool, Response)>,
    pub(crate) out: Vec<u8>,
    /// Over DTLS: the address and PSK identity of the session whose datagram is being
    /// handled, for the [`Request`] handlers see (set by the adapter).
    origin: Option<SocketAddr>,
    identity: Option<Vec<u8>>,
    /// Client: give a GET's or FETCH's buffer back at its empty ACK
    /// ([`RequestOptions::release_on_ack`](crate::RequestOptions)); the tokio client
    /// sets it, and sends a request again that then got its separate response in blocks.
    pub(crate) release_on_ack: bool,
}

impl<P: NetPeer, const E: usize, const B: usize, const M: usize, const D: usize, const R: usize>
    Node<P, E, B, M, D, R>
{
    pub(crate) fn new(config: crate::Config) -> Result<Self, Error> {
        Ok(Node {
            ep: Box::new(Ep::new(config)?),
            requests: Requests::default(),
            clock: Clock::new(),
            table: Vec::new(),
            has_fallback: false,
            assembler: Box::new(Block1Assembler::new()),
            waiting: HashMap::new(),
            kept: Box::new(KeptResponses::new()),
            retry: VecDeque::new(),
            retried: false,
            request: Request::new(Code::GET, "/"),
            latest: HashMap::new(),
            out: Vec::new(),
            origin: None,
            identity: None,
            release_on_ack: false,
        })
    }

    /// Takes a datagram. A request for a handler goes to `handler` with the index of its
    /// resource (`None`: the fallback) and the request as the handler sees it; an answer
    /// given at once is sent from here (piggybacked), one promised for later is returned
    /// with the request's handle. A `None` from `handler` abandons the request. A
    /// response goes to the client role.
    pub(crate) fn handle_datagram<'b, L>(
        &mut self,
        now: crate::Instant,
        from: P,
        datagram: &'b [u8],
        handler: impl FnOnce(Option<usize>, &Request, &Message<'_>) -> Option<Handled<L>>,
    ) -> Received<'b, L> {
        self.dispatch(now, from, datagram, None, handler)
    }

    /// [`handle_datagram`](Self::handle_datagram) for a datagram that came to this
    /// endpoint's address (`leisure` `None`) or to a group with that Leisure (RFC 7252
    /// §8.2).
    pub(crate) fn dispatch<'b, L>(
        &mut self,
        now: crate::Instant,
        from: P,
        datagram: &'b [u8],
        leisure: Option<core::time::Duration>,
        handler: impl FnOnce(Option<usize>, &Request, &Message<'_>) -> Option<Handled<L>>,
    ) -> Received<'b, L> {
        super::log_datagram("received from", from, datagram);
        let incoming = match leisure {
            Some(leisure) => self.ep.handle_group_datagram(now, from, datagram, leisure),
            None => self.ep.handle_datagram(now, from, datagram),
        };
        match incoming {
            Some(Incoming::Request { handle, message }) => {
                let group = leisure.is_some();
                match self.on_request(now, from, handle, message, group, handler) {
                    Some((id, later)) => Received::Later(id, later),
                    None => Received::Nothing,
                }
            }
            Some(Incoming::Response {
                handle,
                message,
                block,
            }) => match self.on_response(now, from, handle, &message, block) {
                Some(streamed) => Received::Block(streamed),
                None => Received::Nothing,
            },
            None => Received::Nothing,
        }
    }

    fn on_request<L>(
        &mut self,
        now: crate::Instant,
        from: P,
        handle: IncomingHandle,
        message: Message<'_>,
        group: bool,
        handler: impl FnOnce(Option<usize>, &Request, &Message<'_>) -> Option<Handled<L>>,
    ) -> Option<(IncomingHandle, L)> {
        let resource = match route(&self.table, &message) {
            Route::Resource(i) => Some(i),
            Route::NotFound if self.has_fallback => None,
            Route::WellKnownCore => {
                let doc = LinkFormat::for_request(&self.table, &message);
                if group && doc.is_empty() {
                    // RFC 6690 §4.1: a group query that matches no link is not
                    // answered. (The endpoint sends no error answer to a group.)
                    let _ = self.ep.abandon(now, handle);
                    return None;
                }
                let _ = self.ep.respond_block2_with(
                    now,
                    handle,
                    &message,
                    Code::CONTENT,
                    doc.len(),
                    |offset, out| {
                        doc.write_at(offset, out);
                    },
                    |b| b.content_format(ContentFormat::LINK_FORMAT).map(drop),
                );
                return None;
            }
            other => {
                let code = other.error_code().unwrap_or(Code::INTERNAL_SERVER_ERROR);
                let _ = self.ep.respond(now, handle, code, |_| Ok(()));
                return None;
            }
        };
        let fresh = resource.and_then(|i| self.table[i].needs_fresh(message.code()));
        // RFC 9175 §2.3: checked once per operation, at its first message (a later block
        // of the upload belongs to an operation found fresh).
        let first = !matches!(message.block1(), Ok(Some(b)) if b.num() > 0);
        if let Some(max_age) = fresh.filter(|_| first) {
            if self
                .ep
                .echo_age(now, from, &message)
                .is_none_or(|age| age > max_age)
            {
                let _ = self.ep.challenge(now, handle);
                return None;
            }
        }
        let echo = if is_blockwise(&message) {
            if let Ok(true) = self
                .ep
                .respond_from_kept(now, handle, &message, &mut self.kept)
            {
                return None;
            }
            match self
                .ep
                .assemble_block1(now, handle, &message, &mut self.assembler)
            {
                Ok(Some(body)) => {
                    self.request
                        .fill_from(&message, self.origin.or(from.socket_addr()), body.body);
                    self.request.identity.clone_from(&self.identity);
                    body.echo
                }
                // Answered already: 2.31 Continue, or an error.
                _ => return None,
            }
        } else {
            // Neither a block of an upload nor a follow-up: the payload is the body.
            self.request.fill_from(
                &message,
                self.origin.or(from.socket_addr()),
                message.payload(),
            );
            self.request.identity.clone_from(&self.identity);
            None
        };
        match handler(resource, &self.request, &message) {
            Some(Handled::Now(response)) => {
                let observable = self.observable(resource);
                match self.send_response(now, handle, &message, echo, observable, &response) {
                    Err(crate::Error::BuffersFull) => {
                        self.wait(handle, &message, echo, observable);
                        self.retry.push_back((handle, response));
                    }
                    Err(_) => drop(self.ep.abandon(now, handle)),
                    Ok(()) => {}
                }
                None
            }
            Some(Handled::Later(later)) => {
                let observable = self.observable(resource);
                self.wait(handle, &message, echo, observable);
                Some((handle, later))
            }
            None => {
                let _ = self.ep.abandon(now, handle);
                None
            }
        }
    }

    /// The address and PSK identity of the DTLS session whose datagram comes next.
    #[cfg_attr(not(feature = "dtls"), allow(dead_code))]
    pub(crate) fn set_origin(&mut self, addr: Option<SocketAddr>, identity: Option<&[u8]>) {
        self.origin = addr;
        match (identity, &mut self.identity) {
            (Some(new), Some(old)) if new == &old[..] => {}
            (new, old) => *old = new.map(<[u8]>::to_vec),
        }
    }

    /// Keeps what answering `id` later needs.
    fn wait(
        &mut self,
        id: IncomingHandle,
        request: &Message<'_>,
        echo: Option<Block>,
        observable: Option<u16>,
    ) {
        self.waiting.insert(
            id,
            Waiting {
                request: request.as_bytes().to_vec(),
                echo,
                observable,
            },
        );
    }

    /// The number of table resource `resource` if it is observable.
    fn observable(&self, resource: Option<usize>) -> Option<u16> {
        let i = resource?;
        self.table.get(i).filter(|r| r.obs).map(|_| i as u16)
    }

    /// Resource `index` of the table changed: every observer gets `response` (NON, CON
    /// once a day or when `confirmable`). Kept as the resource's latest state, so that
    /// observers left due for want of room get it when room frees.
    pub(crate) fn notify(
        &mut self,
        now: crate::Instant,
        index: u16,
        confirmable: bool,
        response: Response,
        due_only: bool,
    ) {
        // A body larger than a block goes as its first block (RFC 7959 §2.6); the
        // observers fetch the rest from the resource's handler.
        let (code, body) = (response.code, &response.payload[..]);
        let build = |b: &mut crate::wire::MessageBuilder<'_>| response.write_options(b);
        let _ = if due_only {
            self.ep
                .notify_body_due(now, index, confirmable, code, body, build)
        } else {
            self.ep
                .notify_body(now, index, confirmable, code, body, build)
        };
        self.latest.insert(index, (confirmable, response));
    }

    /// Sends `response` to `request`: piggybacked if still possible, block-wise when the
    /// body is larger than a block or the request asked for a block.
    fn send_response(
        &mut self,
        now: crate::Instant,
        id: IncomingHandle,
        request: &Message<'_>,
        echo: Option<Block>,
        observable: Option<u16>,
        response: &Response,
    ) -> Result<(), crate::Error> {
        // A response that fits one message, to a request that asked for no block: sent
        // as it is, without the block-wise machinery (which would come to the same).
        // For an observable resource it may register the client (RFC 7641).
        // To an address not known to be the peer's, the block-wise paths choose a block
        // size within the amplification budget (RFC 9175 §2.4) where this one would
        // have to answer 4.01 with Echo.
        let single = 16 << self.ep.config().max_block_szx.min(6);
        if echo.is_none()
            && response.payload.len() <= single
            && !is_blockwise(request)
            && self.ep.answer_limit(now, id).is_none()
        {
            let build = |b: &mut crate::wire::MessageBuilder<'_>| {
                response.write_options(b)?;
                b.payload(&response.payload).map(drop)
            };
            let sent = match observable {
                Some(r) => self
                    .ep
                    .respond_observe(now, id, r, response.code, build)
                    .map(drop),
                None => self.ep.respond(now, id, response.code, build),
            };
            // Options too large for a whole body: block-wise below makes room.
            if !matches!(sent, Err(crate::Error::Build(_))) {
                return sent;
            }
        }
        // An observable resource registers with its first block too; the client fetches
        // the rest with plain GETs, served below (RFC 7959 §2.6).
        let first = matches!(request.block2(), Ok(b) if b.is_none_or(|b| b.num() == 0));
        if let (Some(r), None, true) = (observable, echo, first) {
            let sent = self
                .ep
                .respond_observe_body(now, id, r, response.code, &response.payload, |b| {
                    response.write_options(b)
                })
                .map(drop);
            // Options too large for a whole body: block-wise below makes room.
            if !matches!(sent, Err(crate::Error::Build(_))) {
                return sent;
            }
        }
        self.ep.respond_block2_kept(
            now,
            id,
            request,
            response.code,
            &response.payload,
            &mut self.kept,
            |b| {
                if let Some(echo) = echo {
                    b.block1(echo)?;
                }
                response.write_options(b)
            },
        )
    }

    /// Answers request `id`, which waited for its handler, with `response`.
    pub(crate) fn respond(&mut self, now: crate::Instant, id: IncomingHandle, response: Response) {
        let Some(waiting) = self.waiting.remove(&id) else {
            return;
        };
        let Ok(request) = Message::parse(&waiting.request) else {
            return;
        };
        let observable = waiting.observable;
        match self.send_response(now, id, &request, waiting.echo, observable, &response) {
            Err(crate::Error::BuffersFull) => {
                // Every buffer holds a message that must be kept: try again later.
                self.waiting.insert(id, waiting);
                self.retry.push_back((id, response));
            }
            // The options did not fit: tell the client rather than leave it waiting.
            Err(_) => drop(self.ep.abandon(now, id)),
            Ok(()) => {}
        }
    }

    /// Gives up on request `id`: the client gets 5.00 (the core's answer for an
    /// abandoned request).
    pub(crate) fn abandon(&mut self, now: crate::Instant, id: IncomingHandle) {
        if self.waiting.remove(&id).is_some() {
            let _ = self.ep.abandon(now, id);
        }
    }

    /// Answers `id` with `response`, or abandons it when there is none (its handler
    /// dropped the means to answer, or panicked).
    pub(crate) fn answer(
        &mut self,
        now: crate::Instant,
        id: IncomingHandle,
        response: Option<Response>,
    ) {
        match response {
            Some(r) => self.respond(now, id, r),
            None => self.abandon(now, id),
        }
    }

    /// Requests waiting for their handler's answer, and answers waiting for a buffer.
    #[cfg_attr(not(fuzzing), allow(dead_code))]
    pub(crate) fn backlog(&self) -> (usize, usize) {
        (self.waiting.len(), self.retry.len())
    }

    pub(crate) fn handle_timeout(&mut self, now: crate::Instant) {
        self.ep.handle_timeout(now);
    }
}

impl<P: NetPeer, const E: usize, const B: usize, const M: usize, const D: usize, const R: usize>
    Node<P, E, B, M, D, R>
{
    /// Drains the endpoint: datagrams go to `send` straight from the endpoint's buffer
    /// (no copy); one it cannot take now is copied to [`out`](Self::out) and handed
    /// back. Events go to the client and server roles. Ends at the next deadline.
    pub(crate) fn poll(
        &mut self,
        now: crate::Instant,
        mut send: impl FnMut(P, &[u8]) -> std::io::Result<Sent>,
    ) -> Result<Step<P>, Error> {
        let next_give_up = earliest(self.give_up_due(now), self.refresh_due(now));
        // Once per drain, not per datagram sent: a buffer frees between drains.
        if !self.retried {
            self.retried = true;
            for _ in 0..self.retry.len() {
                if let Some((id, response)) = self.retry.pop_front() {
                    self.respond(now, id, response);
                }
            }
        }
        loop {
            let event = match self.ep.poll_output(now) {
                crate::Output::Transmit(t) => {
                    super::log_datagram("sent to", t.to, t.data);
                    if let Sent::WouldBlock = send(t.to, t.data)? {
                        self.out.clear();
                        self.out.extend_from_slice(t.data);
                        return Ok(Step::Transmit(t.to));
                    }
                    continue;
                }
                crate::Output::Timeout(deadline) => {
                    self.retried = false;
                    return Ok(Step::Wait(earliest(deadline, next_give_up)));
                }
                crate::Output::Event(event) => event,
            };
            match event {
                Event::RequestExpired(id) | Event::RequestRefused(id) => {
                    self.waiting.remove(&id);
                    self.retry.retain(|(r, _)| *r != id);
                }
                Event::NotificationsDue(index) => {
                    if let Some((con, response)) = self.latest.get(&index).cloned() {
                        self.notify(now, index, con, response, true);
                    }
                }
                event => drop(self.on_event(now, event)),
            }
        }
    }

    /// The datagram of the last [`Step::Transmit`].
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn out(&self) -> &[u8] {
        &self.out
    }

    /// The adapter's clock.
    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }
}
