//! The message buffers: a pool used only for bytes that must be kept.
//!
//! An exchange record is small; the bytes of a message live here, and only while they
//! must: a client request (for its retransmissions and its block-wise follow-ups), a
//! separate CON response until it is acknowledged, and a piggybacked or NON response
//! until `poll_output` hands it out. A request waiting for the application's answer
//! holds no buffer, so thousands of them cost a record each.
//!
//! Overflow policy: buffers held for a long time (client requests, CON responses) may
//! not take the last `reserve` buffers, which stay for answers that leave at the next
//! `poll_output`. So an application that answers at once can always answer, however
//! many retransmissions are pending. A command that finds no buffer it may take fails
//! with [`Error::BuffersFull`](super::Error::BuffersFull) and changes nothing.

use super::client::ClientBlocks;
use crate::index::ItemQueue;

/// A buffer index that names no buffer.
pub(super) const NO_BUFFER: u16 = u16::MAX;

/// `BUFFERS` message buffers of `MSG_BYTES` bytes, with what a client request keeps
/// beside its bytes.
pub(super) struct BufferPool<const BUFFERS: usize, const MSG_BYTES: usize> {
    bufs: [[u8; MSG_BYTES]; BUFFERS],
    /// Length of the message in each buffer.
    lens: [u16; BUFFERS],
    /// Start parameters and block-wise state of the client request in each buffer.
    pub(super) blocks: [Option<ClientBlocks>; BUFFERS],
    /// Whether each buffer is held long (counted in `long`).
    held_long: [bool; BUFFERS],
    free: ItemQueue<BUFFERS>,
    in_use: usize,
    long: usize,
}

impl<const BUFFERS: usize, const MSG_BYTES: usize> BufferPool<BUFFERS, MSG_BYTES> {
    pub(super) fn new() -> Self {
        let mut free = ItemQueue::new();
        for i in 0..BUFFERS {
            free.push(i);
        }
        BufferPool {
            bufs: [[0; MSG_BYTES]; BUFFERS],
            lens: [0; BUFFERS],
            blocks: [None; BUFFERS],
            held_long: [false; BUFFERS],
            free,
            in_use: 0,
            long: 0,
        }
    }

    /// A free buffer. One to be held long is refused while only `reserve` are free.
    pub(super) fn take(&mut self, long: bool, reserve: usize) -> Option<u16> {
        let free = BUFFERS - self.in_use;
        if free == 0 || (long && free <= reserve.min(BUFFERS - 1)) {
            return None;
        }
        let b = self.free.pop()?;
        self.in_use += 1;
        self.lens[b] = 0;
        self.held_long[b] = long;
        if long {
            self.long += 1;
        }
        Some(b as u16)
    }

    /// Gives buffer `b` back (a no-op for [`NO_BUFFER`]).
    pub(super) fn give_back(&mut self, b: u16) {
        let b = b as usize;
        if b >= BUFFERS {
            return;
        }
        if self.held_long[b] {
            self.held_long[b] = false;
            self.long -= 1;
        }
        self.blocks[b] = None;
        self.in_use -= 1;
        self.free.push(b);
    }

    /// The whole of buffer `b`, to build a message in.
    pub(super) fn buf_mut(&mut self, b: u16) -> &mut [u8] {
        self.bufs
            .get_mut(b as usize)
            .map_or(&mut [], |b| &mut b[..])
    }

    /// The message in buffer `b`.
    pub(super) fn message(&self, b: u16) -> &[u8] {
        let len = self.lens.get(b as usize).copied().unwrap_or(0) as usize;
        self.bufs
            .get(b as usize)
            .and_then(|buf| buf.get(..len))
            .unwrap_or(&[])
    }

    /// Builds a message in buffer `b`: header, `token`, then what `build` adds. On
    /// failure the buffer goes back to the pool and the error is the caller's.
    pub(super) fn build(
        &mut self,
        b: u16,
        header: (crate::wire::Type, crate::wire::Code, u16),
        token: &[u8],
        build: &mut crate::wire::Fill<'_>,
    ) -> Result<(), crate::wire::BuildError> {
        self.build_within(b, header, token, MSG_BYTES, build)
    }

    /// [`build`](Self::build) into the first `limit` bytes of the buffer only: a
    /// message that must stay within an amplification budget sees that as the
    /// builder's capacity, so block sizes chosen from it fit.
    pub(super) fn build_within(
        &mut self,
        b: u16,
        (ty, code, mid): (crate::wire::Type, crate::wire::Code, u16),
        token: &[u8],
        limit: usize,
        build: &mut crate::wire::Fill<'_>,
    ) -> Result<(), crate::wire::BuildError> {
        let buf = self.buf_mut(b);
        let limit = limit.min(buf.len());
        let built =
            crate::wire::MessageBuilder::new(&mut buf[..limit], ty, code, mid).and_then(|mut m| {
                m.token(token)?;
                build(&mut m)?;
                Ok(m.len())
            });
        match built {
            Ok(len) => {
                self.set_len(b, len);
                Ok(())
            }
            Err(e) => {
                self.give_back(b);
                Err(e)
            }
        }
    }

    /// Copies the message in buffer `from` into buffer `to`.
    pub(super) fn copy(&mut self, from: u16, to: u16) {
        let (from, to) = (from as usize, to as usize);
        if from >= BUFFERS || to >= BUFFERS || from == to {
            return;
        }
        // Two distinct buffers: a plain copy, which the compiler sees cannot overlap.
        let (low, high) = self.bufs.split_at_mut(from.max(to));
        let (src, dst) = if from < to {
            (&low[from], &mut high[0])
        } else {
            (&high[0], &mut low[to])
        };
        let len = self.lens[from] as usize;
        dst[..len].copy_from_slice(&src[..len]);
        self.lens[to] = self.lens[from];
    }

    pub(super) fn set_len(&mut self, b: u16, len: usize) {
        if let Some(l) = self.lens.get_mut(b as usize) {
            *l = len.min(MSG_BYTES) as u16;
        }
    }

    pub(super) fn blocks(&self, b: u16) -> Option<&ClientBlocks> {
        self.blocks.get(b as usize)?.as_ref()
    }

    pub(super) fn blocks_mut(&mut self, b: u16) -> Option<&mut ClientBlocks> {
        self.blocks.get_mut(b as usize)?.as_mut()
    }

    /// Buffers in use, and of them held long.
    pub(super) fn usage(&self) -> (usize, usize) {
        (self.in_use, self.long)
    }
}
