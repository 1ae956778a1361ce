//! `coap-server` on the tokio adapter: the same flags and the same resources, so either
//! can stand in for the other. Handlers that answer at once run inline in the server's
//! task; `/async?N` waits in a task of its own.
//!
//! ```text
//! cargo run --features tokio,log --example tokio_server -- [-A ADDRESS] [-p PORT] [-d MAX] [-v N] [-h]
//! ```
use coap_proto::net::tokio::{Reply, Server};

#[path = "common/logger.rs"]
mod logger;
#[path = "common/server.rs"]
mod shared;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = shared::Options::parse()?;
    if options.key.is_some() {
        return Err(
            "-k (coaps) is served by the blocking coap-server; the tokio adapter has no DTLS yet"
                .into(),
        );
    }
    let mut server = Server::bind(options.listen()).await?;
    eprintln!("tokio_server listening on {}", server.local_addr()?);
    let store = shared::Store::new(&options);

    server.resource(shared::root(), |_| shared::about().into());
    // Observable, like libcoap's: every observer gets the time once a second.
    let time = server.observable(shared::time(), |_| shared::now().into());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(shared::tick()).await;
            time.notify(shared::now());
        }
    });
    server.resource(shared::async_resource(), |req| {
        let delay = shared::async_delay(req);
        Reply::later(async move {
            tokio::time::sleep(delay).await;
            shared::async_done()
        })
    });
    let s = store.clone();
    server.resource(shared::example_data(), move |req| s.handle(req).into());
    server.fallback(move |req| store.handle(req).into());
    server.run().await?;
    Ok(())
}
