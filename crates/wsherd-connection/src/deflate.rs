//! permessage-deflate (RFC 7692), the client's side of the negotiation: what is offered, and
//! whether the server's answer is one this client can honour.
//!
//! The offer always carries `client_no_context_takeover`: were wsherd to compress what it
//! sends, it would keep no compressor between messages (a deflate state with its window is
//! about 256 KiB, far more than an idle connection holds). The server's answer is checked
//! strictly: an extension not offered, a parameter repeated, unknown, out of range or
//! contradicting the offer ends the handshake with [`EndReason::ExtensionInvalid`]
//! (`crate::EndReason`), which is not retried by default.

use std::fmt;

/// Messages at least this large are compressed by default once permessage-deflate is agreed:
/// below it the frame header and the compressor's setup cost more than the bytes saved.
pub const DEFAULT_MIN_COMPRESS_SIZE: usize = 1024;

/// What an endpoint offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeflateOffer {
    /// Ask the server to reset its compressor after every message
    /// (`server_no_context_takeover`): nothing is kept to inflate between messages, at some
    /// cost in compression.
    pub no_context_takeover: bool,
    /// Ask the server to use at most this window (8 to 15 bits; `server_max_window_bits`):
    /// the inflate state kept between messages is as large as this window.
    pub server_max_window_bits: Option<u8>,
    /// Offer to compress with at most this window (`client_max_window_bits`); `None` offers
    /// the parameter without a value, which lets the server choose.
    pub client_max_window_bits: Option<u8>,
    /// Text and binary messages at least this large are sent compressed (`usize::MAX`: none
    /// are); each with a compressor of its own, dropped after it, so nothing is kept between
    /// messages.
    pub min_compress_size: usize,
}

impl Default for DeflateOffer {
    fn default() -> Self {
        DeflateOffer {
            no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: None,
            min_compress_size: DEFAULT_MIN_COMPRESS_SIZE,
        }
    }
}

impl DeflateOffer {
    /// The `Sec-WebSocket-Extensions` value of the offer.
    pub fn header(&self) -> String {
        let mut offer = String::from("permessage-deflate; client_no_context_takeover");
        match self.client_max_window_bits {
            Some(bits) => offer.push_str(&format!("; client_max_window_bits={bits}")),
            None => offer.push_str("; client_max_window_bits"),
        }
        if let Some(bits) = self.server_max_window_bits {
            offer.push_str(&format!("; server_max_window_bits={bits}"));
        }
        if self.no_context_takeover {
            offer.push_str("; server_no_context_takeover");
        }
        offer
    }

    /// Checks that window sizes are what RFC 7692 allows (8 to 15 bits).
    pub fn validate(&self) -> Result<(), String> {
        for (name, bits) in [
            ("server_max_window_bits", self.server_max_window_bits),
            ("client_max_window_bits", self.client_max_window_bits),
        ] {
            if let Some(bits) = bits
                && !(8..=15).contains(&bits)
            {
                return Err(format!("{name} must be from 8 to 15, not {bits}"));
            }
        }
        Ok(())
    }

    /// What the server's `Sec-WebSocket-Extensions` answer (every value of the header, in
    /// order) agreed to: `Ok(None)` when it declined (no header), an error when the answer is
    /// not one this offer allows.
    pub fn accept(&self, answers: &[&str]) -> Result<Option<Negotiated>, String> {
        let extensions: Vec<&str> = answers
            .iter()
            .flat_map(|value| split_outside_quotes(value, ','))
            .map(str::trim)
            .filter(|extension| !extension.is_empty())
            .collect();
        let [extension] = extensions.as_slice() else {
            return match extensions.len() {
                0 => Ok(None),
                n => Err(format!(
                    "the server accepted {n} extensions; one (permessage-deflate) was offered"
                )),
            };
        };
        let mut parts = split_outside_quotes(extension, ';')
            .into_iter()
            .map(str::trim);
        let name = parts.next().unwrap_or_default();
        if !name.eq_ignore_ascii_case("permessage-deflate") {
            return Err(format!(
                "the server accepted the extension {:?}, which was not offered",
                printable(name)
            ));
        }
        let mut negotiated = Negotiated {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            // RFC 7692 §7.1.2.2: a client that offered a value keeps to it, whether or not
            // the server repeats it.
            client_max_window_bits: self.client_max_window_bits.unwrap_or(15),
        };
        let mut seen = Vec::new();
        for parameter in parts.filter(|p| !p.is_empty()) {
            let (key, value) = match parameter.split_once('=') {
                Some((key, value)) => (key.trim(), Some(value.trim().trim_matches('"'))),
                None => (parameter, None),
            };
            let key = key.to_ascii_lowercase();
            if seen.contains(&key) {
                return Err(format!("the server's answer repeats {key}"));
            }
            seen.push(key.clone());
            match (key.as_str(), value) {
                ("server_no_context_takeover", None) => {
                    negotiated.server_no_context_takeover = true;
                }
                ("client_no_context_takeover", None) => {
                    negotiated.client_no_context_takeover = true;
                }
                ("server_max_window_bits", Some(value)) => {
                    let bits = window_bits(&key, value)?;
                    if self
                        .server_max_window_bits
                        .is_some_and(|offered| bits > offered)
                    {
                        return Err(format!(
                            "the server chose server_max_window_bits={bits}, more than the {} \
                             offered",
                            self.server_max_window_bits.unwrap_or(15)
                        ));
                    }
                    negotiated.server_max_window_bits = bits;
                }
                ("client_max_window_bits", Some(value)) => {
                    let bits = window_bits(&key, value)?;
                    if self
                        .client_max_window_bits
                        .is_some_and(|offered| bits > offered)
                    {
                        return Err(format!(
                            "the server chose client_max_window_bits={bits}, more than offered"
                        ));
                    }
                    negotiated.client_max_window_bits = bits;
                }
                (
                    "server_no_context_takeover"
                    | "client_no_context_takeover"
                    | "server_max_window_bits"
                    | "client_max_window_bits",
                    _,
                ) => {
                    return Err(format!(
                        "the server's {key} has a value where none belongs, or none where one must be"
                    ));
                }
                _ => {
                    return Err(format!(
                        "the server's answer has an unknown parameter {:?}",
                        printable(&key)
                    ));
                }
            }
        }
        if self.server_max_window_bits.is_some()
            && !seen.iter().any(|k| k == "server_max_window_bits")
        {
            // RFC 7692 §7.1.2.1: a server that accepts a server_max_window_bits offer says
            // which window it uses.
            return Err("the server accepted server_max_window_bits without a value".into());
        }
        if self.no_context_takeover && !negotiated.server_no_context_takeover {
            return Err(
                "the server did not accept server_no_context_takeover, which was asked for".into(),
            );
        }
        Ok(Some(negotiated))
    }
}

/// How this client compresses what it sends, once agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outbound {
    /// The window to compress with (9 to 15 bits).
    window_bits: u8,
    /// The smallest message compressed.
    min_size: usize,
}

impl Outbound {
    /// How to compress under `negotiated` with `offer`'s threshold; `None` when nothing is to
    /// be compressed (an 8-bit window, which zlib cannot compress with, or no threshold).
    pub(crate) fn new(offer: &DeflateOffer, negotiated: &Negotiated) -> Option<Outbound> {
        // zlib compresses with 9 to 15 bits; a value outside them (an offer built without
        // `validate`) is never handed to it.
        ((9..=15).contains(&negotiated.client_max_window_bits)
            && offer.min_compress_size != usize::MAX)
            .then_some(Outbound {
                window_bits: negotiated.client_max_window_bits,
                min_size: offer.min_compress_size,
            })
    }

    /// `payload` compressed as one permessage-deflate message (raw DEFLATE, sync-flushed, the
    /// trailing `00 00 ff ff` removed), with a compressor of its own; `None` when it is below
    /// the threshold or would not get smaller.
    pub(crate) fn compress(&self, payload: &[u8]) -> Option<Vec<u8>> {
        use flate2::{Compress, Compression, FlushCompress};
        if payload.len() < self.min_size {
            return None;
        }
        let mut compress =
            Compress::new_with_window_bits(Compression::fast(), false, self.window_bits);
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        loop {
            let consumed = usize::try_from(compress.total_in()).unwrap_or(usize::MAX);
            let rest = payload.get(consumed..).unwrap_or_default();
            if compress
                .compress_vec(rest, &mut out, FlushCompress::Sync)
                .is_err()
            {
                return None;
            }
            let consumed = usize::try_from(compress.total_in()).unwrap_or(usize::MAX);
            // All taken, and room left over: the flush is complete.
            if consumed >= payload.len() && out.len() < out.capacity() {
                break;
            }
            if out.len() >= payload.len() {
                return None;
            }
            out.reserve(out.capacity().max(1024));
        }
        if !out.ends_with(&[0x00, 0x00, 0xff, 0xff]) {
            return None;
        }
        out.truncate(out.len() - 4);
        (out.len() < payload.len()).then_some(out)
    }
}

/// What both sides agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The server resets its compressor after each message: nothing to keep in between.
    pub server_no_context_takeover: bool,
    /// This client must reset its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server's window (8 to 15 bits); inflation needs at least this much.
    pub server_max_window_bits: u8,
    /// The most this client may compress with.
    pub client_max_window_bits: u8,
}

impl fmt::Display for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "permessage-deflate (server window {} bits{})",
            self.server_max_window_bits,
            if self.server_no_context_takeover {
                ", no context takeover"
            } else {
                ""
            }
        )
    }
}

fn window_bits(key: &str, value: &str) -> Result<u8, String> {
    match value.parse::<u8>() {
        Ok(bits) if (8..=15).contains(&bits) && value.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(bits)
        }
        _ => Err(format!(
            "the server's {key}={:?} is not from 8 to 15",
            printable(value)
        )),
    }
}

/// `text` split at `separator` where it is not inside double quotes.
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(text.get(start..i).unwrap_or_default());
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(text.get(start..).unwrap_or_default());
    parts
}

/// At most 40 printable ASCII characters of what a server said.
fn printable(text: &str) -> String {
    text.chars()
        .take(40)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offer_always_asks_to_keep_no_client_context() {
        assert_eq!(
            DeflateOffer::default().header(),
            "permessage-deflate; client_no_context_takeover; client_max_window_bits"
        );
        let small = DeflateOffer {
            no_context_takeover: true,
            server_max_window_bits: Some(10),
            client_max_window_bits: Some(9),
            ..DeflateOffer::default()
        };
        assert_eq!(
            small.header(),
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=9; \
             server_max_window_bits=10; server_no_context_takeover"
        );
        assert!(
            DeflateOffer {
                server_max_window_bits: Some(16),
                ..DeflateOffer::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn answers_a_client_can_honour_are_accepted_with_what_they_agreed() {
        let offer = DeflateOffer::default();
        assert_eq!(offer.accept(&[]), Ok(None));
        let plain = offer.accept(&["permessage-deflate"]).unwrap().unwrap();
        assert_eq!(plain.server_max_window_bits, 15);
        assert!(!plain.server_no_context_takeover);
        // As python websockets answers, split over two header values and in another case.
        let answer = offer
            .accept(&["Permessage-Deflate; server_max_window_bits=\"12\""])
            .unwrap()
            .unwrap();
        assert_eq!(answer.server_max_window_bits, 12);
        let takeover = offer
            .accept(&["permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10"])
            .unwrap()
            .unwrap();
        assert!(takeover.server_no_context_takeover && takeover.client_no_context_takeover);
        assert_eq!(takeover.client_max_window_bits, 10);
    }

    #[test]
    fn what_is_compressed_inflates_back_and_small_or_incompressible_messages_are_not() {
        let offer = DeflateOffer::default();
        let agreed = offer
            .accept(&["permessage-deflate; client_max_window_bits=10"])
            .unwrap()
            .unwrap();
        let outbound = Outbound::new(&offer, &agreed).unwrap();
        let text = br#"{"op":"subscribe","args":["trades","quotes","books"]}"#.repeat(40);
        let compressed = outbound.compress(&text).unwrap();
        assert!(compressed.len() < text.len() / 4, "{}", compressed.len());
        let mut inflate = flate2::Decompress::new_with_window_bits(false, 10);
        let mut out = Vec::with_capacity(text.len() + 16);
        let input = [compressed.as_slice(), &[0, 0, 0xff, 0xff]].concat();
        inflate
            .decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, text);
        assert_eq!(outbound.compress(&text[..100]), None, "below the threshold");
        // Bytes that do not compress are sent as they are.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                // xorshift64: bytes with no structure to find.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        assert_eq!(outbound.compress(&noise), None);
        // An offer nobody validated never reaches zlib with a window it refuses.
        let unchecked = DeflateOffer {
            client_max_window_bits: Some(20),
            ..DeflateOffer::default()
        };
        let agreed = unchecked.accept(&["permessage-deflate"]).unwrap().unwrap();
        assert_eq!(Outbound::new(&unchecked, &agreed), None);
        // A value offered holds even when the answer does not repeat it.
        let nine = DeflateOffer {
            client_max_window_bits: Some(9),
            ..DeflateOffer::default()
        };
        let agreed = nine.accept(&["permessage-deflate"]).unwrap().unwrap();
        assert_eq!(agreed.client_max_window_bits, 9);
        let eight = offer
            .accept(&["permessage-deflate; client_max_window_bits=8"])
            .unwrap()
            .unwrap();
        assert_eq!(
            Outbound::new(&offer, &eight),
            None,
            "zlib cannot compress with 8 bits"
        );
    }

    #[test]
    fn unknown_contradictory_or_unoffered_answers_are_refused_saying_why() {
        let offer = DeflateOffer {
            no_context_takeover: false,
            server_max_window_bits: Some(10),
            client_max_window_bits: Some(12),
            ..DeflateOffer::default()
        };
        for (answer, why) in [
            ("x-webkit-deflate-frame", "not offered"),
            ("permessage-deflate, permessage-deflate", "2 extensions"),
            ("permessage-deflate; server_max_window_bits=11", "more than"),
            (
                "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
                "repeats",
            ),
            (
                "permessage-deflate; server_max_window_bits=7",
                "from 8 to 15",
            ),
            (
                "permessage-deflate; server_max_window_bits=+9",
                "from 8 to 15",
            ),
            ("permessage-deflate; server_max_window_bits", "value"),
            (
                "permessage-deflate; server_max_window_bits=10; client_max_window_bits=13",
                "more than",
            ),
            (
                "permessage-deflate; server_max_window_bits=10; server_no_context_takeover=1",
                "value",
            ),
            (
                "permessage-deflate; server_max_window_bits=10; mystery",
                "unknown parameter",
            ),
            ("permessage-deflate", "without a value"),
        ] {
            let error = offer.accept(&[answer]).unwrap_err();
            assert!(error.contains(why), "{answer}: {error}");
        }
        let wanted = DeflateOffer {
            no_context_takeover: true,
            ..DeflateOffer::default()
        };
        assert!(
            wanted
                .accept(&["permessage-deflate"])
                .unwrap_err()
                .contains("server_no_context_takeover")
        );
    }
}
