//! The server half shared by the blocking and tokio adapters: routes requests through
//! a resource table, assembles Block1 bodies, serves `/.well-known/core`, and answers
//! with a [`Response`] (block-wise when large). No I/O, no handlers: the adapter runs
//! the handler of the resource index it is given. The server policies themselves —
//! kept responses for the follow-ups of unsafe requests, ETags of block-wise bodies,
//! 5.00 for an abandoned request — are the core's.

use std::boxed::Box;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::vec::Vec;

use super::{Clock, Core, Ep, Error, Request, Response, Step};
use crate::block::{Block1Assembler, KeptResponses};
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
}

/// Block-wise responses of unsafe requests kept at once for their follow-ups.
const KEPT: usize = 4;

/// A request for the adapter to run a handler on.
pub(crate) struct Work {
    pub(crate) id: IncomingHandle,
    /// Index of the resource in the table; `None` for the fallback handler.
    pub(crate) resource: Option<usize>,
    pub(crate) request: Request,
    /// The request's message ID and Block2 (for the fuzzing oracles).
    #[cfg_attr(not(fuzzing), allow(dead_code))]
    pub(crate) mid: u16,
    #[cfg_attr(not(fuzzing), allow(dead_code))]
    pub(crate) block2: Option<Block>,
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
    kept: Box<KeptResponses<SocketAddr, KEPT, MAX_BODY>>,
    /// Answers that found no message buffer free, tried again at every drain.
    retry: VecDeque<(IncomingHandle, Response)>,
    /// Whether this drain has tried them already.
    retried: bool,
    pub(crate) out: Vec<u8>,
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
            kept: Box::new(KeptResponses::new()),
            retry: VecDeque::new(),
            retried: false,
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
        if let Ok(true) = self
            .ep
            .respond_from_kept(now, handle, &message, &mut self.kept)
        {
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
            },
        );
        Some(Work {
            id: handle,
            resource,
            request,
            mid: message.message_id(),
            block2: message.block2().ok().flatten(),
        })
    }

    /// Answers request `id` with `response`: piggybacked if still possible, block-wise
    /// when the body is larger than a block or the request asked for a block.
    pub(crate) fn respond(&mut self, id: IncomingHandle, response: Response) {
        let Some(waiting) = self.waiting.get(&id) else {
            return;
        };
        let Ok(request) = Message::parse(&waiting.request) else {
            return;
        };
        let now = self.clock.now();
        let echo = waiting.echo;
        let result = self.ep.respond_block2_kept(
            now,
            id,
            &request,
            response.code,
            &response.payload,
            &mut self.kept,
            |b| {
                if let Some(echo) = echo {
                    b.block1(echo)?;
                }
                response.write_options(b)
            },
        );
        match result {
            Err(crate::Error::BuffersFull) => {
                // Every buffer holds a message that must be kept: try again later.
                self.retry.push_back((id, response));
                return;
            }
            Err(_) => {
                // The options did not fit: tell the client rather than leave it waiting.
                let _ = self.ep.abandon(now, id);
            }
            Ok(()) => {}
        }
        self.waiting.remove(&id);
    }

    /// Gives up on request `id`: the client gets 5.00 (the core's answer for an
    /// abandoned request).
    pub(crate) fn abandon(&mut self, id: IncomingHandle) {
        if self.waiting.remove(&id).is_some() {
            let _ = self.ep.abandon(self.clock.now(), id);
        }
    }

    /// Answers `id` with `response`, or abandons it when there is none (its handler
    /// dropped the means to answer, or panicked).
    pub(crate) fn answer(&mut self, id: IncomingHandle, response: Option<Response>) {
        match response {
            Some(r) => self.respond(id, r),
            None => self.abandon(id),
        }
    }

    /// Requests waiting for their handler's answer, and answers waiting for a buffer.
    #[cfg_attr(not(fuzzing), allow(dead_code))]
    pub(crate) fn backlog(&self) -> (usize, usize) {
        (self.waiting.len(), self.retry.len())
    }

    pub(crate) fn handle_timeout(&mut self) {
        self.ep.handle_timeout(self.clock.now());
    }
}

impl Core for ServerCore {
    fn poll(&mut self) -> Step {
        // Once per drain, not per datagram sent: a buffer frees between drains.
        if !self.retried {
            self.retried = true;
            for _ in 0..self.retry.len() {
                if let Some((id, response)) = self.retry.pop_front() {
                    self.respond(id, response);
                }
            }
        }
        loop {
            let now = self.clock.now();
            match super::poll(&mut self.ep, now, &mut self.out) {
                Ok(step @ Step::Wait(_)) => {
                    self.retried = false;
                    return step;
                }
                Ok(step) => return step,
                Err(Event::RequestExpired(id) | Event::RequestRefused(id)) => {
                    self.waiting.remove(&id);
                    self.retry.retain(|(r, _)| *r != id);
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
