//! A deterministic network simulation: endpoints in virtual time over a seeded link that
//! drops, duplicates, delays and reorders datagrams. Every run is reproducible from its
//! seed, and the number of steps is bounded so that a livelock fails instead of hanging.

use std::time::Duration;

use coap_proto::{Endpoint, Event, Incoming, Instant, Output};

/// What the link does to each datagram.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// Per mille of datagrams lost.
    pub loss: u32,
    /// Per mille of datagrams delivered twice.
    pub duplicate: u32,
    /// Delay range; different delays reorder datagrams.
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Link {
    pub const PERFECT: Link = Link {
        loss: 0,
        duplicate: 0,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
    };
}

/// The application on top of the endpoints; the simulation calls it.
pub trait App<const E: usize, const B: usize, const M: usize, const D: usize, const R: usize> {
    /// A request or response arrived at `node`.
    fn incoming(
        &mut self,
        node: usize,
        now: Instant,
        from: u8,
        incoming: Incoming<'_>,
        ep: &mut Endpoint<u8, E, B, M, D, R>,
    );
    /// An event came out of `node`.
    fn event(
        &mut self,
        node: usize,
        now: Instant,
        event: Event,
        ep: &mut Endpoint<u8, E, B, M, D, R>,
    );
    /// Called at every step; the application may issue commands. Returns when it next
    /// wants to be called, if it has plans.
    fn tick(
        &mut self,
        node: usize,
        now: Instant,
        ep: &mut Endpoint<u8, E, B, M, D, R>,
    ) -> Option<Instant>;
}

/// A datagram sent: when, from, to, and its bytes.
pub type Sent = (Instant, u8, u8, Vec<u8>);

struct Packet {
    at: Instant,
    seq: u64,
    from: u8,
    to: u8,
    bytes: Vec<u8>,
    /// Sent to a group: delivered with `handle_group_datagram` and this Leisure.
    leisure: Option<Duration>,
}

/// A group address: datagrams sent to `address` reach each of `members` on its own,
/// each copy lost, duplicated and delayed independently, as on a multicast link.
#[derive(Clone, Debug)]
pub struct Group {
    pub address: u8,
    pub members: Vec<u8>,
    pub leisure: Duration,
}

pub struct Sim<const E: usize, const B: usize, const M: usize, const D: usize, const R: usize> {
    pub now: Instant,
    pub nodes: Vec<Endpoint<u8, E, B, M, D, R>>,
    pub link: Link,
    in_flight: Vec<Packet>,
    rng: u64,
    seq: u64,
    pub steps: usize,
    pub sent: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Every datagram sent, when tracing is on.
    pub trace: Option<Vec<Sent>>,
    pub groups: Vec<Group>,
}

impl<const E: usize, const B: usize, const M: usize, const D: usize, const R: usize>
    Sim<E, B, M, D, R>
{
    /// Nodes are addressed by their index as `u8`.
    pub fn new(nodes: Vec<Endpoint<u8, E, B, M, D, R>>, link: Link, seed: u64) -> Self {
        Sim {
            now: Instant::ZERO,
            nodes,
            link,
            in_flight: Vec::new(),
            rng: seed ^ 0x5eed_5eed_5eed_5eed,
            seq: 0,
            steps: 0,
            sent: 0,
            lost: 0,
            duplicated: 0,
            trace: None,
            groups: Vec::new(),
        }
    }

    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn per_mille(&mut self, p: u32) -> bool {
        (self.random() % 1000) < p as u64
    }

    fn delay(&mut self) -> Duration {
        let (lo, hi) = (
            self.link.min_delay.as_micros() as u64,
            self.link.max_delay.as_micros() as u64,
        );
        Duration::from_micros(lo + self.random() % (hi - lo + 1))
    }

    fn send(&mut self, from: u8, to: u8, bytes: &[u8]) {
        self.sent += 1;
        if let Some(trace) = &mut self.trace {
            trace.push((self.now, from, to, bytes.to_vec()));
        }
        if let Some(group) = self.groups.iter().find(|g| g.address == to).cloned() {
            for member in group.members {
                self.transmit(from, member, bytes, Some(group.leisure));
            }
            return;
        }
        self.transmit(from, to, bytes, None);
    }

    fn transmit(&mut self, from: u8, to: u8, bytes: &[u8], leisure: Option<Duration>) {
        if self.per_mille(self.link.loss) {
            self.lost += 1;
            return;
        }
        let copies = if self.per_mille(self.link.duplicate) {
            self.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + self.delay();
            self.seq += 1;
            self.in_flight.push(Packet {
                at,
                seq: self.seq,
                from,
                to,
                bytes: bytes.to_vec(),
                leisure,
            });
        }
    }

    /// Drains every node's output; returns the earliest deadline any node asked for.
    fn drain(&mut self, app: &mut impl App<E, B, M, D, R>) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for node in 0..self.nodes.len() {
            if let Some(t) = app.tick(node, self.now, &mut self.nodes[node]) {
                assert!(t >= self.now, "app wants to be called in the past");
                next = Some(next.map_or(t, |n| n.min(t)));
            }
            for _ in 0..10_000 {
                let now = self.now;
                match self.nodes[node].poll_output(now) {
                    Output::Transmit(t) => {
                        let (to, bytes) = (t.to, t.data.to_vec());
                        coap_proto::wire::Message::parse(&bytes).expect("every output parses");
                        self.send(node as u8, to, &bytes);
                    }
                    Output::Event(e) => app.event(node, now, e, &mut self.nodes[node]),
                    Output::Timeout(t) => {
                        if let Some(t) = t {
                            assert!(t > now, "node {node}: deadline {t} is not after now {now}");
                            next = Some(next.map_or(t, |n| n.min(t)));
                        }
                        break;
                    }
                }
            }
        }
        next
    }

    /// Runs until nothing is left to do or `until`, at most `max_steps` steps. Returns
    /// whether the network went quiet (no datagram in flight, no deadline pending).
    pub fn run(
        &mut self,
        app: &mut impl App<E, B, M, D, R>,
        until: Instant,
        max_steps: usize,
    ) -> bool {
        loop {
            self.steps += 1;
            assert!(
                self.steps <= max_steps,
                "no progress after {max_steps} steps: livelock?"
            );
            let deadline = self.drain(app);
            let arrival = self.in_flight.iter().map(|p| p.at).min();
            let next = match (deadline, arrival) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => return true,
                },
            };
            if next > until {
                return false;
            }
            self.now = next;
            // Deliver everything due now, in arrival order.
            let mut due: Vec<Packet> = Vec::new();
            let mut i = 0;
            while i < self.in_flight.len() {
                if self.in_flight[i].at <= self.now {
                    due.push(self.in_flight.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            due.sort_by_key(|p| (p.at, p.seq));
            for p in due {
                let node = p.to as usize;
                if node >= self.nodes.len() {
                    continue;
                }
                let now = self.now;
                let incoming = match p.leisure {
                    Some(leisure) => {
                        self.nodes[node].handle_group_datagram(now, p.from, &p.bytes, leisure)
                    }
                    None => self.nodes[node].handle_datagram(now, p.from, &p.bytes),
                };
                if let Some(incoming) = incoming {
                    app.incoming(node, now, p.from, incoming, &mut self.nodes[node]);
                }
            }
        }
    }
}
