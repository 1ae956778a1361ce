//! The client role: starting requests, NSTART (RFC 7252 §4.7), matching responses by token
//! and peer (§5.3.2).

use core::time::Duration;

use super::client_block::BlockFailure;
use super::observe::{OBSERVE_ASKED, OBSERVE_LEAVING};
use super::output::ControlKind;
use super::slot::{CON, GROUP, MEMBER, PING, Slot, State};
use super::{
    Endpoint, Error, Incoming, MAX_TOKEN_LEN, NO_ENTRY, RequestHandle, RequestOptions, token_hash,
};
use crate::block::{Block1Upload, Block2Download};
use crate::dedup::Reply;
use crate::wire::{Block, BuildError, Code, Fill, Message, MessageBuilder, Type, once};
use crate::{Instant, Retransmission, TransmissionParams};

/// What a client request keeps beside its slot: its start parameters and block-wise
/// state.
#[derive(Clone, Copy, Debug)]
pub(super) struct ClientBlocks {
    pub(super) start: StartParams,
    pub(super) download: Block2Download,
    /// For a request started with `request_upload`.
    pub(super) upload: Option<Block1Upload>,
    pub(super) fresh_token: bool,
    pub(super) failed: Option<BlockFailure>,
    /// Give the buffer back when the empty ACK comes (`RequestOptions::release_on_ack`).
    pub(super) release_on_ack: bool,
}

/// What starting a client request — or restarting it for its next block — needs from
/// its transmission parameters, kept with the request so that one that waits for
/// NSTART, and its follow-ups, use its own parameters rather than the endpoint's.
#[derive(Clone, Copy, Debug)]
pub(super) struct StartParams {
    pub(super) ack_timeout_us: u32,
    pub(super) random_milli: u16,
    pub(super) max_retransmit: u8,
    pub(super) nstart: u8,
    /// How long a NON request waits for its response.
    pub(super) non_wait_ms: u32,
    /// How long a CON request waits for its separate response after an empty ACK.
    pub(super) separate_wait_ms: u32,
}

impl StartParams {
    pub(super) fn new(
        p: &TransmissionParams,
        non_wait: Duration,
        separate_wait: Duration,
    ) -> StartParams {
        let ms = |d: Duration| d.as_millis().min(u32::MAX as u128) as u32;
        StartParams {
            ack_timeout_us: p.ack_timeout.as_micros().min(u32::MAX as u128) as u32,
            random_milli: p.ack_random_factor_milli,
            max_retransmit: p.max_retransmit,
            nstart: p.nstart,
            non_wait_ms: ms(non_wait),
            separate_wait_ms: ms(separate_wait),
        }
    }

    pub(super) fn initial_timeout(&self, random: u64) -> Duration {
        let p = TransmissionParams {
            ack_timeout: crate::time::duration_from_micros(self.ack_timeout_us as u64),
            ack_random_factor_milli: self.random_milli,
            ..TransmissionParams::RFC7252
        };
        Retransmission::initial_timeout(&p, random)
    }
}

/// What became of a response matched against the requests in flight.
pub(super) enum Taken<'b> {
    /// Delivered to the application.
    Response(Incoming<'b>),
    /// A notification older than one delivered, or one that crossed the observation's
    /// deregistration (RFC 7641 §3.4, §3.6): acknowledged, not delivered.
    Stale,
    /// Taken by the endpoint itself: a 2.31 Continue or another block acknowledged
    /// (the upload goes on), or a 4.01 with Echo (the request goes again). A CON one is
    /// acknowledged and remembered like a delivered response.
    Absorbed,
    /// For nobody.
    Unmatched,
}

impl<
    P: Copy + Eq + core::hash::Hash,
    const EXCHANGES: usize,
    const BUFFERS: usize,
    const MSG_BYTES: usize,
    const DEDUP_ENTRIES: usize,
    const REPLY_BYTES: usize,
    const OBSERVERS: usize,
    const VERIFIED: usize,
> Endpoint<P, EXCHANGES, BUFFERS, MSG_BYTES, DEDUP_ENTRIES, REPLY_BYTES, OBSERVERS, VERIFIED>
{
    // ---- client commands -------------------------------------------------------

    /// Starts a request to `peer` with `method`, its options and payload added by
    /// `build` (header and token are already written). Returns the handle the
    /// response or outcome will name.
    ///
    /// ```
    /// # use coap_proto::{Endpoint, Config, RequestOptions, Instant, Output};
    /// # use coap_proto::wire::Code;
    /// let mut ep: Endpoint<u8> = Endpoint::new(Config::default()).unwrap();
    /// let h = ep.request(Instant::ZERO, 7, Code::GET, &RequestOptions::default(), |b| {
    ///     b.uri_path("/sensors/temperature")?;
    ///     Ok(())
    /// })?;
    /// assert!(matches!(ep.poll_output(Instant::ZERO), Output::Transmit(t) if t.to == 7));
    /// # let _ = h;
    /// # Ok::<(), coap_proto::Error>(())
    /// ```
    pub fn request(
        &mut self,
        now: Instant,
        peer: P,
        method: Code,
        options: &RequestOptions<'_>,
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<RequestHandle, Error> {
        self.start_request(now, peer, method, options, None, &mut once(build))
    }

    /// Starts a request whose body goes in Block1 blocks of `2^(szx + 4)` bytes
    /// (RFC 7959 §2.5). `build` adds the options but no payload. The endpoint then asks
    /// for each block with [`Event::BlockNeeded`](super::Event::BlockNeeded); answer with
    /// [`send_block`](Self::send_block) (bytes produced on demand) or
    /// [`send_body_block`](Self::send_body_block) (a body the caller holds). 2.31
    /// Continue is absorbed; the final response arrives as [`Incoming::Response`] and,
    /// if it carries Block2, continues as a download (§3.3). A smaller block size
    /// preferred by the server is adopted. A random Request-Tag is added (RFC 9175 §3),
    /// so that concurrent uploads to one resource stay apart.
    ///
    /// A block size larger than a message buffer holds beside the request's options is
    /// lowered to the largest that fits; if not even 16 bytes fit, the call fails with
    /// [`Error::Build`] naming the size needed.
    pub fn request_upload(
        &mut self,
        now: Instant,
        peer: P,
        method: Code,
        options: &RequestOptions<'_>,
        szx: u8,
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<RequestHandle, Error> {
        self.start_request(now, peer, method, options, Some(szx), &mut once(build))
    }

    pub(super) fn start_request(
        &mut self,
        now: Instant,
        peer: P,
        method: Code,
        options: &RequestOptions<'_>,
        upload: Option<u8>,
        build: &mut Fill<'_>,
    ) -> Result<RequestHandle, Error> {
        let now = self.clamp(now);
        if !method.is_request() {
            return Err(Error::WrongCode(method));
        }
        let params = options.params.unwrap_or(self.config.params);
        params.validate().map_err(Error::Params)?;
        if options.token.is_some_and(|t| t.len() > MAX_TOKEN_LEN) {
            return Err(Error::TokenTooLong);
        }
        if options.group && (!options.non_confirmable || options.observe || upload.is_some()) {
            return Err(Error::NotForGroups);
        }
        let reserve = self.config.immediate_reserve as usize;
        let index = self.free_index().ok_or(Error::TableFull)?;
        let Some(buf) = self.pool.take(true, reserve) else {
            self.free.push(index);
            return Err(Error::BuffersFull);
        };
        let mut token = [0u8; MAX_TOKEN_LEN];
        let token = match options.token {
            Some(t) => t,
            None => {
                let n = self.fresh_token(peer, &mut token);
                &token[..n]
            }
        };
        let ty = if options.non_confirmable {
            Type::Non
        } else {
            Type::Con
        };
        // The MID is patched in when the message is sent (queued requests wait).
        let download = match options.block2_szx {
            _ if options.block2_offset > 0 => Block2Download::starting_at(
                options.block2_offset,
                options.block2_szx.unwrap_or(Block::MAX_SZX),
            ),
            Some(szx) if options.block2_late => Block2Download::new().with_late(szx),
            Some(szx) => Block2Download::new().with_early(szx),
            None => Block2Download::new(),
        };
        // For an upload the early Block2 goes with the last block instead.
        let first_block2 = download.next_request_block().filter(|_| upload.is_none());
        let mut tag = [0u8; 2];
        self.rng.fill(&mut tag);
        // The endpoint's own options go in first: `build` may end with a payload, and
        // the builder puts options added later where they belong.
        let observe = options.observe && matches!(method, Code::GET | Code::FETCH);
        let built = self.pool.build(buf, (ty, method, 0), token, &mut |b| {
            if observe {
                b.observe(0)?;
            }
            if let Some(block) = first_block2 {
                b.block2(block)?;
            }
            if upload.is_some() {
                b.request_tag(&tag)?;
            }
            build(b)
        });
        if let Err(e) = built {
            self.free.push(index);
            return Err(e.into());
        }
        // An upload's blocks must fit the buffer beside the request's options, Block1
        // and a late Block2 (5 bytes each at most) and the payload marker: a larger
        // block size than fits is lowered now (the server could lower it too, §2.5),
        // and a request with no room even for 16 bytes fails here, not at a block.
        let upload = match upload {
            Some(szx) => {
                let used = self.pool.message(buf).len() + 11;
                let Some(fits) = Block::szx_at_most(MSG_BYTES.saturating_sub(used)) else {
                    self.pool.give_back(buf);
                    self.free.push(index);
                    return Err(Error::Build(BuildError::BufferTooSmall {
                        needed: used + 16,
                    }));
                };
                Some(szx.min(fits))
            }
            None => None,
        };
        let state = if upload.is_some() {
            State::NeedsBlock
        } else {
            State::Queued
        };
        let mut slot = Slot::new(
            peer,
            now,
            state,
            token,
            if options.non_confirmable { 0 } else { CON },
        );
        slot.buf = buf;
        if observe {
            slot.quota |= super::observe::OBSERVE_ASKED;
        }
        if options.group {
            slot.quota |= GROUP;
        }
        let non_wait = match options.timeout {
            Some(wait) => wait,
            None if options.group => params.group_window(),
            None => self
                .config
                .non_response_timeout
                .unwrap_or(params.max_transmit_wait()),
        };
        let separate_wait = options.separate_timeout.unwrap_or(self.separate_wait());
        self.pool.blocks[buf as usize] = Some(ClientBlocks {
            start: StartParams::new(&params, non_wait, separate_wait),
            download,
            upload: upload.map(Block1Upload::new),
            fresh_token: options.fresh_token_per_block,
            failed: None,
            release_on_ack: options.release_on_ack && upload.is_none() && !observe,
        });
        let generation = self.occupy(index, slot);
        self.try_start(now, index);
        Ok(RequestHandle {
            index: index as u16,
            generation,
        })
    }

    /// Sends a CoAP ping (an Empty CON, §4.2); the outcome is [`Event::Pong`](super::Event::Pong) or
    /// [`Event::TimedOut`](super::Event::TimedOut).
    pub fn ping(&mut self, now: Instant, peer: P) -> Result<RequestHandle, Error> {
        let now = self.clamp(now);
        let reserve = self.config.immediate_reserve as usize;
        let index = self.free_index().ok_or(Error::TableFull)?;
        let Some(buf) = self.pool.take(true, reserve) else {
            self.free.push(index);
            return Err(Error::BuffersFull);
        };
        // 4 bytes always fit: MSG_BYTES is at least 64.
        let _ = MessageBuilder::new(self.pool.buf_mut(buf), Type::Con, Code::EMPTY, 0);
        self.pool.set_len(buf, 4);
        let mut slot = Slot::new(peer, now, State::Queued, &[], CON | PING);
        slot.buf = buf;
        let generation = self.occupy(index, slot);
        self.try_start(now, index);
        Ok(RequestHandle {
            index: index as u16,
            generation,
        })
    }

    /// Abandons a request: no more retransmissions, no outcome event; a late response
    /// will be rejected. Fails for a handle whose request already finished.
    pub fn cancel(&mut self, now: Instant, handle: RequestHandle) -> Result<(), Error> {
        let now = self.clamp(now);
        let slot = self
            .slot_mut(handle.index, handle.generation)
            .ok_or(Error::UnknownHandle)?;
        if !slot.is_client() || slot.quota & MEMBER != 0 {
            return Err(Error::UnknownHandle);
        }
        let peer = slot.peer;
        if slot.quota & GROUP != 0 {
            self.release_members(handle.index as usize);
        }
        self.release(handle.index as usize);
        self.start_queued(now, peer);
        Ok(())
    }

    pub(super) fn fresh_token(&mut self, peer: P, token: &mut [u8; MAX_TOKEN_LEN]) -> usize {
        let len = (self.config.token_len as usize).min(MAX_TOKEN_LEN);
        // A few draws make a clash with a request in flight to the same peer
        // vanishingly unlikely for any token of 2 bytes or more.
        for _ in 0..8 {
            self.rng.fill(&mut token[..len]);
            let clash = self
                .by_token
                .candidates(token_hash(&token[..len]))
                .any(|i| {
                    matches!(&self.slots[i], Some(s) if (s.peer == peer || s.quota & GROUP != 0)
                    && s.token() == &token[..len])
                });
            if !clash {
                break;
            }
        }
        len
    }

    /// Sends queued slot `index` if NSTART allows (§4.7), with the request's own
    /// transmission parameters; otherwise it stays queued.
    pub(super) fn try_start(&mut self, now: Instant, index: usize) {
        self.client = Some(Self::start_queued_now);
        let Some(Some(slot)) = self
            .slots
            .get(index)
            .filter(|s| matches!(s, Some(s) if s.state == State::Queued))
        else {
            return;
        };
        let start = match self.pool.blocks(slot.buf) {
            Some(b) => b.start,
            // A ping: the endpoint's parameters.
            None => StartParams::new(
                &self.config.params,
                self.config
                    .non_response_timeout
                    .unwrap_or(self.max_transmit_wait),
                self.separate_wait(),
            ),
        };
        let peer = slot.peer;
        // Only when NSTART could be reached at all is it worth counting this peer's.
        if self.outstanding >= start.nstart as usize {
            let outstanding = self
                .slots
                .iter()
                .flatten()
                .filter(|s| s.peer == peer && s.is_outstanding())
                .count();
            if outstanding >= start.nstart as usize {
                return;
            }
        }
        let mid = self.new_mid(peer);
        let random = self.rng.next_u64();
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        slot.mid = mid;
        if let Some(b) = self.pool.buf_mut(slot.buf).get_mut(2..4) {
            b.copy_from_slice(&mid.to_be_bytes());
        }
        slot.set_sending(true);
        // A group request counts its members' follow-ups here instead.
        slot.retransmits_left = if slot.con() { start.max_retransmit } else { 0 };
        if slot.con() {
            slot.start_retransmission(now, start.initial_timeout(random), start.max_retransmit);
            slot.state = State::AwaitingAck;
        } else {
            slot.deadline = now.plus_micros(start.non_wait_ms as u64 * 1000);
            slot.state = State::AwaitingNonResponse;
        }
        self.queued -= 1;
        self.sync(index);
    }

    /// Starts queued requests to `peer` (oldest first) while NSTART allows. Paths both
    /// roles take reach it through `Endpoint::client`, which `try_start` sets.
    pub(super) fn start_queued(&mut self, now: Instant, peer: P) {
        if self.queued > 0 {
            if let Some(client) = self.client {
                client(self, now, peer);
            }
        }
    }

    fn start_queued_now(&mut self, now: Instant, peer: P) {
        while self.queued > 0 {
            let next = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
                .filter(|(_, s)| s.peer == peer && s.state == State::Queued)
                .min_by_key(|(i, s)| (s.deadline, *i))
                .map(|(i, _)| i);
            let Some(index) = next else {
                return;
            };
            self.try_start(now, index);
            if matches!(&self.slots[index], Some(s) if s.state == State::Queued) {
                return;
            }
        }
    }

    /// A response carried in `msg` for one of our requests, matched by token and peer
    /// (§5.3.2); `piggybacked` responses must also match the request's MID.
    pub(super) fn take_response<'b>(
        &mut self,
        from: P,
        msg: &Message<'b>,
        piggybacked: bool,
    ) -> Taken<'b> {
        if !msg.code().is_response() {
            return Taken::Unmatched;
        }
        let Some(index) = self
            .by_token
            .candidates(token_hash(msg.token()))
            .find(|&i| {
                matches!(&self.slots[i], Some(s) if (s.peer == from || s.quota & GROUP != 0)
                && s.token() == msg.token()
                && s.awaits_response()
                && (!piggybacked || (s.state == State::AwaitingAck && s.mid == msg.message_id())))
            })
        else {
            return Taken::Unmatched;
        };
        let Some(slot) = self.slots[index] else {
            return Taken::Unmatched;
        };
        let now = self.last_now;
        if slot.quota & GROUP != 0 {
            return self.take_group_response(now, index, from, msg);
        }
        let peer = slot.peer;
        // A member's follow-up answers under its group request's handle.
        let handle = self.group_of(&slot).unwrap_or(RequestHandle {
            index: index as u16,
            generation: self.gens[index],
        });
        if msg.code() == Code::UNAUTHORIZED {
            if let Ok(Some(echo)) = msg.echo() {
                if self.repeat_with_echo(now, index, echo) {
                    return Taken::Absorbed;
                }
            }
        }
        match self.follow_block1(now, index, msg) {
            Ok(true) => {}
            // 2.31 Continue or another block acknowledged: the upload goes on.
            Ok(false) => return Taken::Absorbed,
            Err(e) => {
                self.fail_transfer(index, BlockFailure::Upload(e));
                return Taken::Unmatched;
            }
        }
        let block = match self.follow_block2(now, index, msg) {
            Ok(block) => block,
            Err(e) => {
                self.fail_transfer(index, BlockFailure::Download(e));
                return Taken::Unmatched;
            }
        };
        let leaving = self.slots[index]
            .as_ref()
            .is_some_and(|s| s.quota & OBSERVE_LEAVING != 0);
        if leaving && matches!(msg.observe(), Ok(Some(_))) {
            // A notification that crossed the deregistration: not its answer.
            return Taken::Stale;
        }
        let observed = self.slots[index]
            .as_ref()
            .is_some_and(|s| s.state == State::Observing || s.quota & OBSERVE_ASKED != 0);
        if observed && !self.on_notification(now, index, msg, block.is_none_or(|b| b.last)) {
            return Taken::Stale;
        }
        if !observed && block.is_none_or(|b| b.last) {
            self.release(index);
            self.start_queued(now, peer);
        }
        Taken::Response(Incoming::Response {
            handle,
            message: *msg,
            block,
        })
    }

    /// A separate or NON response (§5.2.2, §5.2.3).
    pub(super) fn on_response<'b>(
        &mut self,
        now: Instant,
        from: P,
        msg: Message<'b>,
    ) -> Option<Incoming<'b>> {
        let con = msg.ty() == Type::Con;
        if let Some(entry) = self.dedup.find(now, from, msg.message_id()) {
            self.stats.duplicates += 1;
            log_info!(
                "duplicate response MID {:#06x}: not delivered again",
                msg.message_id()
            );
            if con {
                self.replay(now, from, msg.message_id(), entry);
            }
            return None;
        }
        let taken = self.take_response(from, &msg, false);
        match taken {
            Taken::Response(_) | Taken::Absorbed => {
                if con {
                    let life = self.exchange_lifetime;
                    // Without an entry (every one protected) the ACK still goes out; a
                    // duplicate of the response would then find no request and get RST.
                    let entry =
                        self.dedup
                            .insert(now, from, msg.message_id(), life, Reply::EmptyAck);
                    self.owe(
                        entry.unwrap_or(NO_ENTRY),
                        from,
                        msg.message_id(),
                        Reply::EmptyAck,
                    );
                } else {
                    let life = self.non_lifetime;
                    self.dedup
                        .insert(now, from, msg.message_id(), life, Reply::Nothing);
                }
                match taken {
                    Taken::Response(incoming) => Some(incoming),
                    _ => None,
                }
            }
            Taken::Stale => {
                // An older state than one delivered (RFC 7641 §3.4): acknowledged, not
                // delivered.
                if con {
                    self.queue_control(from, ControlKind::EmptyAck(msg.message_id()));
                }
                None
            }
            Taken::Unmatched => {
                // §5.3.2: a response nobody waits for is rejected — a NON notification
                // too, so that its server forgets the observation (RFC 7641 §3.6).
                if con || msg.observe().is_ok_and(|o| o.is_some()) {
                    self.queue_control(from, ControlKind::Rst(msg.message_id()));
                }
                None
            }
        }
    }

    /// How long a CON request waits for its separate response, unless it says.
    pub(super) fn separate_wait(&self) -> Duration {
        self.config
            .separate_response_timeout
            .unwrap_or(self.exchange_lifetime)
    }
}
