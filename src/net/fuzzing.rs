//! The std server's core without a socket, for the `server` fuzz target: routing,
//! Block1 assembly, kept responses and the endpoint at the capacities the blocking and
//! tokio servers run with. Built only under `--cfg fuzzing` (as cargo-fuzz builds);
//! not part of the API.

use std::cell::Cell;
use std::net::SocketAddr;
use std::vec::Vec;

use super::server::{Handled, Node, Received};
use super::{Request, Response, Sent, Step};
use crate::resource::Resource;
use crate::{IncomingHandle, Instant};

std::thread_local! {
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The clock the adapters read while a harness runs on this thread.
pub(crate) fn now() -> Option<Instant> {
    NOW.with(Cell::get)
}

/// A request the fuzz target has to run a handler for.
#[derive(Debug)]
pub struct Work {
    /// What to answer with.
    pub id: IncomingHandle,
    /// Index of the resource in the table (`None`: the fallback).
    pub resource: Option<usize>,
    /// The request as a handler sees it.
    pub request: Request,
    /// Its message ID.
    pub mid: u16,
    /// Its Block2 block number, if it asked for one.
    pub block2_num: Option<u32>,
}

/// The std server core with a clock set by the caller.
pub struct ServerHarness {
    core: Node,
}

impl ServerHarness {
    /// A server core with `resources` and a fallback handler; the clock starts at zero.
    /// An odd `seed` turns amplification mitigation on (RFC 9175 §2.4).
    pub fn new(seed: u64, resources: &[Resource<'static>]) -> Self {
        NOW.with(|n| n.set(Some(Instant::ZERO)));
        // An odd seed runs it as the std and tokio servers run, with amplification
        // mitigation; an even one without, so that requests from unverified peers
        // reach the handlers.
        let config = crate::Config {
            seed,
            amplification: (seed & 1 == 1).then_some(crate::Amplification::RFC9175),
            ..crate::Config::default()
        };
        let mut core = Node::new(config).expect("default parameters are valid");
        core.table.extend_from_slice(resources);
        core.has_fallback = true;
        ServerHarness { core }
    }

    /// Sets the clock (it never goes back: the endpoint clamps).
    pub fn set_now(&mut self, now: Instant) {
        NOW.with(|n| n.set(Some(now)));
    }

    /// Takes a datagram; returns the request a handler has to answer, if any (every
    /// handler here answers later, through [`answer`](Self::answer)).
    pub fn handle_datagram(&mut self, from: SocketAddr, datagram: &[u8]) -> Option<Work> {
        let now = self.core.clock().now();
        let received =
            self.core
                .handle_datagram(now, from, datagram, |resource, request, message| {
                    Some(Handled::Later((
                        resource,
                        request.clone(),
                        message.message_id(),
                        message.block2().ok().flatten().map(|b| b.num()),
                    )))
                });
        match received {
            Received::Later(id, (resource, request, mid, block2_num)) => Some(Work {
                id,
                resource,
                request,
                mid,
                block2_num,
            }),
            _ => None,
        }
    }

    /// Answers (or, with `None`, abandons) a request.
    pub fn answer(&mut self, id: IncomingHandle, response: Option<Response>) {
        let now = self.core.clock().now();
        self.core.answer(now, id, response);
    }

    /// Observable resource `index` changed: its observers get `response`.
    pub fn notify(&mut self, index: u16, confirmable: bool, response: Response) {
        let now = self.core.clock().now();
        self.core.notify(now, index, confirmable, response, false);
    }

    /// Fires due timers.
    pub fn handle_timeout(&mut self) {
        let now = self.core.clock().now();
        self.core.handle_timeout(now);
    }

    /// Everything the core has to send now, and its next deadline.
    pub fn drain(&mut self) -> (Vec<(SocketAddr, Vec<u8>)>, Option<Instant>) {
        let mut sent = Vec::new();
        let now = self.core.clock().now();
        let step = self.core.poll(now, |to, datagram| {
            assert!(sent.len() < 10_000, "the server core never settles");
            sent.push((to, datagram.to_vec()));
            Ok(Sent::Done)
        });
        match step {
            Ok(Step::Wait(deadline)) => (sent, deadline),
            _ => unreachable!("every datagram was taken"),
        }
    }

    /// Requests waiting for an answer, and answers waiting for a buffer: both bounded by
    /// the endpoint's records.
    pub fn backlog(&self) -> (usize, usize) {
        self.core.backlog()
    }

    /// The endpoint's counters.
    pub fn stats(&self) -> crate::Stats {
        self.core.ep.stats()
    }

    /// Checks the dedup cache's bookkeeping (panics on a mismatch).
    pub fn check(&self) {
        self.core.ep.dedup().check();
    }
}
