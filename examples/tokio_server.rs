//! An async CoAP server over tokio: `/hello`, a 5000-byte `/big` served block-wise,
//! `/slow` answered after 1.5 s (a separate response) and `/echo` (POST, any size).
//!
//! ```text
//! cargo run --features tokio --example tokio_server -- [ADDRESS:PORT]   # default 127.0.0.1:5683
//! ```
use std::time::Duration;

use coap_proto::net::tokio::Server;
use coap_proto::net::{Request, Response};
use coap_proto::resource::{Methods, Resource};
use coap_proto::wire::Code;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), coap_proto::net::Error> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5683".into());
    let mut server = Server::bind(addr).await?;
    server
        .resource_async(Resource::new("/hello", Methods::GET), |_req| async {
            Response::content("Hello from tokio")
        })
        .resource_async(Resource::new("/big", Methods::GET), |_req| async {
            Response::content((0..5000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
        })
        .resource_async(Resource::new("/slow", Methods::GET), |_req| async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Response::content("worth the wait")
        })
        .resource_async(
            Resource::new("/echo", Methods::POST),
            |req: Request| async move { Response::new(Code::CHANGED).payload(req.payload) },
        );
    eprintln!("tokio_server listening on {}", server.local_addr()?);
    server.run().await
}
