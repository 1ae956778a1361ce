//! How the std and tokio clients and servers reach their peers: plain UDP (`coap://`),
//! or DTLS with pre-shared keys (`coaps://`, feature `dtls`). The adapters' core runs
//! over either unchanged; a transport only turns datagrams into (peer, message) and
//! back.

use std::net::{SocketAddr, UdpSocket};

/// The transport of a [`blocking::Client`](super::blocking::Client),
/// [`blocking::Server`](super::blocking::Server) or `tokio::Server` (feature `tokio`):
/// [`Udp`] (the default) or, with the feature `dtls`, `Dtls`. Sealed: the crate's two
/// are all there are.
pub trait Transport: private::Sealed + Send + 'static {}

pub(crate) mod private {
    use super::*;

    /// What the adapter's sender made of a datagram.
    pub enum Sent {
        /// Sent (or lost, as far as CoAP goes).
        Done,
        /// The socket cannot take it now: keep it and hand it back.
        #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
        WouldBlock,
    }

    /// What the adapters' core needs of a peer: a socket address, or a DTLS session.
    pub trait NetPeer:
        Copy + Eq + core::hash::Hash + core::fmt::Debug + core::fmt::Display + Send + 'static
    {
        /// The socket address, when the peer is one (a session's comes from its table).
        fn socket_addr(self) -> Option<SocketAddr>;
    }

    impl NetPeer for SocketAddr {
        fn socket_addr(self) -> Option<SocketAddr> {
            Some(self)
        }
    }

    #[cfg(feature = "dtls")]
    impl NetPeer for crate::dtls::SessionId {
        fn socket_addr(self) -> Option<SocketAddr> {
            None
        }
    }

    /// What the adapters need of a transport.
    pub trait Sealed {
        /// The endpoint's peers over this transport.
        type Peer: NetPeer;
        /// Takes a datagram from `from`; its messages then come from
        /// [`next_message`](Self::next_message).
        fn receive(&mut self, now: crate::Instant, from: SocketAddr, datagram: &[u8]);
        /// The next message received, its peer, the peer's address and PSK identity;
        /// `datagram` is what `receive` was given.
        #[allow(clippy::type_complexity)]
        fn next_message<'a>(
            &'a mut self,
            from: SocketAddr,
            datagram: &'a [u8],
        ) -> Option<(Self::Peer, &'a [u8], Option<SocketAddr>, Option<&'a [u8]>)>;
        /// Sends `message` to `to`: over UDP through `direct` at once (which may say
        /// the socket cannot take it now); over DTLS encrypted into the datagrams of
        /// [`pop_transmit`](Self::pop_transmit).
        fn send(
            &mut self,
            now: crate::Instant,
            to: Self::Peer,
            message: &[u8],
            direct: &mut dyn FnMut(SocketAddr, &[u8]) -> std::io::Result<Sent>,
        ) -> std::io::Result<Sent>;
        /// The next datagram the transport itself has to send (records, handshakes,
        /// retransmissions).
        fn pop_transmit(&mut self) -> Option<(SocketAddr, std::vec::Vec<u8>)>;
        fn handle_timeout(&mut self, now: crate::Instant);
        fn next_timeout(&self) -> Option<crate::Instant>;
        /// The peer for address `addr`, if there is one (a DTLS session must exist).
        fn peer_for(&self, addr: SocketAddr) -> Option<Self::Peer>;
        /// Why the transport cannot reach the client's server any more, if it cannot.
        fn failure(&mut self) -> Option<super::super::Error>;
    }
}

/// Plain CoAP over UDP (`coap://`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Udp {
    delivered: bool,
}

impl Transport for Udp {}

impl private::Sealed for Udp {
    type Peer = SocketAddr;

    #[inline]
    fn receive(&mut self, _: crate::Instant, _: SocketAddr, _: &[u8]) {
        self.delivered = false;
    }

    #[inline]
    fn next_message<'a>(
        &'a mut self,
        from: SocketAddr,
        datagram: &'a [u8],
    ) -> Option<(SocketAddr, &'a [u8], Option<SocketAddr>, Option<&'a [u8]>)> {
        if self.delivered {
            return None;
        }
        self.delivered = true;
        Some((from, datagram, Some(from), None))
    }

    #[inline]
    fn send(
        &mut self,
        _: crate::Instant,
        to: SocketAddr,
        message: &[u8],
        direct: &mut dyn FnMut(SocketAddr, &[u8]) -> std::io::Result<private::Sent>,
    ) -> std::io::Result<private::Sent> {
        direct(to, message)
    }

    #[inline]
    fn pop_transmit(&mut self) -> Option<(SocketAddr, std::vec::Vec<u8>)> {
        None
    }

    #[inline]
    fn handle_timeout(&mut self, _: crate::Instant) {}

    #[inline]
    fn next_timeout(&self) -> Option<crate::Instant> {
        None
    }

    #[inline]
    fn peer_for(&self, addr: SocketAddr) -> Option<SocketAddr> {
        Some(addr)
    }

    #[inline]
    fn failure(&mut self) -> Option<super::Error> {
        None
    }
}

/// Sends one datagram, as CoAP sees it: retried after a signal, and an error that means
/// the datagram was lost (ICMP, a full buffer) is loss, not failure.
pub(crate) fn send_to(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) -> std::io::Result<()> {
    loop {
        match socket.send_to(bytes, to) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if super::is_loss(e.kind()) => return Ok(()),
            Err(e) => return Err(e),
            Ok(_) => return Ok(()),
        }
    }
}

/// CoAP over DTLS 1.2 with pre-shared keys (`coaps://`; RFC 7252 §9.1): the
/// [`Sessions`](crate::dtls::Sessions) table of a client or server.
#[cfg(feature = "dtls")]
#[derive(Debug)]
pub struct Dtls {
    sessions: std::boxed::Box<crate::dtls::Sessions>,
    /// The client's own session (its failure ends its requests).
    session: Option<crate::dtls::SessionId>,
    failed: Option<crate::dtls::DtlsError>,
}

#[cfg(feature = "dtls")]
impl Dtls {
    pub(crate) fn new(sessions: crate::dtls::Sessions) -> Dtls {
        Dtls {
            sessions: std::boxed::Box::new(sessions),
            session: None,
            failed: None,
        }
    }

    /// A client's session to `addr`, started now.
    pub(crate) fn connect(
        &mut self,
        now: crate::Instant,
        addr: SocketAddr,
    ) -> Result<crate::dtls::SessionId, crate::dtls::DtlsError> {
        let id = self.sessions.connect(now, addr)?;
        self.session = Some(id);
        Ok(id)
    }

    /// The session table.
    pub fn sessions(&self) -> &crate::dtls::Sessions {
        &self.sessions
    }

    fn note_events(&mut self) {
        while let Some(e) = self.sessions.poll_event() {
            if let crate::dtls::SessionEvent::Failed(id, why) = e {
                if Some(id) == self.session {
                    self.failed = Some(why);
                }
            }
        }
    }
}

#[cfg(feature = "dtls")]
impl Transport for Dtls {}

#[cfg(feature = "dtls")]
impl private::Sealed for Dtls {
    type Peer = crate::dtls::SessionId;

    fn receive(&mut self, now: crate::Instant, from: SocketAddr, datagram: &[u8]) {
        self.sessions.handle_datagram(now, from, datagram);
        self.note_events();
    }

    fn next_message<'a>(
        &'a mut self,
        _: SocketAddr,
        _: &'a [u8],
    ) -> Option<(
        crate::dtls::SessionId,
        &'a [u8],
        Option<SocketAddr>,
        Option<&'a [u8]>,
    )> {
        let id = self.sessions.next_plaintext()?;
        Some((
            id,
            self.sessions.plaintext(),
            self.sessions.addr(id),
            self.sessions.identity(id),
        ))
    }

    fn send(
        &mut self,
        now: crate::Instant,
        to: crate::dtls::SessionId,
        message: &[u8],
        _: &mut dyn FnMut(SocketAddr, &[u8]) -> std::io::Result<private::Sent>,
    ) -> std::io::Result<private::Sent> {
        // A message for a session that is gone is lost, as on a dead link.
        let _ = self.sessions.send(now, to, message);
        Ok(private::Sent::Done)
    }

    fn pop_transmit(&mut self) -> Option<(SocketAddr, std::vec::Vec<u8>)> {
        let next = self.sessions.poll_transmit();
        self.note_events();
        next
    }

    fn handle_timeout(&mut self, now: crate::Instant) {
        self.sessions.handle_timeout(now);
        self.note_events();
    }

    fn next_timeout(&self) -> Option<crate::Instant> {
        self.sessions.next_timeout()
    }

    fn peer_for(&self, addr: SocketAddr) -> Option<crate::dtls::SessionId> {
        // A client's own session may still be in its handshake: requests wait for it.
        self.session
            .filter(|&s| self.sessions.addr(s) == Some(addr))
            .or_else(|| self.sessions.established(addr))
    }

    fn failure(&mut self) -> Option<super::Error> {
        self.failed.map(super::Error::Dtls)
    }
}
