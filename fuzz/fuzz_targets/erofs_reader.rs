//! Arbitrary bytes as an EROFS image: opening it, walking its tree with
//! every reader accessor, and merging it as a layer of fsmeta must give
//! a result or an error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| msb_erofs_fuzz::targets::erofs_reader(data));
