//! The server side of block-wise transfers (RFC 7959 §2.4, §2.5): serving bodies in Block2
//! blocks, assembling Block1 bodies.

use core::time::Duration;

use super::{Block1Body, Endpoint, Error, IncomingHandle, ResponseMode};
use crate::Instant;
use crate::block::kept::{copy_options, is_safe, kept_key};
use crate::block::{
    AssembleError, Assembled, Block1Assembler, KeptResponses, block1_key, serve_block2,
};
use crate::wire::{Block, BuildError, Code, Fill, Message, MessageBuilder, OptionNumber, once};

/// Bodies up to this size get an ETag computed by [`Endpoint::respond_block2`] when
/// they are served block-wise without one: hashing costs one pass over the body per
/// block served, so larger bodies are left to the application's own ETag.
pub const AUTO_ETAG_MAX: usize = 64 * 1024;

/// What writes a body's bytes in `range` as a message's payload.
type WriteBody<'f> =
    dyn FnMut(core::ops::Range<usize>, &mut MessageBuilder<'_>) -> Result<(), BuildError> + 'f;

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
    /// Answers `request` with `body`, block-wise when the body does not fit one message
    /// or the request asked for a block (RFC 7959 §2.4). The endpoint takes the slice
    /// the request's Block2 names, at the smaller of the requested block size and the
    /// largest that fits the message buffer (and, to a peer whose address is not
    /// verified, the amplification budget: see [`Amplification`](crate::Amplification)),
    /// and adds Block2 and Size2 (when the request asked with Size2 = 0, and with every
    /// first block). It keeps no state: each block request is answered on its own, so
    /// the body must stay the same between them. An ETag lets clients notice if it did
    /// not (§2.4): give one from `build`, or the endpoint adds an 8-byte hash of bodies up
    /// to [`AUTO_ETAG_MAX`] bytes, keyed from [`Config::seed`](crate::Config::seed) so
    /// that nobody can make two bodies share one. A block past
    /// the end gets 4.02 Bad Option, a Block2 with the reserved SZX 7 4.00 Bad Request.
    ///
    /// This is for safe requests (GET, FETCH), which may run again for each block. For
    /// other methods use [`respond_block2_kept`](Self::respond_block2_kept).
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
        let seed = self.config.seed;
        let mut write = |range: core::ops::Range<usize>, b: &mut MessageBuilder<'_>| {
            if body.len() <= AUTO_ETAG_MAX && range.len() < body.len() && !has_etag(b) {
                b.etag(&etag_of(seed, body))?;
            }
            b.payload(body.get(range).unwrap_or(&[])).map(drop)
        };
        let build = &mut once(build);
        // Room for the auto-ETag (its option header and 8 bytes) when it may be added.
        let etag_room = if body.len() <= AUTO_ETAG_MAX { 9 } else { 0 };
        let body_len = (body.len(), etag_room);
        self.respond_body(now, handle, request, code, body_len, &mut write, build)
    }

    /// [`respond_block2`](Self::respond_block2) for the response to a request that must
    /// not run again for each block (POST, PUT, DELETE, PATCH …; RFC 7959 §2.7): when the
    /// body takes more than one block, the response — code, the options `build` adds,
    /// an ETag, and the body — is kept in `kept` for this client's exchange, and its
    /// follow-ups are answered from there by [`respond_from_kept`](Self::respond_from_kept).
    /// When `kept` cannot take it (the peer holds its share), the first block goes out
    /// all the same and the follow-ups get 4.08; when the response does not fit a place
    /// of `kept`, the error says how many bytes it needs and nothing is sent. A GET or
    /// FETCH is answered as by `respond_block2`.
    #[allow(clippy::too_many_arguments)]
    pub fn respond_block2_kept<const BODIES: usize, const BODY_BYTES: usize>(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        request: &Message<'_>,
        code: Code,
        body: &[u8],
        kept: &mut KeptResponses<P, BODIES, BODY_BYTES>,
        build: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BuildError>,
    ) -> Result<(), Error> {
        let now = self.clamp(now);
        let slot = *self
            .slot_mut(handle.index, handle.generation)
            .ok_or(Error::UnknownHandle)?;
        let peer = slot.peer;
        // An answer within an amplification budget may take blocks smaller than the
        // smallest this function foresees: kept whenever it is longer than 16 bytes.
        let smallest = if self.send_limit(now, peer, slot.timeout_us) < MSG_BYTES {
            16
        } else {
            self.smallest_block(request)
        };
        if is_safe(request.code()) || body.len() <= smallest {
            return self.respond_block2(now, handle, request, code, body, build);
        }
        let key = kept_key(request);
        let (idle, share) = (self.block_idle(), self.config.peer_share(BODIES));
        let Ok(place) = kept.place(now, peer, key, idle, share) else {
            // Not kept: the first block goes out all the same; follow-ups get 4.08.
            return self.respond_block2(now, handle, request, code, body, build);
        };
        let seed = self.config.seed;
        kept.fill(
            place,
            code,
            body,
            &mut once(|b: &mut MessageBuilder<'_>| {
                build(b)?;
                if !has_etag(b) {
                    b.etag(&etag_of(seed, body))?;
                }
                Ok(())
            }),
        )?;
        let Some(m) = kept.get(now, peer, key, idle) else {
            return Err(Error::UnknownHandle);
        };
        self.respond_block2(now, handle, request, m.code(), m.payload(), |b| {
            copy_options(&m, b)
        })
    }

    /// Answers a follow-up of a response kept by
    /// [`respond_block2_kept`](Self::respond_block2_kept): a request of an unsafe method
    /// asking for a Block2 block past the first. The block comes from the kept copy, or,
    /// if none is kept (dropped, evicted or never kept), 4.08 Request Entity Incomplete
    /// tells the client to start over — the handler never runs again for it. Returns
    /// `Ok(true)` when the request was answered here, `Ok(false)` when it is for the
    /// application.
    pub fn respond_from_kept<const BODIES: usize, const BODY_BYTES: usize>(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        request: &Message<'_>,
        kept: &mut KeptResponses<P, BODIES, BODY_BYTES>,
    ) -> Result<bool, Error> {
        let now = self.clamp(now);
        if !matches!(request.block2(), Ok(Some(b)) if b.num() > 0) {
            return Ok(false);
        }
        if is_safe(request.code()) {
            return Ok(false);
        }
        let peer = self
            .slot_mut(handle.index, handle.generation)
            .map(|s| s.peer)
            .ok_or(Error::UnknownHandle)?;
        let key = kept_key(request);
        let idle = self.block_idle();
        let Some(m) = kept.get(now, peer, key, idle) else {
            self.respond(now, handle, Code::REQUEST_ENTITY_INCOMPLETE, |_| Ok(()))?;
            return Ok(true);
        };
        self.respond_block2(now, handle, request, m.code(), m.payload(), |b| {
            copy_options(&m, b)
        })?;
        // Forgotten once the last block is on its way, whatever size the blocks took.
        let buf = self
            .slot_mut(handle.index, handle.generation)
            .map_or(super::pool::NO_BUFFER, |s| s.buf);
        let last = Message::parse(self.pool.message(buf))
            .ok()
            .is_some_and(|m| matches!(m.block2(), Ok(Some(b)) if !b.more()));
        if last {
            kept.forget(now, peer, key);
        }
        Ok(true)
    }

    /// How long a body kept for a block-wise exchange lives without progress.
    fn block_idle(&self) -> Duration {
        self.config
            .block_idle_timeout
            .unwrap_or(self.max_transmit_wait)
    }

    /// The smallest block this endpoint would answer `request` with: the size it asks
    /// for, the configured largest, and what fits the message buffer with room for
    /// options, whichever is smallest.
    fn smallest_block(&self, request: &Message<'_>) -> usize {
        let asked = match request.block2() {
            Ok(Some(b)) => b.szx(),
            _ => Block::MAX_SZX,
        };
        let fits = Block::szx_at_most(MSG_BYTES.saturating_sub(128)).unwrap_or(0);
        16 << asked.min(self.config.max_block_szx).min(fits)
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
        let mut fill = Some(fill);
        let mut write = |range: core::ops::Range<usize>, b: &mut MessageBuilder<'_>| {
            let out = b.payload_mut(range.len())?;
            if let Some(fill) = fill.take() {
                fill(range.start, out);
            }
            Ok(())
        };
        let build = &mut once(build);
        self.respond_body(now, handle, request, code, (body_len, 0), &mut write, build)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn respond_body(
        &mut self,
        now: Instant,
        handle: IncomingHandle,
        request: &Message<'_>,
        code: Code,
        (body_len, etag_room): (usize, usize),
        write: &mut WriteBody<'_>,
        build: &mut Fill<'_>,
    ) -> Result<(), Error> {
        let Ok(requested) = request.block2() else {
            return self.respond(now, handle, Code::BAD_REQUEST, |_| Ok(()));
        };
        if requested.is_some_and(|b| b.offset() >= body_len && !(b.offset() == 0 && body_len == 0))
        {
            return self.respond(now, handle, Code::BAD_OPTION, |_| Ok(()));
        }
        // Size2 matters only for a block-wise answer: look for it only then.
        let size2_requested =
            (requested.is_some() || body_len > 16) && matches!(request.size2(), Ok(Some(0)));
        let max_block_szx = self.config.max_block_szx;
        let offered = self.offered_echo(now, handle);
        self.respond_filled(now, handle, ResponseMode::Auto, code, &mut |b| {
            build(b)?;
            // Room for the payload once Block2 (at most 4 bytes), Size2 (5) and the
            // ETag `write` may add are in.
            let room = b.payload_capacity().saturating_sub(9 + etag_room);
            let max_szx = Block::szx_at_most(room).unwrap_or(0).min(max_block_szx);
            match serve_block2(requested, size2_requested, body_len, max_szx) {
                Ok(None) => write(0..body_len, b),
                Ok(Some(slice)) => {
                    b.block2(slice.block)?;
                    if let Some(n) = slice.size2 {
                        b.size2(n)?;
                    }
                    // Echo (its option header and 8 bytes) only where the block keeps
                    // its size: a client that ignores it loses nothing.
                    if let Some(echo) = offered
                        .filter(|_| b.payload_capacity() >= slice.range.len() + etag_room + 10)
                    {
                        b.echo(&echo)?;
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
    /// after [`Config::block_idle_timeout`](super::Config::block_idle_timeout)
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
        let idle = self.block_idle();
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
                        log_info!("refusing a Block1 body with 4.29: the peer holds its share");
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

/// Whether the options `b` holds so far include an ETag.
pub(super) fn has_etag(b: &MessageBuilder<'_>) -> bool {
    Message::parse(b.as_bytes()).is_ok_and(|m| m.has_option(OptionNumber::ETAG))
}

/// An 8-byte ETag for `body`: SipHash-2-4 over its length and bytes, keyed from the
/// endpoint's seed (its own stream of it), so that a peer cannot make two bodies with
/// one ETag and have a client join blocks of both (RFC 7959 §2.4; an unkeyed 32-bit
/// hash gives a same-length collision in a fraction of a second).
pub(super) fn etag_of(seed: u64, body: &[u8]) -> [u8; 8] {
    use core::hash::Hasher;
    let mut h = crate::rng::Rng::keyed(seed, 0x4554_6167_2052_4643);
    h.write_usize(body.len());
    h.write(body);
    h.finish().to_be_bytes()
}
