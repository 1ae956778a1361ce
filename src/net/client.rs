//! The client half of the adapters' core: starts [`Request`]s on an endpoint, collects
//! their responses (whole bodies for block-wise ones), feeds uploads their blocks, and
//! turns endpoint events into results. No I/O.

use std::boxed::Box;
use std::collections::HashMap;
use std::vec::Vec;

use super::server::Node;
use super::{Error, GroupResponse, NetPeer, Request, Response};
use crate::wire::{Code, Message};
use crate::{Event, RequestHandle, RequestOptions};

/// Produces an upload block by block: fills the buffer with the body's bytes from the
/// offset and says how many it wrote and whether more follow.
pub(crate) type BlockSource = Box<dyn FnMut(usize, &mut [u8]) -> (usize, bool) + Send>;

/// Where an upload's blocks come from.
pub(crate) enum Upload {
    Body(Vec<u8>),
    Source(BlockSource),
}

/// One block of a streamed response, for the adapter to hand on.
pub(crate) struct Streamed<'b> {
    pub(crate) handle: RequestHandle,
    pub(crate) offset: usize,
    pub(crate) data: &'b [u8],
    pub(crate) last: bool,
}

/// What a finished request produced.
pub(crate) type Outcome = Result<Response, Error>;

struct Pending<P> {
    upload: Option<Upload>,
    /// Blocks go to the adapter instead of into the response's payload.
    stream: bool,
    response: Option<Response>,
    /// When the request ends with `TimedOut` whatever its state (`Request::timeout`).
    give_up_at: Option<crate::Instant>,
    /// The largest body collected.
    max_body: usize,
    /// An observation: every complete response is a notification, not the end.
    observe: bool,
    /// For an observation: its request and peer, to fetch the rest of a block-wise
    /// notification (RFC 7959 §2.6) and to register again.
    origin: Option<(P, Box<Request>)>,
    /// For an observation that asked to: when to register again (RFC 7641 §3.3.1).
    refresh_at: Option<crate::Instant>,
    /// For a group request: each member's answer so far, in the order they came.
    members: Option<Vec<Member<P>>>,
}

/// One member's answer to a group request, being collected.
struct Member<P> {
    from: P,
    response: Response,
    complete: bool,
}

/// The rest of a block-wise notification being fetched: its observation and the first
/// block (head, payload and ETag).
struct Stitch {
    observation: RequestHandle,
    first: Response,
}

impl<P> Pending<P> {
    fn new(
        upload: Option<Upload>,
        stream: bool,
        give_up_at: Option<crate::Instant>,
        max_body: usize,
    ) -> Self {
        Pending {
            upload,
            stream,
            response: None,
            give_up_at,
            max_body,
            observe: false,
            origin: None,
            refresh_at: None,
            members: None,
        }
    }
}

/// The requests an adapter has in flight: what they need (upload bodies, collected
/// responses, overall timeouts) beside the endpoint's own records, and their outcomes.
pub(crate) struct Requests<P> {
    pending: HashMap<RequestHandle, Pending<P>>,
    finished: Vec<(RequestHandle, Outcome)>,
    /// Notifications of observations, complete, in the order they came.
    notifications: Vec<(RequestHandle, Response)>,
    /// Follow-up requests for the rest of block-wise notifications, by their handle.
    stitches: HashMap<RequestHandle, Stitch>,
    /// Group requests that ended, with their members' answers.
    groups: Vec<(RequestHandle, Vec<GroupResponse>)>,
}

/// Largest body sent in one message; larger ones go block-wise (1024-byte blocks fit
/// the default 1152-byte message buffer with room for options).
const MAX_SINGLE: usize = 1024;

impl<P> Default for Requests<P> {
    fn default() -> Self {
        Requests {
            pending: HashMap::new(),
            finished: Vec::new(),
            notifications: Vec::new(),
            stitches: HashMap::new(),
            groups: Vec::new(),
        }
    }
}

impl<P> Requests<P> {
    /// Takes the notifications that came for observation `handle`.
    pub(crate) fn take_notifications(
        &mut self,
        handle: RequestHandle,
    ) -> impl Iterator<Item = Response> + '_ {
        let mut i = 0;
        let list = &mut self.notifications;
        std::iter::from_fn(move || {
            while i < list.len() {
                if list[i].0 == handle {
                    return Some(list.remove(i).1);
                }
                i += 1;
            }
            None
        })
    }

    /// Takes every notification that came.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn drain_notifications(&mut self) -> std::vec::Drain<'_, (RequestHandle, Response)> {
        self.notifications.drain(..)
    }

    /// Takes the outcome of `handle` if it finished.
    pub(crate) fn take(&mut self, handle: RequestHandle) -> Option<Outcome> {
        let i = self.finished.iter().position(|(h, _)| *h == handle)?;
        Some(self.finished.swap_remove(i).1)
    }

    /// Takes the answers of group request `handle` if it ended.
    pub(crate) fn take_group(&mut self, handle: RequestHandle) -> Option<Vec<GroupResponse>> {
        let i = self.groups.iter().position(|(h, _)| *h == handle)?;
        Some(self.groups.swap_remove(i).1)
    }

    /// Takes every group request that ended.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn drain_groups(
        &mut self,
    ) -> std::vec::Drain<'_, (RequestHandle, Vec<GroupResponse>)> {
        self.groups.drain(..)
    }

    /// Takes every finished outcome.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn drain_finished(&mut self) -> std::vec::Drain<'_, (RequestHandle, Outcome)> {
        self.finished.drain(..)
    }

    /// The finished requests, taken out whole (their buffer moves, nothing is
    /// allocated), for a caller that needs `&mut` access to more than this table while
    /// it goes through them; [`give_back`](Self::give_back) returns the buffer.
    pub(crate) fn take_finished(&mut self) -> Vec<(RequestHandle, Outcome)> {
        core::mem::take(&mut self.finished)
    }

    /// Returns an emptied buffer from [`take_finished`](Self::take_finished), so that
    /// its capacity serves again.
    pub(crate) fn give_back(&mut self, mut taken: Vec<(RequestHandle, Outcome)>) {
        if self.finished.is_empty() {
            taken.clear();
            self.finished = taken;
        }
    }
}

/// The client role of the adapters' core.
impl<P: NetPeer, const E: usize, const B: usize, const M: usize, const D: usize, const R: usize>
    Node<P, E, B, M, D, R>
{
    /// Starts `req` to `peer`. With `stream`, the response's blocks are handed out by
    /// [`on_response`](Self::on_response) rather than collected. A `source` produces
    /// the body block by block instead of `req.payload`; it is taken only when the
    /// request starts (a refused one may try again with it).
    pub(crate) fn start(
        &mut self,
        now: crate::Instant,
        peer: P,
        req: &Request,
        stream: bool,
        source: &mut Option<BlockSource>,
    ) -> Result<RequestHandle, Error> {
        let group = req.group;
        let options = RequestOptions {
            non_confirmable: req.non_confirmable || group,
            group,
            token: req.token.as_deref(),
            params: req.params,
            timeout: req.timeout,
            separate_timeout: req.separate_timeout,
            block2_szx: req.block2_szx,
            block2_offset: req.block2_offset,
            observe: req.observe,
            release_on_ack: self.release_on_ack
                && !stream
                && !req.held
                && matches!(req.method, Code::GET | Code::FETCH),
            ..RequestOptions::default()
        };
        let blockwise =
            source.is_some() || req.block1_szx.is_some() || req.payload.len() > MAX_SINGLE;
        let handle = if blockwise {
            let szx = req.block1_szx.unwrap_or(6);
            self.ep
                .request_upload(now, peer, req.method, &options, szx, |b| {
                    req.write(b, false)
                })?
        } else {
            self.ep
                .request(now, peer, req.method, &options, |b| req.write(b, true))?
        };
        let upload = match source.take() {
            Some(source) => Some(Upload::Source(source)),
            None => blockwise.then(|| Upload::Body(req.payload.clone())),
        };
        // A group request's timeout is its collection window, which the endpoint keeps.
        let give_up_at = req.timeout.filter(|_| !group).map(|t| now + t);
        let max_body = req.max_body.unwrap_or(super::DEFAULT_MAX_BODY);
        self.requests
            .pending
            .insert(handle, Pending::new(upload, stream, give_up_at, max_body));
        if let Some(p) = self.requests.pending.get_mut(&handle) {
            p.members = group.then(Vec::new);
            p.observe = req.observe;
            if req.observe {
                p.origin = Some((peer, Box::new(req.clone())));
            }
        }
        Ok(handle)
    }

    /// Sends a ping (empty CON); it finishes with an empty response.
    pub(crate) fn ping(&mut self, now: crate::Instant, peer: P) -> Result<RequestHandle, Error> {
        let handle = self.ep.ping(now, peer)?;
        self.requests
            .pending
            .insert(handle, Pending::new(None, false, None, 0));
        Ok(handle)
    }

    /// Ends an observation on the wire (RFC 7641 §3.6), as libcoap's and aiocoap's
    /// clients do: a GET with Observe: 1, the observation's token and its request's
    /// options, so that the server stops at once rather than at its next notification's
    /// RST (or, for a client that went away, a CON notification given up a day later).
    /// The observation is over for the caller now; the server's answer ends the record.
    /// An observation not registered yet (or for which no buffer is free) is forgotten
    /// as [`cancel`](Self::cancel) does. Returns whether the deregistration went out.
    pub(crate) fn cancel_observation(
        &mut self,
        now: crate::Instant,
        handle: RequestHandle,
    ) -> bool {
        let origin = self
            .requests
            .pending
            .get(&handle)
            .filter(|p| p.observe)
            .and_then(|p| p.origin.as_ref())
            .map(|(_, req)| req.clone());
        let sent = origin.is_some_and(|req| {
            self.ep
                .cancel_observe(now, handle, |b| req.write(b, false))
                .is_ok()
        });
        if !sent {
            self.cancel(now, handle);
            return false;
        }
        // The answer to the deregistration is the observation's last response: kept
        // out of the notifications, it finishes the request.
        if let Some(p) = self.requests.pending.get_mut(&handle) {
            p.observe = false;
            p.refresh_at = None;
        }
        self.requests.notifications.retain(|(h, _)| *h != handle);
        true
    }

    /// Gives up on a request; it finishes with [`Error::Closed`].
    pub(crate) fn cancel(&mut self, now: crate::Instant, handle: RequestHandle) {
        let _ = self.ep.cancel(now, handle);
        if self.requests.pending.remove(&handle).is_some() {
            self.requests.finished.push((handle, Err(Error::Closed)));
        }
    }

    /// Takes a response (or one block of it) from `from`; returns the block for a
    /// streamed request.
    pub(crate) fn on_response<'b>(
        &mut self,
        now: crate::Instant,
        from: P,
        handle: RequestHandle,
        message: &Message<'b>,
        block: Option<crate::block::Received>,
    ) -> Option<Streamed<'b>> {
        if self.requests.stitches.contains_key(&handle) {
            return self.on_stitch(handle, message, block);
        }
        let p = self.requests.pending.get_mut(&handle)?;
        if let Some(members) = &mut p.members {
            // A member's answer, or the next block of one: the endpoint keeps the blocks
            // of each member apart and in order (RFC 7959 §2.8).
            let (offset, last) = block.map_or((0, true), |b| (b.offset, b.last));
            let known = members.iter().position(|m| m.from == from && !m.complete);
            match known.filter(|_| offset > 0) {
                Some(i) => {
                    let m = &mut members[i];
                    if m.response.payload.len() + message.payload().len() <= p.max_body {
                        m.response
                            .payload
                            .to_mut()
                            .extend_from_slice(message.payload());
                        m.complete = last;
                    }
                }
                None if offset == 0 => {
                    let mut response = Response::from_message(message);
                    response.payload = message.payload().to_vec().into();
                    members.push(Member {
                        from,
                        response,
                        complete: last,
                    });
                }
                None => {}
            }
            return None;
        }
        let mut response = Response::from_message(message);
        let first_of_many = p.observe
            && block.is_none()
            && message
                .block2()
                .ok()
                .flatten()
                .is_some_and(|b| b.num() == 0 && b.more());
        if first_of_many {
            // A notification larger than a block: fetch the rest, then deliver it whole
            // (unless a newer one supersedes it meanwhile).
            response.payload = message.payload().to_vec().into();
            let origin = p.origin.clone();
            self.fetch_rest(now, handle, origin, response, message);
            return None;
        }
        if let Some(previous) = p.response.take() {
            response.payload = previous.payload;
        }
        let (offset, last) = block.map_or((0, true), |b| (b.offset, b.last));
        if !p.stream {
            // Refuse a body over the limit as soon as Size2 or the bytes say so, rather
            // than collect it.
            let announced = block.and_then(|b| b.total).unwrap_or(0) as usize;
            let total = response.payload.len() + message.payload().len();
            if announced.max(total) > p.max_body {
                let limit = p.max_body;
                self.requests.pending.remove(&handle);
                if !last {
                    let _ = self.ep.cancel(now, handle);
                }
                self.requests
                    .finished
                    .push((handle, Err(Error::BodyTooLarge { limit })));
                return None;
            }
            response
                .payload
                .to_mut()
                .extend_from_slice(message.payload());
        }
        let stream = p.stream;
        if last && p.observe {
            // A notification (or the registration's answer): the observation goes on
            // until the endpoint says it ended; if asked, it is registered again when
            // this state's Max-Age runs out without a newer one.
            if p.origin.as_ref().is_some_and(|(_, r)| r.reregister) {
                let max_age = u64::from(response.max_age.unwrap_or(60));
                p.refresh_at = Some(now + core::time::Duration::from_secs(max_age));
            }
            self.requests.notifications.push((handle, response));
        } else if last {
            self.requests.pending.remove(&handle);
            self.requests.finished.push((handle, Ok(response)));
        } else {
            p.response = Some(response);
        }
        stream.then(|| Streamed {
            handle,
            offset,
            data: message.payload(),
            last,
        })
    }

    /// Starts fetching the blocks after the first of a notification of `observation`;
    /// a fetch of an older one is given up (only the newest state matters).
    fn fetch_rest(
        &mut self,
        now: crate::Instant,
        observation: RequestHandle,
        origin: Option<(P, Box<Request>)>,
        first: Response,
        message: &Message<'_>,
    ) {
        let older: Vec<RequestHandle> = self
            .requests
            .stitches
            .iter()
            .filter(|(_, s)| s.observation == observation)
            .map(|(h, _)| *h)
            .collect();
        for h in older {
            self.requests.stitches.remove(&h);
            self.requests.pending.remove(&h);
            let _ = self.ep.cancel(now, h);
        }
        let (Some((peer, req)), Some(block)) = (origin, message.block2().ok().flatten()) else {
            return;
        };
        let mut rest = Request::new(crate::wire::Code::GET, &req.path);
        rest.query = req.query.clone();
        rest.host = req.host.clone();
        rest.accept = req.accept;
        rest.options = req.options.clone();
        let rest = rest.block2(block.szx()).block2_offset(block.size());
        if let Ok(h) = self.start(now, peer, &rest, false, &mut None) {
            self.requests
                .stitches
                .insert(h, Stitch { observation, first });
        }
    }

    /// A response to a fetch of the rest of a notification: once whole, and if its ETag
    /// is the first block's, the notification is delivered.
    fn on_stitch<'b>(
        &mut self,
        handle: RequestHandle,
        message: &Message<'b>,
        block: Option<crate::block::Received>,
    ) -> Option<Streamed<'b>> {
        let p = self.requests.pending.get_mut(&handle)?;
        let mut response = p
            .response
            .take()
            .unwrap_or_else(|| Response::from_message(message));
        response
            .payload
            .to_mut()
            .extend_from_slice(message.payload());
        if !block.is_none_or(|b| b.last) {
            p.response = Some(response);
            return None;
        }
        self.requests.pending.remove(&handle);
        let stitch = self.requests.stitches.remove(&handle)?;
        let same = message.code().is_success()
            && Response::from_message(message).etag == stitch.first.etag;
        if same {
            let mut whole = stitch.first;
            whole.payload.to_mut().extend_from_slice(&response.payload);
            self.requests
                .notifications
                .push((stitch.observation, whole));
        }
        None
    }

    /// Ends a streamed request early (the adapter's consumer has enough): it finishes
    /// with the response head received so far.
    pub(crate) fn stop(&mut self, now: crate::Instant, handle: RequestHandle) {
        let _ = self.ep.cancel(now, handle);
        if let Some(p) = self.requests.pending.remove(&handle) {
            let head = p.response.ok_or(Error::Closed);
            self.requests.finished.push((handle, head));
        }
    }

    /// Registers again the observations whose Max-Age ran out (those that asked);
    /// returns when the next one does.
    pub(crate) fn refresh_due(&mut self, now: crate::Instant) -> Option<crate::Instant> {
        if self.requests.pending.is_empty() {
            return None;
        }
        let due: Vec<(RequestHandle, Box<Request>)> = self
            .requests
            .pending
            .iter_mut()
            .filter(|(_, p)| p.refresh_at.is_some_and(|at| at <= now))
            .filter_map(|(h, p)| {
                p.refresh_at = None;
                p.origin.as_ref().map(|(_, r)| (*h, r.clone()))
            })
            .collect();
        for (handle, req) in due {
            let _ = self.ep.reregister(now, handle, |b| req.write(b, false));
        }
        self.requests
            .pending
            .values()
            .filter_map(|p| p.refresh_at)
            .min()
    }

    /// Ends the requests whose overall timeout passed; returns the earliest one left.
    pub(crate) fn give_up_due(&mut self, now: crate::Instant) -> Option<crate::Instant> {
        if self.requests.pending.is_empty() {
            return None;
        }
        let mut earliest = None::<crate::Instant>;
        let finished = &mut self.requests.finished;
        self.requests
            .pending
            .retain(|handle, p| match p.give_up_at {
                Some(at) if at <= now => {
                    let _ = self.ep.cancel(now, *handle);
                    finished.push((*handle, Err(Error::TimedOut)));
                    false
                }
                Some(at) => {
                    earliest = Some(earliest.map_or(at, |e| e.min(at)));
                    true
                }
                None => true,
            });
        earliest
    }

    /// Takes an endpoint event about a request; hands back the others.
    pub(crate) fn on_event(&mut self, now: crate::Instant, event: Event) -> Option<Event> {
        let (handle, outcome) = match event {
            Event::TimedOut(h) => (h, Err(Error::TimedOut)),
            Event::Reset(h) => (h, Err(Error::Reset)),
            Event::BlockFailed(h, e) => (h, Err(Error::Block(e))),
            Event::UploadFailed(h, e) => (h, Err(Error::Upload(e))),
            Event::Pong(h) => (h, Ok(Response::new(Code::EMPTY))),
            Event::ObservationEnded(h) => (h, Ok(Response::new(Code::EMPTY))),
            Event::GroupEnded(h) => {
                if let Some(p) = self.requests.pending.remove(&h) {
                    let members = p.members.unwrap_or_default();
                    let answers = members
                        .into_iter()
                        .filter_map(|m| {
                            Some(GroupResponse {
                                from: m.from.socket_addr()?,
                                response: m.response,
                                complete: m.complete,
                            })
                        })
                        .collect();
                    self.requests.groups.push((h, answers));
                }
                return None;
            }
            // The member's answer stays incomplete; the group request goes on.
            Event::MemberFailed(_) => return None,
            Event::BlockNeeded {
                handle,
                offset,
                max_len,
            } => {
                let upload = self
                    .requests
                    .pending
                    .get_mut(&handle)
                    .and_then(|p| p.upload.as_mut());
                let sent = match upload {
                    Some(Upload::Body(body)) => self.ep.send_body_block(now, handle, body),
                    Some(Upload::Source(source)) => {
                        let mut block = std::vec![0; max_len];
                        let (n, more) = source(offset, &mut block);
                        self.ep
                            .send_block(now, handle, &block[..n.min(max_len)], more)
                    }
                    None => self.ep.send_body_block(now, handle, &[]),
                };
                match sent {
                    Ok(()) => return None,
                    Err(e) => (handle, Err(Error::Endpoint(e))),
                }
            }
            other => return Some(other),
        };
        if self.requests.stitches.remove(&handle).is_some() {
            // The rest of a notification could not be fetched: a newer one will come.
            self.requests.pending.remove(&handle);
            return None;
        }
        if self.requests.pending.remove(&handle).is_some() {
            self.requests.finished.push((handle, outcome));
        }
        None
    }
}
