//! `up`'s check: what the pipeline must end with, computed offline by the
//! same code (`forecast_pipeline::Replay`), and what the live pipeline
//! published, read back until it equals that, then shown.

use std::path::Path;
use std::time::{Duration, Instant};

use forecast_kafka::KafkaArgs;
use forecast_model::LicenceDecision;
use forecast_planner::demand::{read_licences_to_end, read_to_end};
use forecast_planner::feed::Believed;
use forecast_runtime::config::TopicArgs;
use tokio_util::sync::CancellationToken;

use crate::report;

/// Demand and demand by licence status as `replay` gives them.
pub(super) struct Expected {
    rows: Vec<forecast_model::DemandRow>,
    licences: serde_json::Value,
}

/// What `replay` of `examples` under `policy` with `decisions` gives.
pub(super) fn expected(
    policy: forecast_validator::Policy,
    decisions: Vec<LicenceDecision>,
    examples: &Path,
) -> anyhow::Result<Expected> {
    let file = crate::input::open(examples)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", examples.display()))?;
    let mut replay = forecast_pipeline::Replay::new(policy);
    for d in decisions {
        replay.take_decision(d);
    }
    let mut lines = crate::input::JsonLines::new(file);
    while let Some((_, bytes)) = lines.next_line()? {
        replay.submit_json(bytes);
    }
    let state = replay.state();
    let licences = report::licences_json(
        &state.licence_rows().collect::<Vec<_>>(),
        &state.lost_firm_demand(),
        &state.over_approved(),
    );
    Ok(Expected {
        rows: state.rows().collect(),
        licences,
    })
}

/// Reads the demand, then the demand by licence status, until each equals
/// `expected` (or a time passed), and prints them, saying which equal it.
pub(super) async fn show(
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    believed: &Believed,
    token: &CancellationToken,
    expected: Expected,
    started: Instant,
    licences: &Path,
) -> anyhow::Result<()> {
    let Expected {
        rows: expected,
        licences: expected_licences,
    } = expected;
    // What is not believed is left out, as `forecastctl demand` and the
    // planner leave it out; the comparison with `replay` then shows it.
    let (k, t, v) = (
        kafka.clone(),
        topics.topic_demand.clone(),
        believed.demand.clone(),
    );
    let read = move || read_to_end(&k, &t, &v, Duration::from_secs(10)).map(|(v, ..)| v.rows(None));
    let (rows, equal) = read_until(Duration::from_secs(60), token, read, |rows| {
        *rows == expected
    })
    .await?;
    let mut out = std::io::stdout().lock();
    report::write_demand_table(&mut out, &rows)?;
    drop(out);
    if equal {
        eprintln!(
            "\ndemand shown {:.1} s after start; it equals `forecastctl replay` of the same file",
            started.elapsed().as_secs_f64()
        );
    } else {
        eprintln!(
            "\nwarning: after 60 s the demand does not yet equal `forecastctl replay` of the same file"
        );
    }
    // Demand by licence status, as the live pipeline published it.
    let (k, t, b) = (kafka.clone(), topics.clone(), believed.clone());
    let read = move || {
        Ok(read_licences_to_end(&k, &t, &b, Duration::from_secs(10))?
            .0
            .exposure(&forecast_planner::view::DemandFilter::default()))
    };
    let (e, equal) = read_until(Duration::from_secs(30), token, read, |e| {
        report::licences_json(&e.by_status, &e.lost_firm_demand, &e.over_approved)
            == expected_licences
    })
    .await?;
    let mut out = std::io::stdout().lock();
    std::io::Write::write_all(&mut out, b"\n")?;
    report::write_licence_tables(
        &mut out,
        &e.by_status,
        &e.lost_firm_demand,
        &e.over_approved,
    )?;
    drop(out);
    if equal {
        eprintln!(
            "\ndemand by licence status equals `forecastctl replay --licences {}` of the same file",
            licences.display()
        );
    } else {
        eprintln!(
            "\nwarning: after 30 s demand by licence status does not yet equal `forecastctl replay --licences`"
        );
    }
    Ok(())
}

/// What `read` gives (a blocking read of the topics), read again every
/// 200 ms until `equal` holds of it, `timeout` passed or `token` is
/// cancelled; with whether `equal` holds.
async fn read_until<R: Send + 'static>(
    timeout: Duration,
    token: &CancellationToken,
    read: impl Fn() -> anyhow::Result<R> + Clone + Send + 'static,
    equal: impl Fn(&R) -> bool,
) -> anyhow::Result<(R, bool)> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = tokio::task::spawn_blocking(read.clone()).await??;
        let done = equal(&got);
        if done || Instant::now() > deadline || token.is_cancelled() {
            return Ok((got, done));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
