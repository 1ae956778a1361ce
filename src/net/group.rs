//! Group communication over UDP (RFC 7252 §8): the groups a server joins, and what a
//! group request brings back.
//!
//! A server receives a group's datagrams on a socket of their own, bound to the group
//! address and the server's port and joined on one interface, so that it knows which
//! datagrams came to the group (std has no way to ask a datagram's destination
//! address); it answers from its own socket, its unicast address (§8.2). So that the
//! two can share the port, the server's own socket must be bound to a unicast address,
//! not to the unspecified one (`0.0.0.0`, `::`).
//!
//! A client sends a group request from its ordinary socket. Which interface an IPv4
//! group request leaves by follows the socket's local address (bind the client to the
//! interface's address, e.g. with `Client::from_socket`); for IPv6, the scope id of
//! the group address (`[ff02::fd%2]:5683` for interface 2). The hop limit of IPv4
//! group requests is set with `Client::multicast_hops`; the standard library offers no
//! way to set IPv6's, which stays at the system's default (1: the link).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6, UdpSocket};

use core::time::Duration;

use super::Response;

/// A group a server joins: its address, the interface it is joined on, and the Leisure
/// its answers are spread over (RFC 7252 §8.2).
///
/// ```
/// use coap_proto::multicast::{ALL_COAP_NODES_LINK_LOCAL, ALL_COAP_NODES_V4};
/// use coap_proto::net::Group;
/// use std::time::Duration;
///
/// let v4 = Group::new(ALL_COAP_NODES_V4.into()).interface_v4("10.0.0.7".parse().unwrap());
/// let v6 = Group::new(ALL_COAP_NODES_LINK_LOCAL.into())
///     .interface_index(2)
///     .leisure(Duration::from_secs(2));
/// assert_eq!(v4.to_string(), "224.0.1.187 on 10.0.0.7 (Leisure 5 s)");
/// assert_eq!(v6.to_string(), "ff02::fd on interface 2 (Leisure 2 s)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Group {
    /// The group address (IPv4 or IPv6 multicast).
    pub address: IpAddr,
    /// IPv4: the address of the interface to join on (unspecified: the system's
    /// choice).
    pub interface_v4: Ipv4Addr,
    /// IPv6: the index of the interface to join on (0: the system's choice; a
    /// link-local group such as ff02::fd needs one).
    pub interface_index: u32,
    /// The Leisure of this group (default DEFAULT_LEISURE, 5 s).
    pub leisure: Duration,
}

impl Group {
    /// Group `address`, on the system's choice of interface, with DEFAULT_LEISURE.
    pub fn new(address: IpAddr) -> Group {
        Group {
            address,
            interface_v4: Ipv4Addr::UNSPECIFIED,
            interface_index: 0,
            leisure: crate::TransmissionParams::RFC7252.default_leisure,
        }
    }

    /// Joined on the IPv4 interface with this address.
    pub fn interface_v4(mut self, address: Ipv4Addr) -> Group {
        self.interface_v4 = address;
        self
    }

    /// Joined on the IPv6 interface with this index.
    pub fn interface_index(mut self, index: u32) -> Group {
        self.interface_index = index;
        self
    }

    /// With this Leisure.
    pub fn leisure(mut self, leisure: Duration) -> Group {
        self.leisure = leisure;
        self
    }

    /// [`bind`](Self::bind), unless a group of `joined` has this address already: what
    /// both servers' `join_group` do.
    pub(crate) fn join_once<'g>(
        &self,
        mut joined: impl Iterator<Item = &'g Group>,
        port: u16,
    ) -> io::Result<UdpSocket> {
        if joined.any(|g| g.address == self.address) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "group joined already",
            ));
        }
        self.bind(port)
    }

    /// A socket bound to the group address and `port`, joined to the group.
    pub(crate) fn bind(&self, port: u16) -> io::Result<UdpSocket> {
        if !self.address.is_multicast() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a group address must be a multicast address",
            ));
        }
        match self.address {
            IpAddr::V4(group) => {
                let socket = bind_shared((group, port).into())?;
                socket.join_multicast_v4(&group, &self.interface_v4)?;
                Ok(socket)
            }
            IpAddr::V6(group) => {
                let at = SocketAddrV6::new(group, port, 0, self.interface_index);
                let socket = bind_shared(at.into())?;
                socket.join_multicast_v6(&group, self.interface_index)?;
                Ok(socket)
            }
        }
    }
}

/// A UDP socket bound to `at` with SO_REUSEADDR set first, as libcoap's group sockets
/// are: every server on the host that joins the group on the same port gets a copy of
/// each group datagram, rather than the second one failing to bind.
fn bind_shared(at: std::net::SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(at), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    if at.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&at.into())?;
    Ok(socket.into())
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address)?;
        match self.address {
            IpAddr::V4(_) if !self.interface_v4.is_unspecified() => {
                write!(f, " on {}", self.interface_v4)?;
            }
            IpAddr::V6(_) if self.interface_index != 0 => {
                write!(f, " on interface {}", self.interface_index)?;
            }
            _ => {}
        }
        let ms = self.leisure.as_millis();
        if ms % 1000 == 0 {
            write!(f, " (Leisure {} s)", ms / 1000)
        } else {
            write!(f, " (Leisure {ms} ms)")
        }
    }
}

/// One member's answer to a group request.
///
/// ```
/// use coap_proto::net::{GroupResponse, Response};
/// let r = GroupResponse::new("10.0.0.7:5683".parse().unwrap(), Response::content("hi"));
/// assert_eq!(r.to_string(), "10.0.0.7:5683: 2.05 Content (2 bytes)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupResponse {
    /// The member that answered (its unicast address).
    pub from: SocketAddr,
    /// Its answer; a block-wise one is fetched from that member by unicast and whole
    /// here (RFC 7959 §2.8).
    pub response: Response,
    /// `false` when the rest of a block-wise answer could not be fetched (the member
    /// stopped answering, or the body exceeded `Request::max_body`): `response`
    /// then holds the part that came.
    pub complete: bool,
}

impl GroupResponse {
    /// A complete answer from `from`.
    pub fn new(from: SocketAddr, response: Response) -> GroupResponse {
        GroupResponse {
            from,
            response,
            complete: true,
        }
    }
}

impl fmt::Display for GroupResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.from, self.response)?;
        if !self.complete {
            f.write_str(" (incomplete)")?;
        }
        Ok(())
    }
}

/// Sets the IPv4 multicast TTL of `socket`'s group requests; IPv6 has no setter in
/// the standard library.
pub(crate) fn set_hops(socket: &UdpSocket, hops: u32) -> io::Result<()> {
    match socket.local_addr()? {
        SocketAddr::V4(_) => socket.set_multicast_ttl_v4(hops),
        SocketAddr::V6(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the standard library cannot set the IPv6 multicast hop limit (it stays 1)",
        )),
    }
}
