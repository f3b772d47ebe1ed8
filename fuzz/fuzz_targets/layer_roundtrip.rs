//! Tar bytes in, EROFS out: whatever `build_layer` accepts, the reader
//! must read back without error, fsmeta must merge, and `write_tar` must
//! rebuild the input byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| msb_erofs_fuzz::targets::layer_roundtrip(data));
