//! The aggregating service: consumes `forecasts.validated`, sequences each
//! accepted document with [`DemandState::apply`] (the code `replay` runs),
//! writes the sequencing verdict to `forecasts.audit`, and publishes the
//! demand of each customer whose demand changed to `demand.by-customer`.
//!
//! Records are handled in batches of those already fetched (see
//! [`forecast_runtime::inflight`]): a customer whose demand changed several
//! times in a batch gets one snapshot, its state after the batch, and no
//! offset of the batch is stored before that snapshot is acknowledged. A
//! slow stream makes batches of one record, so a snapshot follows each
//! change as soon as it is applied.
//!
//! State is kept per input partition, and is always the result of applying
//! that partition's records before the next offset this process reads.
//! When a record does not follow the last one applied (the first record
//! after start, or after the partition moved to another instance and
//! back), the state of that partition is rebuilt from the partition's
//! start up to that record before it is applied. Restarts and rebalances
//! therefore never double-count and never lose an applied revision.
//!
//! `forecasts.validated` is keyed `customer_id/document_id`
//! ([`forecast_model::document_key`]), so every revision of a customer's
//! document is in one partition, in order; a snapshot covers one customer
//! within one partition and is keyed `customer_id/partition`: the demand of
//! a customer is the sum of its latest snapshots (`forecast_model::DemandView`).
//!
//! Licence decisions (`licences.decisions`, compacted) are a second input:
//! every instance reads the whole topic on a thread of its own, first to
//! its end (before it consumes, waiting at most [`DECISIONS_WAIT`]), then
//! following it, and takes each decision into the state of every partition
//! it holds ([`DemandState::take_decision`]) between two batches. The
//! demand by licence status of each customer within each partition is
//! published to `demand.by-licence` (same key) after every batch that
//! changed it: an applied document, a decision on an application one of
//! the customer's documents references, or a partition restored (its
//! customers' snapshots are published again, as decisions taken while no
//! instance held it may have moved them). Partitions are restored as soon
//! as they are assigned, so a decision reaches every assigned partition
//! even when no document arrives there.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use forecast_kafka::KafkaArgs;
use forecast_model::attest::{Attester, Verifier};
use forecast_model::screening::{RestrictedParties, ScreeningList};
use forecast_model::{
    LicenceDecision, LicenceRegister, RuleCode, SourceCoordinates, Stage, Timestamp, Verdict, wire,
};
use forecast_runtime::config::TopicArgs;
use forecast_runtime::inflight::{
    Batch, BatchProducer, FlightArgs, Handler, Refused, Service, SideInput, batch_producer,
};
use forecast_runtime::metrics::{Metrics, Output};
use forecast_stage::headers;
use forecast_stage::metrics::Counts as _;
use forecast_stage::side::{self, SIDE_WAIT, SideTopic};
use rdkafka::Message;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

use crate::state::{Decided, DemandState, rescreen_verdict};

mod inputs;
mod outputs;

pub use inputs::Decoder;
use inputs::{restored, source_of};
pub use outputs::{CustomerChange, Outputs, Received, outputs, unattested_verdict};

/// What the aggregator believes and how it attests: the validator's key on
/// its input, the compliance office's on licence decisions and
/// restricted-party lists, its own on what it writes.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Attests every record written (`None`: attestation off).
    pub attester: Option<Attester>,
    /// Believes a validated record.
    pub validated: Verifier,
    /// Believes a licence decision or a restricted-party list.
    pub decisions: Verifier,
}

/// How long the aggregator waits at start for the licence decisions and
/// the restricted-party list so far before it consumes; later ones are
/// taken as they arrive.
pub const DECISIONS_WAIT: Duration = SIDE_WAIT;

/// The side inputs in force: taken into every partition's state, and into
/// those restored later.
#[derive(Debug, Default)]
struct Sides {
    /// The decisions that count.
    register: LicenceRegister,
    /// The restricted-party list published last: its version and its
    /// index, built once.
    screening: Option<(String, RestrictedParties)>,
}

/// A side-input record received, not yet taken.
#[derive(Debug)]
enum Side {
    Decision(LicenceDecision),
    List(ScreeningList),
}

/// Settings of the aggregating service.
#[derive(Debug, Clone, Args)]
pub struct AggregatorArgs {
    /// Consumer group of the aggregators.
    #[arg(
        long,
        env = "FORECAST_AGGREGATOR_GROUP",
        default_value = AggregatorArgs::GROUP
    )]
    pub group: String,
    /// Static group membership id, unique per running instance (default
    /// `aggregator-<hostname>`); a restarted instance with the same id takes its
    /// partitions back at once. `none` turns static membership off.
    #[arg(long, env = "FORECAST_INSTANCE_ID", value_name = "ID")]
    pub instance_id: Option<String>,
    #[command(flatten)]
    pub flight: FlightArgs,
}

impl AggregatorArgs {
    /// The aggregators' consumer group unless `--group` says otherwise.
    pub const GROUP: &str = "forecast-aggregator";
}

/// The command line's defaults (`forecastctl up` runs the service with them).
impl Default for AggregatorArgs {
    fn default() -> Self {
        Self {
            group: Self::GROUP.into(),
            instance_id: None,
            flight: FlightArgs::default(),
        }
    }
}

/// The state of one input partition.
#[derive(Debug, Default)]
struct PartitionState {
    state: DemandState,
    /// Offset of the next record the state expects.
    next: i64,
}

impl PartitionState {
    /// An empty state that holds the side inputs in force, expecting the
    /// partition's first record.
    fn new(sides: &Sides) -> Self {
        Self {
            state: seeded(sides),
            next: 0,
        }
    }
}

/// An empty demand state with the decisions of `sides` taken and its list
/// in force (documents applied later are screened against it as they
/// come, so a restored partition gives no re-screen verdicts again).
fn seeded(sides: &Sides) -> DemandState {
    let mut state = DemandState::new();
    for d in sides.register.iter() {
        state.take_decision(d.clone());
    }
    if let Some((version, parties)) = &sides.screening {
        state.screen_against(version, parties.clone());
    }
    state
}

/// Key of a snapshot of one customer's demand within one partition.
pub fn snapshot_key(customer_id: &str, partition: i32) -> String {
    format!("{customer_id}/{partition}")
}

/// Runs until `token` is cancelled or a delivery fails for good.
pub async fn run(
    keys: Keys,
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    args: &AggregatorArgs,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let producer = batch_producer(kafka)?;
    tracing::info!(topic = %topics.topic_validated, group = %args.group, "aggregator started");
    let mut decisions = SideTopic {
        kafka: kafka.clone(),
        topic: topics.topic_licences.clone(),
        what: "licence decision",
        signed_by: keys.decisions.clone(),
        decode: |_, v, r| side::values(v, r, wire::decode_decision),
        refused: None,
    }
    .follow(metrics.clone(), token.clone())?;
    let mut lists = SideTopic {
        kafka: kafka.clone(),
        topic: topics.topic_screening.clone(),
        what: "restricted-party list",
        signed_by: keys.decisions.clone(),
        decode: |_, v, r| side::values(v, r, wire::decode_screening_list),
        refused: None,
    }
    .follow(metrics.clone(), token.clone())?;
    // The decisions and the list so far, before any document: the first
    // snapshots count under them.
    let mut sides = Sides::default();
    for d in decisions
        .so_far(&topics.topic_licences, "licence decision")
        .await
    {
        sides.register.take(d);
    }
    sides.screening = lists
        .so_far(&topics.topic_screening, "restricted-party list")
        .await
        .pop()
        .map(|list| {
            tracing::info!(version = %list.version, entries = list.entries.len(), "restricted-party list in force");
            let parties = list.parties();
            (list.version, parties)
        });
    let mut handler = Aggregate {
        partitions: HashMap::new(),
        changed: BTreeMap::new(),
        licence_changed: BTreeMap::new(),
        sides,
        decisions: decisions.records,
        lists: lists.records,
        pending: Vec::new(),
        kafka,
        producer: &producer,
        topics,
        metrics: &metrics,
        decoder: Decoder::default(),
        keys: &keys,
    };
    let service = Service {
        kafka,
        topic: &topics.topic_validated,
        group: &args.group,
        instance: args.instance_id.as_deref(),
        name: "aggregator",
        metrics: &metrics,
    };
    let result = args
        .flight
        .serve_with_side(&service, &producer, &token, &mut handler)
        .await;
    // The followers end once their receivers are gone.
    drop(handler);
    let _ = tokio::task::spawn_blocking(move || {
        let _ = decisions.thread.join();
        let _ = lists.thread.join();
    })
    .await;
    result
}

/// The aggregator's consume loop: the state of each input partition, and
/// the customers whose demand changed in the batch being handled.
struct Aggregate<'a> {
    partitions: HashMap<i32, PartitionState>,
    /// `(partition, customer)` whose demand changed in this batch, with the
    /// time of the last change: one snapshot each when the batch ends.
    changed: BTreeMap<(i32, String), Timestamp>,
    /// The same for demand by licence status.
    licence_changed: BTreeMap<(i32, String), Timestamp>,
    /// The side inputs in force.
    sides: Sides,
    decisions: tokio::sync::mpsc::Receiver<LicenceDecision>,
    lists: tokio::sync::mpsc::Receiver<ScreeningList>,
    /// Side input received, not yet taken.
    pending: Vec<Side>,
    decoder: Decoder,
    kafka: &'a KafkaArgs,
    producer: &'a BatchProducer,
    topics: &'a TopicArgs,
    metrics: &'a Metrics,
    keys: &'a Keys,
}

impl Handler for Aggregate<'_> {
    /// Restores the record's partition state if continuity broke, then
    /// sequences the record and enqueues its audit verdict.
    async fn handle(&mut self, m: &BorrowedMessage<'_>, batch: &mut Batch) -> anyhow::Result<()> {
        let (p, o) = (m.partition(), m.offset());
        let part = restored(
            &mut self.partitions,
            &self.sides,
            &mut self.licence_changed,
            self.kafka,
            self.topics,
            &self.keys.validated,
            p,
            o,
        )
        .await?;
        let to = Sink {
            producer: self.producer,
            topics: self.topics,
            metrics: self.metrics,
            attester: self.keys.attester.as_ref(),
        };
        let attested = headers::verify(m, &self.keys.validated).map(|_| ());
        if let Err(why) = &attested {
            let n = self.metrics.unattested(m.topic());
            if Metrics::worth_logging(n) {
                tracing::warn!(topic = m.topic(), partition = p, offset = o, reason = %why, count = n, "unattested record on the validated topic: dead-lettered, not applied (logged at the 1st, 2nd, 4th...; forecast_unattested_records counts all)");
            }
        }
        // An unattested record's headers say nothing: not even its dead
        // letter repeats the policy version it claims.
        let is_attested = attested.is_ok();
        let believed = |name| {
            is_attested
                .then(|| headers::value(m, name))
                .flatten()
                .unwrap_or_default()
        };
        let policy_version = believed(headers::POLICY_VERSION);
        let received = Received {
            at: SourceCoordinates {
                topic: m.topic().to_owned(),
                partition: p,
                offset: o,
            },
            value: m.payload().unwrap_or_default(),
            attested,
            policy_version,
            screening_version: believed(headers::SCREENING_VERSION),
            warnings: believed(headers::WARNINGS),
            submitted: source_of(m),
            decided_at: decided_at(m),
        };
        let applied = match outputs(&mut part.state, &mut self.decoder, received) {
            Outputs::Refused {
                code,
                message,
                audit,
            } => {
                if code == RuleCode::SchemaInvalid {
                    tracing::error!(partition = p, offset = o, error = %message, "undecodable record on the validated topic; dead-lettered");
                }
                to.dead_letter(batch, m, code, &message, policy_version)
                    .await?;
                if let Some(verdict) = audit {
                    to.audit(batch, &verdict, None).await?;
                }
                None
            }
            Outputs::Sequenced {
                key,
                verdict,
                change,
                held,
            } => {
                for verdict in std::iter::once(&verdict).chain(held.as_deref()) {
                    if let Some(&code) = verdict.codes.first() {
                        to.metrics.rejected(&[code]);
                    }
                    to.audit(batch, verdict, Some(key.as_bytes())).await?;
                }
                change
            }
        };
        if let Some(CustomerChange {
            customer,
            at,
            demand_changed,
        }) = applied
        {
            if demand_changed {
                self.changed.insert((p, customer.clone()), at);
            }
            self.licence_changed.insert((p, customer), at);
        }
        part.next = o + 1;
        Ok(())
    }

    /// A record whose audit verdict the broker refused for good: a dead
    /// letter naming it, so that its partition moves on (its sequencing
    /// stands: the state applied it).
    async fn refused(
        &mut self,
        topic: &str,
        refused: &Refused,
        batch: &mut Batch,
    ) -> anyhow::Result<()> {
        let how = headers::Refusal {
            dead_letters: &self.topics.topic_rejected,
            stage: Stage::Sequence,
            policy_version: "",
            attester: self.keys.attester.as_ref(),
        };
        headers::send_refused(batch, self.producer, self.metrics, topic, refused, &how).await
    }

    /// Publishes the demand of each customer that changed, once per batch:
    /// the batch settles only when these are acknowledged too.
    async fn flush(&mut self, batch: &mut Batch) -> anyhow::Result<()> {
        let changed = std::mem::take(&mut self.changed);
        self.publish(
            batch,
            changed,
            &self.topics.topic_demand,
            Output::Demand,
            |s, c, at| wire::encode_snapshot(&s.snapshot(c, at)),
        )
        .await?;
        let changed = std::mem::take(&mut self.licence_changed);
        let topic = &self.topics.topic_licence_demand;
        self.publish(batch, changed, topic, Output::LicenceDemand, |s, c, at| {
            wire::encode_licence_snapshot(&s.licence_snapshot(c, at))
        })
        .await
    }
}

/// The licence decisions, the restricted-party lists, and the partitions
/// assigned.
impl SideInput for Aggregate<'_> {
    async fn ready(&mut self) {
        if !self.pending.is_empty() {
            return;
        }
        // Both receivers are cancel safe.
        tokio::select! {
            Some(d) = self.decisions.recv() => self.pending.push(Side::Decision(d)),
            Some(l) = self.lists.recv() => self.pending.push(Side::List(l)),
            // The followers stopped (the service is stopping).
            else => std::future::pending().await,
        }
    }

    const ON_ASSIGN: bool = true;

    /// Takes the side input received into every partition's state (a
    /// list's re-screen verdicts go to the audit topic in `batch`), and
    /// restores the assigned partitions not held yet.
    async fn take(&mut self, assigned: &[(i32, i64)], batch: &mut Batch) -> anyhow::Result<()> {
        while let Ok(d) = self.decisions.try_recv() {
            self.pending.push(Side::Decision(d));
        }
        while let Ok(l) = self.lists.try_recv() {
            self.pending.push(Side::List(l));
        }
        let now = Timestamp::now();
        for side in std::mem::take(&mut self.pending) {
            match side {
                Side::Decision(d) => self.take_decision(d, now),
                Side::List(list) => self.take_list(list, now, batch).await?,
            }
        }
        for (p, next) in assigned {
            restored(
                &mut self.partitions,
                &self.sides,
                &mut self.licence_changed,
                self.kafka,
                self.topics,
                &self.keys.validated,
                *p,
                *next,
            )
            .await?;
        }
        Ok(())
    }
}

impl Aggregate<'_> {
    /// Takes a licence decision into every partition's state, unless one
    /// decided later counts already.
    fn take_decision(&mut self, d: LicenceDecision, now: Timestamp) {
        if !self.sides.register.take(d.clone()) {
            return;
        }
        tracing::info!(application = %d.application_number, status = %d.status, "licence decision taken");
        for (p, part) in &mut self.partitions {
            if let Decided::Taken { affected } = part.state.take_decision(d.clone()) {
                for customer in affected {
                    self.licence_changed.insert((*p, customer), now);
                }
            }
        }
    }

    /// Makes `list` the restricted-party list in force: every partition's
    /// live documents its delta touches are re-screened, each one held or
    /// released audited (stage RESCREEN), its customer's demand by licence
    /// status published again.
    async fn take_list(
        &mut self,
        list: ScreeningList,
        now: Timestamp,
        batch: &mut Batch,
    ) -> anyhow::Result<()> {
        let parties = list.parties();
        let sink = Sink {
            producer: self.producer,
            topics: self.topics,
            metrics: self.metrics,
            attester: self.keys.attester.as_ref(),
        };
        let (mut held, mut released) = (0usize, 0usize);
        for (p, part) in &mut self.partitions {
            for r in part.state.screen_against(&list.version, parties.clone()) {
                let verdict = rescreen_verdict(&r, &list.version, now);
                let key = forecast_model::document_key(&r.customer_id, &r.document_id);
                sink.audit(batch, &verdict, Some(key.as_bytes())).await?;
                if r.held {
                    held += 1;
                    sink.metrics.rejected(&verdict.codes);
                } else {
                    released += 1;
                }
                self.licence_changed.insert((*p, r.customer_id), now);
            }
        }
        tracing::info!(version = %list.version, entries = list.entries.len(), sha256 = %list.sha256, held, released, "restricted-party list taken: live documents re-screened");
        self.sides.screening = Some((list.version, parties));
        Ok(())
    }

    /// Sends `encode(state, customer, at)` of each changed `(partition,
    /// customer)` to `topic`, keyed `customer/partition`.
    async fn publish(
        &self,
        batch: &mut Batch,
        changed: BTreeMap<(i32, String), Timestamp>,
        topic: &str,
        output: Output,
        encode: impl Fn(&DemandState, &str, Timestamp) -> Vec<u8>,
    ) -> anyhow::Result<()> {
        for ((p, customer), at) in changed {
            let Some(part) = self.partitions.get(&p) else {
                continue;
            };
            let value = encode(&part.state, &customer, at);
            let key = snapshot_key(&customer, p);
            let record = FutureRecord::to(topic)
                .key(key.as_bytes())
                .payload(value.as_slice());
            let record = headers::attested(record, self.keys.attester.as_ref());
            batch.send(self.producer, record).await?;
            self.metrics.record_out(output);
        }
        Ok(())
    }
}

/// Where a record's outputs go.
struct Sink<'a> {
    producer: &'a BatchProducer,
    topics: &'a TopicArgs,
    metrics: &'a Metrics,
    attester: Option<&'a Attester>,
}

impl Sink<'_> {
    /// Sends `record`, attested.
    async fn send(
        &self,
        batch: &mut Batch,
        record: FutureRecord<'_, [u8], [u8]>,
    ) -> anyhow::Result<()> {
        batch
            .send(self.producer, headers::attested(record, self.attester))
            .await?;
        Ok(())
    }

    /// Dead-letters `m` at the sequencing stage, with `code`, and counts it.
    async fn dead_letter(
        &self,
        batch: &mut Batch,
        m: &BorrowedMessage<'_>,
        code: RuleCode,
        message: &str,
        policy_version: &str,
    ) -> anyhow::Result<()> {
        let record = headers::dead_letter(
            m,
            &self.topics.topic_rejected,
            &headers::DeadLetter {
                stage: "sequence",
                codes: code.as_str(),
                message,
                policy_version,
            },
        );
        self.send(batch, record).await?;
        self.metrics.record_out(Output::Rejected);
        self.metrics.rejected(&[code]);
        self.metrics.dead_letter(Stage::Sequence);
        Ok(())
    }

    /// Sends `verdict` to the audit topic under `key`.
    async fn audit(
        &self,
        batch: &mut Batch,
        verdict: &Verdict,
        key: Option<&[u8]>,
    ) -> anyhow::Result<()> {
        let audit = wire::encode_verdict(verdict);
        let mut record = FutureRecord::to(&self.topics.topic_audit).payload(audit.as_slice());
        if let Some(key) = key {
            record = record.key(key);
        }
        self.send(batch, record).await?;
        self.metrics.record_out(Output::Audit);
        Ok(())
    }
}

/// The record's broker time, or now.
fn decided_at(m: &BorrowedMessage<'_>) -> Timestamp {
    m.timestamp()
        .to_millis()
        .map_or_else(Timestamp::now, Timestamp::from_millis)
}
