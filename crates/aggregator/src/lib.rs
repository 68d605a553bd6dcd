//! The aggregator: per-document sequencing and demand per customer x SKU x
//! quarter.
//!
//! - [`state`]: the pure core, [`DemandState::apply`] (sequencing and
//!   demand, by licence status too) and [`DemandState::rescreen`] (the
//!   documents a new restricted-party list holds or releases); the aggregating
//!   service and `forecastctl replay` both call it, so they cannot disagree.
//! - [`service`]: the Kafka loop around it.

#[cfg(feature = "service")]
pub mod service;
pub mod state;

pub use forecast_model::{LicenceRow, LostDocument, OverApproved};
pub use state::{Decided, DemandState, Rescreened, Sequenced, rescreen_verdict, sequenced_verdict};
