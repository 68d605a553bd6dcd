//! What the pipeline's services share, written once:
//! - [`config`]: brokers, topic names, `-X` librdkafka pass-through, logging;
//! - [`kafka`]: producer and consumer settings, topic creation;
//! - [`shutdown`]: the root cancellation token (SIGINT, SIGTERM);
//! - [`telemetry`]: tracing set-up;
//! - [`metrics`], [`http`]: Prometheus metrics, `/healthz`, `/readyz`;
//! - [`inflight`]: records in flight until their outputs are acknowledged;
//! - [`continuity`]: no record passed over when a partition resumes;
//! - [`headers`]: dead-letter and metadata header names.

pub mod config;
pub mod continuity;
pub mod headers;
pub mod http;
pub mod inflight;
pub mod kafka;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;
