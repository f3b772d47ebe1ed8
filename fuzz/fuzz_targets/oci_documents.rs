//! See [`msb_erofs_fuzz::sources::documents`]: what the sources parse from a
//! published image or a registry must give a result or an error, never a
//! panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| msb_erofs_fuzz::sources::documents(data));
