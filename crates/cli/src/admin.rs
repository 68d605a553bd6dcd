//! `forecastctl topics create` and `forecastctl supply load`.

use std::path::PathBuf;

use clap::Subcommand;
use forecast_kafka::KafkaArgs;
use forecast_runtime::config::TopicArgs;

use crate::services::LayoutArgs;

/// `topics` subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the pipeline's topics when missing (compacted demand topic,
    /// unlimited retention for validated and audit).
    Create {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        topics: TopicArgs,
        #[command(flatten)]
        layout: LayoutArgs,
    },
}

/// `supply` subcommands.
#[derive(Debug, Subcommand)]
pub enum SupplyCommand {
    /// Publish a supply plan file (CSV: sku,quarter,on_hand,ordered) to the
    /// supply.plan topic, one record per SKU and quarter (key SKU/QUARTER,
    /// JSON value); a later load replaces those SKUs and quarters.
    Load {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        topics: TopicArgs,
        /// The plan.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Publishes a supply plan file to the supply topic, which must exist.
pub async fn load_supply(
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    let entries = forecast_planner::supply::load(file)?;
    forecast_runtime::topics::require_topic(kafka, &topics.topic_supply).await?;
    forecast_planner::supply::publish(kafka, &topics.topic_supply, &entries).await?;
    eprintln!(
        "{} supply entries published to {}",
        entries.len(),
        topics.topic_supply
    );
    Ok(())
}
