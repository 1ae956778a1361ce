//! The server role: accepting requests (RFC 7252 §5.1, §5.4.1, §5.8), answering them
//! piggybacked or separately (§5.2), refusing what the endpoint cannot take.

use core::time::Duration;

use super::output::{CONTROL_BYTES, ControlKind};
use super::slot::{CON, GROUP_REQUEST, HELD, MUST_ANSWER, OVER_SHARE, Outcome, Slot, State};
use super::{Endpoint, Error, Incoming, IncomingHandle, MAX_TOKEN_LEN, NO_ENTRY, ResponseMode};
use crate::dedup::Reply;
use crate::wire::{
    BuildError, Code, Fill, Message, MessageBuilder, NoResponse, OptionNumber, Type, encode_uint,
    once,
};
use crate::{Instant, Retransmission};

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
    // ---- server commands -------------------------------------------------------

    /// Answers a request: piggybacked if its ACK has not gone out, else as a separate
    /// response (CON for a CON request, NON for a NON one). `build` adds options and
    /// payload; header and token are already written.
    pub fn respond(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        code: Code,
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<(), Error> {
        self.respond_filled(now, handle, ResponseMode::Auto, code, &mut once(build))
    }

    /// [`respond`](Self::respond) with the way of sending chosen explicitly.
    pub fn respond_with(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        mode: ResponseMode,
        code: Code,
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<(), Error> {
        self.respond_filled(now, handle, mode, code, &mut once(build))
    }

    /// [`respond_with`](Self::respond_with), one copy for every caller's closure.
    pub(super) fn respond_filled(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        mode: ResponseMode,
        code: Code,
        build: &mut Fill<'_>,
    ) -> Result<(), Error> {
        let now = self.clamp(now);
        if !code.is_response() {
            return Err(Error::WrongCode(code));
        }
        let index = handle.index as usize;
        let slot = *self
            .slot_mut(handle.index, handle.generation)
            .ok_or(Error::UnknownHandle)?;
        if !matches!(slot.state, State::Handling | State::Deferred) {
            return Err(Error::UnknownHandle);
        }
        let piggyback = slot.state == State::Handling && slot.con() && mode == ResponseMode::Auto;
        let ty = match (piggyback, mode, slot.con()) {
            (true, _, _) => Type::Ack,
            (false, ResponseMode::Confirmable, _) | (false, ResponseMode::Auto, true) => Type::Con,
            _ => Type::Non,
        };
        if NoResponse(slot.answer_filter()).suppresses(code) {
            // RFC 7967 §2: not sending is the answer; a CON still gets its empty ACK.
            // (RFC 7252 §8.2: so is an error answer to a group request.)
            if slot.state == State::Handling && slot.con() {
                self.owe(slot.dedup as usize, slot.peer, slot.mid, Reply::EmptyAck);
            }
            self.release(index);
            return Ok(());
        }
        // A CON response stays until acknowledged; the others leave at the next poll
        // and may use the buffers kept for answers given at once.
        let reserve = self.config.immediate_reserve as usize;
        let buf = self
            .pool
            .take(ty == Type::Con, reserve)
            .ok_or(Error::BuffersFull)?;
        let mid = if piggyback {
            slot.mid
        } else {
            self.new_mid(slot.peer)
        };
        // RFC 9175 §2.4: to an address not known to be the peer's, the answer is built
        // within the amplification budget: block-wise answers (`respond_body`,
        // `first_block`) pick a block size that fits.
        let limit = self.send_limit(now, slot.peer, slot.timeout_us);
        let mut buf = buf;
        match self
            .pool
            .build_within(buf, (ty, code, mid), slot.token(), limit, build)
        {
            Ok(()) => {}
            Err(BuildError::BufferTooSmall { needed }) if limit < MSG_BYTES => {
                // Not even a first block fits: the peer proves its address with Echo
                // first (what remains of the 4.01 challenges; see `echo.rs`).
                log_info!(
                    "answering MID {:#06x} with 4.01 and Echo instead of {needed} bytes: more \
                     than the request's budget of {limit} to an unverified peer (RFC 9175)",
                    slot.mid,
                );
                let challenge =
                    self.make_challenge(now, slot.peer, slot.timeout_us, slot.token().len());
                if NoResponse(slot.no_response).suppresses(Code::UNAUTHORIZED) {
                    if slot.state == State::Handling && slot.con() {
                        self.owe(slot.dedup as usize, slot.peer, slot.mid, Reply::EmptyAck);
                    }
                    self.release(index);
                    return Ok(());
                }
                // The failed build gave the buffer back: the same one is free again.
                buf = self
                    .pool
                    .take(ty == Type::Con, reserve)
                    .ok_or(Error::BuffersFull)?;
                self.pool
                    .build(buf, (ty, Code::UNAUTHORIZED, mid), slot.token(), &mut |b| {
                        challenge.write(b)
                    })?;
            }
            Err(e) => return Err(e.into()),
        }
        if !piggyback && slot.state == State::Handling && slot.con() {
            // A separate response to a CON not yet acknowledged: ACK it first (§5.2.2).
            self.owe(slot.dedup as usize, slot.peer, slot.mid, Reply::EmptyAck);
        }
        let random = self.rng.next_u64();
        let params = self.config.params;
        let Some(Some(s)) = self.slots.get_mut(index) else {
            return Err(Error::UnknownHandle);
        };
        s.buf = buf;
        s.set_sending(true);
        s.mid = mid;
        s.state = match ty {
            Type::Ack => State::Piggybacked,
            Type::Con => {
                let initial = Retransmission::initial_timeout(&params, random);
                s.start_retransmission(now, initial, params.max_retransmit);
                State::RespondingCon
            }
            // RFC 7252 §8.2: an answer to a group request waits for the point within
            // Leisure drawn when it came (the handling deadline), if that is still ahead.
            _ if s.quota & GROUP_REQUEST != 0
                && slot.state == State::Handling
                && slot.deadline > now =>
            {
                s.set_sending(false);
                State::Leisure
            }
            _ => State::SendingNon,
        };
        self.sync(index);
        Ok(())
    }

    /// A request (§5.1): deduplicated, checked, then handed to the application. One
    /// that came to a group address (`leisure` is then its group's Leisure, §8.2) is
    /// NON, never gets RST or an error answer, and is answered at a random point within
    /// Leisure.
    pub(super) fn on_request<'b>(
        &mut self,
        now: Instant,
        from: P,
        msg: Message<'b>,
        leisure: Option<Duration>,
    ) -> Option<Incoming<'b>> {
        let group = leisure.is_some();
        let con = msg.ty() == Type::Con;
        let mid = msg.message_id();
        self.server = Some(Self::server_action);
        // A new input ends the handling call of a request admitted over the quota.
        if let Some((index, generation)) = self.must_answer.take() {
            if self.slot_mut(index, generation).is_some() {
                self.defer(now, index as usize);
            }
        }
        if let Some(entry) = self.dedup.find(now, from, mid) {
            self.stats.duplicates += 1;
            log_info!("duplicate request MID {mid:#06x}: not processed again");
            if con {
                self.replay(now, from, mid, entry);
            }
            return None;
        }
        if msg.token().len() > self.config.max_token_len.min(MAX_TOKEN_LEN as u8) as usize {
            // RFC 8974 §2.2.2: a token longer than supported is a format error.
            self.stats.malformed += 1;
            if con && !group {
                self.queue_control(from, ControlKind::Rst(mid));
            }
            return None;
        }
        let budget = self.amplification_budget(now, from, &msg);
        let error = if !is_assigned_method(msg.code()) {
            Some(Code::METHOD_NOT_ALLOWED)
        } else if !self.config.forward_proxy
            && (msg.has_option(OptionNumber::PROXY_URI)
                || msg.has_option(OptionNumber::PROXY_SCHEME))
        {
            // §5.7.2, §5.10.2: an endpoint that is not a forward proxy.
            Some(Code::PROXYING_NOT_SUPPORTED)
        } else if self.has_bad_critical_option(&msg) {
            if group {
                // §8.1: never RST a group request; §8.2: nor answer with an error.
                return None;
            }
            if !con {
                // §5.4.1: a NON with an unrecognized critical option is rejected.
                self.queue_control(from, ControlKind::Rst(mid));
                return None;
            }
            Some(Code::BAD_OPTION)
        } else {
            None
        };
        let lifetime = if con {
            self.exchange_lifetime
        } else {
            self.non_lifetime
        };
        if let Some(code) = error {
            if group {
                log_info!("not answering group request MID {mid:#06x} with {code} (RFC 7252 §8.2)");
                return None;
            }
            if code == Code::UNAUTHORIZED {
                log_info!(
                    "challenging request MID {mid:#06x} with 4.01 and Echo: its peer's address \
                     is not verified (RFC 9175)"
                );
            }
            self.reply_error(now, from, &msg, code, lifetime, None);
            return None;
        }
        let Some(index) = self.free_index() else {
            self.stats.overloaded += 1;
            if group {
                // An answer from every member is not promised (§8.2): this one is silent.
                return None;
            }
            log_info!("refusing request MID {mid:#06x} with 5.03: every exchange record in use");
            let frees_at = self.frees_at(now, false, None);
            self.reply_error(
                now,
                from,
                &msg,
                Code::SERVICE_UNAVAILABLE,
                lifetime,
                Some(frees_at),
            );
            return None;
        };
        let generation = self.gens[index].wrapping_add(1);
        let reply = if con {
            Reply::Pending(((index as u32) << 16) | generation as u32)
        } else {
            Reply::Nothing
        };
        // A follow-up for a block past the first is answered from the response kept for
        // its exchange (`respond_from_kept`), never by running the request again: it
        // needs no protection of its own.
        let follow_up = is_follow_up(&msg);
        let entry = if self.config.non_idempotent.allows(msg.code()) && !follow_up {
            // §4.5: processed once, whatever else arrives; room for the reply is set
            // aside now, or the request is refused before anyone sees it.
            let room = if con { MSG_BYTES } else { 0 };
            let share = self.config.peer_share(DEDUP_ENTRIES);
            match self
                .dedup
                .insert_protected(now, from, mid, lifetime, reply, room, share)
            {
                Ok(entry) => entry,
                Err(full) => {
                    self.free.push(index);
                    let code = if full.peer_over_share {
                        self.stats.over_share += 1;
                        Code::TOO_MANY_REQUESTS
                    } else {
                        self.stats.overloaded += 1;
                        Code::SERVICE_UNAVAILABLE
                    };
                    if group {
                        return None;
                    }
                    log_info!(
                        "refusing request MID {mid:#06x} with {code}: deduplication table full"
                    );
                    self.reply_error(now, from, &msg, code, lifetime, Some(full.retry_at));
                    return None;
                }
            }
        } else {
            // Idempotent: without an entry a duplicate is simply processed again.
            self.dedup
                .insert(now, from, mid, lifetime, reply)
                .unwrap_or(NO_ENTRY)
        };
        // The deferral quota: decided now, enforced only if the application does not
        // answer within its handling call (see `defer`).
        let deferrable = EXCHANGES - (self.config.immediate_reserve as usize).min(EXCHANGES - 1);
        let share = self.config.peer_share(deferrable);
        let quota = if self.held >= deferrable {
            MUST_ANSWER
        } else if self.held >= share && self.held_by(from) >= share {
            MUST_ANSWER | OVER_SHARE
        } else {
            0
        };
        let deadline = match leisure {
            // §8.2: the answer goes at a random point within Leisure; until then the
            // request is in its handling call.
            Some(leisure) => {
                // A 32-bit random fraction of Leisure (at most 71 minutes in µs): one
                // 32 × 32-bit multiplication, no 64-bit division.
                let span = leisure.as_micros().min(u32::MAX as u128) as u64;
                let delay = ((self.rng.next_u64() >> 32) * span) >> 32;
                now.plus_micros(delay)
            }
            None if con => now + self.config.empty_ack_delay,
            None => now,
        };
        let mut slot = Slot::new(
            from,
            deadline,
            State::Handling,
            msg.token(),
            if con { CON } else { 0 },
        );
        slot.mid = mid;
        slot.dedup = entry as u16;
        slot.quota = quota;
        slot.timeout_us = budget;
        if group {
            slot.quota |= GROUP_REQUEST;
        }
        // RFC 7641 §3.1, §3.6: Observe 0 asks to register (the application decides, in
        // `respond_observe`); Observe 1 ends the peer's observation with this token.
        // Not through a group: an observation is a relation with one server.
        if matches!(msg.code(), Code::GET | Code::FETCH) && !group {
            match msg.observe() {
                Ok(Some(0)) => slot.quota |= super::observe::OBSERVE_REGISTER,
                Ok(Some(1)) => self.deregister(from, msg.token()),
                _ => {}
            }
        }
        slot.no_response = match msg.no_response() {
            Ok(Some(nr)) => nr.0,
            _ => 0,
        };
        let generation = self.occupy(index, slot);
        if quota & MUST_ANSWER != 0 {
            self.must_answer = Some((index as u16, generation));
        }
        Some(Incoming::Request {
            handle: IncomingHandle {
                index: index as u16,
                generation,
            },
            message: msg,
        })
    }

    /// §5.4.1, §5.4.3: a critical option the endpoint does not recognize, or a
    /// recognized one whose value has the wrong length; §5.4.5: a critical option that
    /// is not repeatable and repeats is treated as unrecognized (extra occurrences of an
    /// elective one are ignored).
    pub(super) fn has_bad_critical_option(&self, msg: &Message<'_>) -> bool {
        let mut previous = None;
        msg.options().any(|o| {
            let repeated = previous.replace(o.number) == Some(o.number);
            o.number.is_critical()
                && (!self.knows(o.number)
                    || o.number.info().is_some_and(|i| {
                        o.value.len() < i.min_len as usize
                            || o.value.len() > i.max_len as usize
                            || (repeated && !i.repeatable)
                    }))
        })
    }

    pub(super) fn knows(&self, n: OptionNumber) -> bool {
        matches!(
            n,
            OptionNumber::IF_MATCH
                | OptionNumber::URI_HOST
                | OptionNumber::IF_NONE_MATCH
                | OptionNumber::URI_PORT
                | OptionNumber::URI_PATH
                | OptionNumber::URI_QUERY
                | OptionNumber::ACCEPT
                | OptionNumber::BLOCK2
                | OptionNumber::BLOCK1
                | OptionNumber::PROXY_URI
                | OptionNumber::PROXY_SCHEME
        ) || self.config.known_critical_options.contains(&n.0)
    }

    /// Answers a request the endpoint itself refuses (4.02, 4.05, 4.29, 5.03):
    /// piggybacked and stored for replay if CON, a NON response otherwise. A refusal for
    /// want of space says in Max-Age when space frees (`retry_at`). The refusal is
    /// remembered like any answer, in an evictable entry — sticky for a non-idempotent
    /// request, whose duplicates must keep getting the refusal.
    pub(super) fn reply_error(
        &mut self,
        now: Instant,
        to: P,
        msg: &Message<'_>,
        code: Code,
        lifetime: Duration,
        retry_at: Option<Instant>,
    ) {
        let mid = msg.message_id();
        // A refused non-idempotent request must stay refused: if a duplicate found no
        // entry once space freed, it would run, though its client may have been told
        // 5.03. Its entry is sticky (it cannot be protected: that is what ran out).
        let follow_up = is_follow_up(msg);
        let entry = if self.config.non_idempotent.allows(msg.code()) && !follow_up {
            self.dedup
                .insert_sticky(now, to, mid, lifetime, Reply::Nothing)
        } else {
            self.dedup.insert(now, to, mid, lifetime, Reply::Nothing)
        };
        let request = Refused {
            to,
            piggyback: msg.ty() == Type::Con,
            mid,
            token: msg.token(),
            no_response: msg.no_response().ok().flatten().map_or(0, |n| n.0),
            entry: entry.unwrap_or(NO_ENTRY),
            budget: self.raw_budget(msg.as_bytes().len()),
        };
        self.refuse(now, request, code, retry_at);
    }

    /// Sends a refusal built here, without a message buffer: it fits a control message.
    pub(super) fn refuse(
        &mut self,
        now: Instant,
        r: Refused<'_, P>,
        code: Code,
        retry_at: Option<Instant>,
    ) {
        let (ty, mid) = if r.piggyback {
            (Type::Ack, r.mid)
        } else {
            (Type::Non, self.new_mid(r.to))
        };
        let max_age = retry_at.map(|at| self.max_age_until(now, at));
        let challenge = (code == Code::UNAUTHORIZED)
            .then(|| self.make_challenge(now, r.to, r.budget, r.token.len()));
        let mut bytes = [0u8; CONTROL_BYTES];
        let mut build = |diagnostic: bool| {
            MessageBuilder::new(&mut bytes, ty, code, mid).and_then(|mut b| {
                b.token(r.token)?;
                if let Some(max_age) = max_age {
                    let mut tmp = [0; 4];
                    b.option(OptionNumber::MAX_AGE, encode_uint(max_age, &mut tmp))?;
                }
                if let Some(challenge) = &challenge {
                    challenge.write(&mut b)?;
                } else if diagnostic {
                    // §5.5.2: a short diagnostic payload, the code's name in ASCII.
                    if let Some(name) = code.name() {
                        b.payload(name.as_bytes())?;
                    }
                }
                Ok(b.len())
            })
        };
        // A token of at most 8 bytes, a Max-Age and the longest code name (26 bytes),
        // or an Echo and its diagnostic, always fit CONTROL_BYTES.
        let Ok(mut len) = build(self.config.diagnostic_payloads) else {
            return;
        };
        if !self.within_budget(now, r.to, r.budget, len) {
            // RFC 9175 §2.4: the diagnostic is what may go.
            let Ok(short) = build(false) else {
                return;
            };
            len = short;
        }
        if NoResponse(r.no_response).suppresses(code) {
            if r.piggyback {
                self.owe(r.entry, r.to, r.mid, Reply::EmptyAck);
            }
            return;
        }
        let ours = self.dedup.key(r.entry) == Some((r.to, r.mid));
        if r.piggyback && ours && self.dedup.store(now, r.entry, &bytes[..len]) {
            self.dedup.mark_pending(r.entry);
        } else {
            self.queue_refusal(r.to, &bytes[..len]);
        }
    }

    /// Max-Age in seconds for a refusal until `at`: rounded up, at least 1 (the
    /// configured fallback when the endpoint cannot tell).
    pub(super) fn max_age_until(&self, now: Instant, at: Instant) -> u32 {
        if at == Instant::MAX {
            return self.config.overload_max_age;
        }
        // Whole seconds, rounded up, without 128-bit arithmetic (no u128 division on a
        // Cortex-M).
        let wait = at.saturating_duration_since(now);
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        secs.clamp(1, u32::MAX as u64) as u32
    }

    /// When a place frees at the latest: any slot (`deferral` false), or a place
    /// under the deferral quota — of any peer, or of `peer`. Requests admitted over the
    /// quota leave when their handling call ends and so free a slot, but no place under
    /// the quota.
    pub(super) fn frees_at(&self, now: Instant, deferral: bool, peer: Option<P>) -> Instant {
        let wait = self.deferred_wait();
        let transient = |s: &Slot<P>| s.state == State::Handling && s.quota & MUST_ANSWER != 0;
        self.slots
            .iter()
            .flatten()
            .filter(|s| !deferral || (s.is_held() && !transient(s)))
            .filter(|s| peer.is_none_or(|p| s.peer == p))
            .filter_map(|s| {
                if transient(s) {
                    Some(s.deadline)
                } else {
                    s.ends_by(now, wait)
                }
            })
            .min()
            .unwrap_or(Instant::MAX)
    }

    /// Requests of `peer` with the application, counted toward the quota.
    fn held_by(&self, peer: P) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.peer == peer && s.quota & HELD != 0)
            .count()
    }

    /// How long a deferred request waits for its answer.
    pub(super) fn deferred_wait(&self) -> Duration {
        self.config
            .deferred_response_timeout
            .unwrap_or(self.exchange_lifetime)
    }

    /// What the server role does on a path both roles take (through
    /// `Endpoint::server`).
    pub(super) fn server_action(&mut self, now: Instant, action: ServerAction) {
        match action {
            ServerAction::Timer(index) => {
                match self
                    .slots
                    .get(index)
                    .and_then(|s| s.as_ref())
                    .map(|s| s.state)
                {
                    // §5.2.2: no answer in time; acknowledge now, answer later.
                    Some(State::Handling) => self.defer(now, index),
                    Some(State::Deferred) => self.expire(now, index),
                    _ => {}
                }
            }
            ServerAction::KeepReply { entry, buf } => {
                self.dedup.store(now, entry, self.pool.message(buf));
            }
        }
    }

    /// Deferred request `index` was never answered: a late duplicate gets the empty ACK
    /// it already had, and the room set aside for a reply is free again. The client,
    /// which may still be waiting, hears 5.00 in a NON response rather than nothing.
    fn expire(&mut self, now: Instant, index: usize) {
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        slot.state = State::Done(Outcome::Expired);
        let slot = *slot;
        self.sync(index);
        let (entry, peer, mid) = (slot.dedup as usize, slot.peer, slot.mid);
        if self.dedup.key(entry) == Some((peer, mid)) {
            self.dedup.set_reply(entry, Reply::EmptyAck);
        }
        let request = Refused {
            to: peer,
            piggyback: false,
            mid,
            token: slot.token(),
            no_response: slot.answer_filter(),
            entry,
            budget: slot.timeout_us,
        };
        self.refuse(now, request, Code::INTERNAL_SERVER_ERROR, None);
    }

    /// Slot `index`'s request was not answered within its handling call (§5.2.2): a CON
    /// gets its empty ACK and the answer becomes separate — unless the request came in
    /// over the deferral quota, in which case the endpoint answers for the application
    /// with 5.03, or 4.29 when its peer holds its share, and a Max-Age that says when a
    /// place frees.
    pub(super) fn defer(&mut self, now: Instant, index: usize) {
        let Some(Some(slot)) = self.slots.get(index) else {
            return;
        };
        if slot.state != State::Handling {
            return;
        }
        if slot.quota & MUST_ANSWER != 0 {
            log_info!(
                "refusing request MID {:#06x}: deferred past the quota",
                slot.mid
            );
            let (code, retry_at) = if slot.quota & OVER_SHARE != 0 {
                self.stats.over_share += 1;
                (
                    Code::TOO_MANY_REQUESTS,
                    self.frees_at(now, true, Some(slot.peer)),
                )
            } else {
                self.stats.overloaded += 1;
                (Code::SERVICE_UNAVAILABLE, self.frees_at(now, true, None))
            };
            let slot = *slot;
            let request = Refused {
                to: slot.peer,
                piggyback: slot.con(),
                mid: slot.mid,
                token: slot.token(),
                no_response: slot.answer_filter(),
                entry: slot.dedup as usize,
                budget: slot.timeout_us,
            };
            self.refuse(now, request, code, Some(retry_at));
            if let Some(Some(slot)) = self.slots.get_mut(index) {
                slot.state = State::Done(Outcome::Refused);
            }
            self.sync(index);
            return;
        }
        let wait = self.deferred_wait();
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        slot.state = State::Deferred;
        let owe = slot
            .con()
            .then_some((slot.dedup as usize, slot.peer, slot.mid));
        let ack_delay = if slot.con() {
            self.config.empty_ack_delay
        } else {
            Duration::ZERO
        };
        // From the request's arrival: its handling deadline was `ack_delay` after it.
        slot.deadline = slot.deadline + wait.saturating_sub(ack_delay);
        self.sync(index);
        if let Some((entry, peer, mid)) = owe {
            self.owe(entry, peer, mid, Reply::EmptyAck);
        }
    }

    /// Gives up on answering request `handle`: the endpoint answers 5.00 Internal
    /// Server Error for the application — in the ACK if it has not gone out, else as a
    /// NON response — and forgets the request. For an application that lost the means to
    /// answer (a dropped responder, a failed task), so that its client is not left
    /// waiting for a response that never comes.
    pub fn abandon(&mut self, now: Instant, handle: IncomingHandle) -> Result<(), Error> {
        let now = self.clamp(now);
        let slot = *self
            .slot_mut(handle.index, handle.generation)
            .ok_or(Error::UnknownHandle)?;
        if !matches!(slot.state, State::Handling | State::Deferred) {
            return Err(Error::UnknownHandle);
        }
        // Once acknowledged, a request's duplicates keep getting that empty ACK.
        let piggyback = slot.state == State::Handling && slot.con();
        let request = Refused {
            to: slot.peer,
            piggyback,
            mid: slot.mid,
            token: slot.token(),
            no_response: slot.answer_filter(),
            entry: slot.dedup as usize,
            budget: slot.timeout_us,
        };
        self.refuse(now, request, Code::INTERNAL_SERVER_ERROR, None);
        self.release(handle.index as usize);
        Ok(())
    }

    /// Whether the application may answer request `handle` later than within its
    /// handling call. `false` when the request came in while the endpoint (or its peer)
    /// already holds as many late-answered requests as it may: if it is not answered
    /// before the next input or [`poll_output`](Self::poll_output), the endpoint answers
    /// it with 5.03 Service Unavailable (or 4.29 Too Many Requests) itself, reports
    /// [`Event::RequestRefused`](super::Event::RequestRefused), and the handle goes
    /// stale. A handler that cannot answer at once should then not act on the request.
    pub fn may_defer(&self, handle: IncomingHandle) -> bool {
        match self.slots.get(handle.index as usize) {
            Some(Some(s)) if self.gens.get(handle.index as usize) == Some(&handle.generation) => {
                s.quota & MUST_ANSWER == 0 || s.state != State::Handling
            }
            _ => false,
        }
    }
}

/// A request the endpoint answers itself, and what the answer needs of it.
pub(super) struct Refused<'t, P> {
    pub(super) to: P,
    /// Answer in the ACK of a CON request (else as a NON response).
    pub(super) piggyback: bool,
    pub(super) mid: u16,
    pub(super) token: &'t [u8],
    pub(super) no_response: u8,
    /// Its dedup entry, if it has one (else `NO_ENTRY`).
    pub(super) entry: usize,
    /// The most bytes the answer may have unless the peer is verified (RFC 9175 §2.4).
    pub(super) budget: u32,
}

/// The server role's part of a path both roles take.
#[derive(Clone, Copy, Debug)]
pub(super) enum ServerAction {
    /// The timer of server slot `index` fired: a request still with its handling call
    /// is deferred, a deferred one expires. (Also a retransmitted request that is
    /// still with its handling call: it is acknowledged now.)
    Timer(usize),
    /// A piggybacked answer in buffer `buf` is being sent: dedup entry `entry` keeps it
    /// for duplicates of the request (§4.5).
    KeepReply { entry: usize, buf: u16 },
}

/// A request for a Block2 block past the first: answered from what its exchange kept,
/// never by running its handler again.
fn is_follow_up(msg: &Message<'_>) -> bool {
    matches!(msg.block2(), Ok(Some(b)) if b.num() > 0)
}

/// The methods RFC 7252 and RFC 8132 assign (0.01–0.07); others get 4.05 (§5.8).
fn is_assigned_method(code: Code) -> bool {
    code.is_request() && code.detail() <= 7
}
