//! The "All CoAP Nodes" group addresses (RFC 7252 §12.8), to which a client sends a
//! group request (RFC 7252 §8) that every CoAP server on a link or site answers — e.g.
//! a GET of `/.well-known/core` for resource discovery (RFC 7252 §7, RFC 6690 §4).
//!
//! The core's side of group communication is [`Endpoint::handle_group_datagram`]
//! (server) and [`RequestOptions::group`] (client); the adapters join the groups
//! (`net::blocking::Server::join_group`) and send group requests
//! (`net::blocking::Client::group_request`).
//!
//! ```
//! use coap_proto::multicast;
//! assert_eq!(multicast::ALL_COAP_NODES_V4.to_string(), "224.0.1.187");
//! assert_eq!(multicast::ALL_COAP_NODES_LINK_LOCAL.to_string(), "ff02::fd");
//! assert_eq!(multicast::ALL_COAP_NODES_SITE_LOCAL.to_string(), "ff05::fd");
//! ```
//!
//! [`Endpoint::handle_group_datagram`]: crate::Endpoint::handle_group_datagram
//! [`RequestOptions::group`]: crate::RequestOptions::group

use core::net::{Ipv4Addr, Ipv6Addr};

/// IPv4 "All CoAP Nodes": 224.0.1.187.
pub const ALL_COAP_NODES_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 1, 187);

/// IPv6 link-local "All CoAP Nodes": ff02::fd (needs an interface to be sent on).
pub const ALL_COAP_NODES_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfd);

/// IPv6 site-local "All CoAP Nodes": ff05::fd.
pub const ALL_COAP_NODES_SITE_LOCAL: Ipv6Addr = Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 0, 0xfd);
