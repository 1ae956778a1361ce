//! What accepted messages are owed (RFC 7252 §4.2, §4.5): ACKs, RSTs and replays, kept on
//! the dedup entries.

use super::Endpoint;
use super::output::ControlKind;
use super::server::ServerAction;
use super::slot::{Outcome, State};
use crate::Instant;
use crate::dedup::Reply;
use crate::wire::Message;

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
    /// Owes `reply` to the peer of dedup entry `entry` (the message `peer`/`mid`): it
    /// goes out at the next `poll_output` and stays the answer for duplicates. If the
    /// entry was given up for another message meanwhile, an empty ACK is still sent.
    pub(super) fn owe(&mut self, entry: usize, peer: P, mid: u16, reply: Reply) {
        if self.dedup.key(entry) == Some((peer, mid)) {
            if !matches!(self.dedup.reply(entry), Reply::Stored { .. }) {
                self.dedup.set_reply(entry, reply);
            }
            self.dedup.mark_pending(entry);
        } else if reply == Reply::EmptyAck {
            self.queue_control(peer, ControlKind::EmptyAck(mid));
        }
    }

    /// An ACK: acknowledges a CON of ours with the same peer and MID (§4.2, §4.4).
    pub(super) fn on_ack(&mut self, now: Instant, from: P, msg: &Message<'_>) {
        if msg.code().is_request() {
            // §4.2: an ACK carries a response or nothing; reject by ignoring.
            return;
        }
        let Some(index) = self.find_sent(from, msg.message_id()) else {
            self.stats.unmatched += 1;
            return;
        };
        let separate_wait = self.blocks(index).map_or(self.separate_wait(), |b| {
            crate::time::duration_from_micros(b.start.separate_wait_ms as u64 * 1000)
        });
        let release = self.blocks(index).is_some_and(|b| b.release_on_ack);
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        match slot.state {
            State::AwaitingAck if slot.is_ping() => {
                slot.state = State::Done(Outcome::Pong);
            }
            State::AwaitingAck if msg.is_empty() => {
                slot.state = State::AwaitingSeparate;
                slot.deadline = now + separate_wait;
                if release {
                    // §5.2.2: never sent again from here; the record waits alone
                    // (`RequestOptions::release_on_ack`).
                    let buf = core::mem::replace(&mut slot.buf, super::pool::NO_BUFFER);
                    self.pool.give_back(buf);
                }
                self.start_queued(now, from);
            }
            State::AwaitingAck => {} // piggybacked response: take_response finishes it
            State::RespondingCon => slot.state = State::Done(Outcome::Acknowledged),
            _ => {}
        }
        self.sync(index);
    }

    /// A RST: rejects a CON of ours with the same peer and MID (§4.2).
    pub(super) fn on_rst(&mut self, now: Instant, from: P, msg: &Message<'_>) {
        if !msg.is_empty() {
            return; // §4.2: a RST must be Empty; reject by ignoring.
        }
        let Some(index) = self.find_sent(from, msg.message_id()) else {
            // A NON notification leaves no record; its observer remembers its ID.
            if !self.on_unmatched_rst(from, msg.message_id()) {
                self.stats.unmatched += 1;
            }
            return;
        };
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        slot.state = match slot.state {
            State::AwaitingAck if slot.is_ping() => State::Done(Outcome::Pong),
            State::AwaitingAck | State::AwaitingNonResponse | State::AwaitingSeparate => {
                State::Done(Outcome::Reset)
            }
            State::RespondingCon => State::Done(Outcome::ResponseReset),
            other => other,
        };
        self.sync(index);
        self.start_queued(now, from);
    }

    /// The slot whose last sent message has this peer and MID and may be answered.
    pub(super) fn find_sent(&self, from: P, mid: u16) -> Option<usize> {
        self.by_mid.candidates(mid as u32).find(|&i| {
            matches!(&self.slots[i], Some(s) if s.mid == mid && s.peer == from && s.answerable())
        })
    }

    /// Sends a duplicate of a remembered CON its first reply again (§4.5).
    pub(super) fn replay(&mut self, now: Instant, to: P, mid: u16, entry: usize) {
        match self.dedup.reply(entry) {
            Reply::EmptyAck | Reply::Stored { .. } => self.dedup.mark_pending(entry),
            Reply::Pending(tag) => {
                // The request is still with the application. Its client is
                // retransmitting, so acknowledge now rather than wait for the timer —
                // unless a piggybacked answer is about to leave: that is the reply.
                let (index, generation) = ((tag >> 16) as u16, tag as u16);
                match self.slot_mut(index, generation).map(|s| s.state) {
                    Some(State::Piggybacked) => {}
                    Some(State::Handling) => {
                        // Set: a slot with its handling call came with a request.
                        debug_assert!(self.server.is_some());
                        if let Some(server) = self.server {
                            server(self, now, ServerAction::Timer(index as usize));
                        }
                    }
                    _ => self.owe(entry, to, mid, Reply::EmptyAck),
                }
            }
            Reply::Nothing => {}
        }
    }
}
