//! `up`'s services: the validator, the aggregator, the allocator and the
//! planner, in this process, exactly as `forecastctl validate`,
//! `aggregate`, `allocator` and `planner` run them, under one supervisor;
//! the dashboard, the API and every service's endpoints on one listener.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use forecast_aggregator::service::AggregatorArgs;
use forecast_kafka::KafkaArgs;
use forecast_model::allocation::AllocationPolicy;
use forecast_model::attest::{Attester, Role};
use forecast_model::supply::SupplyEntry;
use forecast_planner::auth::Access;
use forecast_runtime::config::TopicArgs;
use forecast_runtime::supervise::Supervisor;
use forecast_stage::trust::Trust;
use forecast_validator::service::ValidatorArgs;
use tokio_util::sync::CancellationToken;

use crate::services;
/// What the services of a run are given.
pub(super) struct Run<'a> {
    pub(super) kafka: &'a KafkaArgs,
    pub(super) topics: &'a TopicArgs,
    pub(super) trust: &'a Trust,
    pub(super) supplier: Attester,
    pub(super) policy: &'a forecast_validator::Policy,
    pub(super) supply: Vec<SupplyEntry>,
    pub(super) supply_file: &'a Path,
    pub(super) access: Access,
    pub(super) listener: tokio::net::TcpListener,
    /// `--tls-cert`/`--tls-key`'s server settings (`None`: plain HTTP).
    pub(super) tls: Option<forecast_runtime::http::TlsConfig>,
    pub(super) limits: forecast_runtime::http::HttpLimits,
    pub(super) token: &'a CancellationToken,
}

/// Starts the services of `run`, supervised: the first to fail stops the
/// others.
pub(super) fn start(run: Run<'_>) -> anyhow::Result<Supervisor> {
    let (kafka, topics, trust, token) = (run.kafka, run.topics, run.trust, run.token);
    let (policy, supply, supplier) = (run.policy, run.supply, run.supplier);
    let validator_metrics = Arc::new(forecast_stage::metrics::new("validator"));
    let aggregator_metrics = Arc::new(forecast_stage::metrics::new("aggregator"));
    let allocator_metrics = Arc::new(forecast_stage::metrics::new("allocator"));
    let mut tasks = Supervisor::new(token.clone(), Duration::from_secs(30));
    {
        let (kafka, topics, token, metrics, policy) = (
            kafka.clone(),
            topics.clone(),
            token.clone(),
            validator_metrics.clone(),
            policy.clone(),
        );
        let attester = trust.attester(Role::Validator);
        let lists = trust.signed_by(Role::Compliance, "restricted-party list");
        tasks.spawn("the validator", async move {
            let args = ValidatorArgs::default();
            forecast_validator::service::run(
                forecast_validator::Validator::new(policy),
                attester,
                lists,
                &kafka,
                &topics,
                &args,
                metrics,
                token,
            )
            .await
        });
    }
    {
        let (kafka, topics, token, metrics) = (
            kafka.clone(),
            topics.clone(),
            token.clone(),
            aggregator_metrics.clone(),
        );
        let keys = services::aggregator_keys(trust);
        tasks.spawn("the aggregator", async move {
            let args = AggregatorArgs::default();
            forecast_aggregator::service::run(keys, &kafka, &topics, &args, metrics, token).await
        });
    }
    {
        let (kafka, topics, token, metrics) = (
            kafka.clone(),
            topics.clone(),
            token.clone(),
            allocator_metrics.clone(),
        );
        let keys = services::allocator_keys(trust, supplier)?;
        let book = forecast_allocator::Book::new(AllocationPolicy::default(), supply.clone());
        tasks.spawn("the allocator", async move {
            forecast_allocator::service::run(
                book,
                keys,
                &kafka,
                &topics,
                forecast_allocator::service::DEFAULT_SETTLE,
                metrics,
                token,
            )
            .await
        });
    }
    {
        let planner = forecast_planner::PlannerArgs {
            supply: Some(run.supply_file.to_path_buf()),
            ..forecast_planner::PlannerArgs::default()
        }
        .planner()?;
        let planner = Arc::new(planner);
        let planner_metrics = Arc::new(forecast_stage::metrics::new("planner"));
        let feed = forecast_planner::feed::spawn(
            planner.clone(),
            kafka.clone(),
            topics.clone(),
            forecast_planner::feed::Believed::from_trust(trust),
            planner_metrics.clone(),
            token.clone(),
        );
        tasks.spawn("the planner's feed", async move { feed.await? });
        let router = forecast_planner::auth::protect(
            forecast_runtime::http::routes(validator_metrics.clone())
                .nest(
                    "/aggregator",
                    forecast_runtime::http::routes(aggregator_metrics.clone()),
                )
                .nest(
                    "/allocator",
                    forecast_runtime::http::routes(allocator_metrics.clone()),
                )
                .nest("/planner", forecast_runtime::http::routes(planner_metrics))
                .merge(forecast_planner::api::routes(planner)),
            run.access,
        );
        tasks.spawn(
            "the dashboard and endpoints",
            forecast_runtime::http::serve_with(
                run.listener,
                router,
                run.tls,
                run.limits,
                token.clone(),
            ),
        );
    }

    Ok(tasks)
}
