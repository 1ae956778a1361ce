//! Output scheduling: control messages first, then owed answers, then slot sends, then
//! reports.

use super::client_block::BlockFailure;
use super::observe::NOTIFICATION;
use super::server::ServerAction;
use super::slot::{Outcome, State};
use super::{Endpoint, Event, IncomingHandle, Output, RequestHandle, Transmit};
use crate::Instant;
use crate::block::DownloadError;
use crate::dedup::Reply;
use crate::wire::Type;

/// A stateless answer waiting to be sent: RST for what matched nothing, or an error
/// response to a NON request. Answers owed to accepted messages are not queued here but
/// marked on their dedup entries, so they cannot be crowded out.
///
/// A queue entry is a few bytes; the refusals it may point to are built when queued
/// into `REFUSALS` places of `CONTROL_BYTES`, so that eight 48-byte places are not
/// kept for what is mostly 4-byte RSTs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Control<P> {
    pub(super) to: P,
    pub(super) kind: ControlKind,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum ControlKind {
    EmptyAck(u16),
    Rst(u16),
    /// An error response built when queued, in this place of `refusals`.
    Refusal(u8),
}

pub(super) const CONTROL_QUEUE: usize = 8;
/// Places for refusals waiting to be sent. One input queues at most two (its own and
/// the refusal of a request admitted over the quota); more wait only when several
/// deferred NON requests expire at once or inputs are not drained between them.
pub(super) const REFUSALS: usize = 4;
pub(super) const CONTROL_BYTES: usize = 48;

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
    pub(super) fn queue_control(&mut self, to: P, kind: ControlKind) {
        let (head, len) = (self.control_head as usize, self.control_len as usize);
        if len == CONTROL_QUEUE {
            self.stats.control_dropped += 1;
            return;
        }
        self.control[(head + len) % CONTROL_QUEUE] = Some(Control { to, kind });
        self.control_len += 1;
    }

    /// Queues a refusal built by the caller (at most `CONTROL_BYTES`); dropped and
    /// counted like any control message when there is no room.
    pub(super) fn queue_refusal(&mut self, to: P, bytes: &[u8]) {
        let place = self.refusal_lens.iter().position(|&len| len == 0);
        match place {
            Some(i) if self.refusal_room() && bytes.len() <= CONTROL_BYTES => {
                self.refusals[i][..bytes.len()].copy_from_slice(bytes);
                self.refusal_lens[i] = bytes.len() as u8;
                self.queue_control(to, ControlKind::Refusal(i as u8));
            }
            _ => self.stats.control_dropped += 1,
        }
    }

    /// Whether one more refusal can be queued.
    pub(super) fn refusal_room(&self) -> bool {
        (self.control_len as usize) < CONTROL_QUEUE && self.refusal_lens.contains(&0)
    }

    pub(super) fn pop_control(&mut self) -> Option<Control<P>> {
        if self.control_len == 0 {
            return None;
        }
        let head = self.control_head as usize % CONTROL_QUEUE;
        let c = self.control[head].take();
        self.control_head = ((head + 1) % CONTROL_QUEUE) as u8;
        self.control_len -= 1;
        c
    }

    /// The next thing to do: a datagram to send, an event, or the instant to call
    /// again. Fires due timers first. Drain it after every input and command.
    pub fn poll_output(&mut self, now: Instant) -> Output<'_, P> {
        let now = self.clamp(now);
        self.handle_timeout(now);
        // Control messages first: they are small and answer what the peer just sent.
        if let Some(control) = self.pop_control() {
            let data = match control.kind {
                ControlKind::EmptyAck(mid) | ControlKind::Rst(mid) => {
                    let ty = if matches!(control.kind, ControlKind::Rst(_)) {
                        Type::Rst
                    } else {
                        Type::Ack
                    };
                    let [m0, m1] = mid.to_be_bytes();
                    self.scratch = [0x40 | (ty.bits() << 4), 0, m0, m1];
                    &self.scratch[..]
                }
                ControlKind::Refusal(i) => {
                    let i = i as usize % REFUSALS;
                    // The place is free again; its bytes stay while the transmit
                    // borrows the endpoint.
                    let len = core::mem::take(&mut self.refusal_lens[i]) as usize;
                    &self.refusals[i][..len]
                }
            };
            return Output::Transmit(Transmit {
                to: control.to,
                data,
            });
        }
        // Then the answers owed to accepted messages: ACKs and replays (§4.2, §4.5).
        while let Some((entry, to, mid)) = self.dedup.take_pending() {
            match self.dedup.reply(entry) {
                Reply::EmptyAck => {
                    let [m0, m1] = mid.to_be_bytes();
                    self.scratch = [0x40 | (Type::Ack.bits() << 4), 0, m0, m1];
                    return Output::Transmit(Transmit {
                        to,
                        data: &self.scratch,
                    });
                }
                // A reply overwritten in the arena since is lost, as if on the way.
                Reply::Stored { .. } if self.dedup.stored(entry).is_some() => {
                    return Output::Transmit(Transmit {
                        to,
                        data: self.dedup.stored(entry).unwrap_or(&[]),
                    });
                }
                _ => {}
            }
        }
        while let Some(index) = self.to_send.pop() {
            let Some(Some(slot)) = self.slots.get_mut(index) else {
                continue;
            };
            if !slot.sending() {
                continue;
            }
            slot.set_sending(false);
            let (to, state, buf) = (slot.peer, slot.state, slot.buf);
            let (mid, entry) = (slot.mid, slot.dedup as usize);
            if state == State::Piggybacked && self.dedup.key(entry) == Some((to, mid)) {
                // Keep the reply for duplicates of the request (§4.5) — if the dedup
                // entry still belongs to it. A protected entry has its room reserved.
                // (Set: only a request makes a piggybacked answer.)
                debug_assert!(self.server.is_some());
                if let Some(server) = self.server {
                    server(self, now, ServerAction::KeepReply { entry, buf });
                }
            }
            if matches!(state, State::Piggybacked | State::SendingNon) {
                // Sent once and done. The buffer goes back to the pool, but its bytes
                // stay untouched while the transmit borrows the endpoint.
                self.release(index);
            }
            return Output::Transmit(Transmit {
                to,
                data: self.pool.message(buf),
            });
        }
        while let Some(index) = self.to_report.pop() {
            let Some(Some(slot)) = self.slots.get(index) else {
                continue;
            };
            let (generation, peer) = (self.gens[index], slot.peer);
            let index16 = index as u16;
            if slot.state == State::NeedsBlock {
                let (offset, max_len) = self
                    .blocks(index)
                    .and_then(|b| b.upload)
                    .and_then(|u| u.next_offset())
                    .unwrap_or((0, 0));
                if let Some(Some(slot)) = self.slots.get_mut(index) {
                    slot.state = State::AwaitingBlock;
                }
                return Output::Event(Event::BlockNeeded {
                    handle: RequestHandle {
                        index: index16,
                        generation,
                    },
                    offset,
                    max_len,
                });
            }
            let State::Done(outcome) = slot.state else {
                continue;
            };
            if slot.quota & NOTIFICATION != 0 {
                // The observer table's business, not the application's.
                let observer = slot.dedup as usize;
                self.on_notification_outcome(now, index, observer, outcome);
                self.release(index);
                continue;
            }
            let request = RequestHandle {
                index: index16,
                generation,
            };
            if let Some(group) = self.group_of(slot) {
                // A member's follow-up failed (it ends silently when it succeeds).
                log_info!("a member's follow-up of {group} failed: {outcome:?}");
                self.release(index);
                return Output::Event(Event::MemberFailed(group));
            }
            let incoming = IncomingHandle {
                index: index16,
                generation,
            };
            let event = match outcome {
                Outcome::TimedOut => Event::TimedOut(request),
                Outcome::Reset => Event::Reset(request),
                Outcome::Pong => Event::Pong(request),
                Outcome::ObserveEnded => Event::ObservationEnded(request),
                Outcome::GroupEnded if slot.no_response > 0 => {
                    // Follow-ups that could not start are reported before the end.
                    if let Some(Some(s)) = self.slots.get_mut(index) {
                        s.no_response -= 1;
                    }
                    self.to_report.push(index);
                    return Output::Event(Event::MemberFailed(request));
                }
                Outcome::GroupEnded => Event::GroupEnded(request),
                Outcome::BlockFailed => match self.blocks(index).and_then(|b| b.failed) {
                    Some(BlockFailure::Upload(e)) => Event::UploadFailed(request, e),
                    Some(BlockFailure::Download(e)) => Event::BlockFailed(request, e),
                    // Only a request released at its empty ACK fails without its
                    // block-wise state (`follow_block2`).
                    None if slot.buf == super::pool::NO_BUFFER => {
                        Event::BlockFailed(request, DownloadError::Released)
                    }
                    None => Event::BlockFailed(request, DownloadError::Finished),
                },
                Outcome::Acknowledged => Event::ResponseAcknowledged(incoming),
                Outcome::ResponseTimedOut => Event::ResponseTimedOut(incoming),
                Outcome::ResponseReset => Event::ResponseReset(incoming),
                Outcome::Expired => Event::RequestExpired(incoming),
                Outcome::Refused => Event::RequestRefused(incoming),
            };
            if !matches!(
                event,
                Event::Pong(_) | Event::ResponseAcknowledged(_) | Event::BlockNeeded { .. }
            ) {
                log_info!("{event}");
            }
            self.release(index);
            self.start_queued(now, peer);
            return Output::Event(event);
        }
        if self.observe_room {
            self.observe_room = false;
            self.observe_waiting = false;
            if let Some(resource) = self.due_resource() {
                return Output::Event(Event::NotificationsDue(resource));
            }
        }
        Output::Timeout(self.next_timer().map(|(at, _)| at))
    }
}
