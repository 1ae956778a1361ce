//! Heap allocations per request in the std and tokio servers, counted by a global
//! allocator: a handler that answers at once with a `'static` body costs none, once the
//! server has warmed up (its buffers, tables and the handler's request have grown to
//! their working size).
//!
//! One test per binary on purpose: the counter is process-wide, and tests running in
//! parallel would count each other's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coap_proto::net::Response;
use coap_proto::resource::{Methods, Resource};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Sends `n` CON GETs (`/hello?x=1`, and one more option) one after the other from a
/// plain socket, which allocates nothing, and checks each answer is the 2.05 `hello`.
fn hammer(socket: &UdpSocket, server: SocketAddr, first_mid: u16, n: u16) {
    let mut buf = [0u8; 256];
    for i in 0..n {
        let [m0, m1] = first_mid.wrapping_add(i).to_be_bytes();
        let req = [
            0x42, 0x01, m0, m1, 0xab, 0xcd, 0xb5, b'h', b'e', b'l', b'l', b'o', 0x43, b'x', b'=',
            b'1', 0x21, 0x00, // Accept: text/plain
        ];
        socket.send_to(&req, server).unwrap();
        let (len, _) = socket.recv_from(&mut buf).expect("an answer within 2 s");
        assert_eq!(&buf[..4], &[0x62, 0x45, m0, m1], "a piggybacked 2.05");
        assert_eq!(&buf[len - 6..len], b"\xffhello");
    }
}

fn client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket
}

fn hello(_: &coap_proto::net::Request) -> Response {
    Response::content("hello")
}

#[test]
fn servers_answer_at_once_without_allocating() {
    // The blocking server.
    let mut server = coap_proto::net::blocking::Server::bind("127.0.0.1:0").unwrap();
    server.resource(Resource::new("/hello", Methods::GET), |r| hello(r).into());
    let addr = server.local_addr();
    let stopper = server.stopper();
    let thread = std::thread::spawn(move || server.run().unwrap());
    let socket = client();
    hammer(&socket, addr, 0, 200);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    hammer(&socket, addr, 200, 1000);
    let blocking = ALLOCATIONS.load(Ordering::SeqCst) - before;
    stopper.stop();
    thread.join().unwrap();

    // The tokio server, its handler run inline.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut server = coap_proto::net::tokio::Server::bind("127.0.0.1:0")
                .await
                .unwrap();
            server.resource(Resource::new("/hello", Methods::GET), |r| hello(r).into());
            addr_tx.send(server.local_addr().unwrap()).unwrap();
            tokio::select! {
                r = server.run() => r.unwrap(),
                _ = stop_rx => {}
            }
        });
    });
    let addr = addr_rx.recv().unwrap();
    hammer(&socket, addr, 0, 200);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    hammer(&socket, addr, 200, 1000);
    let tokio = ALLOCATIONS.load(Ordering::SeqCst) - before;
    let _ = stop_tx.send(());
    thread.join().unwrap();

    println!("allocations for 1000 requests: blocking {blocking}, tokio {tokio}");
    assert_eq!(blocking, 0, "the blocking server allocated");
    assert_eq!(tokio, 0, "the tokio server allocated");
}
