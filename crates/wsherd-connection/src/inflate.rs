//! Payloads a server compresses inside binary messages: gzip, raw DEFLATE or zlib per
//! message, or one zlib stream for the whole socket (`zlib-stream`, each message ending with a
//! sync flush, `00 00 ff ff`, as some chat gateways send).
//!
//! Inflation always goes through a cap on the *inflated* bytes: a small message that would
//! inflate past it stops after at most the cap (plus one scratch chunk) was produced, so a
//! compression bomb costs bounded memory and time. Per-message formats keep no state between
//! messages (nothing is held while a socket is idle); `zlib-stream` keeps its one context for
//! the socket's life, as the format requires.

use std::fmt;

use flate2::{Decompress as Inflate, FlushDecompress, Status};

/// The sync-flush marker that ends every message of a `zlib-stream`.
const SYNC_FLUSH: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Output is produced at most this much at a time (and never more than the cap allows).
const CHUNK: usize = 16 * 1024;
/// Output is produced at least this much at a time (unless the cap is smaller).
const MIN_SCRATCH: usize = 1024;

/// How a server compresses what it sends in binary messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decompress {
    /// Each message is a gzip member (RFC 1952).
    Gzip,
    /// Each message is raw DEFLATE data (RFC 1951).
    Deflate,
    /// Each message is a zlib stream (RFC 1950).
    Zlib,
    /// One zlib stream for the whole socket; a message is complete when it ends with a sync
    /// flush (`00 00 ff ff`), and may arrive in several binary messages before that.
    ZlibStream,
}

impl Decompress {
    /// `gzip`, `deflate`, `zlib` or `zlib-stream`, as the configuration names them.
    pub fn name(self) -> &'static str {
        match self {
            Decompress::Gzip => "gzip",
            Decompress::Deflate => "deflate",
            Decompress::Zlib => "zlib",
            Decompress::ZlibStream => "zlib-stream",
        }
    }
}

impl fmt::Display for Decompress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one binary message inflated to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inflated {
    /// A whole message.
    Message(Vec<u8>),
    /// Part of a `zlib-stream` message: more is to come before its sync flush.
    Partial,
    /// The message inflates (or its parts add up) to more than the cap; `size` was reached
    /// when inflation stopped.
    TooLarge {
        /// Bytes reached.
        size: usize,
    },
    /// Not valid compressed data.
    Corrupt(String),
}

/// One socket's inflation.
pub(crate) struct Inflater {
    format: Decompress,
    /// `zlib-stream`'s context, for the socket's life (created at the first message).
    stream: Option<Box<Inflate>>,
    /// `zlib-stream` bytes waiting for their sync flush.
    pending: Vec<u8>,
}

impl Inflater {
    /// A fresh inflater for one socket.
    pub(crate) fn new(format: Decompress) -> Self {
        Inflater {
            format,
            stream: None,
            pending: Vec::new(),
        }
    }

    /// Inflates one binary message, producing at most `cap` bytes of it.
    pub(crate) fn inflate(&mut self, payload: &[u8], cap: usize) -> Inflated {
        match self.format {
            Decompress::Gzip => once(&mut Inflate::new_gzip(15), payload, cap),
            Decompress::Deflate => once(&mut Inflate::new(false), payload, cap),
            Decompress::Zlib => once(&mut Inflate::new(true), payload, cap),
            Decompress::ZlibStream => self.stream_message(payload, cap),
        }
    }

    fn stream_message(&mut self, payload: &[u8], cap: usize) -> Inflated {
        if self.pending.is_empty() && payload.ends_with(&SYNC_FLUSH) {
            return self.stream_inflate_whole(payload, cap);
        }
        // What waits for its sync flush is bounded by the cap too: compressed data is
        // smaller than what it inflates to, or it is not worth keeping.
        if self.pending.len() + payload.len() > cap {
            let size = self.pending.len() + payload.len();
            self.pending = Vec::new();
            return Inflated::TooLarge { size };
        }
        self.pending.extend_from_slice(payload);
        if !self.pending.ends_with(&SYNC_FLUSH) {
            return Inflated::Partial;
        }
        let whole = std::mem::take(&mut self.pending);
        self.stream_inflate_whole(&whole, cap)
    }

    fn stream_inflate_whole(&mut self, input: &[u8], cap: usize) -> Inflated {
        let stream = self
            .stream
            .get_or_insert_with(|| Box::new(Inflate::new(true)));
        let (inflated, ended) = run(stream, input, cap, FlushDecompress::Sync);
        if ended {
            // The server finished its stream; what follows starts a new one.
            self.stream = None;
        }
        inflated
    }
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflater")
            .field("format", &self.format)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// permessage-deflate's inflation for one socket (RFC 7692 §7.2.2): raw DEFLATE, each
/// message's bytes followed by the `00 00 ff ff` its sender removed. With context takeover
/// the state (as large as the server's window) lives as long as the socket; without it, the
/// state is reset between messages and kept only while the socket has more to read (a busy
/// socket makes one, not one per message): [`MessageInflater::idle`] drops it once the
/// socket drained, so an idle socket holds nothing.
pub(crate) struct MessageInflater {
    /// At least 9: zlib cannot inflate with an 8-bit window, and a larger one inflates what
    /// a smaller one compressed.
    window_bits: u8,
    takeover: bool,
    state: Option<Box<Inflate>>,
}

impl MessageInflater {
    /// The inflater `negotiated` calls for.
    pub(crate) fn new(negotiated: &crate::deflate::Negotiated) -> Self {
        MessageInflater {
            window_bits: negotiated.server_max_window_bits.clamp(9, 15),
            takeover: !negotiated.server_no_context_takeover,
            state: None,
        }
    }

    /// Inflates one message's compressed bytes, producing at most `cap` bytes.
    pub(crate) fn inflate(&mut self, compressed: &[u8], cap: usize) -> Inflated {
        let window_bits = self.window_bits;
        let state = self
            .state
            .get_or_insert_with(|| Box::new(Inflate::new_with_window_bits(false, window_bits)));
        let mut input = Vec::with_capacity(compressed.len() + SYNC_FLUSH.len());
        input.extend_from_slice(compressed);
        input.extend_from_slice(&SYNC_FLUSH);
        let (inflated, ended) = run(state, &input, cap, FlushDecompress::Sync);
        // A message may end with a final block (RFC 7692 §7.2.3.3): that stream is over, and
        // kept it would inflate every later message to nothing. Without takeover each message
        // starts afresh anyway.
        if !self.takeover || ended {
            state.reset(false);
        }
        inflated
    }

    /// The socket has nothing more to read for now: without context takeover, nothing needs
    /// to be kept until it has.
    pub(crate) fn idle(&mut self) {
        if !self.takeover {
            self.state = None;
        }
    }

    /// Whether a state is kept between messages (for tests of what an idle socket holds).
    #[cfg(test)]
    pub(crate) fn holds_state(&self) -> bool {
        self.state.is_some()
    }
}

impl fmt::Debug for MessageInflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageInflater")
            .field("window_bits", &self.window_bits)
            .field("takeover", &self.takeover)
            .finish_non_exhaustive()
    }
}

/// A whole per-message payload: it must reach its end (a cut-short one never gets to the
/// gzip or zlib checksum, and is refused rather than delivered in part).
fn once(inflate: &mut Inflate, input: &[u8], cap: usize) -> Inflated {
    match run(inflate, input, cap, FlushDecompress::Finish) {
        (Inflated::Message(_), false) => {
            Inflated::Corrupt("the compressed message ends before its end".into())
        }
        (inflated, _) => inflated,
    }
}

/// Inflates `input`, producing at most `cap` bytes (one more says it was too much); and
/// whether the compressed stream came to its end.
fn run(
    inflate: &mut Inflate,
    input: &[u8],
    cap: usize,
    flush: FlushDecompress,
) -> (Inflated, bool) {
    let mut out = Vec::new();
    // Sized by the input (most messages inflate to a few times their size), so a small
    // message does not clear a whole chunk; the loop takes more turns for more output.
    let guess = input.len().saturating_mul(4).max(MIN_SCRATCH);
    let mut scratch = vec![0u8; guess.min(CHUNK).min(cap.saturating_add(1))];
    let mut consumed = 0usize;
    loop {
        let room = scratch.len().min(cap.saturating_add(1) - out.len());
        let (before_in, before_out) = (inflate.total_in(), inflate.total_out());
        let rest = input.get(consumed..).unwrap_or_default();
        let status = match inflate.decompress(rest, &mut scratch[..room], flush) {
            Ok(status) => status,
            Err(error) => return (Inflated::Corrupt(error.to_string()), false),
        };
        let read = usize::try_from(inflate.total_in() - before_in).unwrap_or(usize::MAX);
        let written = usize::try_from(inflate.total_out() - before_out).unwrap_or(usize::MAX);
        consumed = consumed.saturating_add(read);
        out.extend_from_slice(scratch.get(..written).unwrap_or_default());
        if out.len() > cap {
            return (Inflated::TooLarge { size: out.len() }, false);
        }
        let input_done = consumed >= input.len();
        match status {
            Status::StreamEnd => return (Inflated::Message(out), true),
            // All input taken and the output was not filled: nothing more will come.
            _ if input_done && written < room => break,
            // No progress either way: the data is cut short (or wants more than it has).
            _ if read == 0 && written == 0 => break,
            _ => {}
        }
    }
    (Inflated::Message(out), false)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};

    use super::*;

    const TEXT: &[u8] = br#"{"type":"trade","price":"101.5","qty":"3"}"#;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn each_per_message_format_inflates_what_its_encoder_wrote() {
        let mut deflate = DeflateEncoder::new(Vec::new(), Compression::default());
        deflate.write_all(TEXT).unwrap();
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
        zlib.write_all(TEXT).unwrap();
        for (format, payload) in [
            (Decompress::Gzip, gzip(TEXT)),
            (Decompress::Deflate, deflate.finish().unwrap()),
            (Decompress::Zlib, zlib.finish().unwrap()),
        ] {
            let mut inflater = Inflater::new(format);
            for _ in 0..2 {
                assert_eq!(
                    inflater.inflate(&payload, 1024),
                    Inflated::Message(TEXT.to_vec()),
                    "{format}"
                );
            }
        }
    }

    #[test]
    fn a_bomb_stops_at_the_cap() {
        // 50 MB of zeros compress to about 50 KB.
        let zeros = vec![0u8; 50 * 1024 * 1024];
        let bomb = gzip(&zeros);
        assert!(bomb.len() < 100 * 1024, "{}", bomb.len());
        let cap = 1024 * 1024;
        match Inflater::new(Decompress::Gzip).inflate(&bomb, cap) {
            Inflated::TooLarge { size } => assert!(size > cap && size <= cap + 1, "{size}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_zlib_stream_keeps_its_context_and_waits_for_each_sync_flush() {
        let mut compress = flate2::Compress::new(Compression::default(), true);
        let mut frame = |text: &[u8]| {
            let mut out = Vec::with_capacity(1024);
            compress
                .compress_vec(text, &mut out, flate2::FlushCompress::Sync)
                .unwrap();
            out
        };
        let first = frame(TEXT);
        let second = frame(TEXT);
        assert!(first.ends_with(&SYNC_FLUSH) && second.ends_with(&SYNC_FLUSH));
        // The second refers back to the first: it only inflates with the first's context.
        assert!(second.len() < first.len());
        let mut inflater = Inflater::new(Decompress::ZlibStream);
        assert_eq!(
            inflater.inflate(&first, 1024),
            Inflated::Message(TEXT.to_vec())
        );
        let (head, tail) = second.split_at(3);
        assert_eq!(inflater.inflate(head, 1024), Inflated::Partial);
        assert_eq!(
            inflater.inflate(tail, 1024),
            Inflated::Message(TEXT.to_vec())
        );
        // Without the first, the second is no valid stream.
        let mut fresh = Inflater::new(Decompress::ZlibStream);
        assert!(matches!(fresh.inflate(&second, 1024), Inflated::Corrupt(_)));
    }

    /// What a permessage-deflate sender puts on the wire for `texts`: raw DEFLATE with a
    /// `window_bits` window, each message sync-flushed and its `00 00 ff ff` removed.
    fn per_message(texts: &[&[u8]], window_bits: u8, takeover: bool) -> Vec<Vec<u8>> {
        let mut compress =
            flate2::Compress::new_with_window_bits(Compression::default(), false, window_bits);
        texts
            .iter()
            .map(|text| {
                if !takeover {
                    compress.reset();
                }
                let mut out = Vec::with_capacity(text.len() + 64);
                compress
                    .compress_vec(text, &mut out, flate2::FlushCompress::Sync)
                    .unwrap();
                assert!(out.ends_with(&SYNC_FLUSH));
                out.truncate(out.len() - 4);
                out
            })
            .collect()
    }

    fn negotiated(window: u8, no_takeover: bool) -> crate::deflate::Negotiated {
        crate::deflate::Negotiated {
            server_no_context_takeover: no_takeover,
            client_no_context_takeover: true,
            server_max_window_bits: window,
            client_max_window_bits: 15,
        }
    }

    #[test]
    fn permessage_deflate_inflates_with_and_without_context_takeover() {
        let texts: [&[u8]; 3] = [TEXT, TEXT, br#"{"type":"quote"}"#];
        for (window, no_takeover) in [(15, false), (10, false), (9, true), (15, true)] {
            let frames = per_message(&texts, window, !no_takeover);
            let mut inflater = MessageInflater::new(&negotiated(window, no_takeover));
            for (frame, text) in frames.iter().zip(texts) {
                assert_eq!(
                    inflater.inflate(frame, 1024),
                    Inflated::Message(text.to_vec()),
                    "window {window}, no takeover {no_takeover}"
                );
                // Kept (reset, without takeover) while the socket is busy...
                assert!(inflater.holds_state());
            }
            // ...and dropped once it drained, unless the context is taken over.
            inflater.idle();
            assert_eq!(inflater.holds_state(), !no_takeover);
        }
        // An 8-bit window (zlib's smallest is 9) is inflated with a 9-bit one.
        assert_eq!(MessageInflater::new(&negotiated(8, false)).window_bits, 9);
    }

    #[test]
    fn a_truncated_payload_is_corrupt_not_a_shorter_message() {
        let whole = gzip(TEXT);
        let cut = &whole[..whole.len() - 6];
        assert!(matches!(
            Inflater::new(Decompress::Gzip).inflate(cut, 1024),
            Inflated::Corrupt(_)
        ));
    }

    #[test]
    fn a_message_ending_in_a_final_block_does_not_empty_the_next_one() {
        // Each message its own finished stream (BFINAL set), as RFC 7692 §7.2.3.3 allows.
        let finished = |text: &[u8]| {
            let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
            encoder.write_all(text).unwrap();
            encoder.finish().unwrap()
        };
        let mut inflater = MessageInflater::new(&negotiated(15, false));
        for _ in 0..3 {
            assert_eq!(
                inflater.inflate(&finished(TEXT), 1024),
                Inflated::Message(TEXT.to_vec())
            );
        }
    }

    #[test]
    fn a_permessage_deflate_bomb_stops_at_the_cap() {
        let zeros = vec![0u8; 50 * 1024 * 1024];
        let frame = per_message(&[&zeros], 15, false).remove(0);
        assert!(frame.len() < 100 * 1024, "{}", frame.len());
        let mut inflater = MessageInflater::new(&negotiated(15, false));
        match inflater.inflate(&frame, 1 << 20) {
            Inflated::TooLarge { size } => assert!(size <= (1 << 20) + 1, "{size}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_corrupt_and_parts_past_the_cap_are_too_large() {
        for format in [Decompress::Gzip, Decompress::Zlib, Decompress::ZlibStream] {
            let garbage = b"definitely not compressed\x00\x00\xff\xff";
            assert!(
                matches!(
                    Inflater::new(format).inflate(garbage, 1024),
                    Inflated::Corrupt(_)
                ),
                "{format}"
            );
        }
        let mut stream = Inflater::new(Decompress::ZlibStream);
        assert_eq!(stream.inflate(&[1; 600], 1000), Inflated::Partial);
        assert_eq!(
            stream.inflate(&[1; 600], 1000),
            Inflated::TooLarge { size: 1200 }
        );
        assert_eq!(
            stream.inflate(&[1; 10], 1000),
            Inflated::Partial,
            "started over"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever bytes arrive, in whatever format, inflation never panics and never gives
        /// more than the cap (a `TooLarge` stops one byte past it).
        #[test]
        fn arbitrary_input_never_panics_and_never_passes_the_cap(
            pieces in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..600), 1..6),
            cap in 0usize..4096,
            format in 0usize..5,
        ) {
            let mut stream = Inflater::new(match format {
                0 => Decompress::Gzip,
                1 => Decompress::Deflate,
                2 => Decompress::Zlib,
                _ => Decompress::ZlibStream,
            });
            let mut messages = MessageInflater::new(&negotiated(9 + (cap % 7) as u8, format == 4));
            for piece in &pieces {
                for inflated in [stream.inflate(piece, cap), messages.inflate(piece, cap)] {
                    match inflated {
                        Inflated::Message(out) => proptest::prop_assert!(out.len() <= cap),
                        // Past the cap: inflated bytes (at most one more than it) or, for a
                        // zlib stream, the compressed bytes waiting for their flush.
                        Inflated::TooLarge { size } => proptest::prop_assert!(size > cap),
                        Inflated::Partial | Inflated::Corrupt(_) => {}
                    }
                }
            }
        }

        /// Real compressed data inflates back whole under a cap large enough, and to
        /// `TooLarge` under one too small.
        #[test]
        fn compressed_data_round_trips_or_stops_at_the_cap(
            text in proptest::collection::vec(0u8..8, 0..5000),
            cap in 0usize..6000,
        ) {
            let frame = per_message(&[&text], 15, false).remove(0);
            let mut inflater = MessageInflater::new(&negotiated(15, false));
            match inflater.inflate(&frame, cap) {
                Inflated::Message(out) => {
                    proptest::prop_assert!(text.len() <= cap);
                    proptest::prop_assert_eq!(out, text);
                }
                Inflated::TooLarge { size } => {
                    proptest::prop_assert!(text.len() > cap);
                    proptest::prop_assert!(size <= cap + 1);
                }
                other => proptest::prop_assert!(false, "{:?}", other),
            }
        }
    }
}
