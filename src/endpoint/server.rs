//! The server role: accepting requests (RFC 7252 §5.1, §5.4.1, §5.8), answering them
//! piggybacked or separately (§5.2), refusing what the endpoint cannot take.

use core::time::Duration;

use super::output::{CONTROL_BYTES, ControlKind};
use super::slot::{CON, Slot, State};
use super::{Endpoint, Error, Incoming, IncomingHandle, MAX_TOKEN_LEN, ResponseMode};
use crate::dedup::Reply;
use crate::wire::{
    BuildError, Code, Message, MessageBuilder, NoResponse, OptionNumber, Type, encode_uint,
};
use crate::{Instant, Retransmission};

impl<P: Copy + Eq, const E: usize, const D: usize, const M: usize, const R: usize>
    Endpoint<P, E, D, M, R>
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
        self.respond_with(now, handle, ResponseMode::Auto, code, build)
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
        let now = self.clamp(now);
        if !code.is_response() {
            return Err(Error::WrongCode(code));
        }
        let index = handle.index as usize;
        let slot = *self
            .slot_mut(handle.index, handle.generation)
            .ok_or(Error::UnknownHandle)?;
        if !matches!(slot.state, State::DeferredCon | State::Deferred) {
            return Err(Error::UnknownHandle);
        }
        let piggyback = slot.state == State::DeferredCon && mode == ResponseMode::Auto;
        let ty = match (piggyback, mode, slot.con()) {
            (true, _, _) => Type::Ack,
            (false, ResponseMode::Confirmable, _) | (false, ResponseMode::Auto, true) => Type::Con,
            _ => Type::Non,
        };
        if NoResponse(slot.no_response).suppresses(code) {
            // RFC 7967 §2: not sending is the answer; a CON still gets its empty ACK.
            if slot.state == State::DeferredCon {
                self.owe(slot.dedup as usize, slot.peer, slot.mid, Reply::EmptyAck);
            }
            self.release(index);
            return Ok(());
        }
        let mid = if piggyback { slot.mid } else { self.new_mid() };
        let mut b = MessageBuilder::new(&mut self.bufs[index], ty, code, mid)?;
        b.token(slot.token())?;
        build(&mut b)?;
        let len = b.len() as u16;
        if !piggyback && slot.state == State::DeferredCon {
            // A separate response to a CON not yet acknowledged: ACK it first (§5.2.2).
            self.owe(slot.dedup as usize, slot.peer, slot.mid, Reply::EmptyAck);
        }
        let random = self.rng.next_u64();
        let params = self.config.params;
        let Some(Some(s)) = self.slots.get_mut(index) else {
            return Err(Error::UnknownHandle);
        };
        s.len = len;
        s.set_sending(true);
        s.mid = mid;
        s.state = match ty {
            Type::Ack => State::Piggybacked,
            Type::Con => {
                let r =
                    Retransmission::new(now, Retransmission::initial_timeout(&params, random), 0);
                s.timeout_us = r.timeout().as_micros() as u32;
                s.deadline = r.deadline();
                s.retransmits_left = params.max_retransmit;
                State::RespondingCon
            }
            _ => State::SendingNon,
        };
        self.sync(index);
        Ok(())
    }

    /// A request (§5.1): deduplicated, checked, then handed to the application.
    pub(super) fn on_request<'b>(
        &mut self,
        now: Instant,
        from: P,
        msg: Message<'b>,
    ) -> Option<Incoming<'b>> {
        let con = msg.ty() == Type::Con;
        let mid = msg.message_id();
        if let Some(entry) = self.dedup.find(now, from, mid) {
            self.stats.duplicates += 1;
            if con {
                self.replay(from, mid, entry);
            }
            return None;
        }
        if msg.token().len() > self.config.max_token_len.min(MAX_TOKEN_LEN as u8) as usize {
            // RFC 8974 §2.2.2: a token longer than supported is a format error.
            self.stats.malformed += 1;
            if con {
                self.queue_control(from, ControlKind::Rst(mid));
            }
            return None;
        }
        let error = if !is_assigned_method(msg.code()) {
            Some(Code::METHOD_NOT_ALLOWED)
        } else if self.has_bad_critical_option(&msg) {
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
        let free = if error.is_none() {
            self.free_index()
        } else {
            None
        };
        let index = match (error, free) {
            (None, Some(index)) => index,
            (error, _) => {
                let code = error.unwrap_or_else(|| {
                    self.stats.overloaded += 1;
                    Code::SERVICE_UNAVAILABLE
                });
                self.reply_error(now, from, &msg, code, lifetime);
                return None;
            }
        };
        let generation = self.gens[index].wrapping_add(1);
        let entry = self.dedup.insert(
            now,
            from,
            mid,
            lifetime,
            if con {
                Reply::Pending(((index as u32) << 16) | generation as u32)
            } else {
                Reply::Nothing
            },
        );
        let wait = self
            .config
            .deferred_response_timeout
            .unwrap_or(self.exchange_lifetime);
        let (deadline, state) = if con {
            (now + self.config.empty_ack_delay, State::DeferredCon)
        } else {
            (now + wait, State::Deferred)
        };
        let mut slot = Slot::new(
            from,
            deadline,
            state,
            msg.token(),
            if con { CON } else { 0 },
        );
        slot.mid = mid;
        slot.dedup = entry as u16;
        slot.no_response = match msg.no_response() {
            Ok(Some(nr)) => nr.0,
            _ => 0,
        };
        let generation = self.occupy(index, slot);
        Some(Incoming::Request {
            handle: IncomingHandle {
                index: index as u16,
                generation,
            },
            message: msg,
        })
    }

    /// §5.4.1, §5.4.3: a critical option the endpoint does not recognize, or a
    /// recognized one whose value has the wrong length.
    pub(super) fn has_bad_critical_option(&self, msg: &Message<'_>) -> bool {
        msg.options().any(|o| {
            o.number.is_critical()
                && (!self.knows(o.number)
                    || o.number.info().is_some_and(|i| {
                        o.value.len() < i.min_len as usize || o.value.len() > i.max_len as usize
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

    /// Answers a request the endpoint itself refuses (4.02, 4.05, 5.03): piggybacked
    /// and stored for replay if CON, a NON response otherwise.
    pub(super) fn reply_error(
        &mut self,
        now: Instant,
        to: P,
        msg: &Message<'_>,
        code: Code,
        lifetime: Duration,
    ) {
        let con = msg.ty() == Type::Con;
        let (ty, mid) = if con {
            (Type::Ack, msg.message_id())
        } else {
            (Type::Non, self.new_mid())
        };
        let mut bytes = [0u8; CONTROL_BYTES];
        let Ok(mut b) = MessageBuilder::new(&mut bytes, ty, code, mid) else {
            return;
        };
        let token = msg.token();
        let max_age = self.config.overload_max_age;
        let built = b.token(token).and_then(|b| {
            if code == Code::SERVICE_UNAVAILABLE {
                let mut tmp = [0; 4];
                b.option(OptionNumber::MAX_AGE, encode_uint(max_age, &mut tmp))?;
            }
            Ok(())
        });
        if built.is_err() {
            return;
        }
        let len = b.len();
        if NoResponse(msg.no_response().ok().flatten().map_or(0, |n| n.0)).suppresses(code) {
            if con {
                let entry = self
                    .dedup
                    .insert(now, to, msg.message_id(), lifetime, Reply::EmptyAck);
                self.owe(entry, to, msg.message_id(), Reply::EmptyAck);
            }
            return;
        }
        if con {
            let entry = self
                .dedup
                .insert(now, to, msg.message_id(), lifetime, Reply::Nothing);
            self.dedup.store(entry, &bytes[..len]);
            self.dedup.mark_pending(entry);
        } else {
            self.dedup
                .insert(now, to, msg.message_id(), lifetime, Reply::Nothing);
            self.queue_control(
                to,
                ControlKind::Bytes {
                    len: len as u8,
                    bytes,
                },
            );
        }
    }
}

/// The methods RFC 7252 and RFC 8132 assign (0.01–0.07); others get 4.05 (§5.8).
fn is_assigned_method(code: Code) -> bool {
    code.is_request() && code.detail() <= 7
}
