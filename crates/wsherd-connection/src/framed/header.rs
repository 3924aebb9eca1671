//! The fast path's reading of a frame header (RFC 6455 section 5.2): does the read buffer start
//! with a whole, unmasked text frame with a 7- or 16-bit length, and how long are its header
//! and payload.
//!
//! Everything else (other opcodes, fragments, reserved bits, a mask, a 64-bit length) is left
//! to awc's codec, which decodes it and checks it properly. The fast path only has to be right
//! about what it accepts.

/// First byte: this frame is the last (here: the only) one of its message.
const FIN: u8 = 0x80;
/// The text opcode, in the first byte's low four bits.
const OPCODE_TEXT: u8 = 0x1;
/// The first byte of a whole text frame. The reserved bits (0x70) must be clear too, so
/// comparing the whole byte checks FIN, the reserved bits and the opcode at once.
const WHOLE_TEXT: u8 = FIN | OPCODE_TEXT;
/// Second byte: the payload is masked. A server must not mask, so such a frame goes to the
/// codec to be refused.
const MASK: u8 = 0x80;
/// Second byte's length field saying a 16-bit big-endian length follows.
const LEN_16: u8 = 126;
/// Second byte's length field saying a 64-bit length follows. Such frames are big enough for
/// the codec's cost not to matter, so the fast path leaves them to it.
const LEN_64: u8 = 127;
/// The two bytes every header has: flags and opcode, then mask bit and length.
const BASE: usize = 2;
/// Bytes of a 16-bit extended length.
const EXT_16: usize = 2;
/// Bytes of a 64-bit extended length.
const EXT_64: usize = 8;
/// Bytes of a masking key.
const MASK_KEY: usize = 4;

/// The longest frame header.
pub(super) const MAX_HEADER: usize = BASE + EXT_64 + MASK_KEY;

/// `(header length, payload length)` of the whole, unmasked text frame with a 7- or 16-bit
/// length at the start of `buf`; `None` for anything else or a header not yet all read. The
/// payload may not have arrived yet, and its length is not checked against any cap.
#[inline]
pub(super) fn whole_text_header(buf: &[u8]) -> Option<(usize, usize)> {
    if *buf.first()? != WHOLE_TEXT || *buf.get(1)? & MASK != 0 {
        return None;
    }
    // With the mask bit clear, the second byte is the length field.
    match *buf.get(1)? {
        LEN_16 => Some((
            BASE + EXT_16,
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
        )),
        LEN_64 => None,
        len => Some((BASE, usize::from(len))),
    }
}

/// `(header length, declared payload length)` of any frame at the start of `buf`, masked or
/// not; `None` while the header is not all read. Nothing is checked: this only says how much
/// the frame claims, so that a huge claim is not allocated for before its bytes arrive.
#[inline]
pub(super) fn declared_lengths(buf: &[u8]) -> Option<(usize, u64)> {
    let second = *buf.get(1)?;
    let mask = if second & MASK != 0 { MASK_KEY } else { 0 };
    let (extended, len) = match second & !MASK {
        LEN_16 => (
            EXT_16,
            u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
        ),
        LEN_64 => {
            let bytes: [u8; EXT_64] = buf.get(BASE..BASE + EXT_64)?.try_into().ok()?;
            (EXT_64, u64::from_be_bytes(bytes))
        }
        len => (0, u64::from(len)),
    };
    let header = BASE + extended + mask;
    (buf.len() >= header).then_some((header, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Headers are written out byte by byte rather than from the constants above, so that a
    // wrong constant fails here.

    #[test]
    fn a_short_whole_text_frame() {
        assert_eq!(whole_text_header(&[0x81, 5, b'h', b'e']), Some((2, 5)));
        assert_eq!(whole_text_header(&[0x81, 0]), Some((2, 0)));
        assert_eq!(whole_text_header(&[0x81, 125]), Some((2, 125)));
    }

    #[test]
    fn a_16_bit_length_is_big_endian() {
        assert_eq!(
            whole_text_header(&[0x81, 126, 0x01, 0x02]),
            Some((4, 0x0102))
        );
        assert_eq!(
            whole_text_header(&[0x81, 126, 0xFF, 0xFF, b'x']),
            Some((4, 65_535))
        );
    }

    #[test]
    fn a_64_bit_length_is_left_to_the_codec() {
        let mut header = vec![0x81, 127];
        header.extend_from_slice(&300u64.to_be_bytes());
        assert_eq!(whole_text_header(&header), None);
    }

    #[test]
    fn a_masked_frame_is_left_to_the_codec() {
        assert_eq!(whole_text_header(&[0x81, 0x85, 1, 2, 3, 4, b'h']), None);
        assert_eq!(whole_text_header(&[0x81, 0x80 | 126, 0, 200]), None);
    }

    #[test]
    fn other_frames_are_left_to_the_codec() {
        // A first fragment, a binary frame, a Ping, a continuation, and RSV1 set.
        for first in [0x01, 0x82, 0x89, 0x80, 0xC1] {
            assert_eq!(whole_text_header(&[first, 5]), None, "{first:#04x}");
        }
    }

    #[test]
    fn an_incomplete_header_is_not_a_frame_yet() {
        assert_eq!(whole_text_header(&[]), None);
        assert_eq!(whole_text_header(&[0x81]), None);
        assert_eq!(whole_text_header(&[0x81, 126]), None);
        assert_eq!(whole_text_header(&[0x81, 126, 0x01]), None);
    }

    #[test]
    fn declared_lengths_cover_every_length_form_and_the_mask() {
        assert_eq!(declared_lengths(&[0x82, 5]), Some((2, 5)));
        assert_eq!(
            declared_lengths(&[0x89, 126, 0x01, 0x02]),
            Some((4, 0x0102))
        );
        let mut header = vec![0x82, 127];
        header.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(declared_lengths(&header), Some((10, u64::MAX)));
        assert_eq!(declared_lengths(&[0x81, 0x85, 1, 2, 3, 4]), Some((6, 5)));
        // Not all read yet.
        assert_eq!(declared_lengths(&[0x82]), None);
        assert_eq!(declared_lengths(&header[..9]), None);
        assert_eq!(declared_lengths(&[0x81, 0x85, 1, 2, 3]), None);
    }

    #[test]
    fn the_longest_header_is_14_bytes() {
        assert_eq!(MAX_HEADER, 14);
    }
}
