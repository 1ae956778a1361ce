//! What the deadlines mean and what firing them does (RFC 7252 §4.2, §5.2.2).

use super::Endpoint;
use super::server::ServerAction;
use super::slot::{GROUP, Outcome, State};
use crate::Instant;
use crate::retransmit::{RetransmitAction, step};

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
    /// Fires every timer due at `now`: retransmissions, give-ups, empty ACKs and
    /// expiries. [`poll_output`](Self::poll_output) calls it too.
    ///
    /// While the refusals it may queue (5.00 for an expired deferred request, 5.03 for
    /// one deferred over the quota) have no free place, the remaining timers wait for
    /// the next `poll_output`, which sends the queued ones first: many deadlines at one
    /// instant thus lose no refusal.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        // Every firing moves its timer later or removes it; the bound only guards
        // against a bug turning into a hang.
        for _ in 0..4 * EXCHANGES + 4 {
            match self.next_timer() {
                Some((at, index)) if at <= now && self.refusal_room() => self.fire(now, index),
                _ => return,
            }
        }
    }

    /// The transitions of §4.2 and §5.2.2 driven by time, for slot `index`.
    pub(super) fn fire(&mut self, now: Instant, index: usize) {
        let Some(Some(slot)) = self.slots.get_mut(index) else {
            return;
        };
        match slot.state {
            State::AwaitingAck | State::RespondingCon => {
                match step(
                    &mut slot.deadline,
                    &mut slot.timeout_us,
                    &mut slot.retransmits_left,
                    now,
                ) {
                    RetransmitAction::Wait => {}
                    RetransmitAction::Retransmit => {
                        slot.set_sending(true);
                        self.stats.retransmissions += 1;
                        log_info!(
                            "retransmitting CON MID {:#06x} ({} more at most)",
                            slot.mid,
                            slot.retransmits_left
                        );
                    }
                    RetransmitAction::GiveUp => {
                        log_info!("giving up on CON MID {:#06x}: never acknowledged", slot.mid);
                        slot.state = if slot.state == State::AwaitingAck {
                            State::Done(Outcome::TimedOut)
                        } else {
                            State::Done(Outcome::ResponseTimedOut)
                        };
                    }
                }
            }
            State::AwaitingNonResponse if slot.quota & GROUP != 0 => self.close_window(index),
            State::AwaitingNonResponse | State::AwaitingSeparate => {
                slot.state = State::Done(Outcome::TimedOut);
            }
            // §8.2: the point within Leisure has come.
            State::Leisure => {
                slot.state = State::SendingNon;
                slot.set_sending(true);
            }
            // A server slot: see `Endpoint::server`.
            State::Handling | State::Deferred => match self.server {
                Some(server) => return server(self, now, ServerAction::Timer(index)),
                // Cannot happen (server slots come with a request, which sets it);
                // ending the slot keeps its timer from staying due.
                None => {
                    debug_assert!(false, "a server slot without the server hook");
                    slot.state = State::Done(Outcome::Expired);
                }
            },
            _ => {}
        }
        self.sync(index);
    }
}
