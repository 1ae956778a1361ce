//! The std server's core without a socket, for the `server` fuzz target: routing,
//! Block1 assembly, kept responses and the endpoint at the capacities the blocking and
//! tokio servers run with. Built only under `--cfg fuzzing` (as cargo-fuzz builds);
//! not part of the API.

use std::cell::Cell;
use std::net::SocketAddr;
use std::vec::Vec;

use super::server::ServerCore;
use super::{Core, Request, Response, Step};
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
    core: ServerCore,
}

impl ServerHarness {
    /// A server core with `resources` and a fallback handler; the clock starts at zero.
    pub fn new(seed: u64, resources: &[Resource<'static>]) -> Self {
        NOW.with(|n| n.set(Some(Instant::ZERO)));
        let config = crate::Config {
            seed,
            ..crate::Config::default()
        };
        let mut core = ServerCore::new(config).expect("default parameters are valid");
        core.table.extend_from_slice(resources);
        core.has_fallback = true;
        ServerHarness { core }
    }

    /// Sets the clock (it never goes back: the endpoint clamps).
    pub fn set_now(&mut self, now: Instant) {
        NOW.with(|n| n.set(Some(now)));
    }

    /// Takes a datagram; returns the request a handler has to answer, if any.
    pub fn handle_datagram(&mut self, from: SocketAddr, datagram: &[u8]) -> Option<Work> {
        let w = self.core.handle_datagram(from, datagram)?;
        Some(Work {
            id: w.id,
            resource: w.resource,
            request: w.request,
            mid: w.mid,
            block2_num: w.block2.map(|b| b.num()),
        })
    }

    /// Answers (or, with `None`, abandons) a request.
    pub fn answer(&mut self, id: IncomingHandle, response: Option<Response>) {
        self.core.answer(id, response);
    }

    /// Fires due timers.
    pub fn handle_timeout(&mut self) {
        self.core.handle_timeout();
    }

    /// Everything the core has to send now, and its next deadline.
    pub fn drain(&mut self) -> (Vec<(SocketAddr, Vec<u8>)>, Option<Instant>) {
        let mut sent = Vec::new();
        for _ in 0..10_000 {
            match self.core.poll() {
                Step::Transmit(to) => sent.push((to, self.core.out().to_vec())),
                Step::Wait(deadline) => return (sent, deadline),
            }
        }
        panic!("the server core never settles");
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
