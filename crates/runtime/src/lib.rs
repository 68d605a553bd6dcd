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
//! - [`parallel`]: per-record work of a batch on every core, in order;
//! - [`failure`]: an error's domain (bad data, broker, internal), its
//!   hint and its exit code;
//! - [`delivery`]: a failed delivery, with its domain;
//! - [`continuity`]: no record passed over when a partition resumes;
//! - [`table`]: a topic read whole, to its end, outside any group.
//!
//! Nothing here knows the pipeline's records: the contract between its
//! stages (header names, attestation, side inputs, trust, the metric
//! labels of rule codes and stages) is `forecast-stage`'s.

pub mod config;
pub mod continuity;
pub mod delivery;
pub mod failure;
pub mod group;
pub mod http;
pub mod inflight;
pub mod metrics;
pub mod parallel;
pub mod shutdown;
pub mod supervise;
pub mod table;
pub mod telemetry;
pub mod topics;
