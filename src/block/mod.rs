//! Block-wise transfers (RFC 7959), as small machines that each work alone:
//!
//! - [`serve_block2`]: which slice of a body answers a Block2 request — stateless, for
//!   a server that only wants the slicer.
//! - [`Block2Download`]: a client following a Block2 response block by block.
//! - [`Block1Upload`]: a client sending a request body block by block.
//! - [`Block1Assembler`]: a server collecting Block1 blocks into a bounded buffer.
//! - [`KeptResponses`]: a server keeping the block-wise response of an unsafe request
//!   for its follow-ups, so that the handler runs once.
//!
//! None of them needs a buffer for a whole body: blocks are handed over (or asked
//! for) one at a time, as offsets into the body. The [`Endpoint`](crate::Endpoint)
//! composes them.

mod assemble;
mod bodies;
mod download;
pub(crate) mod kept;
mod serve;
mod upload;

pub use assemble::{AssembleError, Assembled, Block1Assembler, block1_key};
pub use download::{Block2Download, BodyBuffer, BufferTooSmall, DownloadError, Received};
pub use kept::KeptResponses;
pub use serve::{Block2Slice, ServeError, serve_block2};
pub use upload::{Block1Upload, UploadError, UploadStep};
