//! Private networks for the multicast tests: nothing they send can leave the machine.
//!
//! A test re-runs itself under `unshare -n` (a network namespace of its own, with only
//! a loopback interface), and there builds a link: a bridge `br0` (10.9.0.1/24,
//! fd00::1/64) for the test itself, and one host per server, each a namespace of its
//! own (`unshare -n`, joined with `nsenter`) wired to the bridge by a veth pair, with
//! 10.9.0.N and fd00::N on its `eth0`. Multicast routes point at the link. When the test
//! ends, its namespace and every host in it go away with the processes.
//!
//! Where namespaces cannot be made (no `unshare`, no privilege) the test says loudly
//! that it was skipped — and fails under `CI=true`, where it must run.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The variable that tells a re-run test it is inside its namespace.
const INSIDE: &str = "COAP_PROTO_NETNS";

/// Runs the calling test in a private network namespace: returns `true` inside it (run
/// the body), `false` outside once the inner run passed (or was skipped).
pub fn private_network(test: &str) -> bool {
    if std::env::var(INSIDE).as_deref() == Ok(test) {
        return true;
    }
    // As root, a network namespace; otherwise one inside a user namespace of our own
    // (where we are root), if the system allows those.
    let works = |flags: &str| {
        Command::new("unshare")
            .args([flags, "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let tools = ["ip", "nsenter"].iter().all(|tool| {
        Command::new("which")
            .arg(tool)
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let flags = ["-n", "-rn"].into_iter().find(|f| tools && works(f));
    let Some(flags) = flags else {
        assert!(
            std::env::var("CI").is_err(),
            "private networks (unshare, ip, nsenter) are needed under CI for {test}"
        );
        eprintln!(
            "SKIPPED {test}: private networks cannot be made here (needs unshare -n or -rn, \
             ip and nsenter)"
        );
        return false;
    };
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .arg(flags)
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(INSIDE, test)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} failed in its namespace:\n{stdout}\n{stderr}"
    );
    false
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child process, killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One host on the link: a namespace held open by a sleeping process.
pub struct Host {
    pub n: u8,
    holder: Proc,
    pub v4: IpAddr,
    pub v6: IpAddr,
}

/// The link: the bridge in the test's namespace, and the hosts on it.
pub struct Link {
    pub hosts: Vec<Host>,
    /// The bridge's interface index (the scope of ff02::fd for the test's sockets).
    pub index: u32,
}

impl Link {
    /// The bridge and `hosts` hosts, numbered 2, 3, …
    pub fn new(hosts: u8) -> Link {
        // IPv6 on bridge ports would give them multicast routes of their own.
        std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1").unwrap();
        run(&["ip", "link", "set", "lo", "up"]);
        run(&["ip", "link", "add", "br0", "type", "bridge"]);
        run(&[
            "ip",
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        std::fs::write("/proc/sys/net/ipv6/conf/br0/disable_ipv6", "0").unwrap();
        run(&["ip", "addr", "add", "10.9.0.1/24", "dev", "br0"]);
        run(&[
            "ip",
            "-6",
            "addr",
            "add",
            "fd00::1/64",
            "dev",
            "br0",
            "nodad",
        ]);
        run(&["ip", "link", "set", "br0", "up"]);
        run(&["ip", "route", "add", "224.0.0.0/4", "dev", "br0"]);
        let index = interface_index("br0");
        let hosts = (2..2 + hosts).map(Host::new).collect();
        Link { hosts, index }
    }
}

/// The index of interface `name` in the current namespace (`/sys` shows another's).
pub fn interface_index(name: &str) -> u32 {
    let out = Command::new("ip")
        .args(["-o", "link", "show", name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(':').next().unwrap().trim().parse().unwrap()
}

impl Host {
    fn new(n: u8) -> Host {
        let holder = Proc(
            Command::new("unshare")
                .args(["-n", "sleep", "3600"])
                .spawn()
                .unwrap(),
        );
        let pid = holder.0.id().to_string();
        // The namespace exists once `sleep` runs in it.
        let until = Instant::now() + Duration::from_secs(5);
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        while std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .ok()
            .as_ref()
            == Some(&own)
            || std::fs::read_link(format!("/proc/{pid}/ns/net")).is_err()
        {
            assert!(Instant::now() < until, "host {n}'s namespace never came up");
            std::thread::sleep(Duration::from_millis(10));
        }
        let (port, eth) = (format!("v{n}"), format!("e{n}"));
        run(&[
            "ip", "link", "add", &port, "type", "veth", "peer", "name", &eth,
        ]);
        run(&["ip", "link", "set", &eth, "netns", &pid]);
        run(&["ip", "link", "set", &port, "master", "br0"]);
        run(&["ip", "link", "set", &port, "up"]);
        let host = Host {
            n,
            holder,
            v4: format!("10.9.0.{n}").parse().unwrap(),
            v6: format!("fd00::{n}").parse().unwrap(),
        };
        host.run(&["ip", "link", "set", "lo", "up"]);
        host.run(&["ip", "link", "set", &eth, "name", "eth0"]);
        host.run(&[
            "ip",
            "addr",
            "add",
            &format!("10.9.0.{n}/24"),
            "dev",
            "eth0",
        ]);
        host.run(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("fd00::{n}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        host.run(&["ip", "link", "set", "eth0", "up"]);
        host.run(&["ip", "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        host
    }

    fn nsenter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder.0.id().to_string(), "-n", "--"]);
        c
    }

    /// Runs a command in this host's namespace, to its end.
    pub fn run(&self, args: &[&str]) {
        let out = self.nsenter().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "host {}: {args:?}: {}",
            self.n,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// This host's interface index of `eth0`.
    pub fn index(&self) -> u32 {
        let out = self
            .nsenter()
            .args(["ip", "-o", "link", "show", "eth0"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(':').next().unwrap().trim().parse().unwrap()
    }

    /// Starts `program` with `args` in this host's namespace; returns once a line of
    /// its stderr contains `ready` (our example servers say "listening"), or after a
    /// second for a program that says nothing (libcoap's server).
    pub fn spawn(&self, program: &Path, args: &[&str], ready: Option<&str>) -> Proc {
        let mut child = self
            .nsenter()
            .arg(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(if ready.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap();
        match ready {
            Some(ready) => {
                use std::io::BufRead;
                let stderr = child.stderr.take().unwrap();
                let mut lines = std::io::BufReader::new(stderr).lines();
                loop {
                    match lines.next() {
                        Some(Ok(line)) if line.contains(ready) => break,
                        Some(Ok(_)) => {}
                        _ => panic!(
                            "{} on host {} ended before it was ready",
                            program.display(),
                            self.n
                        ),
                    }
                }
                // Keep reading so that the child never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines {});
            }
            None => std::thread::sleep(Duration::from_secs(1)),
        }
        Proc(child)
    }
}
