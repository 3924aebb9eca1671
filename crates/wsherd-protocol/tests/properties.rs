//! Properties over arbitrary input: nothing a peer sends panics the decoder, and what is valid
//! comes out exactly.

use bytes::Bytes;
use proptest::prelude::*;
use serde::Deserialize;
use wsherd_protocol::{
    DecodeStage, EXCERPT_LIMIT, Fragment, KindRule, Reassembled, Reassembler, ReassemblyError,
    decode, excerpt, validate_text,
};

#[derive(Debug, Deserialize, PartialEq)]
struct Message {
    seq: u64,
    text: String,
}

fn rules() -> Vec<KindRule> {
    vec![
        KindRule::default(),
        KindRule::field("e"),
        KindRule::pointer("/data/type"),
        KindRule::pointer("/0/kind"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn kind_extraction_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(text) = std::str::from_utf8(&bytes) {
            for rule in rules() {
                let _ = rule.extract(text);
            }
        }
        let _ = validate_text(&bytes);
        // Lossy conversion may turn each invalid byte into a 3-byte replacement character.
        let shown = excerpt(&bytes);
        prop_assert!(shown.len() <= 3 * EXCERPT_LIMIT + '…'.len_utf8());
    }

    #[test]
    fn kind_extraction_finds_the_kind_wherever_the_rule_looks(
        kind in "[a-zA-Z0-9_\\-\"\\\\é ]{0,24}",
        noise in proptest::collection::vec(("[a-z]{1,8}", any::<i64>()), 0..6),
    ) {
        let mut object = serde_json::Map::new();
        for (key, value) in &noise {
            if key != "type" {
                object.insert(key.clone(), serde_json::json!(value));
            }
        }
        object.insert("type".into(), serde_json::json!(kind));
        let flat = serde_json::Value::Object(object.clone());
        let nested = serde_json::json!({"stream": "x", "data": flat});
        let (flat, nested) = (flat.to_string(), nested.to_string());
        let found = KindRule::default().extract(&flat).unwrap();
        prop_assert_eq!(found.as_deref(), Some(kind.as_str()));
        let found = KindRule::pointer("/data/type").extract(&nested).unwrap();
        prop_assert_eq!(found.as_deref(), Some(kind.as_str()));
    }

    #[test]
    fn typed_decode_is_exact_or_a_bounded_error(seq in any::<u64>(), text in ".{0,64}", junk in ".{0,600}") {
        let valid = serde_json::json!({"type": "m", "seq": seq, "text": text}).to_string();
        prop_assert_eq!(decode::<Message>("m", &valid).unwrap(), Message { seq, text });
        if let Err(error) = decode::<Message>("m", &junk) {
            let is_typed = matches!(error.stage, DecodeStage::Typed { .. });
            prop_assert!(is_typed);
            prop_assert_eq!(error.payload_len, junk.len());
            prop_assert!(error.excerpt.len() <= EXCERPT_LIMIT + '…'.len_utf8());
        }
    }

    #[test]
    fn any_fragmentation_reassembles_to_the_message(
        message in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
        text in any::<bool>(),
    ) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (message.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let mut pieces = Vec::new();
        let mut start = 0;
        for point in points.into_iter().chain(std::iter::once(message.len())) {
            pieces.push(Bytes::copy_from_slice(&message[start..point]));
            start = point;
        }
        let mut reassembler = Reassembler::new(4096);
        let last = pieces.len() - 1;
        let mut out = None;
        for (i, piece) in pieces.into_iter().enumerate() {
            let fragment = match (i, text) {
                (0, true) if last > 0 => Fragment::FirstText(piece),
                (0, false) if last > 0 => Fragment::FirstBinary(piece),
                (0, true) => { reassembler.push(Fragment::FirstText(Bytes::new())).unwrap(); Fragment::Last(piece) }
                (0, false) => { reassembler.push(Fragment::FirstBinary(Bytes::new())).unwrap(); Fragment::Last(piece) }
                (i, _) if i == last => Fragment::Last(piece),
                _ => Fragment::Continue(piece),
            };
            out = reassembler.push(fragment).unwrap();
        }
        let expected = Bytes::from(message);
        prop_assert_eq!(out, Some(if text { Reassembled::Text(expected) } else { Reassembled::Binary(expected) }));
    }

    #[test]
    fn the_cap_holds_for_any_fragment_sequence(
        fragments in proptest::collection::vec((0u8..4, 0usize..300), 0..64),
        cap in 0usize..1024,
    ) {
        let mut reassembler = Reassembler::new(cap);
        for (kind, len) in fragments {
            let chunk = Bytes::from(vec![b'x'; len]);
            let fragment = match kind {
                0 => Fragment::FirstText(chunk),
                1 => Fragment::FirstBinary(chunk),
                2 => Fragment::Continue(chunk),
                _ => Fragment::Last(chunk),
            };
            match reassembler.push(fragment) {
                Ok(Some(Reassembled::Text(b) | Reassembled::Binary(b))) => prop_assert!(b.len() <= cap),
                Ok(None) => {}
                Err(ReassemblyError::TooLarge { limit, .. }) => prop_assert_eq!(limit, cap),
                Err(_) => {}
            }
            prop_assert!(reassembler.buffered() <= cap);
        }
    }
}
