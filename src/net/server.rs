//! The server half shared by the blocking and tokio adapters: routes requests through
//! a resource table, assembles Block1 bodies, serves `/.well-known/core`, and answers
//! with a [`Response`] (block-wise when large). No I/O, no handlers: the adapter runs
//! the handler of the resource index it is given.

use std::boxed::Box;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::vec::Vec;

use super::{Clock, Core, Ep, Error, Request, Response, Step};
use crate::block::Block1Assembler;
use crate::resource::{LinkFormat, Resource, Route, route};
use crate::wire::{Block, Code, ContentFormat, Message};
use crate::{Event, Incoming, IncomingHandle};

/// Largest Block1 body a server assembles.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// A request waiting for its handler's response.
struct Waiting {
    /// The request datagram: the Block2 it asks for decides the slice served.
    request: Vec<u8>,
    /// The Block1 to echo in the response.
    echo: Option<Block>,
    peer: Option<SocketAddr>,
}

/// A request for the adapter to run a handler on.
pub(crate) struct Work {
    pub(crate) id: IncomingHandle,
    /// Index of the resource in the table; `None` for the fallback handler.
    pub(crate) resource: Option<usize>,
    pub(crate) request: Request,
}

pub(crate) struct ServerCore {
    pub(crate) ep: Box<Ep>,
    pub(crate) clock: Clock,
    pub(crate) table: Vec<Resource<'static>>,
    pub(crate) has_fallback: bool,
    assembler: Box<Block1Assembler<SocketAddr, 4, MAX_BODY>>,
    waiting: HashMap<IncomingHandle, Waiting>,
    /// Block-wise responses to unsafe methods (POST, PUT …), kept for the client's
    /// follow-up Block2 requests: running the handler again would repeat the action.
    kept: Vec<Kept>,
    pub(crate) out: Vec<u8>,
}

/// How many block-wise responses to unsafe requests are kept, and for how long.
const KEPT: usize = 16;
const KEEP_FOR: core::time::Duration = core::time::Duration::from_secs(60);

struct Kept {
    key: u64,
    until: crate::Instant,
    response: Response,
}

impl ServerCore {
    pub(crate) fn new(config: crate::Config) -> Result<Self, Error> {
        Ok(ServerCore {
            ep: super::new_endpoint(config)?,
            clock: Clock::new(),
            table: Vec::new(),
            has_fallback: false,
            assembler: Box::new(Block1Assembler::new()),
            waiting: HashMap::new(),
            kept: Vec::new(),
            out: Vec::new(),
        })
    }

    /// Takes a datagram; returns the request a handler has to answer, if any.
    pub(crate) fn handle_datagram(&mut self, from: SocketAddr, datagram: &[u8]) -> Option<Work> {
        let now = self.clock.now();
        let Some(Incoming::Request { handle, message }) =
            self.ep.handle_datagram(now, from, datagram)
        else {
            return None;
        };
        let resource = match route(&self.table, &message) {
            Route::Resource(i) => Some(i),
            Route::NotFound if self.has_fallback => None,
            Route::WellKnownCore => {
                let doc = LinkFormat::for_request(&self.table, &message);
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
        if let Some(i) = self.kept_for(from, &message) {
            let kept = &self.kept[i].response;
            let _ = self
                .ep
                .respond_block2(now, handle, &message, kept.code, &kept.payload, |b| {
                    kept.write_options(b)
                });
            return None;
        }
        let body = match self
            .ep
            .assemble_block1(now, handle, &message, &mut self.assembler)
        {
            Ok(Some(body)) => body,
            // Answered already: 2.31 Continue, or an error.
            _ => return None,
        };
        let request = Request::from_message(&message, from, body.body);
        self.waiting.insert(
            handle,
            Waiting {
                request: message.as_bytes().to_vec(),
                echo: body.echo,
                peer: Some(from),
            },
        );
        Some(Work {
            id: handle,
            resource,
            request,
        })
    }

    /// Answers request `id` with `response`: piggybacked if still possible, block-wise
    /// when the body is larger than a block or the request asked for a block.
    pub(crate) fn respond(&mut self, id: IncomingHandle, mut response: Response) {
        let Some(waiting) = self.waiting.remove(&id) else {
            return;
        };
        let Ok(request) = Message::parse(&waiting.request) else {
            return;
        };
        let blockwise = response.payload.len() > 1024 || matches!(request.block2(), Ok(Some(_)));
        if blockwise && response.etag.is_none() {
            // Blocks are served from the handler's answer to each block request; the
            // ETag lets the client notice if the body changed in between (RFC 7959 §2.4).
            response.etag = Some(digest(|h| response.payload.hash(h)).to_be_bytes()[4..].to_vec());
        }
        let now = self.clock.now();
        if blockwise && !is_safe(request.code()) {
            if let Some(peer) = waiting.peer {
                self.kept.retain(|k| k.until > now);
                if self.kept.len() == KEPT {
                    self.kept.remove(0);
                }
                self.kept.push(Kept {
                    key: response_key(peer, &request),
                    until: now + KEEP_FOR,
                    response: response.clone(),
                });
            }
        }
        let code = response.code;
        let result = self
            .ep
            .respond_block2(now, id, &request, code, &response.payload, |b| {
                if let Some(echo) = waiting.echo {
                    b.block1(echo)?;
                }
                response.write_options(b)
            });
        if result.is_err() {
            // The options did not fit: tell the client rather than leave it waiting.
            let _ = self
                .ep
                .respond(now, id, Code::INTERNAL_SERVER_ERROR, |_| Ok(()));
        }
    }

    /// The kept response a follow-up Block2 request of an unsafe method asks for.
    fn kept_for(&self, peer: SocketAddr, request: &Message<'_>) -> Option<usize> {
        let follow_up = matches!(request.block2(), Ok(Some(b)) if b.num() > 0);
        if !follow_up || is_safe(request.code()) {
            return None;
        }
        let key = response_key(peer, request);
        let now = self.clock.now();
        self.kept
            .iter()
            .rposition(|k| k.key == key && k.until > now)
    }

    pub(crate) fn handle_timeout(&mut self) {
        self.ep.handle_timeout(self.clock.now());
    }
}

/// GET and FETCH may run again for each block; other methods may not.
fn is_safe(code: Code) -> bool {
    code == Code::GET || code == Code::FETCH
}

/// Identifies the responses of one resource to one client.
fn response_key(peer: SocketAddr, request: &Message<'_>) -> u64 {
    digest(|h| {
        peer.hash(h);
        request.code().to_u8().hash(h);
        request.uri_path().for_each(|s| s.hash(h));
        request.uri_query().for_each(|s| s.hash(h));
    })
}

/// A 64-bit digest (SipHash with fixed keys: the same on every run).
fn digest(feed: impl FnOnce(&mut DefaultHasher)) -> u64 {
    let mut h = DefaultHasher::new();
    feed(&mut h);
    h.finish()
}

impl Core for ServerCore {
    fn poll(&mut self) -> Step {
        loop {
            let now = self.clock.now();
            match super::poll(&mut self.ep, now, &mut self.out) {
                Ok(step) => return step,
                Err(Event::RequestExpired(id)) => {
                    self.waiting.remove(&id);
                }
                Err(_) => {}
            }
        }
    }

    fn out(&self) -> &[u8] {
        &self.out
    }

    fn clock(&self) -> Clock {
        self.clock
    }
}
