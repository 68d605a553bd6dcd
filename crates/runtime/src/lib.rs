//! The plumbing every service of the pipeline runs on, written once (the
//! Kafka client settings themselves are `forecast-kafka`'s):
//! - [`config`]: topic names and logging flags;
//! - [`group`]: group consumers (rebalances, lag, static membership);
//! - [`topics`]: topic creation, broker reachability;
//! - [`shutdown`]: the root cancellation token (SIGINT, SIGTERM; a second
//!   signal exits at once);
//! - [`supervise`]: the critical tasks of a service, stopped together, with
//!   a bounded drain; blocking client calls off the async workers;
//! - [`telemetry`]: tracing set-up;
//! - [`metrics`], [`http`]: OpenMetrics metrics, `/healthz`, `/readyz`;
//! - [`inflight`]: records in flight until their outputs are acknowledged;
//! - [`failure`]: an error's domain (bad data, broker, internal), its
//!   hint and its exit code;
//! - [`delivery`]: a failed delivery, with its domain;
//! - [`continuity`]: no record passed over when a partition resumes;
//! - [`headers`]: dead-letter and metadata header names, the attestation
//!   of a record written and its check on a record read;
//! - [`trust`]: the stage keys and role keys a service is given;
//! - [`side`]: side inputs, compacted topics of signed records followed
//!   beside the consumed topic (licence decisions, restricted-party lists).

pub mod config;
pub mod continuity;
pub mod delivery;
pub mod failure;
pub mod group;
pub mod headers;
pub mod http;
pub mod inflight;
pub mod metrics;
pub mod shutdown;
pub mod side;
pub mod supervise;
pub mod table;
pub mod telemetry;
pub mod topics;
pub mod trust;
