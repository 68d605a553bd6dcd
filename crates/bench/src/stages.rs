//! The measured runs: (a) the passthrough, (b)-(e) the pipeline's stages,
//! and the latency runs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::probe::{
    Counts, POLL, Progress, records_in_topics, time_until_processed, unix_seconds, watch_demand,
};
use crate::procs::{Service, cpu_seconds, memory_taken, usage};
use crate::report::{Latency, Throughput, Timed, per_document, percentile};
use crate::topics;
use crate::workload::{AckClock, CUSTOMERS, Encoded, produce_all, twelve_lines, warm};
use anyhow::Context;
use forecast_kafka::KafkaArgs;
use forecast_kafka::producer_config;
use forecast_runtime::config::TopicArgs;
use forecast_runtime::inflight::{
    Batch, BatchProducer, FlightArgs, Handler, batch_producer, group_consumer,
};
use forecast_runtime::metrics::Metrics;
use forecast_runtime::topics::{TopicLayout, create_topics};
use rdkafka::Message;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _, ThreadedProducer};

/// (a)'s loop: every record produced unchanged to `to`.
pub(crate) struct Passthrough<'a> {
    pub(crate) producer: &'a BatchProducer,
    pub(crate) to: &'a str,
}

impl Handler for Passthrough<'_> {
    async fn handle(&mut self, m: &BorrowedMessage<'_>, batch: &mut Batch) -> anyhow::Result<()> {
        let mut record = FutureRecord::to(self.to).payload(m.payload().unwrap_or_default());
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        batch.send(self.producer, record).await?;
        Ok(())
    }
}

/// (a) consume -> produce unchanged, with the services' settings and loop,
/// timed as the services are, with what broker process `broker` took
/// meanwhile.
pub(crate) async fn passthrough(
    kafka: &KafkaArgs,
    broker: Option<u32>,
    from: &str,
    to: &str,
    n: usize,
) -> anyhow::Result<Timed> {
    // Warmed with one record first, as the services' producers are by the
    // time they have joined their group: a new idempotent producer's first
    // send waits for its producer id (0.8 s on tansu), which the clock
    // would otherwise count as throughput.
    let producer = batch_producer(kafka)?;
    let warm = Encoded::of(&twelve_lines("WARM-passthrough".into(), CUSTOMERS[0]));
    let record = FutureRecord::to(to)
        .key(warm.key.as_bytes())
        .payload(warm.value.as_slice());
    Batch::default().send(&producer, record).await?;
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30))?;
    let metrics = Arc::new(Metrics::new("passthrough"));
    let consumer = group_consumer(
        kafka,
        from,
        &format!("pass-{from}"),
        Some("none"),
        "passthrough",
        &metrics,
    )?;
    let token = tokio_util::sync::CancellationToken::new();
    let mut handler = Passthrough {
        producer: &producer,
        to,
    };
    let timed = async {
        let m = metrics.clone();
        let elapsed = tokio::task::spawn_blocking(move || {
            time_until_processed(
                "passthrough",
                || Progress {
                    records_in: m.records_in_total(),
                    processed: m.processed_total(),
                    span: m.span_seconds(),
                },
                || usage(std::process::id(), broker),
                n as u64,
                Duration::from_secs(600),
            )
        })
        .await;
        token.cancel();
        elapsed?
    };
    let run = FlightArgs::default().in_flight().run(
        &consumer,
        &producer,
        from,
        &metrics,
        &token,
        &mut handler,
    );
    let (result, elapsed) = tokio::join!(run, timed);
    result?;
    elapsed
}

/// What every run shares: the broker, the policy and the documents.
pub(crate) struct Bench<'a> {
    pub(crate) kafka: &'a KafkaArgs,
    pub(crate) layout: TopicLayout,
    pub(crate) policy: &'a Path,
    pub(crate) producer: &'a FutureProducer,
    pub(crate) records: &'a [Encoded],
    /// The broker's process, when the harness started it.
    pub(crate) broker_pid: Option<u32>,
    /// With `--signed`: the customers' keys, which sign every document (the
    /// validator requires it).
    pub(crate) signers: Option<&'a crate::workload::Signers>,
}

impl Bench<'_> {
    /// (a) to (e) on fresh topics named after `run`.
    pub(crate) async fn throughput(&self, run: &str) -> anyhow::Result<Throughput> {
        let (kafka, layout, policy, producer, docs) = (
            self.kafka,
            self.layout,
            self.policy,
            self.producer,
            self.records,
        );
        let n = docs.len();
        let t = topics(&format!("{run}-b"));
        create_topics(kafka, &t, layout).await?;
        produce_all(producer, &t.topic_submitted, docs).await?;

        // (a) passthrough
        let pass_to = format!("bench.{run}.passthrough");
        create_topics(
            kafka,
            &TopicArgs {
                topic_submitted: pass_to.clone(),
                ..topics(&format!("{run}-p"))
            },
            layout,
        )
        .await?;
        let a = passthrough(kafka, self.broker_pid, &t.topic_submitted, &pass_to, n).await?;

        // (b) validator alone
        let v = Service::validator(kafka, &t, &format!("bv-{run}"), policy)?
            .with_broker(self.broker_pid);
        let b = v.time_until_processed(n as u64, Duration::from_secs(600))?;
        let accepted = v
            .metric("forecast_records_out_total{service=\"validator\",output=\"validated\"}")
            .unwrap_or(0.0) as u64;
        let validator_rss_mib = v.peak_rss_mib();
        drop(v);

        // (c) aggregator alone, on the validated topic (b) wrote
        let ag = Service::aggregator(kafka, &t, &format!("ba-{run}"))?.with_broker(self.broker_pid);
        let c = ag.time_until_processed(accepted, Duration::from_secs(600))?;
        let aggregator_rss_mib = ag.peak_rss_mib();
        drop(ag);

        // (d) end to end: submit (as the producer library does), until the
        // aggregator settled all
        let (te, ve, ae) = self.pipeline(&format!("{run}-e")).await?;
        produce_all(producer, &te.topic_submitted, &[warm(run, self.signers)]).await?;
        ae.time_until_processed(1, Duration::from_secs(120))?;
        let cpu = || self.cpu_seconds(&ve, &ae);
        let cpu_before = cpu();
        let start = unix_seconds();
        produce_all(producer, &te.topic_submitted, docs).await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        let d = loop {
            let p = ae.progress();
            // The warm-up record and every accepted document.
            if p.processed > accepted {
                // To the aggregator's last settled batch, by its clock.
                break p.span.1 - start;
            }
            anyhow::ensure!(Instant::now() < deadline, "end to end did not finish");
            std::thread::sleep(POLL);
        };
        let cpu_after = cpu();
        let end_to_end_cpu_us = per_document(cpu_before, cpu_after, n);
        drop((ve, ae));

        // (e) the planner view, reading what (d) wrote from its start
        let records = records_in_topics(kafka, &[&te.topic_audit, &te.topic_demand])?;
        let pl = Service::planner(kafka, &te)?;
        let e = pl.time_until_read(records, Duration::from_secs(600))?;
        let planner_rss_mib = pl.peak_rss_mib();
        drop(pl);

        let per_doc = |seconds: f64, docs: u64| seconds * 1e6 / docs as f64;
        Ok(Throughput {
            passthrough: n as f64 / a.seconds,
            validator: n as f64 / b.seconds,
            aggregator: accepted as f64 / c.seconds,
            end_to_end: n as f64 / d,
            planner: n as f64 / e.seconds,
            validator_rss_mib,
            aggregator_rss_mib,
            planner_rss_mib,
            passthrough_cpu_us: per_doc(a.cpu_seconds, n as u64),
            validator_cpu_us: per_doc(b.cpu_seconds, n as u64),
            aggregator_cpu_us: per_doc(c.cpu_seconds, accepted),
            planner_cpu_us: per_doc(e.cpu_seconds, n as u64),
            end_to_end_cpu_us,
            core_wait_us: [
                per_doc(a.wait_seconds, n as u64),
                per_doc(b.wait_seconds, n as u64),
                per_doc(c.wait_seconds, accepted),
            ],
            broker_cpu_us: [
                per_doc(a.broker_seconds, n as u64),
                per_doc(b.broker_seconds, n as u64),
                per_doc(c.broker_seconds, accepted),
            ],
        })
    }

    /// CPU seconds so far of each process of a pipeline: broker (NaN when
    /// not started here, `--brokers`), validator, aggregator, harness.
    pub(crate) fn cpu_seconds(&self, validator: &Service, aggregator: &Service) -> [f64; 4] {
        [
            self.broker_pid.map_or(f64::NAN, cpu_seconds),
            cpu_seconds(validator.child.id()),
            cpu_seconds(aggregator.child.id()),
            cpu_seconds(std::process::id()),
        ]
    }

    /// A validator and an aggregator on fresh topics named after `run`.
    /// The caller warms them up with [`warm`] through the producer it
    /// measures with (its producer id and metadata are then in place, as in
    /// a running system) and waits for the aggregator to have handled it.
    pub(crate) async fn pipeline(
        &self,
        run: &str,
    ) -> anyhow::Result<(TopicArgs, Service, Service)> {
        let t = topics(run);
        create_topics(self.kafka, &t, self.layout).await?;
        let v = Service::validator(self.kafka, &t, &format!("v-{run}"), self.policy)?;
        let a = Service::aggregator(self.kafka, &t, &format!("a-{run}"))?;
        Ok((t, v, a))
    }
    /// Offers `count` documents at `rate` per second, through a validator
    /// and an aggregator on fresh topics named after `run`; returns the
    /// latency of each document seen (ms, sorted) and how many were seen.
    ///
    /// A document is seen when a demand snapshot of its customer and
    /// partition first includes it. Every latency document adds the same
    /// units, and a partition's documents are applied in order, so the
    /// k-th document of a customer in a partition is included once that
    /// snapshot's units reach k times a document's.
    pub(crate) async fn latency(
        &self,
        run: &str,
        rate: f64,
        count: usize,
    ) -> anyhow::Result<Latency> {
        let kafka = self.kafka;
        // Slot `count` is the warm-up document's.
        let producer: ThreadedProducer<AckClock> =
            producer_config(kafka).create_with_context(AckClock::new(count + 1))?;
        let (tl, vl, al) = self.pipeline(run).await?;
        warm(run, self.signers)
            .send_clocked(&producer, &tl.topic_submitted, count)
            .await?;
        al.time_until_processed(1, Duration::from_secs(120))?;

        let measured = &CUSTOMERS[1..];
        let template = twelve_lines(String::new(), measured[0]);
        let units_per_doc: i64 = template.lines.iter().map(|l| l.quantity).sum();
        let counts: Arc<Mutex<Counts>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (counts, stop, kafka, topic) = (
                counts.clone(),
                stop.clone(),
                kafka.clone(),
                tl.topic_demand.clone(),
            );
            std::thread::spawn(move || watch_demand(&kafka, &topic, units_per_doc, &counts, &stop))
        };
        std::thread::sleep(Duration::from_secs(2)); // the watcher is assigned

        let records: Vec<(&str, Encoded)> = (0..count)
            .map(|i| {
                let mut doc = template.clone();
                doc.document_id = format!("LAT-{run}-{i:07}");
                let customer = measured[i % measured.len()];
                doc.customer_id = customer.to_owned();
                if let Some(signers) = self.signers {
                    signers.sign(&mut doc);
                }
                (customer, Encoded::of(&doc))
            })
            .collect();
        let mut sent_at = Vec::with_capacity(count);
        let cpu_before = self.cpu_seconds(&vl, &al);
        let broker_before = self.broker_pid.map_or([f64::NAN; 2], memory_taken);
        let begin = Instant::now();
        // Record create times are wall-clock milliseconds.
        let begin_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs_f64()
            * 1000.0;
        for (i, (_, record)) in records.iter().enumerate() {
            let due = begin + Duration::from_secs_f64(i as f64 / rate);
            // Paced in steps of at least a millisecond: a timer per
            // document would cost the harness more than the document.
            if let Some(wait) = due.checked_duration_since(Instant::now())
                && wait >= Duration::from_millis(1)
            {
                tokio::time::sleep(wait).await;
            }
            sent_at.push(Instant::now());
            record
                .send_clocked(&producer, &tl.topic_submitted, i)
                .await?;
        }
        let clock = producer.context();
        let deadline = Instant::now() + Duration::from_secs(60);
        while clock.reported() < count + 1 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} of {count} submits acknowledged in 60 s",
                clock.reported()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The rank of each document among its customer's in its partition.
        let mut ranks: HashMap<(String, i32), i64> = HashMap::new();
        let mut expected = Vec::with_capacity(count);
        let mut acks = Vec::with_capacity(count);
        for ((at, (customer, _)), ack) in sent_at.into_iter().zip(&records).zip(&clock.acks) {
            let (acked_at, partition) = ack.get().context("a submit was never reported")?;
            let partition = *partition
                .as_ref()
                .map_err(|e| anyhow::anyhow!("a submit failed: {e}"))?;
            // When the broker acknowledged it: the first hop's share.
            acks.push(acked_at.duration_since(at).as_secs_f64() * 1000.0);
            let rank = ranks.entry((customer.to_string(), partition)).or_default();
            *rank += 1;
            expected.push((at, (customer.to_string(), partition), *rank));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let all_seen = |counts: &Counts| {
            ranks.iter().all(|(key, n)| {
                counts
                    .get(key)
                    .and_then(|c| c.last())
                    .is_some_and(|c| c.documents >= *n)
            })
        };
        while Instant::now() < deadline
            && !all_seen(&*counts.lock().map_err(|_| anyhow::anyhow!("poisoned"))?)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        watcher
            .join()
            .map_err(|_| anyhow::anyhow!("watcher panicked"))??;
        let cpu_us = per_document(cpu_before, self.cpu_seconds(&vl, &al), count);
        let broker_after = self.broker_pid.map_or([f64::NAN; 2], memory_taken);
        let [broker_bytes, broker_faults] =
            std::array::from_fn(|i| (broker_after[i] - broker_before[i]) / count as f64);
        drop((vl, al));
        let counts = counts.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let (mut lat, mut produced): (Vec<f64>, Vec<f64>) = expected
            .iter()
            .filter_map(|(at, key, rank)| {
                let changes = counts.get(key)?;
                let first = changes.partition_point(|c| c.documents < *rank);
                let change = changes.get(first)?;
                let sent_ms = begin_ms + at.duration_since(begin).as_secs_f64() * 1000.0;
                Some((
                    change.seen.duration_since(*at).as_secs_f64() * 1000.0,
                    change.produced_ms - sent_ms,
                ))
            })
            .unzip();
        lat.sort_by(f64::total_cmp);
        produced.sort_by(f64::total_cmp);
        acks.sort_by(f64::total_cmp);
        Ok(Latency {
            p50_ms: percentile(&lat, 0.50),
            p99_ms: percentile(&lat, 0.99),
            seen: lat.len(),
            ack_p50_ms: percentile(&acks, 0.50),
            ack_p99_ms: percentile(&acks, 0.99),
            produced_p50_ms: percentile(&produced, 0.50),
            produced_p99_ms: percentile(&produced, 0.99),
            cpu_us,
            broker_bytes,
            broker_faults,
        })
    }
}
