//! Reading demand back from `demand.by-customer` (the aggregators' compacted
//! topic): to its end, then following it. What `forecastctl demand` (and
//! its `--watch`) and `forecastctl up` show. Only records the aggregator
//! attested are taken, as in the planner's view ([`Believed`]); the others
//! are counted in [`Unbelieved`] and skipped.

use std::time::Duration;

use forecast_kafka::KafkaArgs;
use forecast_model::Registry;
use forecast_model::attest::Verifier;
use forecast_model::demand::DemandView;
use forecast_runtime::config::TopicArgs;
use forecast_runtime::table;
use rdkafka::Message;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::BorrowedMessage;

use crate::feed::{Believed, Input};
use crate::view::PlannerView;

/// The records a reader skipped because their writer could not be
/// attributed: how many, and why the first was refused.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unbelieved {
    pub count: u64,
    pub first: Option<String>,
}

impl Unbelieved {
    /// Whether `verifier` believes `m`; counts it when not.
    fn believes(&mut self, m: &BorrowedMessage<'_>, verifier: &Verifier) -> bool {
        match forecast_stage::headers::verify(m, verifier) {
            Ok(_) => true,
            Err(why) => {
                self.count += 1;
                self.first.get_or_insert_with(|| {
                    format!(
                        "{} partition {} offset {}: {why}",
                        m.topic(),
                        m.partition(),
                        m.offset()
                    )
                });
                false
            }
        }
    }

    /// A warning for the reader's user, when records were skipped.
    pub fn warning(&self) -> Option<String> {
        self.first.as_ref().map(|first| {
            format!(
                "{} record(s) not believed were skipped (the first: {first}); is --stage-keys the aggregator's key file?",
                self.count
            )
        })
    }
}

/// Takes a record of the demand topic into `view`; an undecodable one is
/// logged and skipped. Returns whether the view may have changed.
pub fn apply(view: &mut DemandView, key: &[u8], value: Option<&[u8]>) -> bool {
    forecast_model::wire::take_snapshot(view, key, value)
        .inspect_err(|e| tracing::warn!(error = %e, "undecodable demand snapshot skipped"))
        .unwrap_or(false)
}

/// Reads the demand topic from its start to its current end, taking the
/// records `verifier` believes.
pub fn read_to_end(
    kafka: &KafkaArgs,
    topic: &str,
    verifier: &Verifier,
    timeout: Duration,
) -> anyhow::Result<(DemandView, BaseConsumer, Unbelieved)> {
    let mut view = DemandView::default();
    let mut unbelieved = Unbelieved::default();
    let reader = table::read_to_end(kafka, &[topic], timeout, |m| {
        if unbelieved.believes(m, verifier) {
            apply(&mut view, m.key().unwrap_or_default(), m.payload());
        }
    })
    .map_err(|e| e.context("is the aggregator running against these --brokers?"))?;
    Ok((view, reader, unbelieved))
}

/// Reads demand by licence status (`topics.topic_licence_demand`) and the
/// licence decisions (`topics.topic_licences`) from their start to their
/// current end, into a view without supply: what `forecastctl demand
/// --by-licence` shows ([`PlannerView::exposure`]). Takes the records
/// `believed` believes: the aggregator's snapshots, the compliance
/// office's decisions.
pub fn read_licences_to_end(
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    believed: &Believed,
    timeout: Duration,
) -> anyhow::Result<(PlannerView, Unbelieved)> {
    let mut view = PlannerView::default();
    let mut unbelieved = Unbelieved::default();
    let names = [
        topics.topic_licence_demand.as_str(),
        topics.topic_licences.as_str(),
    ];
    table::read_to_end(kafka, &names, timeout, |m| {
        if !unbelieved.believes(m, believed.of(m.topic(), topics)) {
            return;
        }
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
    Ok((view, unbelieved))
}

/// A record of the demand topic: its key and value (`None`: a tombstone).
pub type DemandRecord = (Vec<u8>, Option<Vec<u8>>);

/// Reads what `reader` (as [`read_to_end`] left it) receives next: up to
/// 10,000 records, waiting up to 500 ms for the first; those `verifier`
/// does not believe are skipped, and counted in the batch's [`Unbelieved`].
/// Blocking.
pub fn next_changes(
    reader: &BaseConsumer,
    verifier: &Verifier,
) -> anyhow::Result<(Vec<DemandRecord>, Unbelieved)> {
    let mut got = Vec::new();
    let mut unbelieved = Unbelieved::default();
    let mut polled = 0;
    while let Some(m) = reader.poll(Duration::from_millis(if polled == 0 { 500 } else { 0 })) {
        let m = m?;
        polled += 1;
        if !unbelieved.believes(&m, verifier) {
            continue;
        }
        got.push((
            m.key().unwrap_or_default().to_vec(),
            m.payload().map(<[u8]>::to_vec),
        ));
        if polled >= 10_000 {
            break;
        }
    }
    Ok((got, unbelieved))
}
