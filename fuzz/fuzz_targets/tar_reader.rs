//! Arbitrary bytes as a layer tar: `build_layer` must return (an image
//! or an error), never panic, hang or exceed libFuzzer's memory limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| msb_erofs_fuzz::targets::tar_reader(data));
