//! The documents a run submits: a realistic mix, encoded before any clock
//! starts, and the submitter that notes when the broker took each one.

use std::time::Instant;

use forecast_kafka::{enqueue, send_waiting};
use forecast_model::{ForecastDocument, Purpose, wire};
use rdkafka::Message;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, FutureProducer, FutureRecord, ProducerContext, ThreadedProducer,
};

/// The customers of the generated documents.
pub(crate) const CUSTOMERS: [&str; 3] = ["TENCENT", "BYTEDANCE", "ALIBABA"];

/// A 12-line document (a copy of one parsed once).
pub(crate) fn twelve_lines(id: String, customer: &str) -> ForecastDocument {
    static TEMPLATE: std::sync::OnceLock<ForecastDocument> = std::sync::OnceLock::new();
    let mut doc = TEMPLATE
        .get_or_init(|| forecast_model::fixtures::twelve_line_document("TEMPLATE", "TENCENT"))
        .clone();
    doc.document_id = id;
    doc.customer_id = customer.to_owned();
    doc
}

/// The mix of a real stream: mostly accepted originals, some replaces,
/// duplicates and rejections.
pub(crate) fn stream(n: usize, prefix: &str) -> Vec<ForecastDocument> {
    let mut out: Vec<ForecastDocument> = Vec::with_capacity(n);
    for i in 0..n {
        let doc = match i % 20 {
            15 | 16 if i >= 5 => {
                let mut d = out[i - 5].clone();
                d.revision += 1;
                d.purpose = Purpose::Replace;
                d.lines[0].quantity += 7;
                d
            }
            18 if i >= 1 => out[i - 1].clone(),
            19 => {
                let mut d = twelve_lines(format!("{prefix}-{i:07}"), CUSTOMERS[i % 3]);
                d.lines[3].sku = "A100".into();
                d
            }
            _ => twelve_lines(format!("{prefix}-{i:07}"), CUSTOMERS[i % 3]),
        };
        out.push(doc);
    }
    out
}

/// A submitted record: the document id and the document as on the wire.
/// Encoded before any clock starts, so the figures are the pipeline's and
/// not the harness's.
pub(crate) struct Encoded {
    pub(crate) key: String,
    pub(crate) value: Vec<u8>,
}

impl Encoded {
    pub(crate) fn of(doc: &ForecastDocument) -> Self {
        Encoded {
            key: doc.document_id.clone(),
            value: wire::encode_document(doc),
        }
    }

    /// Hands the record to `producer` (what the producer library's
    /// `Submitter::enqueue` does once it has encoded a document).
    pub(crate) async fn send(
        &self,
        producer: &FutureProducer,
        topic: &str,
    ) -> anyhow::Result<rdkafka::producer::DeliveryFuture> {
        Ok(enqueue(
            producer,
            FutureRecord::to(topic)
                .key(self.key.as_bytes())
                .payload(self.value.as_slice()),
        )
        .await?)
    }
}

/// The latency runs' submitter: each delivery report writes when the
/// broker acknowledged a document, and its partition, into that document's
/// own slot. No future, task or channel per document: the harness shares
/// the two cores with what it measures, and at 100k documents/s a task per
/// document would cost it a good part of one.
pub(crate) struct AckClock {
    pub(crate) acks: Vec<std::sync::OnceLock<(Instant, Result<i32, String>)>>,
    pub(crate) reported: std::sync::atomic::AtomicUsize,
}

impl AckClock {
    pub(crate) fn new(slots: usize) -> Self {
        AckClock {
            acks: (0..slots).map(|_| std::sync::OnceLock::new()).collect(),
            reported: Default::default(),
        }
    }

    pub(crate) fn reported(&self) -> usize {
        self.reported.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl rdkafka::ClientContext for AckClock {}

impl ProducerContext for AckClock {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: usize) {
        let partition = match result {
            Ok(m) => Ok(m.partition()),
            Err((e, _)) => Err(e.to_string()),
        };
        if let Some(ack) = self.acks.get(slot) {
            let _ = ack.set((Instant::now(), partition));
        }
        self.reported
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }
}

impl Encoded {
    /// Hands the record to `producer`; its report goes to `slot`.
    pub(crate) async fn send_clocked(
        &self,
        producer: &ThreadedProducer<AckClock>,
        topic: &str,
        slot: usize,
    ) -> anyhow::Result<()> {
        let record = BaseRecord::with_opaque_to(topic, slot)
            .key(self.key.as_bytes())
            .payload(self.value.as_slice());
        // rdkafka's send gives the record back inside its error.
        #[allow(clippy::result_large_err)]
        let sent = send_waiting(record, |r| producer.send(r)).await;
        Ok(sent?)
    }
}

pub(crate) async fn produce_all(
    producer: &FutureProducer,
    topic: &str,
    records: &[Encoded],
) -> anyhow::Result<()> {
    let mut deliveries = Vec::with_capacity(records.len());
    for r in records {
        deliveries.push(r.send(producer, topic).await?);
    }
    for d in deliveries {
        d.await
            .map_err(|_| anyhow::anyhow!("canceled"))?
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// The document that warms up a run's pipeline and its submitter, of a
/// customer the measured documents do not use; signed when `signers` are.
pub(crate) fn warm(run: &str, signers: Option<&Signers>) -> Encoded {
    let mut doc = twelve_lines(format!("WARM-{run}"), CUSTOMERS[0]);
    if let Some(signers) = signers {
        signers.sign(&mut doc);
    }
    Encoded::of(&doc)
}

/// The fixed signing key of each customer of a `--signed` run, made once
/// (a key's public half is derived when it is made).
pub(crate) struct Signers(Vec<(&'static str, forecast_model::signing::Signer)>);

impl Signers {
    pub(crate) fn new() -> Self {
        Signers(
            CUSTOMERS
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let key = forecast_model::signing::SigningKey::from_bytes(&[i as u8 + 1; 32]);
                    (*c, forecast_model::signing::Signer::new(key, None))
                })
                .collect(),
        )
    }

    /// Signs `doc` with its customer's key (a customer without one: unsigned).
    pub(crate) fn sign(&self, doc: &mut ForecastDocument) {
        if let Some((_, signer)) = self.0.iter().find(|(c, _)| *c == doc.customer_id) {
            signer.sign(doc);
        }
    }

    /// Each customer and its key.
    pub(crate) fn iter(
        &self,
    ) -> impl Iterator<Item = &(&'static str, forecast_model::signing::Signer)> {
        self.0.iter()
    }
}
