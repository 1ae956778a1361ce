//! libcoap's tools (Debian `libcoap3-bin`) as peers of the DTLS tests: whether a tool is
//! installed (skipped loudly if not, a failure under CI=true), and its servers as child
//! processes that are killed when dropped.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Whether `tool` is installed; says so loudly if not, and fails under CI.
pub fn available(tool: &str) -> bool {
    let found = Command::new("which")
        .arg(tool)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").is_err(), "{tool} is missing under CI");
        eprintln!("SKIPPED: {tool} (libcoap3-bin) is not installed");
    }
    found
}

/// A child process, killed when dropped.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free UDP port on 127.0.0.1 (free a moment ago).
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// libcoap's `tool` (`coap-server-openssl` or `-gnutls`) with pre-shared key `key`; it
/// serves coaps on its port + 1, which is returned.
pub fn dtls_server(tool: &str, key: &str) -> (Peer, SocketAddr) {
    let port = free_port();
    let peer = Peer(
        Command::new(tool)
            .args(["-A", "127.0.0.1", "-p", &port.to_string(), "-k", key])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    (peer, SocketAddr::from(([127, 0, 0, 1], port + 1)))
}
