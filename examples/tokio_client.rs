//! An async CoAP client over tokio: several requests at once over one socket, a
//! block-wise download with progress, and a request abandoned by dropping its future.
//!
//! ```text
//! cargo run --features tokio --example tokio_client -- [coap://HOST:PORT]   # default coap://127.0.0.1:5683
//! ```
//! Against `tokio_server` or libcoap's `coap-server-notls` (paths differ; missing ones
//! print 4.04).
use std::time::Duration;

use coap_proto::net::Request;
use coap_proto::net::tokio::Client;
use coap_proto::uri::Uri;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "coap://127.0.0.1:5683".into());
    let uri = Uri::parse(&base)?;
    let client = Client::connect((uri.host(), uri.port())).await?;

    // Three requests in flight at once.
    let (hello, slow, echo) = tokio::join!(
        client.get("/hello"),
        client.get("/slow"),
        client.post("/echo", &[7u8; 3000]),
    );
    let hello = hello?;
    println!(
        "GET /hello: {} {}",
        hello.code,
        hello.payload_str().unwrap_or("")
    );
    println!("GET /slow: {}", slow?);
    println!("POST /echo (3000 bytes, Block1): {}", echo?);

    let mut got = 0;
    let head = client
        .get_blockwise(Request::get("/big").block2(4), |offset, data, last| {
            got += data.len();
            println!(
                "  block at {offset:5}: {:4} bytes{}",
                data.len(),
                if last { " (last)" } else { "" }
            );
        })
        .await?;
    println!("GET /big: {} — {got} bytes in blocks", head.code);

    // A request whose future is dropped is cancelled: no more retransmissions.
    let abandoned = tokio::time::timeout(Duration::from_millis(50), client.get("/slow")).await;
    println!(
        "GET /slow with a 50 ms budget: {}",
        if abandoned.is_err() {
            "cancelled"
        } else {
            "answered"
        }
    );
    Ok(())
}
