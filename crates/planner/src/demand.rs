//! Reading demand back from `demand.by-customer` (the aggregators' compacted
//! topic): to its end, then following it. What `forecastctl demand` (and
//! its `--watch`) and `forecastctl up` show.

use std::time::Duration;

use forecast_kafka::KafkaArgs;
use forecast_model::Registry;
use forecast_model::demand::DemandView;
use forecast_runtime::config::TopicArgs;
use forecast_runtime::table;
use rdkafka::Message;
use rdkafka::consumer::BaseConsumer;

use crate::feed::Input;
use crate::view::PlannerView;

/// Takes a record of the demand topic into `view`; an undecodable one is
/// logged and skipped. Returns whether the view may have changed.
pub fn apply(view: &mut DemandView, key: &[u8], value: Option<&[u8]>) -> bool {
    forecast_model::wire::take_snapshot(view, key, value)
        .inspect_err(|e| tracing::warn!(error = %e, "undecodable demand snapshot skipped"))
        .unwrap_or(false)
}

/// Reads the demand topic from its start to its current end.
pub fn read_to_end(
    kafka: &KafkaArgs,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<(DemandView, BaseConsumer)> {
    let mut view = DemandView::default();
    let reader = table::read_to_end(kafka, &[topic], timeout, |m| {
        apply(&mut view, m.key().unwrap_or_default(), m.payload());
    })
    .map_err(|e| e.context("is the aggregator running against these --brokers?"))?;
    Ok((view, reader))
}

/// Reads demand by licence status (`topics.topic_licence_demand`) and the
/// licence decisions (`topics.topic_licences`) from their start to their
/// current end, into a view without supply: what `forecastctl demand
/// --by-licence` shows ([`PlannerView::exposure`]).
pub fn read_licences_to_end(
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    timeout: Duration,
) -> anyhow::Result<PlannerView> {
    let mut view = PlannerView::default();
    let names = [
        topics.topic_licence_demand.as_str(),
        topics.topic_licences.as_str(),
    ];
    table::read_to_end(kafka, &names, timeout, |m| {
        match crate::feed::decode(m, m.topic(), topics, Registry::embedded()) {
            Some(Input::Licence { key, snapshot }) => {
                view.on_licence_snapshot(&key, snapshot);
            }
            Some(Input::Decision(d)) => {
                view.on_decision(*d);
            }
            _ => {}
        }
    })
    .map_err(|e| e.context("is the aggregator running against these --brokers?"))?;
    Ok(view)
}

/// A record of the demand topic: its key and value (`None`: a tombstone).
pub type DemandRecord = (Vec<u8>, Option<Vec<u8>>);

/// Reads what `reader` (as [`read_to_end`] left it) receives next: up to
/// 10,000 records, waiting up to 500 ms for the first. Blocking.
pub fn next_changes(reader: &BaseConsumer) -> anyhow::Result<Vec<DemandRecord>> {
    let mut got = Vec::new();
    while let Some(m) = reader.poll(Duration::from_millis(if got.is_empty() { 500 } else { 0 })) {
        let m = m?;
        got.push((
            m.key().unwrap_or_default().to_vec(),
            m.payload().map(<[u8]>::to_vec),
        ));
        if got.len() >= 10_000 {
            break;
        }
    }
    Ok(got)
}
