//! Response bodies kept for the Block2 follow-ups of unsafe requests (RFC 7959 §2.4,
//! §2.7, §3.3).
//!
//! A GET or FETCH may be processed again for each block of its response; a POST (or
//! PUT, DELETE, PATCH …) must not: its follow-up requests for blocks past the first
//! would repeat the action. So the server keeps the whole response — code, options and
//! body — for the client's exchange, and answers its follow-ups from that copy.
//!
//! Keyed by peer and by the request's method, URI options and Request-Tag (RFC 9175
//! §3), so concurrent exchanges of one client stay apart. Overflow policy, shared with
//! the Block1 assembler: a body is dropped after an idle time without a follow-up, or
//! when it has been served to the end; when every place is taken, the stalest body is
//! evicted; one peer holds at most its share of places. A follow-up that finds no body
//! is answered 4.08 Request Entity Incomplete, never by running the handler again; its
//! client may repeat the whole request.

use core::time::Duration;

use super::bodies::{BodyTable, NoPlace};
use crate::Instant;
use crate::wire::{BuildError, Code, Message, MessageBuilder, OptionNumber, Type};

/// Response bodies kept for follow-ups: `BODIES` at once, each with its code and
/// options in at most `BODY_BYTES` bytes.
///
/// Use it through [`Endpoint::respond_block2_kept`](crate::Endpoint::respond_block2_kept)
/// and [`Endpoint::respond_from_kept`](crate::Endpoint::respond_from_kept).
#[derive(Clone, Debug)]
pub struct KeptResponses<P, const BODIES: usize, const BODY_BYTES: usize> {
    table: BodyTable<P, BODIES, BODY_BYTES>,
}

impl<P: Copy + Eq, const BODIES: usize, const BODY_BYTES: usize> Default
    for KeptResponses<P, BODIES, BODY_BYTES>
{
    fn default() -> Self {
        Self::new()
    }
}

/// Why a response could not be kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeepError {
    /// Code, options and body need more than a place holds.
    TooLarge,
    /// The peer holds its share of places.
    TooMany,
}

impl<P: Copy + Eq, const BODIES: usize, const BODY_BYTES: usize>
    KeptResponses<P, BODIES, BODY_BYTES>
{
    /// Nothing kept.
    pub const fn new() -> Self {
        KeptResponses {
            table: BodyTable::new(),
        }
    }

    /// Responses kept (idle ones included until their place is reused).
    pub fn len(&self) -> usize {
        self.table.in_use()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Responses dropped to make room before a client fetched them to the end.
    pub fn evictions(&self) -> u64 {
        self.table.evictions
    }

    /// Takes a place for `peer`'s exchange `key` (replacing what it had), until `idle`
    /// passes without a follow-up; `share` is the most places one peer may hold.
    pub(crate) fn place(
        &mut self,
        now: Instant,
        peer: P,
        key: u64,
        idle: Duration,
        share: usize,
    ) -> Result<usize, KeepError> {
        if let Some(i) = self.table.find(now, peer, key) {
            self.table.places[i] = None;
        }
        self.table
            .take(now, peer, key, now + idle, share)
            .map_err(|e| match e {
                NoPlace::OverShare(_) => KeepError::TooMany,
                NoPlace::Empty => KeepError::TooLarge,
            })
    }

    /// Fills place `i` with a response: `code`, the options `build` adds, and `body`.
    /// The copy is a CoAP message (with an empty header), so that serving it needs no
    /// other format. A response that does not fit frees the place.
    pub(crate) fn fill(
        &mut self,
        i: usize,
        code: Code,
        body: &[u8],
        build: &mut crate::wire::Fill<'_>,
    ) -> Result<(), BuildError> {
        let Some(buf) = self.table.bufs.get_mut(i) else {
            return Err(BuildError::BufferTooSmall { needed: body.len() });
        };
        let built = MessageBuilder::new(buf, Type::Non, code, 0).and_then(|mut b| {
            build(&mut b)?;
            b.payload(body)?;
            Ok(b.len())
        });
        match (built, self.table.places.get_mut(i)) {
            (Ok(len), Some(Some(place))) => {
                place.len = len;
                Ok(())
            }
            (built, _) => {
                self.table.places[i] = None;
                built.map(drop)
            }
        }
    }

    /// The response kept for `peer`'s exchange `key`; a follow-up is progress, so the
    /// body stays for another `idle`.
    pub(crate) fn get(
        &mut self,
        now: Instant,
        peer: P,
        key: u64,
        idle: Duration,
    ) -> Option<Message<'_>> {
        let i = self.table.find(now, peer, key)?;
        let place = self.table.places.get_mut(i)?.as_mut()?;
        place.expires = now + idle;
        Message::parse(self.table.bufs.get(i)?.get(..place.len)?).ok()
    }

    /// Forgets the response for `peer`'s exchange `key` (served to the end).
    pub(crate) fn forget(&mut self, now: Instant, peer: P, key: u64) {
        if let Some(i) = self.table.find(now, peer, key) {
            self.table.places[i] = None;
        }
    }
}

/// Whether a request's method may be processed again for each block of its response
/// (GET and FETCH are safe, RFC 7252 §5.1, RFC 8132 §2).
pub(crate) fn is_safe(code: Code) -> bool {
    code == Code::GET || code == Code::FETCH
}

/// The key of an exchange whose response is kept: its method and the options that
/// identify the request body ([`block1_key`](super::block1_key)).
pub(crate) fn kept_key(request: &Message<'_>) -> u64 {
    super::block1_key(request) ^ (request.code().to_u8() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Copies the options of a kept response into `b`, all but those the block slicer
/// writes.
pub(crate) fn copy_options(
    kept: &Message<'_>,
    b: &mut MessageBuilder<'_>,
) -> Result<(), BuildError> {
    for o in kept.options() {
        if !matches!(o.number, OptionNumber::BLOCK2 | OptionNumber::SIZE2) {
            b.option(o.number, o.value)?;
        }
    }
    Ok(())
}
