//! Decodes a CoAP message given as hex and prints it readably.
//!
//! ```text
//! cargo run --example decode -- 44011234deadbeefb773656e736f72730b74656d70657261747572656132
//! ```
//!
//! Spaces, colons and a leading `0x` in the hex are ignored, so output from Wireshark or
//! `xxd -p` can be pasted as it is. Exit status 0 for a well-formed message, 1 for a
//! malformed one, 2 for bad usage.

use std::process::ExitCode;

use coap_proto::wire::{Header, Message};

fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if digits.len() % 2 != 0 {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| format!("not hex: {:?}", &digits[i..i + 2]))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The payload as text when it is printable UTF-8, else as hex lines of 32 bytes.
fn print_payload(payload: &[u8]) {
    if payload.is_empty() {
        println!("payload: none");
        return;
    }
    println!("payload: {} bytes", payload.len());
    match std::str::from_utf8(payload) {
        Ok(text) if !text.chars().any(|c| c.is_control() && !c.is_whitespace()) => {
            for line in text.lines() {
                println!("  | {line}");
            }
        }
        _ => {
            for chunk in payload.chunks(32) {
                println!("  {}", hex(chunk));
            }
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("usage: decode HEX...   (the arguments are joined into one message)");
        return ExitCode::from(2);
    }
    let bytes = match parse_hex(&args.join("")) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("decode: {e}");
            return ExitCode::from(2);
        }
    };
    let msg = match Message::parse(&bytes) {
        Ok(msg) => msg,
        Err(e) => {
            println!("malformed: {e}");
            if let Some(h) = Header::peek(&bytes) {
                println!(
                    "header:  version {}, {} code {}.{:02}, MID {:#06x}",
                    h.version,
                    h.ty,
                    h.code >> 5,
                    h.code & 0x1f,
                    h.message_id
                );
            }
            return ExitCode::from(1);
        }
    };
    println!("type:    {}", msg.ty());
    println!("code:    {}", msg.code());
    println!("MID:     {:#06x} ({})", msg.message_id(), msg.message_id());
    if msg.token().is_empty() {
        println!("token:   none");
    } else {
        println!(
            "token:   {} ({} bytes)",
            hex(msg.token()),
            msg.token().len()
        );
    }
    let mut count = 0;
    for opt in msg.options() {
        if count == 0 {
            println!("options:");
        }
        count += 1;
        let flags = match (opt.number.is_critical(), opt.check()) {
            (_, Err(e)) => format!("  [invalid: {e}]"),
            (true, Ok(())) if opt.number.info().is_none() => "  [unknown, critical]".into(),
            (false, Ok(())) if opt.number.info().is_none() => "  [unknown, elective]".into(),
            _ => String::new(),
        };
        println!("  {:>4}  {opt}{flags}", opt.number.0);
    }
    if count == 0 {
        println!("options: none");
    }
    print_payload(msg.payload());
    ExitCode::SUCCESS
}
