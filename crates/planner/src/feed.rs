//! Fills the [`PlannerView`] from the topics: `demand.by-customer`,
//! `forecasts.audit`, `supply.plan`, `demand.by-licence` and
//! `licences.decisions`, each read from its start by a
//! consumer outside any group, so every instance serving the API sees the
//! demand of all partitions whichever aggregator applied them.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use forecast_kafka::KafkaArgs;
use forecast_kafka::{from_start, partition_ids, reader_config};
use forecast_model::attest::{Role, Verifier};
use forecast_model::commit::{Commit, SignedCommit};
use forecast_model::{DemandSnapshot, LicenceDecision, LicenceSnapshot, Registry, Timestamp, wire};
use forecast_runtime::config::TopicArgs;
use forecast_runtime::continuity::Positions;
use forecast_runtime::group::follow;
use forecast_runtime::metrics::Metrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, TopicPartitionList};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::supply::{SupplyEntry, parse_record};
use crate::view::{DemandChange, PlannerView};

/// The shared read model and the stream of demand changes.
#[derive(Debug)]
pub struct Planner {
    view: RwLock<PlannerView>,
    changes: broadcast::Sender<Arc<LiveChange>>,
    /// Cancelled when the feed stops: live streams end with it.
    closed: CancellationToken,
    /// A permit per live stream (SSE): each holds a broadcast receiver and
    /// a connection, so their number is bounded.
    streams: Arc<tokio::sync::Semaphore>,
    max_streams: usize,
}

/// Live streams served at once unless told otherwise (`--max-streams`).
pub const DEFAULT_MAX_STREAMS: u32 = 64;

/// Changes a slow live-stream client may fall behind before it is sent the
/// whole demand again.
const CHANGE_BUFFER: usize = 4096;

impl Default for Planner {
    fn default() -> Self {
        Self {
            view: RwLock::default(),
            changes: broadcast::channel(CHANGE_BUFFER).0,
            closed: CancellationToken::new(),
            streams: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_STREAMS as usize)),
            max_streams: DEFAULT_MAX_STREAMS as usize,
        }
    }
}

impl Planner {
    /// A planner whose supply plan starts from `supply` (a file's entries).
    pub fn with_supply(supply: Vec<SupplyEntry>) -> Self {
        let planner = Self::default();
        planner.update(|v| {
            for e in supply {
                v.on_supply(&e.key(), Some(e));
            }
        });
        planner
    }

    /// This planner keeping at most `limits` of each customer's verdicts
    /// (set before it reads any).
    pub fn with_verdict_limits(self, limits: crate::view::VerdictLimits) -> Self {
        self.update(|v| v.forget_verdicts_keeping(limits));
        self
    }

    /// This planner serving at most `n` live streams at once.
    pub fn with_max_streams(self, n: usize) -> Self {
        Self {
            streams: Arc::new(tokio::sync::Semaphore::new(n)),
            max_streams: n,
            ..self
        }
    }

    /// A live stream's permit, held as long as the stream, or the number of
    /// streams allowed when every permit is taken.
    pub fn stream_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, usize> {
        self.streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.max_streams)
    }

    /// Reads the view. Hold it briefly: the feed waits for readers.
    pub fn read<T>(&self, f: impl FnOnce(&PlannerView) -> T) -> T {
        f(&self
            .view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Changes the view.
    pub fn update<T>(&self, f: impl FnOnce(&mut PlannerView) -> T) -> T {
        f(&mut self
            .view
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Ends every live stream: the view no longer follows the topics (and
    /// a server shutting down gracefully does not wait for the streams'
    /// clients to leave).
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Resolves once [`Planner::close`] was called.
    pub fn closed(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.closed.clone().cancelled_owned()
    }

    /// Subscribes to demand changes, and reads the view as of the
    /// subscription: no change is missed between the two.
    pub fn subscribe<T>(
        &self,
        f: impl FnOnce(&PlannerView) -> T,
    ) -> (broadcast::Receiver<Arc<LiveChange>>, T) {
        let view = self
            .view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (self.changes.subscribe(), f(&view))
    }

    /// Applies a batch of records under one write lock, then announces the
    /// changes of demand and of demand by licence status (one event per
    /// customer, and one for the decisions, per batch).
    pub fn apply(&self, batch: Vec<Input>) {
        let changes: Vec<LiveChange> = self.update(|v| {
            let mut licences = std::collections::BTreeSet::new();
            let mut commits = std::collections::BTreeSet::new();
            let mut changes: Vec<LiveChange> = batch
                .into_iter()
                .filter_map(|input| match input {
                    Input::Demand { key, snapshot, at } => {
                        v.on_demand(&key, snapshot, at).map(LiveChange::Demand)
                    }
                    Input::Verdict(verdict) => {
                        v.on_verdict(*verdict);
                        None
                    }
                    Input::Supply { key, entry } => {
                        v.on_supply(&key, entry);
                        None
                    }
                    Input::Licence { key, snapshot } => {
                        if let Some(customer) = v.on_licence_snapshot(&key, snapshot) {
                            licences.insert(Some(customer));
                        }
                        None
                    }
                    Input::Decision(d) => {
                        if v.on_decision(*d) {
                            licences.insert(None);
                        }
                        None
                    }
                    Input::Commit { customer, record } => {
                        commits.extend(v.on_commit(&customer, record.map(|r| *r)));
                        None
                    }
                })
                .collect();
            changes.extend(
                commits
                    .into_iter()
                    .map(|customer_id| LiveChange::Commit { customer_id }),
            );
            changes.extend(
                licences
                    .into_iter()
                    .map(|customer_id| LiveChange::Licences { customer_id }),
            );
            changes
        });
        for c in changes {
            // No receiver is fine: nobody follows the stream right now.
            let _ = self.changes.send(Arc::new(c));
        }
    }
}

/// What the live stream announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveChange {
    /// A customer's demand changed.
    Demand(DemandChange),
    /// A customer's demand by licence status changed (`None`: a licence
    /// decision, which may change every customer's exposure).
    Licences { customer_id: Option<String> },
    /// The supplier's commit to a customer changed.
    Commit { customer_id: String },
}

/// One record, decoded.
#[derive(Debug)]
pub enum Input {
    /// A record of `demand.by-licence` (`None`: a tombstone).
    Licence {
        key: Vec<u8>,
        snapshot: Option<LicenceSnapshot>,
    },
    Decision(Box<LicenceDecision>),
    /// A snapshot (`None`: a tombstone), decoded before the view is locked.
    Demand {
        key: Vec<u8>,
        snapshot: Option<DemandSnapshot>,
        at: Option<Timestamp>,
    },
    Verdict(Box<forecast_model::Verdict>),
    Supply {
        key: String,
        entry: Option<SupplyEntry>,
    },
    /// A record of `commits` (`None`: a tombstone), as signed and decoded.
    Commit {
        customer: String,
        record: Option<Box<(SignedCommit, Commit)>>,
    },
}

/// What the planner believes on each topic it reads: the aggregator's
/// attestation on demand and demand by licence status, the validator's or
/// the aggregator's on verdicts, a compliance key's signature on licence
/// decisions, an operator key's on the supply plan and a supplier key's
/// on the commits. A record not
/// believed is logged, counted (`forecast_unattested_records`) and
/// skipped.
#[derive(Debug, Clone)]
pub struct Believed {
    pub demand: Verifier,
    pub verdicts: Verifier,
    pub decisions: Verifier,
    pub supply: Verifier,
    pub commits: Verifier,
}

impl Believed {
    /// Believes every record, whoever wrote it: attestation off.
    pub fn all() -> Self {
        Self {
            demand: Verifier::believing_all(),
            verdicts: Verifier::believing_all(),
            decisions: Verifier::believing_all(),
            supply: Verifier::believing_all(),
            commits: Verifier::believing_all(),
        }
    }

    /// What believes the records of `topic`.
    pub(crate) fn of(&self, topic: &str, topics: &TopicArgs) -> &Verifier {
        if topic == topics.topic_demand || topic == topics.topic_licence_demand {
            &self.demand
        } else if topic == topics.topic_audit {
            &self.verdicts
        } else if topic == topics.topic_licences {
            &self.decisions
        } else if topic == topics.topic_commits {
            &self.commits
        } else {
            &self.supply
        }
    }

    /// What `trust` believes on each input.
    pub fn from_trust(trust: &forecast_stage::trust::Trust) -> Self {
        Self {
            demand: trust.stages(&[Role::Aggregator]),
            verdicts: trust.stages(&[Role::Validator, Role::Aggregator]),
            decisions: trust.signed_by(Role::Compliance, "licence decision"),
            supply: trust.signed_by(Role::Operator, "supply plan record"),
            commits: trust.signed_by(Role::Supplier, "commit"),
        }
    }
}

/// Runs [`run`] on a blocking thread, and closes `planner`'s live streams
/// when it ends.
pub fn spawn(
    planner: Arc<Planner>,
    kafka: KafkaArgs,
    topics: TopicArgs,
    believed: Believed,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::task::spawn_blocking(move || {
        let result = run(&planner, &kafka, &topics, &believed, &metrics, &token);
        planner.close();
        result
    })
}

/// Follows the topics into `planner` until `token` is cancelled. `metrics`
/// counts the records read, and is ready once the view holds every record
/// the topics held when the feed started (what `/readyz` reports).
pub fn run(
    planner: &Planner,
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    believed: &Believed,
    metrics: &Metrics,
    token: &CancellationToken,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = reader_config(kafka).create()?;
    let names = [
        topics.topic_demand.as_str(),
        topics.topic_audit.as_str(),
        topics.topic_supply.as_str(),
        topics.topic_licence_demand.as_str(),
        topics.topic_licences.as_str(),
        topics.topic_commits.as_str(),
    ];
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for name in names {
        let partitions = loop {
            if token.is_cancelled() {
                return Ok(());
            }
            match partition_ids(consumer.client(), name, Duration::from_secs(5)) {
                Ok(ids) if !ids.is_empty() => break ids,
                Ok(_) => tracing::info!(topic = name, "waiting for the topic to be created"),
                Err(e) => {
                    tracing::warn!(topic = name, error = %e, "cannot read metadata; retrying")
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        };
        for p in partitions {
            tpl.add_partition_offset(name, p, from_start())?;
            if let Ok((low, high)) = consumer.fetch_watermarks(name, p, Duration::from_secs(5))
                && high > low
            {
                ends.push((name.to_owned(), p, high));
            }
        }
    }
    consumer.assign(&tpl)?;
    tracing::info!(topics = %names.join(","), "planner view following");
    let registry = Registry::embedded();
    let mut caught_up = false;
    // Offsets of the audit topic must follow one another: a record past
    // the one expected means the broker passed records over, which are
    // then read again (forecast_runtime::continuity). Not the demand and
    // supply topics: compacted, their offsets have gaps.
    let mut audit = Positions::default();
    while !token.is_cancelled() {
        let mut batch = Vec::new();
        let mut wait = Duration::from_millis(100);
        while batch.len() < 2000 {
            let Some(m) = consumer.poll(wait) else { break };
            wait = Duration::ZERO;
            // librdkafka reports a broker it cannot reach, and recovers by
            // itself: go on (a restart would read every topic again).
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error; retrying");
                    break;
                }
            };
            let topic = m.topic();
            if topic == topics.topic_audit
                && !follow(
                    &mut audit,
                    &consumer,
                    topic,
                    m.partition(),
                    m.offset(),
                    Some(metrics),
                )?
            {
                continue;
            }
            metrics.record_in();
            if !ends.is_empty() {
                ends.retain(|(t, p, end)| {
                    !(t == topic && *p == m.partition() && m.offset() + 1 >= *end)
                });
            }
            if let Err(why) = forecast_stage::headers::verify(&m, believed.of(topic, topics)) {
                let n = metrics.unattested(topic);
                if Metrics::worth_logging(n) {
                    tracing::warn!(topic, partition = m.partition(), offset = m.offset(), reason = %why, count = n, "record not believed: skipped (logged at the 1st, 2nd, 4th... of a topic; forecast_unattested_records counts all)");
                }
            } else if let Some(input) = decode(&m, topic, topics, registry) {
                batch.push(input);
            }
        }
        if !batch.is_empty() {
            planner.apply(batch);
        }
        if ends.is_empty() && !caught_up {
            caught_up = true;
            metrics.set_ready(true);
            tracing::info!("planner view caught up");
        }
    }
    Ok(())
}

/// Decodes a record of one of `topics`; an undecodable one is logged and
/// skipped.
pub(crate) fn decode(
    m: &BorrowedMessage<'_>,
    topic: &str,
    topics: &TopicArgs,
    registry: &Registry,
) -> Option<Input> {
    let key = m.key().unwrap_or_default();
    if topic == topics.topic_demand {
        let snapshot = decoded(m, "demand snapshot", |v| wire::decode_snapshot(v, registry))?;
        Some(Input::Demand {
            key: key.to_vec(),
            snapshot,
            at: m.timestamp().to_millis().map(Timestamp::from_millis),
        })
    } else if topic == topics.topic_licence_demand {
        let snapshot = decoded(m, "licence snapshot", |v| {
            wire::decode_licence_snapshot(v, registry)
        })?;
        Some(Input::Licence {
            key: key.to_vec(),
            snapshot,
        })
    } else if topic == topics.topic_licences {
        // A tombstone removes nothing: a decision is replaced, not deleted.
        let decision = decoded(m, "licence decision", |v| {
            wire::decode_decision(v, registry)
        })??;
        Some(Input::Decision(Box::new(decision)))
    } else if topic == topics.topic_commits {
        let customer = String::from_utf8_lossy(key).into_owned();
        let record = match m.payload() {
            None => None,
            Some(value) => match signed_commit(m, &customer, value) {
                Ok(r) => Some(Box::new(r)),
                Err(e) => {
                    tracing::warn!(topic, partition = m.partition(), offset = m.offset(), error = %e, "commit skipped");
                    return None;
                }
            },
        };
        Some(Input::Commit { customer, record })
    } else if topic == topics.topic_audit {
        match wire::decode_verdict(m.payload().unwrap_or_default(), registry) {
            Ok(v) => Some(Input::Verdict(Box::new(v))),
            Err(e) => {
                tracing::warn!(topic, partition = m.partition(), offset = m.offset(), error = %e, "undecodable verdict skipped");
                None
            }
        }
    } else {
        let key = String::from_utf8_lossy(key).into_owned();
        match parse_record(&key, m.payload()) {
            Ok(entry) => Some(Input::Supply { key, entry }),
            Err(e) => {
                tracing::warn!(topic, partition = m.partition(), offset = m.offset(), error = %e, "supply record skipped");
                None
            }
        }
    }
}

/// A record of `commits` as signed (its attestation was checked), and its
/// commit, which must be `customer`'s.
fn signed_commit(
    m: &BorrowedMessage<'_>,
    customer: &str,
    value: &[u8],
) -> Result<(SignedCommit, Commit), String> {
    let text = std::str::from_utf8(value).map_err(|e| e.to_string())?;
    let commit = Commit::of_record(customer, text).map_err(|e| e.to_string())?;
    let signed = SignedCommit {
        topic: m.topic().to_owned(),
        key: customer.to_owned(),
        attestation: forecast_stage::headers::value(m, forecast_stage::headers::ATTESTATION)
            .unwrap_or_default()
            .to_owned(),
        commit: serde_json::value::RawValue::from_string(text.to_owned())
            .map_err(|e| e.to_string())?,
    };
    Ok((signed, commit))
}

/// The value of `m` decoded (`Some(None)`: a tombstone), or `None`, logged,
/// when it does not decode.
fn decoded<T>(
    m: &BorrowedMessage<'_>,
    what: &str,
    decode: impl FnOnce(&[u8]) -> Result<T, forecast_model::DecodeError>,
) -> Option<Option<T>> {
    match m.payload().map(decode) {
        None => Some(None),
        Some(Ok(v)) => Some(Some(v)),
        Some(Err(e)) => {
            tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e, "undecodable {what} skipped");
            None
        }
    }
}
