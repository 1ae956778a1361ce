//! Drives an [`Endpoint`] from a smoltcp UDP socket (feature `smoltcp`, no std, no
//! allocation).
//!
//! Call [`drive`] after every `Interface::poll`: it hands the socket's datagrams to the
//! endpoint, fires due timers, puts what the endpoint has to send into the socket and
//! returns when to call again. Peers are smoltcp's [`IpEndpoint`]s and time is smoltcp's
//! [`Instant`](smoltcp::time::Instant); nothing else is needed from the platform.
//!
//! `examples/smoltcp_loopback.rs` runs a client and a server in one process over
//! `smoltcp::phy::Loopback`.
//!
//! A datagram that does not fit the socket's transmit buffer is lost the way the
//! network would lose it (and retransmitted if confirmable); size the buffer for the
//! bursts you expect. [`Driven::dropped`] counts them.

use smoltcp::socket::udp;
use smoltcp::wire::IpEndpoint;

use crate::{Endpoint, Event, Incoming, Instant};

/// The endpoint's instant for a smoltcp instant (negative ones clamp to zero).
pub fn instant(now: smoltcp::time::Instant) -> Instant {
    Instant::from_micros(now.total_micros().max(0) as u64)
}

/// The smoltcp instant for one of the endpoint's.
pub fn smoltcp_instant(at: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(at.as_micros().min(i64::MAX as u64) as i64)
}

/// What one [`drive`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Driven {
    /// When to call [`drive`] again at the latest (`None`: only when a datagram
    /// arrives or after a command).
    pub next: Option<smoltcp::time::Instant>,
    /// Datagrams the transmit buffer had no room for.
    pub dropped: usize,
}

/// Runs one turn of the endpoint's loop over `socket` at `now`: every received datagram
/// goes to [`Endpoint::handle_datagram`] (its request or response to `on_incoming`,
/// which may answer through the endpoint it is given), then timers, then every pending
/// output (events to `on_event`). `buf` holds one received datagram (the endpoint's `M`
/// bytes is enough).
pub fn drive<
    const E: usize,
    const B: usize,
    const M: usize,
    const D: usize,
    const R: usize,
    const O: usize,
>(
    endpoint: &mut Endpoint<IpEndpoint, E, B, M, D, R, O>,
    socket: &mut udp::Socket<'_>,
    now: smoltcp::time::Instant,
    buf: &mut [u8],
    mut on_incoming: impl FnMut(&mut Endpoint<IpEndpoint, E, B, M, D, R, O>, Incoming<'_>),
    mut on_event: impl FnMut(&mut Endpoint<IpEndpoint, E, B, M, D, R, O>, Event),
) -> Driven {
    let now = instant(now);
    while let Ok((n, meta)) = socket.recv_slice(buf) {
        if let Some(incoming) = endpoint.handle_datagram(now, meta.endpoint, &buf[..n]) {
            on_incoming(endpoint, incoming);
        }
    }
    endpoint.handle_timeout(now);
    let mut dropped = 0;
    loop {
        match endpoint.poll_output(now) {
            crate::Output::Transmit(t) => {
                if socket.send_slice(t.data, t.to).is_err() {
                    dropped += 1;
                }
            }
            crate::Output::Event(e) => on_event(endpoint, e),
            crate::Output::Timeout(next) => {
                return Driven {
                    next: next.map(smoltcp_instant),
                    dropped,
                };
            }
        }
    }
}
