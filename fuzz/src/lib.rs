//! The targets' bodies live with the crate's tests, which replay every
//! finding kept in crates/erofs/tests/fuzz/ through the same code.

#[path = "../../crates/erofs/tests/common/targets.rs"]
pub mod targets;

pub mod sources;
