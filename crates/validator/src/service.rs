//! The validating service: consumes `forecasts.submitted`, judges each
//! record with [`Validator`], and produces the accepted document to
//! `forecasts.validated`, a dead letter to `forecasts.rejected` when it is
//! rejected or undecodable, and one verdict to `forecasts.audit`.
//!
//! A record's offset is stored only after every record produced for it is
//! acknowledged; records are handled in order with a bounded window of
//! them in flight, so a crash replays at most the window, and replays
//! produce the same outputs (the validator is a pure function).
//!
//! Every record it writes carries the validator's attestation
//! ([`forecast_model::attest`]): the aggregator and the planner believe
//! nothing else.
//!
//! The restricted-party list is a side input: the version published last
//! on `screening.lists` (signed by a compliance key) replaces the policy's
//! list between two batches, and every verdict names it
//! (`screening_version`). Until one is published, the policy's list file
//! screens.

use std::sync::Arc;

use clap::Args;
use forecast_kafka::KafkaArgs;
use forecast_model::attest::{Attester, Verifier};
use forecast_model::screening::ScreeningList;
use forecast_model::{ForecastDocument, Registry, SourceCoordinates, Stage, Timestamp};
use forecast_runtime::config::TopicArgs;
use forecast_runtime::inflight::{
    Batch, BatchProducer, FlightArgs, Handler, Refused, Service, SideInput, batch_producer,
};
use forecast_runtime::metrics::{Metrics, Output};
use forecast_runtime::parallel;
use forecast_stage::headers;
use forecast_stage::metrics::Counts as _;
use forecast_stage::side::{self, SideTopic};
use rdkafka::Message;

use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

use crate::judge::Validator;

mod outputs;

pub use outputs::{Audit, DeadLetter, Forward, Outputs, outputs};

/// Settings of the validating service.
#[derive(Debug, Clone, Args)]
pub struct ValidatorArgs {
    /// Consumer group of the validators.
    #[arg(
        long,
        env = "FORECAST_VALIDATOR_GROUP",
        default_value = ValidatorArgs::GROUP
    )]
    pub group: String,
    /// Records larger than this are dead-lettered unread (bytes).
    #[arg(long, env = "FORECAST_MAX_RECORD_BYTES", default_value_t = forecast_kafka::DEFAULT_MAX_RECORD_BYTES)]
    pub max_record_bytes: usize,
    /// Static group membership id, unique per running instance (default
    /// `validator-<hostname>`); a restarted instance with the same id takes its
    /// partitions back at once. `none` turns static membership off.
    #[arg(long, env = "FORECAST_INSTANCE_ID", value_name = "ID")]
    pub instance_id: Option<String>,
    #[command(flatten)]
    pub flight: FlightArgs,
}

impl ValidatorArgs {
    /// The validators' consumer group unless `--group` says otherwise.
    pub const GROUP: &str = "forecast-validator";
}

/// The command line's defaults (`forecastctl up` runs the service with them).
impl Default for ValidatorArgs {
    fn default() -> Self {
        Self {
            group: Self::GROUP.into(),
            max_record_bytes: forecast_kafka::DEFAULT_MAX_RECORD_BYTES,
            instance_id: None,
            flight: FlightArgs::default(),
        }
    }
}

/// Runs until `token` is cancelled or a delivery fails for good. Believes
/// a restricted-party list when `lists_signed_by` does.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    validator: Validator,
    attester: Option<Attester>,
    lists_signed_by: Verifier,
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    args: &ValidatorArgs,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let producer = batch_producer(kafka)?;
    let mut lists = SideTopic {
        kafka: kafka.clone(),
        topic: topics.topic_screening.clone(),
        what: "restricted-party list",
        signed_by: lists_signed_by,
        decode: |_, v, r| side::values(v, r, forecast_model::wire::decode_screening_list),
        refused: None,
    }
    .follow(metrics.clone(), token.clone())?;
    let so_far = lists
        .so_far(&topics.topic_screening, "restricted-party list")
        .await
        .pop();
    let validator = so_far
        .and_then(|list| screening_with(&validator, &list))
        .unwrap_or(validator);
    tracing::info!(topic = %topics.topic_submitted, group = %args.group, policy = validator.policy().version(), screening = validator.policy().screening_version().unwrap_or("(the policy's list file)"), "validator started");
    let mut handler = Validate {
        validator,
        lists: lists.records,
        registry: Registry::embedded(),
        producer: &producer,
        topics,
        args,
        metrics: &metrics,
        attester: attester.as_ref(),
        pending: None,
        prepared: std::collections::VecDeque::new(),
        threads: parallel::threads(),
        spare: None,
        warned_create_time: false,
    };
    let service = Service {
        kafka,
        topic: &topics.topic_submitted,
        group: &args.group,
        instance: args.instance_id.as_deref(),
        name: "validator",
        metrics: &metrics,
    };
    let result = args
        .flight
        .serve_with_side(&service, &producer, &token, &mut handler)
        .await;
    // The follower ends once its receiver is gone.
    drop(handler);
    let _ = tokio::task::spawn_blocking(move || lists.thread.join()).await;
    result
}

/// `validator`'s policy screening against `list`.
fn screening_with(validator: &Validator, list: &ScreeningList) -> Option<Validator> {
    match validator.policy().clone().with_screening_list(list) {
        Ok(policy) => {
            tracing::info!(version = %list.version, entries = list.entries.len(), sha256 = %list.sha256, policy = policy.version(), "restricted-party list in force");
            Some(Validator::new(policy))
        }
        // Only the list changed, and any list is valid: cannot happen, but
        // a list never stops the validator.
        Err(e) => {
            tracing::error!(version = %list.version, error = %e, "restricted-party list not taken");
            None
        }
    }
}

/// The restricted-party lists published while the validator runs.
impl SideInput for Validate<'_> {
    async fn ready(&mut self) {
        if self.pending.is_none() {
            match self.lists.recv().await {
                Some(list) => self.pending = Some(list),
                // The follower stopped (the service is stopping).
                None => std::future::pending().await,
            }
        }
    }

    /// Screens the next batches against the newest list received.
    async fn take(&mut self, _assigned: &[(i32, i64)], _batch: &mut Batch) -> anyhow::Result<()> {
        while let Ok(list) = self.lists.try_recv() {
            self.pending = Some(list);
        }
        if let Some(screening) = self
            .pending
            .take()
            .and_then(|list| screening_with(&self.validator, &list))
        {
            self.validator = screening;
        }
        Ok(())
    }
}

/// The validator's consume loop: judges each record and enqueues its outputs.
struct Validate<'a> {
    validator: Validator,
    lists: tokio::sync::mpsc::Receiver<ScreeningList>,
    /// The newest list received, not yet taken.
    pending: Option<ScreeningList>,
    registry: &'a Registry,
    producer: &'a BatchProducer,
    topics: &'a TopicArgs,
    args: &'a ValidatorArgs,
    metrics: &'a Metrics,
    /// What attests every record it writes (`None`: attestation off).
    attester: Option<&'a Attester>,
    /// What the batch's records made, worked out ahead on every core, by
    /// their (partition, offset), in order.
    prepared: std::collections::VecDeque<((i32, i64), Made)>,
    /// Threads `prepare` works on.
    threads: usize,
    /// The last decoded document, decoded into again by the next record.
    spare: Option<Box<ForecastDocument>>,
    /// Whether the producer's-clock warning was logged (once per process).
    warned_create_time: bool,
}

/// A consumed record as [`make`] reads it: what a thread other than the
/// consume loop's may hold.
struct Seen<'m> {
    topic: &'m str,
    partition: i32,
    offset: i64,
    timestamp: rdkafka::Timestamp,
    key: Option<&'m [u8]>,
    payload: &'m [u8],
}

impl<'m> Seen<'m> {
    fn of(m: &'m BorrowedMessage<'_>) -> Self {
        Self {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp(),
            key: m.key(),
            payload: m.payload().unwrap_or_default(),
        }
    }
}

/// What the validator makes of one record: its verdict, its outputs and
/// the attestations of the forwarded document and of the verdict.
struct Made {
    verdict: forecast_model::Verdict,
    outputs: Outputs,
    /// The forwarded document's attestation (`None`: not forwarded, or
    /// attestation off).
    forward_attestation: Option<String>,
    /// The audit record's attestation (`None`: attestation off).
    audit_attestation: Option<String>,
}

/// What [`make`] needs besides the record: the same for the whole batch,
/// shared by the threads that work it out.
#[derive(Clone, Copy)]
struct Maker<'a> {
    validator: &'a Validator,
    registry: &'a Registry,
    max_record_bytes: usize,
    attester: Option<&'a Attester>,
    topics: &'a TopicArgs,
}

/// Judges `seen` and makes its outputs, attested: a pure function of the
/// record (its verdict's time is the record's own), so the batch's records
/// can be made on any thread, in any order, and `replay` agrees.
fn make(maker: &Maker<'_>, seen: &Seen<'_>, spare: &mut Option<Box<ForecastDocument>>) -> Made {
    let Maker {
        validator,
        registry,
        max_record_bytes,
        attester,
        topics,
    } = *maker;
    let source = SourceCoordinates {
        topic: seen.topic.to_owned(),
        partition: seen.partition,
        offset: seen.offset,
    };
    let broker_time = seen.timestamp.to_millis().map(Timestamp::from_millis);
    let mut judged =
        validator.judge_framed_reusing(seen.payload, registry, max_record_bytes, spare);
    if let Some(at) = broker_time {
        validator.check_received_at(&mut judged, at);
    }
    let verdict = validator.verdict(
        &judged,
        broker_time.unwrap_or_else(Timestamp::now),
        Some(source.clone()),
    );
    let outputs = outputs(&judged, &verdict, &source);
    judged.recycle(spare);
    let (forward_attestation, audit_attestation) = match attester {
        None => (None, None),
        Some(attester) => (
            outputs.forward.as_ref().map(|forward| {
                headers::attestation(
                    attester,
                    &topics.topic_validated,
                    Some(forward.key.as_bytes()),
                    Some(seen.payload),
                    &forward.added(),
                )
            }),
            Some(headers::attestation(
                attester,
                &topics.topic_audit,
                outputs.audit.key.as_deref().map(str::as_bytes).or(seen.key),
                Some(&outputs.audit.value),
                &[],
            )),
        ),
    };
    Made {
        verdict,
        outputs,
        forward_attestation,
        audit_attestation,
    }
}

impl Validate<'_> {
    fn maker(&self) -> Maker<'_> {
        Maker {
            validator: &self.validator,
            registry: self.registry,
            max_record_bytes: self.args.max_record_bytes,
            attester: self.attester,
            topics: self.topics,
        }
    }
}

impl Handler for Validate<'_> {
    /// With signatures looked at (58 µs of CPU each, where the rest of a
    /// record's making takes about 4), makes the batch's records on every
    /// core, each as `handle` would (the same strict check, so live and
    /// `replay` agree on every signature); `handle` then sends what they
    /// made, in order, on the consume loop. Unsigned, `handle` makes each
    /// record itself: spreading them changed nothing measurable
    /// (docs/performance.md).
    fn prepare(&mut self, records: &[BorrowedMessage<'_>]) {
        self.prepared.clear();
        if self.threads < 2
            || records.len() < parallel::WORTH_SPREADING
            || self.validator.policy().signatures() == crate::policy::SignatureMode::Off
        {
            return;
        }
        let maker = self.maker();
        let seen: Vec<Seen<'_>> = records.iter().map(Seen::of).collect();
        // A helper that panicked: `handle` makes those records again, on
        // this thread, where the panic stops the service.
        let made = parallel::map(&seen, self.threads, |seen, spare| make(&maker, seen, spare))
            .unwrap_or_default();
        self.prepared = seen
            .iter()
            .map(|s| (s.partition, s.offset))
            .zip(made)
            .collect();
    }

    /// Sends what one record made.
    async fn handle(&mut self, m: &BorrowedMessage<'_>, batch: &mut Batch) -> anyhow::Result<()> {
        let at = (m.partition(), m.offset());
        let made = match self.prepared.front() {
            Some((p, _)) if *p == at => self.prepared.pop_front().map(|(_, made)| made),
            _ => None,
        };
        let made = match made {
            Some(made) => made,
            None => {
                let mut spare = self.spare.take();
                let made = make(&self.maker(), &Seen::of(m), &mut spare);
                self.spare = spare;
                made
            }
        };
        if !self.warned_create_time
            && matches!(m.timestamp(), rdkafka::Timestamp::CreateTime(_))
            && self.validator.policy().signatures() == crate::policy::SignatureMode::Required
        {
            self.warned_create_time = true;
            tracing::warn!(
                topic = m.topic(),
                "records carry the producer's clock (CreateTime), so the submitted_at skew check trusts the sender; set message.timestamp.type=LogAppendTime on the topic (forecastctl topics create does; tansu ignores it)"
            );
        }
        let Validate {
            producer,
            topics,
            metrics,
            attester,
            ..
        } = *self;
        let Made {
            verdict,
            outputs: out,
            forward_attestation,
            audit_attestation,
        } = made;
        if let Some(forward) = &out.forward {
            let mut added = forward.added();
            if let Some(mark) = &forward_attestation {
                added.push((headers::ATTESTATION, mark.as_bytes()));
            }
            let record = FutureRecord::to(&topics.topic_validated)
                .key(forward.key.as_bytes())
                .payload(m.payload().unwrap_or_default())
                .headers(headers::headers_with(m, &added));
            batch.send(producer, record).await?;
            metrics.record_out(Output::Validated);
        }
        if let Some(letter) = &out.dead_letter {
            let stage = letter.stage.as_str().to_ascii_lowercase();
            let record = headers::dead_letter(
                m,
                &topics.topic_rejected,
                &headers::DeadLetter {
                    stage: &stage,
                    codes: &letter.codes,
                    message: &letter.message,
                    policy_version: &verdict.policy_version,
                },
            );
            batch
                .send(producer, headers::attested(record, attester))
                .await?;
            metrics.record_out(Output::Rejected);
            metrics.rejected(&verdict.codes);
            metrics.dead_letter(letter.stage);
            tracing::debug!(offset = m.offset(), partition = m.partition(), codes = %letter.codes, "rejected");
        }
        let mut record = FutureRecord::to(&topics.topic_audit).payload(out.audit.value.as_slice());
        if let Some(key) = out.audit.key.as_deref().map(str::as_bytes).or(m.key()) {
            record = record.key(key);
        }
        if let Some(mark) = &audit_attestation {
            record = record.headers(headers::only(&[(headers::ATTESTATION, mark.as_bytes())]));
        }
        batch.send(producer, record).await?;
        metrics.record_out(Output::Audit);
        Ok(())
    }

    /// A record whose outputs the broker refused for good: a dead letter
    /// naming it, so that its partition moves on.
    async fn refused(
        &mut self,
        topic: &str,
        refused: &Refused,
        batch: &mut Batch,
    ) -> anyhow::Result<()> {
        let how = headers::Refusal {
            dead_letters: &self.topics.topic_rejected,
            stage: Stage::Validate,
            policy_version: self.validator.policy().version(),
            attester: self.attester,
        };
        headers::send_refused(batch, self.producer, self.metrics, topic, refused, &how).await
    }
}

#[cfg(test)]
mod tests {
    use forecast_model::attest::{Role, StageKeyEntry, StageKeys, Verifier};
    use forecast_model::{Outcome, fixtures, wire};

    use super::*;
    use crate::Policy;

    /// A record of the submitted topic at `offset` holding `payload`.
    fn seen(offset: i64, payload: &[u8]) -> Seen<'_> {
        Seen {
            topic: "forecasts.submitted",
            partition: 1,
            offset,
            timestamp: rdkafka::Timestamp::LogAppendTime(1_780_000_000_000 + offset),
            key: Some(b"submitted-key"),
            payload,
        }
    }

    /// What makes records with `validator`, attesting with `attester`.
    fn maker<'a>(
        validator: &'a Validator,
        topics: &'a TopicArgs,
        attester: Option<&'a Attester>,
    ) -> Maker<'a> {
        Maker {
            validator,
            registry: Registry::embedded(),
            max_record_bytes: forecast_kafka::DEFAULT_MAX_RECORD_BYTES,
            attester,
            topics,
        }
    }

    /// `records` made on three threads, as `prepare` makes them, each the
    /// same as the record made alone on this thread.
    fn made_on_threads_as_alone(maker: &Maker<'_>, records: &[Seen<'_>]) -> Vec<Made> {
        let spread = parallel::map(records, 3, |s, spare| make(maker, s, spare)).unwrap();
        let mut spare = None;
        for (record, made) in records.iter().zip(&spread) {
            let alone = make(maker, record, &mut spare);
            assert_eq!(made.verdict, alone.verdict);
            assert_eq!(made.outputs, alone.outputs);
            assert_eq!(made.forward_attestation, alone.forward_attestation);
            assert_eq!(made.audit_attestation, alone.audit_attestation);
        }
        spread
    }

    #[test]
    fn what_make_attests_is_what_the_aggregator_believes_on_any_thread() {
        let entry = StageKeyEntry::generate(Role::Validator, Timestamp::from_millis(0)).unwrap();
        let keys = StageKeys::from_text(&entry.line(), "test keys").unwrap();
        let attester = keys.attester(Role::Validator, Timestamp::now()).unwrap();
        let verifier = Verifier::new("the validator", keys.checks(&[Role::Validator]));
        let (validator, topics) = (Validator::new(Policy::default()), TopicArgs::default());
        let maker = maker(&validator, &topics, Some(&attester));
        // Accepted documents and undecodable ones, alternated.
        let payloads: Vec<Vec<u8>> = (0..40)
            .map(|i| match i % 2 {
                0 => wire::encode_document(&fixtures::twelve_line_document(
                    &format!("TCT-{i}"),
                    "TENCENT",
                )),
                _ => b"not avro".to_vec(),
            })
            .collect();
        let records: Vec<Seen<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| seen(i as i64, p))
            .collect();
        let spread = made_on_threads_as_alone(&maker, &records);
        for (record, made) in records.iter().zip(&spread) {
            let at = Some(Timestamp::from_millis(1_780_000_000_000 + record.offset));
            // The audit record as `handle` writes it verifies.
            let audit = &made.outputs.audit;
            let mark = made.audit_attestation.as_deref().unwrap().as_bytes();
            let covered = forecast_model::attest::Covered {
                topic: &topics.topic_audit,
                key: audit.key.as_deref().map(str::as_bytes).or(record.key),
                value: Some(&audit.value),
            };
            let list = [(headers::ATTESTATION, Some(mark))];
            assert_eq!(
                verifier.verify(covered, list.iter().copied(), at),
                Ok(Some(Role::Validator))
            );
            match &made.outputs.forward {
                Some(forward) => {
                    assert_eq!(made.verdict.outcome, Outcome::Accepted);
                    // The forwarded record's headers, a customer's own first.
                    let mark = made.forward_attestation.as_deref().unwrap().as_bytes();
                    let mut list = vec![("customer-trace", Some(b"x".as_slice()))];
                    list.extend(forward.added().into_iter().map(|(k, v)| (k, Some(v))));
                    list.push((headers::ATTESTATION, Some(mark)));
                    let covered = forecast_model::attest::Covered {
                        topic: &topics.topic_validated,
                        key: Some(forward.key.as_bytes()),
                        value: Some(record.payload),
                    };
                    assert_eq!(
                        verifier.verify(covered, list.iter().copied(), at),
                        Ok(Some(Role::Validator))
                    );
                    // A verdict field left off as empty, added after the
                    // fact, does not verify; nor does one changed.
                    let mut added = list.clone();
                    added.insert(1, (headers::WARNINGS, Some(b"FORGED")));
                    assert!(verifier.verify(covered, added.iter().copied(), at).is_err());
                    list[1].1 = Some(b"FORGED");
                    assert!(verifier.verify(covered, list.iter().copied(), at).is_err());
                }
                None => {
                    assert_eq!(made.verdict.outcome, Outcome::Rejected);
                    assert_eq!(made.forward_attestation, None);
                }
            }
        }
    }

    /// Signed submissions made on helper threads, as `prepare` makes them,
    /// get the verdicts they get alone: valid signatures accepted, forged
    /// ones (another key under the registered id, content changed after
    /// signing) rejected as SIGNATURE_INVALID, whatever thread judged them.
    #[test]
    fn forged_signatures_are_rejected_on_every_thread_as_alone() {
        use forecast_model::RuleCode;
        use forecast_model::signing::{Signer, SigningKey};
        let signer = Signer::new(SigningKey::from_bytes(&[7; 32]), None);
        let forger = Signer::new(SigningKey::from_bytes(&[9; 32]), None);
        let keys = crate::KeyRegistry::from_entries(vec![crate::KeyEntry::for_signer(
            &signer,
            "TENCENT",
            Timestamp::from_millis(0),
            None,
        )])
        .unwrap();
        let validator = Validator::new(Policy::default().with_key_registry(keys).unwrap());
        let topics = TopicArgs::default();
        let maker = maker(&validator, &topics, None);
        // Well over `parallel::WORTH_SPREADING`: valid, forged, altered.
        let documents: Vec<ForecastDocument> = (0..48)
            .map(|i| {
                let mut doc = fixtures::twelve_line_document(&format!("TCT-{i}"), "TENCENT");
                match i % 3 {
                    0 => signer.sign(&mut doc),
                    1 => {
                        forger.sign(&mut doc);
                        // The forger claims the registered key's id.
                        if let Some(signature) = doc.signature.as_mut() {
                            signature.key_id = signer.key_id().to_owned();
                        }
                    }
                    _ => {
                        signer.sign(&mut doc);
                        doc.lines[0].quantity += 1;
                    }
                }
                doc
            })
            .collect();
        let payloads: Vec<Vec<u8>> = documents.iter().map(wire::encode_document).collect();
        let records: Vec<Seen<'_>> = documents
            .iter()
            .zip(&payloads)
            .enumerate()
            .map(|(i, (doc, p))| Seen {
                timestamp: rdkafka::Timestamp::LogAppendTime(doc.submitted_at.millis()),
                ..seen(i as i64, p)
            })
            .collect();
        let spread = made_on_threads_as_alone(&maker, &records);
        for (i, made) in spread.iter().enumerate() {
            if i % 3 == 0 {
                assert_eq!(
                    made.verdict.outcome,
                    Outcome::Accepted,
                    "{:?}",
                    made.verdict
                );
            } else {
                assert_eq!(made.verdict.outcome, Outcome::Rejected);
                assert!(
                    made.verdict.codes.contains(&RuleCode::SignatureInvalid),
                    "{:?}",
                    made.verdict
                );
                assert_eq!(made.outputs.forward, None);
            }
        }
    }
}
