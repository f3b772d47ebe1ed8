//! Arbitrary bytes as the framing of a real layer image: `write_tar`
//! must refuse garbage before it writes a byte, and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| msb_erofs_fuzz::targets::framing_decode(data));
