//! The allocator: the supplier's reply to the customers' forecasts.
//!
//! - [`book`]: the pure core. The demand of the validated stream (the
//!   aggregator's [`forecast_aggregator::DemandState`], fed the same
//!   records), the licence decisions, the restricted-party list and the
//!   supply plan, allocated under an allocation policy
//!   ([`forecast_model::allocation`]); the commit to each customer that
//!   changed. `forecastctl allocate` runs the same functions offline.
//! - [`service`]: the Kafka loop around it: reads its inputs whole, and
//!   publishes each changed commit, signed with the supplier's key, to the
//!   compacted `commits` topic (docs/planner.md, "Allocation").

pub mod book;
#[cfg(feature = "service")]
pub mod service;

pub use book::{Book, allocation, commits};
