//! The `coap-server` example as a child process on a free loopback port, for tests that
//! need a real server binary.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running example server; killed when dropped.
pub struct ExampleServer {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of a built example (tests run from target/<profile>/deps).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} not built: run the tests with --all-features",
        path.display()
    );
    path
}

/// Starts `coap-server` on 127.0.0.1 with `args`, once it says it listens.
#[allow(dead_code)]
pub fn start_coap_server(args: &[&str]) -> ExampleServer {
    start_example_server("coap-server", args)
}

/// Starts the server example `name` (`coap-server` or `tokio_server`, which take the
/// same flags) on 127.0.0.1 with `args`, once it says it listens.
pub fn start_example_server(name: &str, args: &[&str]) -> ExampleServer {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(example(name))
        .args(["-A", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "{line}");
    ExampleServer {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}
