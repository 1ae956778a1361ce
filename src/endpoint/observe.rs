//! Observe, server role (RFC 7641): the observer records and their transitions.
//!
//! - §3.1, §4.1 registration: a GET or FETCH with Observe: 0 is marked when it arrives;
//!   the application registers it by answering with
//!   [`respond_observe`](Endpoint::respond_observe) and a 2.xx code, which adds the
//!   Observe option. The same peer and token registering again replaces its record. A
//!   resource the application does not observe is answered with plain `respond`, without
//!   the option: that is how a server declines (§4.1). A full table declines the same
//!   way.
//! - §3.6 deregistration: a GET or FETCH with Observe: 1 ends the observation when it
//!   arrives; so does a RST to a notification (a CON one through its record, a NON one
//!   by its message ID), a CON notification given up after MAX_RETRANSMIT (§4.5), a
//!   notification with a code other than 2.xx (§4.2), and
//!   [`end_observations`](Endpoint::end_observations).
//! - §4.4 sequence numbers: one 24-bit counter for the endpoint, advanced by every
//!   registration answer and every [`notify`](Endpoint::notify), so that the numbers each
//!   observer sees increase (modulo 2^24).
//! - §4.5 reliability: a notification is CON when the application asks, when the
//!   observer's last acknowledged CON notification is 24 hours old, and always NON
//!   otherwise.
//! - §4.5.1 flow control, §4.5.2 only the newest state matters: while a CON notification
//!   is in flight to an observer, a newer one replaces it in the same exchange record —
//!   a new message ID, the old retransmission counter and timeout — so an observer never
//!   has more than one notification outstanding.
//!
//! Places (`OBSERVERS`) are shared fairly (DESIGN principle 8): a peer holds at most
//! [`Config::peer_share_percent`](super::Config::peer_share_percent) of them (more
//! registrations are declined); when the table is full, a registration takes the oldest
//! place of a peer holding two or more places than its own peer, else that of the
//! oldest observer that never confirmed its address within MAX_TRANSMIT_WAIT (see
//! `echo.rs`); else it is declined, and the observer confirmed longest ago gets its
//! next notification as CON (§4.5 allows it at any time), so that one that vanished
//! gives its place up when that is not acknowledged. A displaced observer is not told;
//! its client registers again when Max-Age runs out (§3.3.1).
//!
//! Overflow: an observer is a record of this table (`OBSERVERS`); a CON notification in
//! flight takes an exchange record and a message buffer, a NON one a record and a buffer
//! until the next poll sends it. When none is free, the observer stays *due*:
//! [`Event::NotificationsDue`](super::Event::NotificationsDue) says when room frees,
//! and [`notify_due`](Endpoint::notify_due) sends the current state to the observers
//! still due — never an older one.

use core::time::Duration;

use super::slot::{CON, Outcome, Slot, State};
use super::{Endpoint, Error, IncomingHandle, MAX_TOKEN_LEN, ResponseMode};
use crate::Instant;
use crate::retransmit::Retransmission;
use crate::wire::{BuildError, Code, Fill, MessageBuilder, Type, once};

/// Marks a server slot whose request asked to register (Observe: 0).
pub(super) const OBSERVE_REGISTER: u8 = 0x08;
/// Marks a slot that carries a notification (its `dedup` field names the observer).
pub(super) const NOTIFICATION: u8 = 0x10;

/// `Observer::budget` of an observer whose address is known to be its own.
const CONFIRMED: u16 = u16::MAX;

/// How long NON notifications may go without a CON one (§4.5), in units of
/// `Observer::last_con` (rounded down: a few tenths of a second early).
const CON_AT_LEAST_EVERY: u32 = ((24 * 3600 * 1_000_000u64) >> COARSE_SHIFT) as u32;
const COARSE_SHIFT: u32 = 20;

/// `now` in units of `Observer::last_con`.
fn coarse(now: Instant) -> u32 {
    (now.as_micros() >> COARSE_SHIFT) as u32
}

/// One observation: a peer and token watching a resource of the application.
#[derive(Clone, Copy, Debug)]
pub(super) struct Observer<P> {
    pub(super) peer: P,
    token: [u8; MAX_TOKEN_LEN],
    token_len: u8,
    /// Whether the resource changed since this observer's last notification was built.
    due: bool,
    /// The application's number for the resource.
    pub(super) resource: u16,
    /// Message IDs of the last notification sent and of the one before it: a RST
    /// naming either ends the observation (§3.6). The one before matters when a newer
    /// notification replaced a CON one in flight (§4.5.2) or overtook a NON one: a
    /// client that forgot the observation rejects the late one with a RST that matches
    /// no exchange any more.
    last_mid: u16,
    prev_mid: u16,
    /// The exchange record of the CON notification in flight: index and generation, or
    /// `NO_FLIGHT` (an index no table reaches, as `EXCHANGES < u16::MAX`; an `Option`
    /// would take the room the second message ID fits in).
    in_flight: (u16, u16),
    /// When a CON notification (or the registration) last got through, in units of
    /// 2^20 µs (about a second; 32 bits of them span 142 years): the 24-hour rule
    /// needs no finer clock, and 4 bytes less keep the record small.
    last_con: u32,
    /// The most bytes a notification to this observer may take (RFC 9175 §2.4): the
    /// amplification budget of its registration until its address is known to be its
    /// own, [`CONFIRMED`] once it was verified when it registered or acknowledged a
    /// notification since.
    budget: u16,
}

/// `Observer::in_flight` when no CON notification is in flight.
const NO_FLIGHT: (u16, u16) = (u16::MAX, 0);

impl<P> Observer<P> {
    fn token(&self) -> &[u8] {
        &self.token[..self.token_len as usize]
    }

    fn in_flight(&self) -> Option<(u16, u16)> {
        (self.in_flight.0 != NO_FLIGHT.0).then_some(self.in_flight)
    }
}

/// What [`Endpoint::notify`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Notified {
    /// Notifications built (each leaves at the next polls).
    pub sent: usize,
    /// Observers left due for want of an exchange record or a buffer; an
    /// [`Event::NotificationsDue`](super::Event::NotificationsDue) follows when room
    /// frees.
    pub due: usize,
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
    /// Answers request `handle` as [`respond`](Self::respond) does, and if it asked to
    /// observe (a GET or FETCH with Observe: 0) and `code` is 2.xx, registers its peer
    /// and token as an observer of `resource` (the application's number for it) and adds
    /// the Observe option. Returns whether an observation was registered: `false` when
    /// the request did not ask, the code was not 2.xx, or the table was full (then the
    /// answer has no Observe option, which tells the client so, RFC 7641 §4.1).
    ///
    /// ```
    /// use coap_proto::wire::{Code, Message, MessageBuilder, Type};
    /// use coap_proto::{Config, Endpoint, Incoming, Instant, Output};
    ///
    /// let mut server = Endpoint::<u8>::new(Config::default())?;
    /// let mut buf = [0u8; 32];
    /// let mut b = MessageBuilder::new(&mut buf, Type::Con, Code::GET, 7)?;
    /// b.token(&[0x42])?;
    /// b.observe(0)?;
    /// b.uri_path("/temp")?;
    /// let request = b.finish();
    /// let Some(Incoming::Request { handle, .. }) = server.handle_datagram(Instant::ZERO, 1, request)
    /// else { panic!() };
    /// let observing = server.respond_observe(Instant::ZERO, handle, 0, Code::CONTENT, |b| {
    ///     b.payload(b"21.5").map(drop)
    /// })?;
    /// assert!(observing);
    /// let Output::Transmit(t) = server.poll_output(Instant::ZERO) else { panic!() };
    /// assert_eq!(Message::parse(t.data)?.observe()?, Some(1));
    /// assert_eq!(server.observers(0), 1);
    /// # Ok::<(), Box<dyn core::error::Error>>(())
    /// ```
    pub fn respond_observe(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        resource: u16,
        code: Code,
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<bool, Error> {
        self.respond_observe_filled(now, handle, resource, code, &mut once(build))
    }

    /// [`respond_observe`](Self::respond_observe), one copy for every caller's closure.
    fn respond_observe_filled(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        resource: u16,
        code: Code,
        build: &mut Fill<'_>,
    ) -> Result<bool, Error> {
        let slot = *self
            .slot_mut(handle.index, handle.generation)
            .ok_or(Error::UnknownHandle)?;
        let registering = slot.quota & OBSERVE_REGISTER != 0 && code.is_success();
        // RFC 9175 §2.4: an address not known to be the peer's gets its answer within
        // the request's budget (`respond_filled`), and its notifications within the
        // budget of the smallest registration, CON until one is acknowledged: only the
        // client that registered acknowledges a notification of its token (anyone else
        // rejects it, §3.6), which ends a spoofed observation after one notification.
        let limit = self.send_limit(now, slot.peer, slot.timeout_us);
        let budget = if limit < MSG_BYTES {
            limit.min(CONFIRMED as usize - 1) as u16
        } else {
            CONFIRMED
        };
        let place = registering
            .then(|| self.observer_place(now, slot.peer, slot.token()))
            .flatten();
        let seq = place.map(|_| self.next_seq());
        self.respond_filled(now, handle, ResponseMode::Auto, code, &mut |b| {
            if let Some(seq) = seq {
                b.observe(seq)?;
            }
            build(b)
        })?;
        let Some(place) = place else {
            return Ok(false);
        };
        let mut token = [0; MAX_TOKEN_LEN];
        token[..slot.token().len()].copy_from_slice(slot.token());
        self.observers[place] = Some(Observer {
            peer: slot.peer,
            token,
            token_len: slot.token().len() as u8,
            due: false,
            resource,
            last_mid: slot.mid,
            prev_mid: slot.mid,
            in_flight: NO_FLIGHT,
            last_con: coarse(now),
            budget,
        });
        Ok(true)
    }

    /// Tells every observer of `resource` that it changed: each gets a notification with
    /// `code` and what `build` adds (options and payload; the endpoint adds the token
    /// and the Observe option), CON if `confirmable` or if its last CON notification is
    /// 24 hours old, else NON. A notification with a code other than 2.xx is the last
    /// (the observations end). `build` runs once per observer.
    ///
    /// A CON notification still in flight is replaced by this one (RFC 7641 §4.5.2).
    /// Observers for which no exchange record or buffer is free stay due: see
    /// [`Notified::due`] and [`notify_due`](Self::notify_due).
    pub fn notify(
        &mut self,
        now: Instant,
        resource: u16,
        confirmable: bool,
        code: Code,
        build: impl Fn(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<Notified, Error> {
        self.mark_due(resource);
        self.notify_due(now, resource, confirmable, code, build)
    }

    /// Every observer of `resource` is due the state that follows.
    fn mark_due(&mut self, resource: u16) {
        for o in self.observers.iter_mut().flatten() {
            if o.resource == resource {
                o.due = true;
            }
        }
    }

    /// Sends the current state of `resource` to its observers still due after an
    /// earlier [`notify`](Self::notify) found no room (see
    /// [`Event::NotificationsDue`](super::Event::NotificationsDue)); the others are left
    /// alone.
    pub fn notify_due(
        &mut self,
        now: Instant,
        resource: u16,
        confirmable: bool,
        code: Code,
        build: impl Fn(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<Notified, Error> {
        self.notify_filled(now, resource, confirmable, code, &build)
    }

    /// [`notify_due`](Self::notify_due), one copy for every caller's closure.
    fn notify_filled(
        &mut self,
        now: Instant,
        resource: u16,
        confirmable: bool,
        code: Code,
        build: &dyn Fn(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<Notified, Error> {
        let now = self.clamp(now);
        if !code.is_response() {
            return Err(Error::WrongCode(code));
        }
        let seq = self.next_seq();
        let mut done = Notified::default();
        let due =
            |o: &Option<Observer<P>>| o.as_ref().is_some_and(|o| o.resource == resource && o.due);
        for i in 0..OBSERVERS {
            if !due(&self.observers[i]) {
                continue;
            }
            match self.send_notification(now, i, confirmable, code, seq, build) {
                Ok(sent) => done.sent += usize::from(sent),
                Err(Error::TableFull | Error::BuffersFull) => {
                    // No room for this one means none for the rest: count them, and
                    // say when room frees.
                    done.due = self.observers[i..].iter().filter(|o| due(o)).count();
                    self.observe_waiting = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// [`notify`](Self::notify) with a representation `body` that may take more than
    /// one block (RFC 7959 §2.6): a body larger than a block goes out as its first block,
    /// with Block2, Size2 and an ETag (the body's keyed hash unless `build` gives one); each
    /// observer fetches the rest with GET and Block2, which the application serves with
    /// [`respond_block2`](Self::respond_block2) from the same current body. A body that
    /// fits one block is notified whole. `build` adds the other options.
    pub fn notify_body(
        &mut self,
        now: Instant,
        resource: u16,
        confirmable: bool,
        code: Code,
        body: &[u8],
        build: impl Fn(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<Notified, Error> {
        self.mark_due(resource);
        self.notify_body_due(now, resource, confirmable, code, body, build)
    }

    /// [`notify_body`](Self::notify_body) for the observers still due (see
    /// [`notify_due`](Self::notify_due)).
    pub fn notify_body_due(
        &mut self,
        now: Instant,
        resource: u16,
        confirmable: bool,
        code: Code,
        body: &[u8],
        build: impl Fn(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<Notified, Error> {
        let szx = self.first_block_szx();
        let etag = super::server_block::etag_of(self.config.seed, body);
        self.notify_due(now, resource, confirmable, code, |b| {
            build(b)?;
            first_block(b, body, szx, &etag)
        })
    }

    /// [`respond_observe`](Self::respond_observe) with a representation that may take
    /// more than one block: a body larger than a block is answered with its first block
    /// (Block2, Size2, ETag), as [`notify_body`](Self::notify_body) sends it; the client
    /// fetches the rest with GET and Block2 (RFC 7959 §2.6).
    pub fn respond_observe_body(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        resource: u16,
        code: Code,
        body: &[u8],
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<bool, Error> {
        let szx = self.first_block_szx();
        let etag = super::server_block::etag_of(self.config.seed, body);
        self.respond_observe(now, handle, resource, code, |b| {
            build(b)?;
            first_block(b, body, szx, &etag)
        })
    }

    /// The block size of a representation's first block: the configured one, or the
    /// largest that leaves room for options in a message buffer.
    fn first_block_szx(&self) -> u8 {
        let fits = crate::wire::Block::szx_at_most(MSG_BYTES.saturating_sub(128)).unwrap_or(0);
        self.config.max_block_szx.min(fits)
    }

    /// Observers of `resource`.
    pub fn observers(&self, resource: u16) -> usize {
        self.observers
            .iter()
            .flatten()
            .filter(|o| o.resource == resource)
            .count()
    }

    /// Ends every observation of `resource` (it is gone, or no longer observable); no
    /// notification is sent. A CON notification in flight still completes.
    pub fn end_observations(&mut self, resource: u16) {
        for o in &mut self.observers {
            if o.is_some_and(|o| o.resource == resource) {
                *o = None;
            }
        }
    }

    /// Builds one notification to observer `i` into an exchange record: the one of its
    /// CON notification in flight if there is one (§4.5.2), else a new one.
    fn send_notification(
        &mut self,
        now: Instant,
        i: usize,
        confirmable: bool,
        code: Code,
        seq: u32,
        build: &dyn Fn(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<bool, Error> {
        let Some(o) = self.observers[i] else {
            return Ok(false);
        };
        let last = !code.is_success();
        let replacing = o
            .in_flight()
            .filter(|&(index, generation)| {
                self.slot_mut(index, generation)
                    .is_some_and(|s| s.state == State::RespondingCon)
            })
            .map(|(index, _)| index as usize);
        let con = replacing.is_some()
            || confirmable
            || o.budget != CONFIRMED
            || coarse(now).wrapping_sub(o.last_con) >= CON_AT_LEAST_EVERY;
        let limit = match o.budget {
            CONFIRMED => MSG_BYTES,
            budget => budget as usize,
        };
        let ty = if con { Type::Con } else { Type::Non };
        let reserve = self.config.immediate_reserve as usize;
        let index = match replacing {
            Some(index) => index,
            // The records kept for answers given at once are not for notifications.
            None if self.free.len() <= reserve => return Err(Error::TableFull),
            None => self.free_index().ok_or(Error::TableFull)?,
        };
        let Some(buf) = self.pool.take(con, reserve) else {
            if replacing.is_none() {
                self.free.push(index);
            }
            return Err(Error::BuffersFull);
        };
        let mid = self.new_mid(o.peer);
        let built = self
            .pool
            .build_within(buf, (ty, code, mid), o.token(), limit, &mut |b| {
                if !last {
                    b.observe(seq)?;
                }
                build(b)
            });
        if let Err(e) = built {
            if replacing.is_none() {
                self.free.push(index);
            }
            if limit < MSG_BYTES && matches!(e, BuildError::BufferTooSmall { .. }) {
                // Not even a first block fits what an unconfirmed address may get: the
                // observation ends (its client re-registers when Max-Age runs out,
                // RFC 7641 §3.3.1), the other observers are notified.
                log_info!("ending an unconfirmed observation: its notification exceeds the budget");
                self.observers[i] = None;
                return Ok(false);
            }
            return Err(e.into());
        }
        let generation = match replacing {
            Some(index) => {
                // The newest state takes the place of the one in flight, with its
                // retransmission counter and timeout (§4.5.2).
                let Some(Some(s)) = self.slots.get_mut(index) else {
                    return Err(Error::UnknownHandle);
                };
                let old = core::mem::replace(&mut s.buf, buf);
                s.mid = mid;
                s.set_sending(true);
                self.pool.give_back(old);
                self.sync(index);
                self.gens[index]
            }
            None => {
                let mut slot = Slot::new(
                    o.peer,
                    now,
                    if con {
                        State::RespondingCon
                    } else {
                        State::SendingNon
                    },
                    o.token(),
                    if con { CON } else { 0 },
                );
                slot.buf = buf;
                slot.mid = mid;
                slot.dedup = i as u16;
                slot.quota = NOTIFICATION;
                slot.set_sending(true);
                if con {
                    let params = self.config.params;
                    let initial = Retransmission::initial_timeout(&params, self.rng.next_u64());
                    slot.start_retransmission(now, initial, params.max_retransmit);
                }
                self.occupy(index, slot)
            }
        };
        self.observers[i] = if last {
            None
        } else {
            Some(Observer {
                due: false,
                last_mid: mid,
                prev_mid: o.last_mid,
                in_flight: if con {
                    (index as u16, generation)
                } else {
                    NO_FLIGHT
                },
                ..o
            })
        };
        Ok(true)
    }

    /// The place for an observation by `peer` and `token`, by the table's overflow
    /// policy (see the module docs): its own if it has one; none for a peer that holds
    /// its share ([`Config::peer_share_percent`](super::Config::peer_share_percent));
    /// else a free one; else the oldest place of a peer that holds more than this one
    /// by two or more (a flood costs its sender, never the others); else the oldest
    /// observer that never confirmed its address and had `max_transmit_wait` to do so.
    /// When none of these is found the registration is declined, and the observer
    /// confirmed longest ago is due a CON notification with the next change (RFC 7641
    /// §4.5), so that a vanished one gives its place up.
    fn observer_place(&mut self, now: Instant, peer: P, token: &[u8]) -> Option<usize> {
        if OBSERVERS == 0 {
            return None;
        }
        if let Some(own) = self.find_observer(peer, token) {
            return Some(own);
        }
        let holds = |observers: &[Option<Observer<P>>], p: P| {
            observers.iter().flatten().filter(|o| o.peer == p).count()
        };
        let mine = holds(&self.observers, peer);
        if mine >= self.config.peer_share(OBSERVERS) {
            self.stats.observers_declined += 1;
            return None;
        }
        if let Some(free) = self.observers.iter().position(Option::is_none) {
            return Some(free);
        }
        // The table is full. The peers of a few places spread over it are weighed: one
        // that holds an eighth of the table or more is among them, and the cost stays
        // linear in OBSERVERS.
        let heaviest = (0..8)
            .filter_map(|k| self.observers[k * OBSERVERS / 8].map(|o| o.peer))
            .map(|p| (holds(&self.observers, p), p))
            .max_by_key(|&(n, _)| n)
            .filter(|&(n, _)| n >= mine + 2);
        let oldest_of = |observers: &[Option<Observer<P>>], keep: &dyn Fn(&Observer<P>) -> bool| {
            let t = coarse(now);
            observers
                .iter()
                .enumerate()
                .filter_map(|(i, o)| {
                    o.filter(|o| keep(o))
                        .map(|o| (i, t.wrapping_sub(o.last_con)))
                })
                .max_by_key(|&(_, age)| age)
                .map(|(i, _)| i)
        };
        if let Some((_, heavy)) = heaviest {
            return oldest_of(&self.observers, &|o| o.peer == heavy);
        }
        let patience = (self.max_transmit_wait.as_micros() >> COARSE_SHIFT) as u32;
        let t = coarse(now);
        let stale = oldest_of(&self.observers, &|o| {
            o.budget != CONFIRMED && t.wrapping_sub(o.last_con) >= patience
        });
        if stale.is_some() {
            return stale;
        }
        self.stats.observers_declined += 1;
        if let Some(i) = oldest_of(&self.observers, &|o| o.budget == CONFIRMED) {
            if let Some(o) = self.observers[i].as_mut() {
                o.last_con = t.wrapping_sub(CON_AT_LEAST_EVERY);
            }
        }
        None
    }

    fn find_observer(&self, peer: P, token: &[u8]) -> Option<usize> {
        self.observers
            .iter()
            .position(|o| o.is_some_and(|o| o.peer == peer && o.token() == token))
    }

    /// The next sequence number (24 bits, §4.4).
    fn next_seq(&mut self) -> u32 {
        self.observe_seq = (self.observe_seq + 1) & 0x00ff_ffff;
        self.observe_seq
    }

    /// §3.6: a GET or FETCH with Observe: 1 ends the observation of its peer and token.
    pub(super) fn deregister(&mut self, peer: P, token: &[u8]) {
        if let Some(i) = self.find_observer(peer, token) {
            self.observers[i] = None;
        }
    }

    /// §3.6: a RST that matched no exchange may name a NON notification, or one that a
    /// newer notification replaced.
    pub(super) fn on_unmatched_rst(&mut self, peer: P, mid: u16) -> bool {
        let found = self.observers.iter().position(|o| {
            o.is_some_and(|o| o.peer == peer && (o.last_mid == mid || o.prev_mid == mid))
        });
        if let Some(i) = found {
            self.observers[i] = None;
        }
        found.is_some()
    }

    /// A notification's exchange ended with `outcome` (its record is released by the
    /// caller): an ACK lets the observer's next notification go (§4.5.1) and restarts
    /// its 24-hour clock; a RST or a give-up ends the observation (§3.6, §4.5).
    pub(super) fn on_notification_outcome(
        &mut self,
        now: Instant,
        index: usize,
        observer: usize,
        outcome: Outcome,
    ) {
        let generation = self.gens[index];
        let Some(Some(o)) = self.observers.get_mut(observer) else {
            return;
        };
        if o.in_flight != (index as u16, generation) {
            return; // an observation that ended, or a newer one in its place
        }
        match outcome {
            Outcome::Acknowledged => {
                o.in_flight = NO_FLIGHT;
                o.last_con = coarse(now);
                o.budget = CONFIRMED;
            }
            _ => self.observers[observer] = None,
        }
    }

    /// Whether an observer is due and the pool and table have room again: worth an
    /// [`Event::NotificationsDue`](super::Event::NotificationsDue).
    pub(super) fn due_resource(&self) -> Option<u16> {
        self.observers
            .iter()
            .flatten()
            .find(|o| o.due)
            .map(|o| o.resource)
    }
}

/// Writes `body` whole if it fits a block of `2^(szx+4)` bytes, else its first block with
/// Block2, Size2 and (unless there is one) `etag`.
fn first_block(
    b: &mut MessageBuilder<'_>,
    body: &[u8],
    szx: u8,
    etag: &[u8],
) -> Result<(), BuildError> {
    let capacity = b.payload_capacity();
    let tagged = super::server_block::has_etag(b);
    // Room for the payload once the ETag, Block2 (at most 4 bytes) and Size2 (5) are
    // in: smaller than the buffer when the answer must stay within an amplification
    // budget.
    let room = capacity.saturating_sub(if tagged { 9 } else { 11 + etag.len() });
    let whole = body.len() <= capacity && body.len() <= 16usize << szx;
    let szx = szx.min(crate::wire::Block::szx_at_most(room).unwrap_or(0));
    let size = 16usize << szx;
    if whole || body.len() <= size {
        // Whole; or, when not even one block fits, the builder's error for the caller.
        return b.payload(body).map(drop);
    }
    if !tagged {
        b.etag(etag)?;
    }
    let first = crate::wire::Block::new(0, true, szx).ok_or(BuildError::OptionTooLong)?;
    b.block2(first)?;
    b.size2(u32::try_from(body.len()).unwrap_or(u32::MAX))?;
    b.payload(body.get(..size).unwrap_or(body)).map(drop)
}

/// Marks a client slot whose request asked to observe (Observe: 0).
pub(super) const OBSERVE_ASKED: u8 = 0x20;
/// Marks a client slot whose server registered the observation (a first block with
/// Observe, the rest of the body still to come).
const OBSERVE_ACCEPTED: u8 = 0x40;
/// Marks a client slot that asked to end its observation (Observe: 1): a notification
/// still on its way is not the answer.
pub(super) const OBSERVE_LEAVING: u8 = 0x80;

/// RFC 7641 §3.4: whether notification `v2`, arriving at `t2`, is newer than `v1`,
/// which arrived at `t1` (24-bit sequence numbers; after 128 s anything is newer).
pub(super) fn is_fresh(v1: u32, t1: Instant, v2: u32, t2: Instant) -> bool {
    const HALF: u32 = 1 << 23;
    (v1 < v2 && v2 - v1 < HALF)
        || (v1 > v2 && v1 - v2 > HALF)
        || t2.saturating_duration_since(t1) > Duration::from_secs(128)
}

/// Observe, client role (RFC 7641 §3): the transitions of an observing request.
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
    /// A response (or one block of it) for a request that asked to observe, or a
    /// notification for one that observes; returns whether to deliver it. §3.2: a 2.xx
    /// with Observe registers (the record keeps observing, without its buffer); §3.4:
    /// an older notification than the newest delivered is not delivered; anything else
    /// (no Observe: declined; another code) is final and ends the observation.
    pub(super) fn on_notification(
        &mut self,
        now: Instant,
        index: usize,
        msg: &crate::wire::Message<'_>,
        last_block: bool,
    ) -> bool {
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return false;
        };
        let peer = slot.peer;
        let seq = msg
            .observe()
            .ok()
            .flatten()
            .filter(|_| msg.code().is_success());
        let accepted = slot.quota & OBSERVE_ACCEPTED != 0;
        match seq {
            Some(v) if slot.state == State::Observing => {
                if !is_fresh(slot.timeout_us, slot.deadline, v, now) {
                    return false;
                }
                slot.timeout_us = v;
                slot.deadline = now;
                return true;
            }
            Some(v) if !last_block => {
                // A block-wise first answer: observing once the body is in. Its number
                // waits in fields a client record does not use while the follow-ups
                // (which reuse `timeout_us` and `deadline`) run: `dedup` and
                // `no_response` hold 24 bits.
                slot.quota |= OBSERVE_ACCEPTED;
                slot.dedup = v as u16;
                slot.no_response = (v >> 16) as u8;
                return true;
            }
            Some(v) => {
                slot.timeout_us = v;
                slot.deadline = now;
            }
            // The last block of a registered answer carries no Observe (RFC 7959 §2.6).
            None if accepted && last_block && msg.code().is_success() => {
                slot.timeout_us = u32::from(slot.dedup) | u32::from(slot.no_response) << 16;
                slot.deadline = now;
            }
            None if !last_block => return true,
            None => {
                slot.state = State::Done(Outcome::ObserveEnded);
                let buf = core::mem::replace(&mut slot.buf, super::pool::NO_BUFFER);
                self.pool.give_back(buf);
                self.sync(index);
                self.start_queued(now, peer);
                return true;
            }
        }
        // Registered: the record observes from now on, holding no buffer.
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return false;
        };
        slot.state = State::Observing;
        slot.quota &= !(OBSERVE_ASKED | OBSERVE_ACCEPTED);
        let buf = core::mem::replace(&mut slot.buf, super::pool::NO_BUFFER);
        self.pool.give_back(buf);
        self.sync(index);
        self.start_queued(now, peer);
        true
    }

    /// Ends observation `handle` actively (RFC 7641 §3.6): a GET with Observe: 1 and the
    /// observation's token goes to the server, with the options `build` adds (the same
    /// Uri-Path and Uri-Query as the registration, RFC 7641 §3.6), under the same handle;
    /// its response is the last one delivered. [`cancel`](Self::cancel) instead forgets
    /// the observation at once and rejects its next notification with RST.
    pub fn cancel_observe(
        &mut self,
        now: Instant,
        handle: crate::RequestHandle,
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<(), Error> {
        self.resend_observe(now, handle, 1, &mut once(build))
    }

    /// Registers observation `handle` again (RFC 7641 §3.3.1: when Max-Age of the last
    /// notification ran out without a newer one, the client may ask again): a GET with
    /// Observe: 0 and the same token, with the options `build` adds (those of the
    /// registration). The answer is delivered as a notification; if the server no longer
    /// registers it, the observation ends
    /// ([`Event::ObservationEnded`](super::Event::ObservationEnded)).
    pub fn reregister(
        &mut self,
        now: Instant,
        handle: crate::RequestHandle,
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<(), Error> {
        self.resend_observe(now, handle, 0, &mut once(build))
    }

    /// Sends a GET with Observe `value` and the observation's token under its handle.
    fn resend_observe(
        &mut self,
        now: Instant,
        handle: crate::RequestHandle,
        value: u32,
        build: &mut Fill<'_>,
    ) -> Result<(), Error> {
        let now = self.clamp(now);
        let slot = *self
            .slot_mut(handle.index, handle.generation)
            .ok_or(Error::UnknownHandle)?;
        if slot.state != State::Observing {
            return Err(Error::UnknownHandle);
        }
        let reserve = self.config.immediate_reserve as usize;
        let buf = self.pool.take(true, reserve).ok_or(Error::BuffersFull)?;
        let ty = if slot.con() { Type::Con } else { Type::Non };
        self.pool
            .build(buf, (ty, Code::GET, 0), slot.token(), &mut |b| {
                b.observe(value)?;
                build(b)
            })?;
        let index = handle.index as usize;
        if let Some(Some(s)) = self.slots.get_mut(index) {
            s.buf = buf;
            s.deadline = now;
            s.state = State::Queued;
            if value == 0 {
                // The answer registers anew (or ends the observation). Its sequence
                // number starts a new series: any is fresh (§3.4 does not compare
                // across registrations).
                s.quota |= OBSERVE_ASKED;
            } else {
                s.quota |= OBSERVE_LEAVING;
            }
        }
        self.queued += 1;
        self.sync(index);
        self.try_start(now, index);
        Ok(())
    }
}
