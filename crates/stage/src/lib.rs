//! The contract between the pipeline's stages, over `forecast-runtime`'s
//! plumbing (which knows nothing of the pipeline's records):
//! - [`headers`]: dead-letter and metadata header names, the attestation
//!   of a record written and its check on a record read;
//! - [`trust`]: the stage keys and role keys a service is given;
//! - [`side`]: side inputs, topics of signed or attested records a service
//!   holds whole (licence decisions, restricted-party lists, the supply
//!   plan; the allocator's validated records);
//! - [`metrics`]: a service's metrics labelled with the pipeline's rule
//!   codes and stages.

pub mod headers;
pub mod metrics;
pub mod side;
pub mod trust;
