//! The supply plan ([`forecast_model::supply`]) and its publication to the
//! `supply.plan` topic.

pub use forecast_model::supply::*;

/// Publishes `entries` to the supply topic, one record per SKU and quarter
/// (key `SKU/QUARTER`, the entry as JSON: what [`parse_record`] reads), and
/// waits until the broker has every one.
pub async fn publish(
    kafka: &forecast_kafka::KafkaArgs,
    topic: &str,
    entries: &[SupplyEntry],
    attester: Option<&forecast_model::attest::Attester>,
) -> anyhow::Result<()> {
    use futures::stream::{FuturesUnordered, StreamExt};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = forecast_kafka::producer_config(kafka).create()?;
    let mut deliveries = FuturesUnordered::new();
    for e in entries {
        let (key, value) = (e.key(), serde_json::to_vec(e)?);
        let record = FutureRecord::to(topic)
            .key(key.as_bytes())
            .payload(value.as_slice());
        let record = forecast_stage::headers::attested(record, attester);
        deliveries.push(forecast_kafka::enqueue(&producer, record).await?);
    }
    while let Some(d) = deliveries.next().await {
        d?.map_err(|(e, _)| anyhow::anyhow!("supply record not delivered to {topic}: {e}"))?;
    }
    Ok(())
}
