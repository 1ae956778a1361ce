//! The client side of block-wise transfers (RFC 7959 §2.4, §2.5, §3.3): following Block2
//! responses, sending Block1 blocks.

use super::slot::{Outcome, State};
use super::{Endpoint, Error, MAX_TOKEN_LEN, RequestHandle};
use crate::Instant;
use crate::block::{DownloadError, Received, UploadError, UploadStep};
use crate::wire::{Block, BuildError, Message, MessageBuilder, OptionNumber};

/// The payload of a rewritten block request.
#[derive(Clone, Copy, Debug)]
pub(super) enum BlockPayload<'d> {
    /// The stored request's own payload (a FETCH body for each Block2 follow-up).
    Keep,
    /// New bytes: the next Block1 block.
    New(&'d [u8]),
    None,
}

/// How `requeue_block_request` rewrites a stored request.
pub(super) struct Rewrite<'a> {
    pub(super) token: ([u8; MAX_TOKEN_LEN], usize),
    /// Options left out.
    pub(super) drop: &'a [OptionNumber],
    pub(super) block1: Option<Block>,
    pub(super) block2: Option<Block>,
    pub(super) echo: Option<&'a [u8]>,
    pub(super) payload: BlockPayload<'a>,
}

/// Why a block-wise transfer ended a request.
#[derive(Clone, Copy, Debug)]
pub(super) enum BlockFailure {
    Download(DownloadError),
    Upload(UploadError),
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
    /// Sends the next block of an upload: `data` from the offset [`Event::BlockNeeded`](super::Event::BlockNeeded)
    /// named, `more` telling whether blocks follow. Every block but the last must be
    /// exactly the block size.
    pub fn send_block(
        &mut self,
        now: Instant,
        handle: RequestHandle,
        data: &[u8],
        more: bool,
    ) -> Result<(), Error> {
        let now = self.clamp(now);
        let index = handle.index as usize;
        let slot = *self
            .slot_mut(handle.index, handle.generation)
            .ok_or(Error::UnknownHandle)?;
        if !matches!(slot.state, State::NeedsBlock | State::AwaitingBlock) {
            return Err(Error::NoBlockNeeded);
        }
        let blocks = self.blocks(index).ok_or(Error::NoBlockNeeded)?;
        let mut upload = blocks.upload.ok_or(Error::NoBlockNeeded)?;
        let block1 = upload.send(data.len(), more).map_err(Error::Upload)?;
        // An early Block2 rides on the last block (RFC 7959 Figure 11).
        let early = if more {
            None
        } else {
            blocks.download.next_request_block()
        };
        self.requeue_block_request(
            now,
            index,
            Rewrite {
                token: (slot.token, slot.token().len()),
                drop: &[
                    OptionNumber::BLOCK1,
                    OptionNumber::BLOCK2,
                    OptionNumber::SIZE1,
                    OptionNumber::ECHO,
                ],
                block1: Some(block1),
                block2: early,
                echo: None,
                payload: BlockPayload::New(data),
            },
        )?;
        // Only the upload's state changed.
        if let Some(b) = self.blocks_mut(index) {
            b.upload = Some(upload);
        }
        Ok(())
    }

    /// [`send_block`](Self::send_block) from a body the caller holds: takes the bytes
    /// the endpoint asked for.
    pub fn send_body_block(
        &mut self,
        now: Instant,
        handle: RequestHandle,
        body: &[u8],
    ) -> Result<(), Error> {
        if self.slot_mut(handle.index, handle.generation).is_none() {
            return Err(Error::UnknownHandle);
        }
        let (offset, max) = self
            .blocks(handle.index as usize)
            .and_then(|b| b.upload)
            .and_then(|u| u.next_offset())
            .ok_or(Error::NoBlockNeeded)?;
        let start = offset.min(body.len());
        let end = body.len().min(offset + max);
        self.send_block(now, handle, &body[start..end], end < body.len())
    }

    /// Ends a client request whose block-wise transfer cannot go on; the failure is
    /// reported as its outcome.
    pub(super) fn fail_transfer(&mut self, index: usize, failure: BlockFailure) {
        if let Some(b) = self.blocks_mut(index) {
            b.failed = Some(failure);
        }
        if let Some(Some(slot)) = self.slots.get_mut(index) {
            slot.state = State::Done(Outcome::BlockFailed);
        }
        self.sync(index);
    }

    /// Feeds a response to its request's Block1 upload (RFC 7959 §2.5): `Ok(true)` if
    /// the response is for the application (the final one, 4.13, 4.08 or another error),
    /// `Ok(false)` if it only acknowledged a block (the next is then asked for).
    pub(super) fn follow_block1(
        &mut self,
        _now: Instant,
        index: usize,
        msg: &Message<'_>,
    ) -> Result<bool, UploadError> {
        let Some(blocks) = self.blocks_mut(index) else {
            return Ok(true);
        };
        let Some(upload) = blocks.upload.as_mut().filter(|u| !u.is_done()) else {
            return Ok(true);
        };
        let step = upload.on_response(
            msg.code(),
            msg.block1().ok().flatten(),
            msg.size1().ok().flatten(),
        );
        match step {
            Ok(UploadStep::Done) => Ok(true),
            Ok(UploadStep::Continue) => {
                if let Some(Some(slot)) = self.slots.get_mut(index) {
                    slot.state = State::NeedsBlock;
                }
                self.sync(index);
                let peer = self.slots[index].as_ref().map(|s| s.peer);
                if let Some(peer) = peer {
                    // This slot is no longer outstanding: others to the peer may go.
                    self.start_queued(self.last_now, peer);
                }
                Ok(false)
            }
            // Error codes end the request like any final response: the application
            // sees the code (and Size1 with 4.13).
            Err(
                UploadError::TooLarge { .. } | UploadError::Incomplete | UploadError::Rejected(_),
            ) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Feeds a response to its request's Block2 download (RFC 7959 §2.4) and, if more
    /// blocks follow, queues the request for the next one in the same slot.
    pub(super) fn follow_block2(
        &mut self,
        now: Instant,
        index: usize,
        msg: &Message<'_>,
    ) -> Result<Option<Received>, DownloadError> {
        let Some(blocks) = self.blocks_mut(index) else {
            // A request released at its empty ACK has nothing to ask for a next block
            // with: a first block is not passed off as the whole body.
            let released = self.slots[index].as_ref().is_some_and(|s| {
                s.buf == super::pool::NO_BUFFER && s.state == State::AwaitingSeparate
            });
            return match msg.block2() {
                Ok(Some(b)) if released && b.more() && msg.code().is_success() => {
                    Err(DownloadError::Released)
                }
                _ => Ok(None),
            };
        };
        let block2 = msg.block2().ok().flatten();
        if !msg.code().is_success() || (block2.is_none() && blocks.download.received() == 0) {
            // Not block-wise, or an error that ends the request as any response does.
            return Ok(None);
        }
        let received = blocks.download.on_response(
            block2,
            msg.etag().ok().flatten(),
            msg.size2().ok().flatten(),
            msg.payload().len(),
        )?;
        if received.last {
            return Ok(Some(received));
        }
        let next = blocks
            .download
            .next_request_block()
            .ok_or(DownloadError::TooLarge)?;
        let fresh = blocks.fresh_token;
        // RFC 9175 §2.3: an Echo value in a response is for the next request, which
        // proves the client's address to a server that serves it smaller blocks until
        // then (`Endpoint::answer_limit`).
        let echo = msg.echo().ok().flatten();
        self.queue_follow_up(now, index, next, fresh, echo)
            .map_err(|_| DownloadError::TooLarge)?;
        Ok(Some(received))
    }

    /// Rewrites slot `index`'s request for block `next` of the response — same options
    /// and payload, a new Block2, a new token if asked — and queues it.
    pub(super) fn queue_follow_up(
        &mut self,
        now: Instant,
        index: usize,
        next: Block,
        fresh_token: bool,
        echo: Option<&[u8]>,
    ) -> Result<(), BuildError> {
        let mut token = [0u8; MAX_TOKEN_LEN];
        let (peer, old_token) = match self.slots.get(index) {
            Some(Some(s)) => (s.peer, (s.token, s.token().len())),
            _ => return Err(BuildError::PayloadAlreadySet),
        };
        let token_len = if fresh_token {
            self.fresh_token(peer, &mut token)
        } else {
            token = old_token.0;
            old_token.1
        };
        // After an upload the body has been sent: follow-ups for the response's blocks
        // carry neither Block1 nor the payload (RFC 7959 §3.3, Figure 10).
        let uploaded = self
            .stored_request(index)
            .is_some_and(|m| m.has_option(OptionNumber::BLOCK1));
        // A follow-up is a plain GET for a block, never another registration: Observe
        // goes too (RFC 7959 §2.6). So does the request's Echo: each message is repeated
        // for one at most once (`repeat_with_echo`); one the last response carried goes
        // instead.
        let (drop, payload): (&[OptionNumber], _) = if uploaded {
            (
                &[
                    OptionNumber::BLOCK1,
                    OptionNumber::BLOCK2,
                    OptionNumber::SIZE1,
                    OptionNumber::OBSERVE,
                    OptionNumber::ECHO,
                ],
                BlockPayload::None,
            )
        } else {
            (
                &[
                    OptionNumber::BLOCK2,
                    OptionNumber::OBSERVE,
                    OptionNumber::ECHO,
                ],
                BlockPayload::Keep,
            )
        };
        self.requeue_block_request(
            now,
            index,
            Rewrite {
                token: (token, token_len),
                drop,
                block1: None,
                block2: Some(next),
                echo,
                payload,
            },
        )
    }

    /// A 4.01 Unauthorized with `echo` answered slot `index`'s request (RFC 9175
    /// §2.3): unless that request carried an Echo already, it goes again under the same
    /// handle — new message ID and token, the value added — and `true` is returned.
    pub(super) fn repeat_with_echo(&mut self, now: Instant, index: usize, echo: &[u8]) -> bool {
        let peer = match &self.slots[index] {
            Some(s)
                if matches!(
                    s.state,
                    State::AwaitingAck | State::AwaitingSeparate | State::AwaitingNonResponse
                ) && !s.is_ping() =>
            {
                s.peer
            }
            _ => return false,
        };
        if self
            .stored_request(index)
            .is_none_or(|m| m.has_option(OptionNumber::ECHO))
        {
            return false;
        }
        let mut token = [0u8; MAX_TOKEN_LEN];
        let token_len = self.fresh_token(peer, &mut token);
        self.requeue_block_request(
            now,
            index,
            Rewrite {
                token: (token, token_len),
                drop: &[OptionNumber::ECHO],
                block1: None,
                block2: None,
                echo: Some(echo),
                payload: BlockPayload::Keep,
            },
        )
        .is_ok()
    }

    /// The request stored in slot `index`.
    pub(super) fn stored_request(&self, index: usize) -> Option<Message<'_>> {
        Message::parse(self.message_of(index)).ok()
    }

    /// Rewrites the request stored in slot `index` and queues it: the same header and
    /// options but `drop`, then `block1`/`block2`/`echo`, the given token, and the
    /// payload — kept where it is, new (copied once, straight into the slot's buffer),
    /// or none. A refusal changes nothing.
    pub(super) fn requeue_block_request(
        &mut self,
        now: Instant,
        index: usize,
        Rewrite {
            token: (token, token_len),
            drop,
            block1,
            block2,
            echo,
            payload,
        }: Rewrite<'_>,
    ) -> Result<(), BuildError> {
        let mut tmp = [0u8; MSG_BYTES];
        let (len, kept) = {
            // The slot holds a request this endpoint built, so it always parses.
            let old = self
                .stored_request(index)
                .ok_or(BuildError::PayloadAlreadySet)?;
            let mut b = MessageBuilder::new(&mut tmp, old.ty(), old.code(), 0)?;
            b.token(&token[..token_len])?;
            for o in old.options().filter(|o| !drop.contains(&o.number)) {
                b.option(o.number, o.value)?;
            }
            if let Some(block) = block1 {
                b.block1(block)?;
            }
            if let Some(block) = block2 {
                b.block2(block)?;
            }
            if let Some(value) = echo {
                b.echo(value)?;
            }
            let kept = old.as_bytes().len() - old.payload().len()..old.as_bytes().len();
            (b.len(), kept)
        };
        let data_len = match payload {
            BlockPayload::Keep => kept.len(),
            BlockPayload::New(d) => d.len(),
            BlockPayload::None => 0,
        };
        let total = if data_len == 0 {
            len
        } else {
            len + 1 + data_len
        };
        if total > MSG_BYTES {
            return Err(BuildError::BufferTooSmall { needed: total });
        }
        let Some(Some(slot)) = self.slots.get(index) else {
            return Err(BuildError::PayloadAlreadySet);
        };
        let b = slot.buf;
        let buf = self.pool.buf_mut(b);
        // Payload first (a kept one may move within the buffer), then header and options.
        match payload {
            BlockPayload::Keep if data_len > 0 => crate::shift::shift(buf, kept, len + 1),
            BlockPayload::New(d) if data_len > 0 => buf[len + 1..total].copy_from_slice(d),
            _ => {}
        }
        buf[..len].copy_from_slice(&tmp[..len]);
        if data_len > 0 {
            buf[len] = 0xff;
        }
        self.pool.set_len(b, total);
        if let Some(Some(slot)) = self.slots.get_mut(index) {
            slot.token = token;
            slot.bits = (slot.bits & !0x0f) | token_len as u8;
            slot.state = State::Queued;
            slot.deadline = now;
            slot.timeout_us = 0;
        }
        self.queued += 1;
        self.sync(index);
        self.try_start(now, index);
        Ok(())
    }
}
