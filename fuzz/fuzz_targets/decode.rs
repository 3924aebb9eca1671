//! Everything a peer's bytes go through before a subscriber sees them: UTF-8 validation, kind
//! extraction under several rules, typed decode, and reassembly under a cap, with the input
//! cut into fragments at points the input itself chooses.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use wsherd_protocol::{Fragment, KindRule, Reassembled, Reassembler, decode, excerpt, validate_text};

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Trade {
    seq: u64,
    price: f64,
    symbol: String,
    tags: Vec<String>,
}

const CAP: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&shape, body)) = data.split_first() else { return };
    let _ = excerpt(body);
    if let Ok(text) = validate_text(body) {
        for rule in [KindRule::default(), KindRule::field("e"), KindRule::pointer("/data/type")] {
            if let Ok(Some(kind)) = rule.extract(text) {
                let _ = decode::<Trade>(&kind, text);
            }
        }
        let _ = decode::<serde_json::Value>("any", text);
    }
    // Cut the body every `step` bytes and feed the pieces as one fragmented message.
    let step = usize::from(shape % 64) + 1;
    let mut reassembler = Reassembler::new(CAP);
    let pieces: Vec<&[u8]> = body.chunks(step).collect();
    let first = if shape & 0x80 == 0 {
        Fragment::FirstText(Bytes::new())
    } else {
        Fragment::FirstBinary(Bytes::new())
    };
    let _ = reassembler.push(first);
    for (i, piece) in pieces.iter().enumerate() {
        let chunk = Bytes::copy_from_slice(piece);
        let fragment = if i + 1 == pieces.len() { Fragment::Last(chunk) } else { Fragment::Continue(chunk) };
        match reassembler.push(fragment) {
            Ok(Some(Reassembled::Text(b) | Reassembled::Binary(b))) => assert!(b.len() <= CAP),
            Ok(None) | Err(_) => {}
        }
        assert!(reassembler.buffered() <= CAP);
    }
});
