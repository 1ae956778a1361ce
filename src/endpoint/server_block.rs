//! The server side of block-wise transfers (RFC 7959 §2.4, §2.5): serving bodies in Block2
//! blocks, assembling Block1 bodies.

use super::{Block1Body, Endpoint, Error, IncomingHandle};
use crate::Instant;
use crate::block::{AssembleError, Assembled, Block1Assembler, block1_key, serve_block2};
use crate::wire::{Block, BuildError, Code, Message, MessageBuilder};

impl<
    P: Copy + Eq,
    const EXCHANGES: usize,
    const BUFFERS: usize,
    const MSG_BYTES: usize,
    const DEDUP_ENTRIES: usize,
    const REPLY_BYTES: usize,
> Endpoint<P, EXCHANGES, BUFFERS, MSG_BYTES, DEDUP_ENTRIES, REPLY_BYTES>
{
    /// Answers `request` with `body`, block-wise when the body does not fit one message
    /// or the request asked for a block (RFC 7959 §2.4). The endpoint takes the slice
    /// the request's Block2 names, at the smaller of the requested block size and the
    /// largest that fits the message buffer, and adds Block2 and Size2 (when the request
    /// asked with Size2 = 0, and with every first block). It keeps no state: each block
    /// request is answered on its own, so the body must stay the same between them (send
    /// an ETag from `build` so clients can tell). A block past the end gets 4.02 Bad
    /// Option, a Block2 with the reserved SZX 7 4.00 Bad Request.
    ///
    /// `request` is the message the handle came with; `build` adds the other options.
    pub fn respond_block2(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        request: &Message<'_>,
        code: Code,
        body: &[u8],
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<(), Error> {
        let write = |range: core::ops::Range<usize>, b: &mut MessageBuilder<'_>| {
            b.payload(body.get(range).unwrap_or(&[])).map(drop)
        };
        self.respond_body(now, handle, request, code, body.len(), write, build)
    }

    /// [`respond_block2`](Self::respond_block2) for a body of `body_len` bytes that is
    /// produced on demand: `fill(offset, out)` writes the body's bytes from `offset` into
    /// `out`, which is the message buffer itself (e.g. read straight from flash).
    #[allow(clippy::too_many_arguments)]
    pub fn respond_block2_with(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        request: &Message<'_>,
        code: Code,
        body_len: usize,
        fill: impl FnOnce(usize, &mut [u8]),
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<(), Error> {
        let write = |range: core::ops::Range<usize>, b: &mut MessageBuilder<'_>| {
            fill(range.start, b.payload_mut(range.len())?);
            Ok(())
        };
        self.respond_body(now, handle, request, code, body_len, write, build)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn respond_body(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        request: &Message<'_>,
        code: Code,
        body_len: usize,
        write: impl FnOnce(core::ops::Range<usize>, &mut MessageBuilder<'_>) -> Result<(), BuildError>,
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<(), Error> {
        let Ok(requested) = request.block2() else {
            return self.respond(now, handle, Code::BAD_REQUEST, |_| Ok(()));
        };
        if requested.is_some_and(|b| b.offset() >= body_len && !(b.offset() == 0 && body_len == 0))
        {
            return self.respond(now, handle, Code::BAD_OPTION, |_| Ok(()));
        }
        let size2_requested = matches!(request.size2(), Ok(Some(0)));
        let max_block_szx = self.config.max_block_szx;
        self.respond(now, handle, code, |b| {
            build(b)?;
            // Room for the payload once Block2 (at most 4 bytes) and Size2 (5) are in.
            let room = b.payload_capacity().saturating_sub(9);
            let max_szx = Block::szx_at_most(room).unwrap_or(0).min(max_block_szx);
            match serve_block2(requested, size2_requested, body_len, max_szx) {
                Ok(None) => write(0..body_len, b),
                Ok(Some(slice)) => {
                    b.block2(slice.block)?;
                    if let Some(n) = slice.size2 {
                        b.size2(n)?;
                    }
                    write(slice.range, b)
                }
                // A block past the end was answered above; this is a body too large
                // for Block2 to number.
                Err(_) => Err(BuildError::OptionTooLong),
            }
        })
    }

    /// Takes the Block1 block `request` carries into `assembler` (RFC 7959 §2.5,
    /// RFC 9175 §3). A block before the last is answered here with 2.31 Continue
    /// echoing its Block1 — at [`Config::max_block_szx`](super::Config::max_block_szx)
    /// if that is smaller, which asks the client for smaller blocks (Figure 9) — and
    /// `Ok(None)` is returned. A refused block is answered too: 4.08 Request Entity
    /// Incomplete (out of sequence, or its body was dropped), 4.13 Request Entity Too
    /// Large with Size1, 4.00 Bad Request, or 4.29 Too Many Requests with Max-Age when
    /// the peer already has its share of bodies in assembly. A partial body is dropped
    /// after [`Config::block1_idle_timeout`](super::Config::block1_idle_timeout)
    /// without progress, and evicted (stalest first) when the assembler is full and
    /// another body starts. After the last block the whole body is returned with the
    /// Block1 to echo in the final response, which the caller sends with
    /// [`respond`](Self::respond) (or `respond_block2`). A request without Block1
    /// returns its own payload and no Block1.
    pub fn assemble_block1<'a, const BODIES: usize, const BODY_BYTES: usize>(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        request: &Message<'a>,
        assembler: &'a mut Block1Assembler<P, BODIES, BODY_BYTES>,
    ) -> Result<Option<Block1Body<'a>>, Error> {
        let now = self.clamp(now);
        let Ok(block1) = request.block1() else {
            self.respond(now, handle, Code::BAD_REQUEST, |_| Ok(()))?;
            return Ok(None);
        };
        let Some(block) = block1 else {
            return Ok(Some(Block1Body {
                body: request.payload(),
                echo: None,
            }));
        };
        let peer = self
            .slot_mut(handle.index, handle.generation)
            .map(|s| s.peer)
            .ok_or(Error::UnknownHandle)?;
        let idle = self
            .config
            .block1_idle_timeout
            .unwrap_or(self.max_transmit_wait);
        let share = self.config.peer_share(BODIES);
        let max_block_szx = self.config.max_block_szx;
        let size1 = request.size1().ok().flatten();
        let key = block1_key(request);
        let answer = |ep: &mut Self, code: Code, block: Option<Block>, size1, max_age| {
            ep.respond(now, handle, code, |b| {
                if let Some(block) = block {
                    b.block1(block)?;
                }
                if let Some(n) = size1 {
                    b.size1(n)?;
                }
                if let Some(age) = max_age {
                    b.max_age(age)?;
                }
                Ok(())
            })
        };
        let payload = request.payload();
        match assembler.on_block(now, peer, key, block, size1, payload, idle, share) {
            Ok(Assembled::Complete(body)) => Ok(Some(Block1Body {
                body,
                echo: Some(block),
            })),
            Ok(Assembled::Continue(block)) => {
                let echo = Block::new(block.num(), true, block.szx().min(max_block_szx));
                answer(self, Code::CONTINUE, echo, None, None)?;
                Ok(None)
            }
            Err(e) => {
                let (code, size1, max_age) = match e {
                    AssembleError::Incomplete => (Code::REQUEST_ENTITY_INCOMPLETE, None, None),
                    AssembleError::TooLarge { max } => {
                        (Code::REQUEST_ENTITY_TOO_LARGE, Some(max), None)
                    }
                    AssembleError::TooMany { retry_at } => {
                        self.stats.over_share += 1;
                        let age = self.max_age_until(now, retry_at);
                        (Code::TOO_MANY_REQUESTS, None, Some(age))
                    }
                    _ => (Code::BAD_REQUEST, None, None),
                };
                answer(self, code, None, size1, max_age)?;
                Ok(None)
            }
        }
    }
}
