//! The documentation-requirements engine.
//!
//! - [`policy`]: the settings (TOML file, spec defaults) and their version.
//! - [`rules`]: [`rules::check`], every stateless rule of the spec.
//! - [`restricted`]: screening against a Consolidated Screening List CSV.
//! - [`text`]: the word and name normalisation both of those use.
//! - [`judge`]: turns bytes (JSON or framed Avro) into a document or a
//!   `SCHEMA_INVALID` verdict, then a verdict of the rules: the one entry
//!   point shared by the validating service and `forecastctl`.
//!
//! Nothing here does I/O except loading policy and list files.

pub mod judge;
pub mod policy;
pub mod restricted;
pub mod rules;
#[cfg(feature = "service")]
pub mod service;
pub mod text;

pub use judge::{Judged, Validator};
pub use policy::{Policy, PolicyError, PolicySettings};
pub use restricted::{RestrictedListError, RestrictedParties};
pub use rules::{Report, check};
