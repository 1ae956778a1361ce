//! The self-contained examples run to their end and say what they did.
#![cfg(all(feature = "std", feature = "smoltcp"))]

mod common;

use common::example::example;

#[test]
fn smoltcp_loopback_exchanges_blocks_and_observes() {
    let out = std::process::Command::new(example("smoltcp_loopback"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3000 bytes of /big and 4 notifications of /count"),
        "{text}"
    );
}
