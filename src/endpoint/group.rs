//! Group communication, client role (RFC 7252 §8.1; RFC 7959 §2.8): one request to a
//! group, answered by any number of its members. The server role's rules (no RST, no
//! error answers, answers within Leisure, §8.2) sit where requests are taken and
//! answered: [`Endpoint::handle_group_datagram`] and `server.rs`.
//!
//! Transitions of a group request (a client slot marked `GROUP`):
//!
//! - Sent once as NON (§8.1: never CON); it then collects responses until `deadline`,
//!   the collection window. Any response with its token, from any source, is its
//!   member's answer; duplicates of one answer (same source and message ID) are
//!   recognised by the dedup table like any NON (§4.5) and not delivered again.
//! - A member's answer that cannot be used as it stands is continued by unicast to that
//!   member alone, in a `MEMBER` slot whose responses are delivered under the group
//!   request's handle: the next Block2 block of a block-wise answer (RFC 7959 §2.8),
//!   or the request repeated with the Echo value of a 4.01 (RFC 9175 §2.3). A member's
//!   follow-up keeps its own download state, so bodies of different members never mix.
//! - At the end of the window the group request is *collected*: late answers are
//!   rejected as any unmatched response. It ends, with [`Event::GroupEnded`], once its
//!   follow-ups have ended too; a follow-up that fails, or one that could not start
//!   for want of a record or buffer, reports [`Event::MemberFailed`] first.
//!
//! [`Event::GroupEnded`]: super::Event::GroupEnded
//! [`Event::MemberFailed`]: super::Event::MemberFailed

use super::client::{ClientBlocks, Taken};
use super::client_block::{BlockPayload, Rewrite};
use super::slot::{CON, GROUP, MEMBER, Outcome, Slot, State};
use super::{Endpoint, Incoming, MAX_TOKEN_LEN, RequestHandle};
use crate::Instant;
use crate::block::Block2Download;
use crate::wire::{Block, Code, Message, OptionNumber, Type};

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
    /// A member's answer to group request `index`, from `from`.
    pub(super) fn take_group_response<'b>(
        &mut self,
        now: Instant,
        index: usize,
        from: P,
        msg: &Message<'b>,
    ) -> Taken<'b> {
        let handle = RequestHandle {
            index: index as u16,
            generation: self.gens[index],
        };
        // The group request's own download state is never fed (each member's answer
        // has its own): it only says what block size the request asked for.
        let Some(asked) = self.blocks(index).map(|b| b.download.next_request_block()) else {
            return Taken::Unmatched;
        };
        let download = match asked {
            Some(block) => Block2Download::new().with_early(block.szx()),
            None => Block2Download::new(),
        };
        if msg.code() == Code::UNAUTHORIZED {
            if let Ok(Some(echo)) = msg.echo() {
                let repeated = self
                    .stored_request(index)
                    .is_some_and(|m| m.has_option(OptionNumber::ECHO));
                if !repeated && self.spawn_member(now, index, from, download, None, Some(echo)) {
                    return Taken::Absorbed;
                }
            }
        }
        let block2 = msg.block2().ok().flatten();
        let block = match block2.filter(|_| msg.code().is_success()) {
            None => None,
            Some(_) => {
                let mut download = download;
                let received = match download.on_response(
                    block2,
                    msg.etag().ok().flatten(),
                    msg.size2().ok().flatten(),
                    msg.payload().len(),
                ) {
                    Ok(received) => received,
                    Err(e) => {
                        // Not a first block that can be continued (a later one, a
                        // wrong length …): not this request's answer.
                        log_info!("ignoring a member's answer to {handle}: {e}");
                        return Taken::Unmatched;
                    }
                };
                if !received.last {
                    let next = download.next_request_block();
                    let continued = next.is_some_and(|n| {
                        self.spawn_member(now, index, from, download, Some(n), None)
                    });
                    if !continued {
                        // Delivered all the same; the body stays incomplete, and the
                        // group request reports it before it ends.
                        log_info!(
                            "{handle}: no record or buffer to continue a member's block-wise answer"
                        );
                        self.note_unfollowed(index);
                    }
                }
                Some(received)
            }
        };
        Taken::Response(Incoming::Response {
            handle,
            message: *msg,
            block,
        })
    }

    /// Starts a unicast follow-up of group request `group` to `member`: the group's
    /// request as CON, with a new token, asking for block `next` (with `download`, fed
    /// the member's first block) or carrying `echo`. `false` if no record, buffer or
    /// room in the message was free.
    fn spawn_member(
        &mut self,
        now: Instant,
        group: usize,
        member: P,
        download: Block2Download,
        next: Option<Block>,
        echo: Option<&[u8]>,
    ) -> bool {
        let (gbuf, followers) = match self.slots.get(group) {
            Some(Some(g)) => (g.buf, g.retransmits_left),
            _ => return false,
        };
        let Some(start) = self.pool.blocks(gbuf).map(|b| b.start) else {
            return false;
        };
        if followers == u8::MAX {
            return false;
        }
        let reserve = self.config.immediate_reserve as usize;
        let Some(index) = self.free_index() else {
            return false;
        };
        let Some(buf) = self.pool.take(true, reserve) else {
            self.free.push(index);
            return false;
        };
        self.pool.copy(gbuf, buf);
        // The group's NON becomes a CON: to one server, reliability is affordable.
        if let Some(first) = self.pool.buf_mut(buf).first_mut() {
            *first = (*first & !0x30) | (Type::Con.bits() << 4);
        }
        self.pool.blocks[buf as usize] = Some(ClientBlocks {
            start,
            download,
            upload: None,
            fresh_token: false,
            failed: None,
            release_on_ack: false,
        });
        // A neutral state until the rewrite below queues it.
        let mut slot = Slot::new(member, now, State::AwaitingBlock, &[], CON);
        slot.buf = buf;
        slot.quota = MEMBER;
        slot.dedup = group as u16;
        self.occupy(index, slot);
        if let Some(Some(g)) = self.slots.get_mut(group) {
            g.retransmits_left += 1;
        }
        let mut token = [0u8; MAX_TOKEN_LEN];
        let token_len = self.fresh_token(member, &mut token);
        let drop: &[OptionNumber] = if next.is_some() {
            &[
                OptionNumber::BLOCK2,
                OptionNumber::ECHO,
                OptionNumber::OBSERVE,
            ]
        } else {
            &[OptionNumber::ECHO, OptionNumber::OBSERVE]
        };
        let rewritten = self.requeue_block_request(
            now,
            index,
            Rewrite {
                token: (token, token_len),
                drop,
                block1: None,
                block2: next,
                echo,
                payload: BlockPayload::Keep,
            },
        );
        if rewritten.is_err() {
            self.release(index);
            return false;
        }
        true
    }

    /// A member's answer to group request `index` could not be followed up: counted
    /// in its `no_response` (unused by a client record that never observes), reported
    /// as [`Event::MemberFailed`](super::Event::MemberFailed) when the request ends.
    fn note_unfollowed(&mut self, index: usize) {
        if let Some(Some(g)) = self.slots.get_mut(index) {
            g.no_response = g.no_response.saturating_add(1);
        }
    }

    /// The group request a `MEMBER` slot follows up, as the handle its responses and
    /// events are delivered under.
    pub(super) fn group_of(&self, slot: &Slot<P>) -> Option<RequestHandle> {
        if slot.quota & MEMBER == 0 || !slot.is_client() {
            return None;
        }
        let index = slot.dedup as usize;
        let generation = *self.gens.get(index)?;
        Some(RequestHandle {
            index: index as u16,
            generation,
        })
    }

    /// The collection window of group request `index` closed: it ends now, or with its
    /// last follow-up.
    pub(super) fn close_window(&mut self, index: usize) {
        if let Some(Some(g)) = self.slots.get_mut(index) {
            g.state = if g.retransmits_left == 0 {
                State::Done(Outcome::GroupEnded)
            } else {
                State::Collected
            };
        }
    }

    /// A `MEMBER` slot was released: its group request has one follow-up less, and ends
    /// if it was only waiting for them.
    pub(super) fn member_released(&mut self, group: usize) {
        let Some(Some(g)) = self.slots.get_mut(group) else {
            return;
        };
        if g.quota & GROUP == 0 || !g.is_client() {
            return;
        }
        g.retransmits_left = g.retransmits_left.saturating_sub(1);
        if g.state == State::Collected && g.retransmits_left == 0 {
            g.state = State::Done(Outcome::GroupEnded);
            self.sync(group);
        }
    }

    /// Forgets the follow-ups of group request `group` (it is being cancelled).
    pub(super) fn release_members(&mut self, group: usize) {
        for i in 0..EXCHANGES {
            let follows = matches!(&self.slots[i], Some(s)
                if s.quota & MEMBER != 0 && s.is_client() && s.dedup as usize == group);
            if follows {
                self.release(i);
            }
        }
    }
}
