//! Cross-crate integration tests live beside this file (`*.rs` test
//! targets in `Cargo.toml`); this library is empty.
