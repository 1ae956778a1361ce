//! `coap-server` on the tokio adapter: the same flags and the same resources, so either
//! can stand in for the other. Handlers that answer at once run inline in the server's
//! task; `/async?N` waits in a task of its own.
//!
//! ```text
//! cargo run --features tokio,log --example tokio_server -- [-A ADDRESS] [-p PORT] [-d MAX] [-g GROUP]... [-G INTERFACE] [-v N] [-h]
//! cargo run --features tokio,log,dtls --example tokio_server -- -k KEY [-h HINT] …
//! ```
//!
//! With `-k KEY` (feature `dtls`) it also serves `coaps://` on PORT + 1, as libcoap's
//! does, over the same resources.
use coap_proto::net::Transport;
use coap_proto::net::tokio::{Reply, Server};

#[path = "common/interface.rs"]
mod interface;
#[path = "common/logger.rs"]
mod logger;
#[path = "common/server.rs"]
mod shared;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = shared::Options::parse()?;
    let mut server = Server::bind(options.listen()).await?;
    for group in options.groups()? {
        server.join_group(group)?;
        eprintln!("tokio_server joined {group}");
    }
    let store = shared::Store::new(&options);
    // One line, which tests wait for.
    match &options.key {
        Some(key) => {
            let coaps = secure(&options, key, &store).await?;
            eprintln!(
                "tokio_server listening on {} and on {coaps} (coaps)",
                server.local_addr()?
            );
        }
        None => eprintln!("tokio_server listening on {}", server.local_addr()?),
    }
    resources(&mut server, store);
    server.run().await?;
    Ok(())
}

/// With `-k`: coaps on PORT + 1, in a task of its own, over the same resources.
#[cfg(feature = "dtls")]
async fn secure(
    options: &shared::Options,
    key: &str,
    store: &shared::Store,
) -> Result<std::net::SocketAddr, Box<dyn std::error::Error>> {
    let mut keys = coap_proto::dtls::KeyStore::new().any_identity(key);
    if let Some(hint) = &options.hint {
        keys = keys.hint(hint.as_str());
    }
    let mut server = Server::bind_psk(options.listen_secure(), keys).await?;
    let addr = server.local_addr()?;
    resources(&mut server, store.clone());
    tokio::spawn(server.run());
    Ok(addr)
}

#[cfg(not(feature = "dtls"))]
async fn secure(
    _: &shared::Options,
    _: &str,
    _: &shared::Store,
) -> Result<std::net::SocketAddr, Box<dyn std::error::Error>> {
    Err("-k (coaps) needs the dtls feature (cargo run --features tokio,log,dtls …)".into())
}

/// The resources of libcoap's example server, on `server`.
fn resources<T: Transport>(server: &mut Server<64, 16, 1152, 512, 32768, T>, store: shared::Store) {
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
}
