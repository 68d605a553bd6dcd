//! The submission client customer systems link.
//!
//! ```no_run
//! # async fn example(doc: forecast_model::ForecastDocument) -> Result<(), forecast_producer::SubmitError> {
//! pub use forecast_kafka::KafkaArgs;
//! let kafka = KafkaArgs { brokers: "localhost:9092".into(), properties: vec![] };
//! let submitter = forecast_producer::Submitter::new(&kafka, "forecasts.submitted")?;
//! let receipt = submitter.submit(&doc).await?;
//! println!("stored at {}/{}@{}", receipt.topic, receipt.partition, receipt.offset);
//! # Ok(()) }
//! ```
//!
//! Documents are encoded as Avro with the Confluent framing (current schema
//! id), keyed by `document_id` so every revision of a document stays in
//! order, and sent by an idempotent producer with `acks=all`. A document
//! larger than the limit is refused before it is sent.
//!
//! [`verdicts`] reads a submission's verdict back from the planner API with
//! the customer's own token.
//!
//! With a signing key ([`Submitter::with_signer`], [`read_signer`]) every
//! document is signed as it is sent (docs/signatures.md), replacing any
//! signature it carried.

use std::time::Duration;

pub mod verdicts;

pub use forecast_kafka::KafkaArgs;
use forecast_kafka::producer_config;
pub use forecast_model::signing::Signer;
use forecast_model::{DocumentLimits, ForecastDocument, wire};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

pub use forecast_kafka::DEFAULT_MAX_RECORD_BYTES;

/// Where a submission was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Why a submission was not stored.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("cannot create the Kafka producer: {0}")]
    Client(#[source] rdkafka::error::KafkaError),
    #[error(
        "document {document_id} is {size} bytes encoded, over the limit of {limit}; split its lines over several documents"
    )]
    TooLarge {
        document_id: String,
        size: usize,
        limit: usize,
    },
    /// Over the policy's document limits: the validator would reject it
    /// as `DOCUMENT_TOO_LARGE`, so it is not sent.
    #[error(
        "DOCUMENT_TOO_LARGE{field}: {message}; split its lines over several documents or shorten its ids"
    )]
    OverLimits {
        document_id: String,
        /// ` at <field>`, or empty.
        field: String,
        message: String,
    },
    #[error("document {document_id} was not delivered: {source}")]
    Delivery {
        document_id: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

/// Why a signing key file could not be used. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("cannot read signing key {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("signing key {path}: {source}")]
    Key {
        path: String,
        #[source]
        source: forecast_model::signing::KeyError,
    },
}

/// Reads a signing key file (PKCS#8 PEM, as `forecastctl keys generate`
/// writes it); its signatures carry `key_id`, or the id derived from the
/// key when none is given.
pub fn read_signer(path: &std::path::Path, key_id: Option<String>) -> Result<Signer, SignerError> {
    let pem = std::fs::read_to_string(path).map_err(|source| SignerError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Signer::from_pem(&pem, key_id).map_err(|source| SignerError::Key {
        path: path.display().to_string(),
        source,
    })
}

/// A producer for forecast documents.
#[derive(Clone)]
pub struct Submitter {
    producer: FutureProducer,
    topic: String,
    max_record_bytes: usize,
    limits: DocumentLimits,
    signer: Option<Signer>,
}

impl std::fmt::Debug for Submitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submitter")
            .field("topic", &self.topic)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// A submission on its way; await [`Pending::receipt`].
pub struct Pending {
    document_id: String,
    topic: String,
    delivery: DeliveryFuture,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("document_id", &self.document_id)
            .finish_non_exhaustive()
    }
}

impl Pending {
    /// Waits for the broker's acknowledgement.
    pub async fn receipt(self) -> Result<Receipt, SubmitError> {
        match self.delivery.await {
            Ok(Ok(d)) => Ok(Receipt {
                topic: self.topic,
                partition: d.partition,
                offset: d.offset,
            }),
            Ok(Err((source, _))) => Err(SubmitError::Delivery {
                document_id: self.document_id,
                source,
            }),
            Err(_) => Err(SubmitError::Delivery {
                document_id: self.document_id,
                source: rdkafka::error::KafkaError::Canceled,
            }),
        }
    }
}

impl Submitter {
    /// A submitter producing to `topic`.
    pub fn new(kafka: &KafkaArgs, topic: &str) -> Result<Self, SubmitError> {
        Ok(Self {
            producer: producer_config(kafka)
                .create()
                .map_err(SubmitError::Client)?,
            topic: topic.to_owned(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            limits: DocumentLimits::DEFAULT,
            signer: None,
        })
    }

    /// Signs every document with `signer` as it is sent.
    pub fn with_signer(mut self, signer: Signer) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Refuses documents over `limits` (the validator's policy's) before
    /// sending them; the default policy's unless set.
    pub fn with_limits(mut self, limits: DocumentLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the largest record this submitter sends.
    pub fn with_max_record_bytes(mut self, limit: usize) -> Self {
        self.max_record_bytes = limit;
        self
    }

    /// Submits one document and waits until the broker has it.
    pub async fn submit(&self, doc: &ForecastDocument) -> Result<Receipt, SubmitError> {
        self.enqueue(doc).await?.receipt().await
    }

    /// Hands one document to the producer; the returned [`Pending`]
    /// resolves when the broker has it. Use it to keep many in flight.
    pub async fn enqueue(&self, doc: &ForecastDocument) -> Result<Pending, SubmitError> {
        let value = match &self.signer {
            Some(signer) => {
                let mut signed = doc.clone();
                signer.sign(&mut signed);
                wire::encode_document(&signed)
            }
            None => wire::encode_document(doc),
        };
        if let Some((field, message)) = self.limits.exceeded(doc, value.len()) {
            return Err(SubmitError::OverLimits {
                document_id: forecast_model::limits::bounded(&doc.document_id, 256).into_owned(),
                field: if field.is_empty() {
                    String::new()
                } else {
                    format!(" at {field}")
                },
                message,
            });
        }
        if value.len() > self.max_record_bytes {
            return Err(SubmitError::TooLarge {
                document_id: doc.document_id.clone(),
                size: value.len(),
                limit: self.max_record_bytes,
            });
        }
        let record = FutureRecord::to(&self.topic)
            .key(doc.document_id.as_bytes())
            .payload(value.as_slice());
        let delivery = forecast_kafka::enqueue(&self.producer, record)
            .await
            .map_err(|source| SubmitError::Delivery {
                document_id: doc.document_id.clone(),
                source,
            })?;
        Ok(Pending {
            document_id: doc.document_id.clone(),
            topic: self.topic.clone(),
            delivery,
        })
    }

    /// Waits until everything handed over is delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), rdkafka::error::KafkaError> {
        self.producer.flush(timeout)
    }
}
