//! The slots and the indexes over them.

use super::client::ClientBlocks;
use super::observe::NOTIFICATION;
use super::slot::{COUNTED, HELD, MUST_ANSWER, Slot, State};
use super::{Endpoint, token_hash};
use crate::Instant;

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
    /// A free slot, taken off the free list: the caller must `occupy` it or give it
    /// back with `release`.
    pub(super) fn free_index(&mut self) -> Option<usize> {
        self.free.pop()
    }

    pub(super) fn slot_mut(&mut self, index: u16, generation: u16) -> Option<&mut Slot<P>> {
        match self.slots.get_mut(index as usize) {
            Some(Some(s)) if self.gens.get(index as usize) == Some(&generation) => Some(s),
            _ => None,
        }
    }

    /// Puts `slot` in place `index` under a new generation.
    pub(super) fn occupy(&mut self, index: usize, slot: Slot<P>) -> u16 {
        let generation = self.gens[index].wrapping_add(1);
        self.gens[index] = generation;
        if slot.state == State::Queued {
            self.queued += 1;
        }
        self.slots[index] = Some(slot);
        self.sync(index);
        generation
    }

    /// Brings the indexes in line with slot `index` after it changed.
    pub(super) fn sync(&mut self, index: usize) {
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        if slot.is_outstanding() != (slot.bits & COUNTED != 0) {
            slot.bits ^= COUNTED;
            if slot.bits & COUNTED != 0 {
                self.outstanding += 1;
            } else {
                self.outstanding -= 1;
            }
        }
        // Only requests admitted under the quota count toward it.
        // Notifications are not requests with the application: they have their own
        // limit (they leave `immediate_reserve` records free).
        let held = slot.is_held() && slot.quota & (MUST_ANSWER | NOTIFICATION) == 0;
        if held != (slot.quota & HELD != 0) {
            slot.quota ^= HELD;
            if slot.quota & HELD != 0 {
                self.held += 1;
            } else {
                self.held -= 1;
            }
        }
        let slot = &*slot;
        let has_timer = slot.has_timer();
        let slots = &self.slots;
        let key = |i: usize| slots[i].as_ref().map_or(Instant::MAX, |s| s.deadline);
        if has_timer {
            self.timers.set(index, &key);
        } else {
            self.timers.remove(index, &key);
        }
        let Some(Some(slot)) = self.slots.get(index) else {
            return;
        };
        if slot.sending() {
            self.to_send.push(index);
        }
        if matches!(slot.state, State::Done(_) | State::NeedsBlock) {
            self.to_report.push(index);
        }
        if slot.answerable() {
            self.by_mid.insert(index, slot.mid as u32);
        } else {
            self.by_mid.remove(index);
        }
        // Every live client request is indexed by token, queued ones too, so that a new
        // token never repeats one in use; matching a response checks the state.
        if slot.is_client() && !slot.is_ping() && !matches!(slot.state, State::Done(_)) {
            self.by_token.insert(index, token_hash(slot.token()));
        } else {
            self.by_token.remove(index);
        }
    }

    /// The earliest timer and its slot.
    pub(super) fn next_timer(&self) -> Option<(Instant, usize)> {
        let index = self.timers.peek()?;
        Some((self.slots.get(index)?.as_ref()?.deadline, index))
    }

    /// Frees slot `index` and drops it from every index. Queued sends and reports of
    /// the slot are skipped when they come up.
    pub(super) fn release(&mut self, index: usize) {
        if self.slots.get(index).is_some_and(Option::is_some) {
            // Out of the heap while the slot still holds the deadline it is keyed by.
            let slots = &self.slots;
            self.timers.remove(index, &|i| {
                slots[i].as_ref().map_or(Instant::MAX, |s| s.deadline)
            });
        }
        if let Some(slot) = self.slots.get_mut(index).and_then(Option::take) {
            self.pool.give_back(slot.buf);
            if slot.state == State::Queued {
                self.queued -= 1;
            }
            if slot.bits & COUNTED != 0 {
                self.outstanding -= 1;
            }
            if slot.quota & HELD != 0 {
                self.held -= 1;
            }
            self.by_mid.remove(index);
            self.by_token.remove(index);
            self.free.push(index);
            if let Some(group) = self.group_of(&slot) {
                self.member_released(group.index as usize);
            }
            // A notification that found no room may go now.
            self.observe_room |= self.observe_waiting;
        }
    }

    /// The start parameters and block-wise state of client request `index`, kept with
    /// its buffer.
    pub(super) fn blocks(&self, index: usize) -> Option<&ClientBlocks> {
        let b = self.slots.get(index)?.as_ref()?.buf;
        self.pool.blocks(b)
    }

    pub(super) fn blocks_mut(&mut self, index: usize) -> Option<&mut ClientBlocks> {
        let b = self.slots.get(index)?.as_ref()?.buf;
        self.pool.blocks_mut(b)
    }

    /// The message slot `index` holds in its buffer (empty without one).
    pub(super) fn message_of(&self, index: usize) -> &[u8] {
        match self.slots.get(index) {
            Some(Some(s)) => self.pool.message(s.buf),
            _ => &[],
        }
    }
}
