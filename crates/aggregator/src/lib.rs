//! The aggregator's pure core: per-document sequencing and demand per
//! customer x SKU x quarter ([`DemandState`]).
//!
//! The aggregating service and `forecastctl replay` both feed accepted
//! documents to [`DemandState::apply`], so they cannot disagree.

pub mod state;

pub use state::{DemandState, Sequenced, sequenced_verdict};
