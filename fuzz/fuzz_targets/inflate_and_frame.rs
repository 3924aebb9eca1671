//! A peer's bytes through the framing with permessage-deflate agreed, and through every
//! payload inflater (`decompress`): nothing may panic, nothing may inflate past the cap.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wsherd_connection::fuzzing::inflate_and_frame(data);
});
