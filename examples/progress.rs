//! A block-wise download that shows its progress block by block.
//!
//! ```text
//! cargo run --features std --example progress -- [coap://HOST[:PORT]/PATH] [BLOCK-SIZE]
//! ```
//! Default: `coap://127.0.0.1/example_data` (served by `coap-server` and libcoap's
//! `coap-server-notls`) in 64-byte blocks.
use std::io::Write;

use coap_proto::net::blocking::Client;
use coap_proto::uri::Uri;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "coap://127.0.0.1/example_data".into());
    let size: usize = std::env::args().nth(2).map_or(Ok(64), |s| s.parse())?;
    let szx = (4..=10)
        .position(|p| 1 << p == size)
        .ok_or("block size: 16, 32, …, 1024")? as u8;
    let uri = Uri::parse(&url)?;
    let mut client = Client::connect((uri.host(), uri.port()))?;
    let mut received = 0;
    let head = client.get_blockwise(uri.path(), szx, |offset, data, last| {
        received += data.len();
        print!(
            "\r{url}: {received:6} bytes (block at {offset}){}",
            if last { ", done\n" } else { "" }
        );
        let _ = std::io::stdout().flush();
        true
    })?;
    println!("{} — {received} bytes", head.code);
    Ok(())
}
