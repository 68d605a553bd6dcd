//! The allocating service: holds its inputs whole and publishes the commit
//! to each customer whose allocation changed.
//!
//! One instance reads, each on a thread of its own
//! ([`forecast_stage::side`]):
//! - `forecasts.validated`, every partition from its start, each record
//!   believed only when a validator attested it and applied with the
//!   aggregator's own [`forecast_aggregator::DemandState`]: the demand the
//!   aggregators hold, without a consumer group and without reading their
//!   snapshots (which carry no document revisions, and would have to for
//!   the commits to name them);
//! - `licences.decisions` and `screening.lists`, signed by a compliance
//!   key; `supply.plan`, signed by an operator key;
//! - `commits` itself, signed by a supplier key, so that a restarted
//!   allocator publishes only what differs from what is there.
//!
//! Once every input was read to its end, and then at most once per
//! `--settle-ms` while inputs change, the supply is allocated again
//! ([`crate::book`]) and each commit that changed is published to the
//! compacted `commits` topic, keyed by customer, its JSON the value,
//! signed with the supplier's key ([`SignedCommit`]). A commit that cannot
//! be delivered is published again at the next round; one over
//! [`MAX_COMMIT_BYTES`] is not published, and said so.
//!
//! Nothing is committed to a group: a restart reads the inputs again and
//! ends where the running allocator was. Run one instance; a second only
//! publishes the same commits again.

use std::sync::Arc;
use std::time::Duration;

use forecast_kafka::{KafkaArgs, MAX_COMMIT_BYTES};
use forecast_model::attest::{Attester, HEADER, Verifier};
use forecast_model::commit::{Commit, SignedCommit};
use forecast_model::screening::ScreeningList;
use forecast_model::supply::{SupplyEntry, parse_record};
use forecast_model::{ForecastDocument, LicenceDecision, Registry, Timestamp, wire};
use forecast_runtime::config::TopicArgs;
use forecast_runtime::metrics::{Metrics, Output};
use forecast_stage::side::{self, SideTopic};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::book::Book;

/// What the allocator believes on each input, and the supplier's key it
/// signs the commits with.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Signs every commit (a key of role `supplier`).
    pub supplier: Attester,
    /// Believes a validated record (a validator's stage key).
    pub validated: Verifier,
    /// Believes a licence decision or a restricted-party list (a
    /// compliance key).
    pub decisions: Verifier,
    /// Believes a supply plan record (an operator key).
    pub supply: Verifier,
    /// Believes a commit read back (a supplier key).
    pub commits: Verifier,
}

/// How long the allocator waits after an input changed before it
/// allocates again, unless `--settle-ms` says otherwise: the changes of
/// that time make one round.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(250);

/// How long after a commit could not be delivered the allocator tries
/// again.
const RETRY: Duration = Duration::from_secs(5);

/// One record of an input, decoded.
#[derive(Debug)]
enum Input {
    Document(Box<ForecastDocument>, [u8; 16]),
    Decision(Box<LicenceDecision>),
    List(Box<ScreeningList>),
    Supply(String, Option<SupplyEntry>),
    Commit(Box<Commit>),
    /// A record under this customer's key on `commits` that no supplier
    /// key signed.
    Foreign(String),
    /// The input named was read to its end (after its records so far).
    End(&'static str),
}

fn decode_document(_: &[u8], value: Option<&[u8]>, r: &Registry) -> Result<Option<Input>, String> {
    let Some(value) = value else { return Ok(None) };
    let mut doc = ForecastDocument::default();
    let digest = wire::decode_sequencing_digest(value, r, &mut doc).map_err(|e| e.to_string())?;
    Ok(Some(Input::Document(Box::new(doc), digest)))
}

fn decode_decision(_: &[u8], value: Option<&[u8]>, r: &Registry) -> Result<Option<Input>, String> {
    Ok(side::values(value, r, wire::decode_decision)?.map(|d| Input::Decision(Box::new(d))))
}

fn decode_list(_: &[u8], value: Option<&[u8]>, r: &Registry) -> Result<Option<Input>, String> {
    Ok(side::values(value, r, wire::decode_screening_list)?.map(|l| Input::List(Box::new(l))))
}

fn decode_supply(key: &[u8], value: Option<&[u8]>, _: &Registry) -> Result<Option<Input>, String> {
    let key = String::from_utf8_lossy(key).into_owned();
    let entry = parse_record(&key, value).map_err(|e| e.to_string())?;
    Ok(Some(Input::Supply(key, entry)))
}

fn decode_commit(key: &[u8], value: Option<&[u8]>, _: &Registry) -> Result<Option<Input>, String> {
    let Some(value) = value else { return Ok(None) };
    let text = |b| std::str::from_utf8(b).map_err(|e| e.to_string());
    let commit = Commit::of_record(text(key)?, text(value)?).map_err(|e| e.to_string())?;
    Ok(Some(Input::Commit(Box::new(commit))))
}

/// Runs until `token` is cancelled.
pub async fn run(
    mut book: Book,
    keys: Keys,
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    settle: Duration,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let producer: FutureProducer = forecast_kafka::producer_config(kafka).create()?;
    type Refused = Option<fn(&[u8]) -> Input>;
    let foreign: Refused = Some(|key| Input::Foreign(String::from_utf8_lossy(key).into_owned()));
    let inputs: [(&str, &'static str, &Verifier, side::Decode<Input>, Refused); 5] = [
        (
            &topics.topic_validated,
            "validated document",
            &keys.validated,
            decode_document,
            None,
        ),
        (
            &topics.topic_licences,
            "licence decision",
            &keys.decisions,
            decode_decision,
            None,
        ),
        (
            &topics.topic_screening,
            "restricted-party list",
            &keys.decisions,
            decode_list,
            None,
        ),
        (
            &topics.topic_supply,
            "supply plan record",
            &keys.supply,
            decode_supply,
            None,
        ),
        (
            &topics.topic_commits,
            "commit",
            &keys.commits,
            decode_commit,
            foreign,
        ),
    ];
    // One channel for every input: each record is handed over once.
    let (tx, mut rx) = mpsc::channel(side::SIDE_CHANNEL);
    let mut threads = Vec::new();
    for (topic, what, signed_by, decode, refused) in inputs {
        let side = SideTopic {
            kafka: kafka.clone(),
            topic: topic.to_owned(),
            what,
            signed_by: signed_by.clone(),
            decode,
            refused,
        };
        threads.push(side.follow_into(
            tx.clone(),
            Input::End(what),
            metrics.clone(),
            token.clone(),
        )?);
    }
    drop(tx);
    tracing::info!(topic = %topics.topic_commits, "allocator started: reading its inputs");
    let mut reading = threads.len();
    let mut commits_read = false;
    let mut round: Option<Instant> = None;
    let mut progress = tokio::time::interval(Duration::from_secs(30));
    progress.tick().await;
    loop {
        tokio::select! {
            biased;
            () = token.cancelled() => break,
            () = tokio::time::sleep_until(round.unwrap_or_else(Instant::now)), if round.is_some() => {
                round = None;
                if publish(&mut book, &producer, &topics.topic_commits, &keys.supplier, &metrics).await > 0 {
                    round = Some(Instant::now() + RETRY);
                }
                metrics.set_ready(true);
            }
            input = rx.recv() => match input {
                Some(Input::End(what)) => {
                    reading -= 1;
                    commits_read |= what == "commit";
                    tracing::info!(input = what, left = reading, "input read to its end");
                }
                Some(input) => {
                    metrics.record_in();
                    take(&mut book, input, commits_read);
                }
                // Every follower stopped: the service is stopping.
                None => break,
            },
            _ = progress.tick(), if reading > 0 => {
                tracing::info!(inputs_left = reading, documents = book.state().live_documents(), "still reading the inputs; no commit is published before they are read");
            }
        }
        if reading == 0 && round.is_none() && book.is_changed() {
            round = Some(Instant::now() + settle);
        }
    }
    drop(rx);
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    Ok(())
}

/// Takes one input into `book`. Commits are taken as in force while the
/// topic is read up to its end (what a running allocator published before
/// this one started); later, one whose lines are not those in force (a
/// second allocator under another policy) makes this allocator publish
/// its own again. A record under a customer's key that no supplier key
/// signed makes it publish that customer's again, whenever it comes: the
/// record published last is the one compaction keeps.
fn take(book: &mut Book, input: Input, commits_read: bool) {
    match input {
        Input::Document(doc, digest) => book.apply(&doc, digest),
        Input::Decision(d) => book.take_decision(*d),
        Input::List(list) => {
            tracing::info!(version = %list.version, entries = list.entries.len(), "restricted-party list in force");
            let parties = list.parties();
            book.take_list(&list.version, parties);
        }
        Input::Supply(key, entry) => book.take_supply(&key, entry),
        Input::Commit(c) if !commits_read => book.published(*c),
        Input::Commit(c) => {
            if book.differs(&c) {
                tracing::warn!(customer = %c.customer_id, "a commit signed by a supplier key but not this allocator's allocation was published (another allocator, under another policy?): publishing this one again");
                book.unpublished(&c.customer_id);
            }
        }
        Input::Foreign(customer) => {
            tracing::warn!(customer = %customer, "a record no supplier key signed was written under this customer's key on the commits topic: publishing its commit again, so that compaction keeps it");
            book.unpublished(&customer);
        }
        // Counted by the loop, never passed here.
        Input::End(_) => {}
    }
}

/// Publishes the commits due, signed; returns how many could not be
/// delivered (they are due again).
async fn publish(
    book: &mut Book,
    producer: &FutureProducer,
    topic: &str,
    supplier: &Attester,
    metrics: &Metrics,
) -> usize {
    let due = book.due(Timestamp::now());
    let mut failed = 0;
    for commit in &due {
        let customer = commit.customer_id.as_str();
        let signed = match SignedCommit::sign(commit, topic, supplier) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(customer, error = %e, "commit not published: it does not encode");
                continue;
            }
        };
        let value = signed.commit.get().as_bytes();
        if value.len() > MAX_COMMIT_BYTES {
            tracing::error!(
                customer,
                bytes = value.len(),
                limit = MAX_COMMIT_BYTES,
                "commit not published: larger than a commit may be (its lines name too many document revisions); the one on the topic stays in force"
            );
            continue;
        }
        let headers = OwnedHeaders::new().insert(Header {
            key: HEADER,
            value: Some(signed.attestation.as_bytes()),
        });
        let record = FutureRecord::to(topic)
            .key(customer.as_bytes())
            .payload(value)
            .headers(headers);
        match producer.send(record, Duration::from_secs(30)).await {
            Ok(_) => metrics.record_out(Output::Commit),
            Err((e, _)) => {
                tracing::warn!(customer, error = %e, "commit not delivered; publishing it again in {RETRY:?}");
                book.unpublished(customer);
                failed += 1;
            }
        }
    }
    if !due.is_empty() {
        let allocated: i64 = due
            .iter()
            .flat_map(|c| &c.lines)
            .map(|l| l.allocated_units)
            .sum();
        tracing::info!(
            commits = due.len() - failed,
            failed,
            allocated_units = allocated,
            "commits published"
        );
    }
    failed
}
