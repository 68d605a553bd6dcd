//! The documentation-requirements engine.
//!
//! - [`policy`]: the settings (TOML file, spec defaults) and their version.
//! - [`rules`]: [`rules::check`], every stateless rule of the spec.
//! - [`keys`]: the key registry signed submissions are checked against.
//! - [`judge`]: turns bytes (JSON or framed Avro) into a document or a
//!   `SCHEMA_INVALID` verdict, then a verdict of the rules: the one entry
//!   point shared by the validating service and `forecastctl`.
//!
//! Nothing here does I/O except loading the policy, list and key files.

pub mod judge;
pub use forecast_model::keys;
pub mod policy;
pub mod rules;
#[cfg(feature = "service")]
pub mod service;

pub use forecast_model::screening::{RestrictedListError, RestrictedParties};
pub use judge::{Judged, Validator};
pub use keys::{KeyEntry, KeyRegistry, KeyRegistryError};
pub use policy::{Policy, PolicyError, PolicySettings, SignatureMode};
pub use rules::{Report, check};
