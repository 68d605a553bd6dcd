//! The planner's side of the pipeline: a read model built from the
//! pipeline's topics ([`view`], filled by [`feed`]), served as a JSON API,
//! a Server-Sent Events stream and a dashboard ([`api`]), to the holders
//! of bearer tokens when tokens are configured ([`auth`]).
//!
//! `forecastctl planner` serves it, a process of its own; it reads topics
//! only, outside any consumer group, so it never slows the aggregators,
//! and any instance shows the demand of every partition.

pub mod api;
pub mod auth;
pub mod demand;
pub mod feed;
pub mod supply;
pub mod view;

pub use feed::Planner;

/// Settings of the planner API.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PlannerArgs {
    /// Supply plan, CSV with the header `sku,quarter,on_hand,ordered`; entries
    /// of the supply.plan topic replace the file's for their SKU and quarter.
    #[arg(long, env = "FORECAST_SUPPLY", value_name = "FILE")]
    pub supply: Option<std::path::PathBuf>,
}

impl PlannerArgs {
    /// A planner holding the supply file's entries.
    pub fn planner(&self) -> Result<Planner, supply::SupplyError> {
        let entries = match &self.supply {
            Some(path) => supply::load(path)?,
            None => Vec::new(),
        };
        Ok(Planner::with_supply(entries))
    }
}
