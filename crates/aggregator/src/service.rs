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
use std::time::{Duration, Instant};

use clap::Args;
use forecast_kafka::KafkaArgs;
use forecast_kafka::reader_config;
use forecast_model::{
    DecodeError, ForecastDocument, LicenceDecision, LicenceRegister, Outcome, Registry, RuleCode,
    SourceCoordinates, Stage, Timestamp, Verdict, Violation, WarningCode, wire,
};
use forecast_runtime::config::TopicArgs;
use forecast_runtime::continuity::Positions;
use forecast_runtime::group::follow;
use forecast_runtime::headers;
use forecast_runtime::inflight::{
    Batch, BatchProducer, FlightArgs, Handler, Refused, batch_producer,
};
use forecast_runtime::metrics::{Metrics, Output};
use forecast_runtime::table;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::state::{Decided, DemandState, Sequenced, sequenced_verdict};

/// How long the aggregator waits at start for the licence decisions so far
/// before it consumes; later ones are taken as they arrive.
pub const DECISIONS_WAIT: Duration = Duration::from_secs(30);

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
    /// An empty state that holds the decisions of `register`, expecting
    /// the partition's first record.
    fn new(register: &LicenceRegister) -> Self {
        Self {
            state: seeded(register),
            next: 0,
        }
    }
}

/// An empty demand state with the decisions of `register` taken.
fn seeded(register: &LicenceRegister) -> DemandState {
    let mut state = DemandState::new();
    for d in register.iter() {
        state.take_decision(d.clone());
    }
    state
}

/// Key of a snapshot of one customer's demand within one partition.
pub fn snapshot_key(customer_id: &str, partition: i32) -> String {
    format!("{customer_id}/{partition}")
}

/// Runs until `token` is cancelled or a delivery fails for good.
pub async fn run(
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    args: &AggregatorArgs,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let producer = batch_producer(kafka)?;
    tracing::info!(topic = %topics.topic_validated, group = %args.group, "aggregator started");
    let (tx, mut decisions) = tokio::sync::mpsc::unbounded_channel();
    let (read, caught_up) = tokio::sync::oneshot::channel();
    let follower = {
        let (kafka, topic, token) = (kafka.clone(), topics.topic_licences.clone(), token.clone());
        std::thread::Builder::new()
            .name("licence-decisions".into())
            .spawn(move || follow_decisions(&kafka, &topic, &tx, read, &token))?
    };
    // The decisions so far, before any document: the first snapshots
    // count under them.
    let mut register = LicenceRegister::default();
    match tokio::time::timeout(DECISIONS_WAIT, caught_up).await {
        Ok(Ok(())) => {
            while let Ok(d) = decisions.try_recv() {
                register.take(d);
            }
            tracing::info!(decisions = register.len(), topic = %topics.topic_licences, "licence decisions read");
        }
        _ => tracing::warn!(
            topic = %topics.topic_licences,
            "licence decisions not read to their end within {DECISIONS_WAIT:?}; consuming anyway, they apply when they arrive"
        ),
    }
    let mut handler = Aggregate {
        partitions: HashMap::new(),
        changed: BTreeMap::new(),
        licence_changed: BTreeMap::new(),
        register,
        decisions,
        pending: Vec::new(),
        kafka,
        producer: &producer,
        topics,
        metrics: &metrics,
        decoder: Decoder::default(),
    };
    let result = args
        .flight
        .serve(
            kafka,
            &topics.topic_validated,
            &args.group,
            args.instance_id.as_deref(),
            "aggregator",
            &producer,
            &metrics,
            &token,
            &mut handler,
        )
        .await;
    // The follower ends once the receiver is gone.
    drop(handler);
    let _ = tokio::task::spawn_blocking(move || follower.join()).await;
    result
}

/// Reads `licences.decisions` to its end (then `read` is sent), then
/// follows it, sending every decision to `tx`, until `token` is cancelled
/// or the receiver is gone. A topic that cannot be read is retried every
/// 5 s; an undecodable record is logged and skipped; a tombstone is
/// ignored (a decision is replaced by a later one, never deleted).
fn follow_decisions(
    kafka: &KafkaArgs,
    topic: &str,
    tx: &tokio::sync::mpsc::UnboundedSender<LicenceDecision>,
    read: tokio::sync::oneshot::Sender<()>,
    token: &CancellationToken,
) {
    let take = |m: &BorrowedMessage<'_>| {
        let Some(value) = m.payload() else { return };
        match wire::decode_decision(value, Registry::embedded()) {
            Ok(d) => {
                let _ = tx.send(d);
            }
            Err(e) => {
                tracing::warn!(topic, partition = m.partition(), offset = m.offset(), error = %e, "undecodable licence decision skipped");
            }
        }
    };
    let reader = loop {
        if token.is_cancelled() || tx.is_closed() {
            return;
        }
        match table::read_to_end(kafka, &[topic], DECISIONS_WAIT, take) {
            Ok(reader) => break reader,
            Err(e) => {
                tracing::warn!(topic, error = %format!("{e:#}"), "cannot read the licence decisions; retrying in 5 s");
                std::thread::sleep(Duration::from_secs(5));
            }
        }
    };
    let _ = read.send(());
    while !token.is_cancelled() && !tx.is_closed() {
        match reader.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => take(&m),
            // librdkafka recovers by itself.
            Some(Err(e)) => {
                tracing::warn!(topic, error = %e, "licence decisions: consumer error; retrying")
            }
            None => {}
        }
    }
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
    /// The decisions that count, taken into every partition's state and
    /// into those restored later.
    register: LicenceRegister,
    decisions: tokio::sync::mpsc::UnboundedReceiver<LicenceDecision>,
    /// Decisions received, not yet taken.
    pending: Vec<LicenceDecision>,
    decoder: Decoder,
    kafka: &'a KafkaArgs,
    producer: &'a BatchProducer,
    topics: &'a TopicArgs,
    metrics: &'a Metrics,
}

impl Handler for Aggregate<'_> {
    /// Restores the record's partition state if continuity broke, then
    /// sequences the record and enqueues its audit verdict.
    async fn handle(&mut self, m: &BorrowedMessage<'_>, batch: &mut Batch) -> anyhow::Result<()> {
        let (p, o) = (m.partition(), m.offset());
        let part = restored(
            &mut self.partitions,
            &self.register,
            &mut self.licence_changed,
            self.kafka,
            self.topics,
            p,
            o,
        )
        .await?;
        let applied = handle(
            part,
            &mut self.decoder,
            m,
            self.producer,
            self.topics,
            self.metrics,
            batch,
        )
        .await?;
        if let Some(Applied {
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
        };
        headers::send_refused(batch, self.producer, self.metrics, topic, refused, &how).await
    }

    async fn side_input(&mut self) {
        if self.pending.is_empty() {
            match self.decisions.recv().await {
                Some(d) => self.pending.push(d),
                // The follower stopped (the service is stopping).
                None => std::future::pending().await,
            }
        }
    }

    const SIDE_ON_ASSIGN: bool = true;

    /// Takes the decisions received into every partition's state, and
    /// restores the assigned partitions not held yet.
    async fn side(&mut self, assigned: &[(i32, i64)], _batch: &mut Batch) -> anyhow::Result<()> {
        while let Ok(d) = self.decisions.try_recv() {
            self.pending.push(d);
        }
        let now = Timestamp::now();
        for d in std::mem::take(&mut self.pending) {
            if !self.register.take(d.clone()) {
                continue;
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
        for (p, next) in assigned {
            restored(
                &mut self.partitions,
                &self.register,
                &mut self.licence_changed,
                self.kafka,
                self.topics,
                *p,
                *next,
            )
            .await?;
        }
        Ok(())
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

impl Aggregate<'_> {
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
            batch
                .send(
                    self.producer,
                    FutureRecord::to(topic)
                        .key(key.as_bytes())
                        .payload(value.as_slice()),
                )
                .await?;
            self.metrics.record_out(output);
        }
        Ok(())
    }
}

/// The state of partition `p`, ready for the record at offset `o`: rebuilt
/// from the partition's start when continuity broke, with the decisions of
/// `register`; then each of its customers is noted in `republish`.
async fn restored<'p>(
    partitions: &'p mut HashMap<i32, PartitionState>,
    register: &LicenceRegister,
    republish: &mut BTreeMap<(i32, String), Timestamp>,
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    p: i32,
    o: i64,
) -> anyhow::Result<&'p mut PartitionState> {
    let part = partitions
        .entry(p)
        .or_insert_with(|| PartitionState::new(register));
    if part.next != o {
        // Outputs of records before `o` were produced by whoever read them.
        tracing::info!(
            partition = p,
            from = part.next,
            to = o,
            "restoring partition state"
        );
        let started = Instant::now();
        let state = restore(
            kafka.clone(),
            topics.topic_validated.clone(),
            p,
            o,
            seeded(register),
        )
        .await?;
        tracing::info!(
            partition = p,
            documents = state.live_documents(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "restored"
        );
        let now = Timestamp::now();
        for customer in state.customers() {
            republish.insert((p, customer.to_owned()), now);
        }
        *part = PartitionState { state, next: o };
    }
    Ok(part)
}

/// `state` after applying the records of `partition` before `until`.
async fn restore(
    kafka: KafkaArgs,
    topic: String,
    partition: i32,
    until: i64,
    mut state: DemandState,
) -> anyhow::Result<DemandState> {
    tokio::task::spawn_blocking(move || {
        if until <= 0 {
            return Ok(state);
        }
        let reader: BaseConsumer = reader_config(&kafka).create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, partition, forecast_kafka::from_start())?;
        reader.assign(&tpl)?;
        let mut decoder = Decoder::default();
        let mut idle = Instant::now();
        // Offsets must follow one another up to `until`: records the broker
        // passed over are read again (forecast_runtime::continuity).
        let mut positions = Positions::default();
        loop {
            match reader.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    if !follow(&mut positions, &reader, &topic, partition, m.offset(), None)? {
                        continue;
                    }
                    if m.offset() >= until {
                        break;
                    }
                    if let Ok((doc, digest)) = decoder.decode(m.payload().unwrap_or_default()) {
                        state.apply_digested(doc, digest);
                    }
                    if m.offset() + 1 >= until {
                        break;
                    }
                    idle = Instant::now();
                }
                Some(Err(e)) => anyhow::bail!("cannot read {topic}/{partition} to restore its state: {e}"),
                None if idle.elapsed() > Duration::from_secs(60) => {
                    anyhow::bail!("no record of {topic}/{partition} below offset {until} arrived for 60 s while restoring")
                }
                None => {}
            }
        }
        Ok(state)
    })
    .await?
}

/// Decodes validated records, each into the document the one before it
/// was decoded into, so that its strings and vectors are reused; with
/// each its content digest, read off the record. Only what sequencing
/// and the audit verdict use is read: the other strings (free text,
/// references, the horizon) stay empty.
#[derive(Debug, Default)]
struct Decoder {
    document: ForecastDocument,
}

impl Decoder {
    fn decode(&mut self, record: &[u8]) -> Result<(&ForecastDocument, [u8; 16]), DecodeError> {
        let digest =
            wire::decode_sequencing_digest(record, Registry::embedded(), &mut self.document)?;
        Ok((&self.document, digest))
    }
}

fn header<'a>(m: &'a BorrowedMessage<'_>, key: &str) -> Option<&'a str> {
    m.headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The submitted record a validated one came from (`topic/partition/offset`).
fn source_of(m: &BorrowedMessage<'_>) -> Option<SourceCoordinates> {
    let mut parts = header(m, headers::SOURCE)?.rsplitn(3, '/');
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    Some(SourceCoordinates {
        topic: parts.next()?.to_owned(),
        partition,
        offset,
    })
}

/// A document applied: its customer, the record's time, and whether the
/// customer's demand changed.
struct Applied {
    customer: String,
    at: Timestamp,
    demand_changed: bool,
}

/// Sequences one record and enqueues its audit verdict; returns what was
/// applied, if anything.
async fn handle(
    part: &mut PartitionState,
    decoder: &mut Decoder,
    m: &BorrowedMessage<'_>,
    producer: &BatchProducer,
    topics: &TopicArgs,
    metrics: &Metrics,
    batch: &mut Batch,
) -> anyhow::Result<Option<Applied>> {
    let decided_at = m
        .timestamp()
        .to_millis()
        .map_or_else(Timestamp::now, Timestamp::from_millis);
    let (doc, digest) = match decoder.decode(m.payload().unwrap_or_default()) {
        Ok(decoded) => decoded,
        Err(e) => {
            // The validator only passes documents it decoded: this is a
            // foreign record. Dead-letter it whole and go on (its audit
            // verdict is the validator's, if a validator wrote it).
            tracing::error!(partition = m.partition(), offset = m.offset(), error = %e, "undecodable record on the validated topic; dead-lettered");
            let message = format!("{e} ({})", e.kind());
            let record = headers::dead_letter(
                m,
                &topics.topic_rejected,
                &headers::DeadLetter {
                    stage: "sequence",
                    codes: RuleCode::SchemaInvalid.as_str(),
                    message: &message,
                    policy_version: header(m, headers::POLICY_VERSION).unwrap_or_default(),
                },
            );
            batch.send(producer, record).await?;
            metrics.record_out(Output::Rejected);
            metrics.dead_letter(Stage::Sequence);
            return Ok(None);
        }
    };
    let outcome = part.state.apply_digested(doc, digest);
    let warnings = header(m, headers::WARNINGS)
        .unwrap_or_default()
        .split(',')
        .filter_map(WarningCode::from_symbol)
        .collect();
    let accepted = Verdict {
        document_id: Some(doc.document_id.clone()),
        revision: Some(doc.revision),
        outcome: Outcome::Accepted,
        stage: Stage::Validate,
        codes: Vec::new(),
        warnings,
        violations: Vec::<Violation>::new(),
        policy_version: header(m, headers::POLICY_VERSION)
            .unwrap_or_default()
            .to_owned(),
        decided_at,
        source: source_of(m),
        customer_id: Some(doc.customer_id.clone()),
    };
    let verdict = sequenced_verdict(accepted, &outcome);
    if let Sequenced::Rejected(code) = outcome {
        metrics.rejected(&[code]);
    }
    let audit = wire::encode_verdict(&verdict);
    let key = doc.key();
    batch
        .send(
            producer,
            FutureRecord::to(&topics.topic_audit)
                .key(key.as_bytes())
                .payload(audit.as_slice()),
        )
        .await?;
    metrics.record_out(Output::Audit);
    Ok(match outcome {
        Sequenced::Applied { demand_changed, .. } => Some(Applied {
            customer: doc.customer_id.clone(),
            at: decided_at,
            demand_changed,
        }),
        _ => None,
    })
}
