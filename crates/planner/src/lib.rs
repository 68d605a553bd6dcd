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
pub mod commits;
pub mod demand;
pub mod error;
pub mod feed;
pub mod supply;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod verdicts;
pub mod view;

pub use feed::Planner;

/// Settings of the planner API.
#[derive(Debug, Clone, clap::Args)]
pub struct PlannerArgs {
    /// Supply plan, CSV with the header `sku,quarter,on_hand,ordered`; entries
    /// of the supply.plan topic replace the file's for their SKU and quarter.
    #[arg(long, env = "FORECAST_SUPPLY", value_name = "FILE")]
    pub supply: Option<std::path::PathBuf>,
    /// Live demand streams (/v1/demand/stream) served at once; one more is
    /// answered 503 until one closes
    #[arg(
        long,
        env = "FORECAST_MAX_STREAMS",
        default_value_t = feed::DEFAULT_MAX_STREAMS,
        value_parser = clap::value_parser!(u32).range(1..=100_000),
        value_name = "N"
    )]
    pub max_streams: u32,
    /// Documents kept per customer for /v1/documents; past it, the document
    /// given a verdict least recently is forgotten (the audit topic keeps
    /// every verdict)
    #[arg(
        long,
        env = "FORECAST_MAX_DOCUMENTS_PER_CUSTOMER",
        default_value_t = view::VerdictLimits::DEFAULT.documents_per_customer,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..),
        value_name = "N"
    )]
    pub max_documents_per_customer: usize,
    /// Newest rejections kept per customer for /v1/rejections (all are counted)
    #[arg(
        long,
        env = "FORECAST_MAX_REJECTIONS_PER_CUSTOMER",
        default_value_t = view::VerdictLimits::DEFAULT.rejections_per_customer,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..),
        value_name = "N"
    )]
    pub max_rejections_per_customer: usize,
    /// Customers whose verdicts are kept apart; verdicts naming further
    /// customer ids are kept as nobody's, seen by planners only
    #[arg(
        long,
        env = "FORECAST_MAX_CUSTOMERS",
        default_value_t = view::VerdictLimits::DEFAULT.customers,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..),
        value_name = "N"
    )]
    pub max_customers: usize,
}

/// The command line's defaults.
impl Default for PlannerArgs {
    fn default() -> Self {
        let limits = view::VerdictLimits::DEFAULT;
        Self {
            supply: None,
            max_streams: feed::DEFAULT_MAX_STREAMS,
            max_documents_per_customer: limits.documents_per_customer,
            max_rejections_per_customer: limits.rejections_per_customer,
            max_customers: limits.customers,
        }
    }
}

impl PlannerArgs {
    /// A planner holding the supply file's entries.
    pub fn planner(&self) -> Result<Planner, supply::SupplyError> {
        let entries = match &self.supply {
            Some(path) => supply::load(path)?,
            None => Vec::new(),
        };
        Ok(Planner::with_supply(entries)
            .with_verdict_limits(view::VerdictLimits {
                documents_per_customer: self.max_documents_per_customer,
                rejections_per_customer: self.max_rejections_per_customer,
                customers: self.max_customers,
            })
            .with_max_streams(self.max_streams as usize))
    }
}
