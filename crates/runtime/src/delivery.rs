//! A failed delivery: the output, librdkafka's error, and what to do about
//! it.

use rdkafka::error::KafkaError;

pub use crate::failure::Domain;

/// An output the broker did not take, with the error librdkafka reported
/// once its own retries (`message.timeout.ms`) were spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    pub topic: String,
    pub error: KafkaError,
}

impl DeliveryFailure {
    /// Which domain the failure is in.
    pub fn domain(&self) -> Domain {
        Domain::of_kafka(&self.error)
    }

    /// What to do about it.
    pub fn retry_hint(&self) -> &'static str {
        self.domain().hint()
    }
}

impl std::fmt::Display for DeliveryFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "delivery to {} failed: {} ({})",
            self.topic,
            self.error,
            self.retry_hint()
        )
    }
}

impl std::error::Error for DeliveryFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode;

    fn failure(topic: &str, code: RDKafkaErrorCode) -> DeliveryFailure {
        DeliveryFailure {
            topic: topic.into(),
            error: KafkaError::MessageProduction(code),
        }
    }

    #[test]
    fn a_delivery_failure_says_its_domain_and_whether_to_retry() {
        for (code, domain, hint) in [
            (
                RDKafkaErrorCode::MessageTimedOut,
                Domain::Broker,
                "retriable",
            ),
            (
                RDKafkaErrorCode::NotLeaderForPartition,
                Domain::Broker,
                "retriable",
            ),
            (
                RDKafkaErrorCode::MessageSizeTooLarge,
                Domain::BadData,
                "size limits",
            ),
            (
                RDKafkaErrorCode::TopicAuthorizationFailed,
                Domain::Internal,
                "ACLs",
            ),
        ] {
            let f = failure("forecasts.audit", code);
            assert_eq!(f.domain(), domain, "{code:?}");
            // Found in an error's chain, through the librdkafka error it
            // holds as its source.
            let chained = anyhow::Error::new(f.clone()).context("sending the outputs");
            assert_eq!(Domain::of(&chained), Some(domain), "{code:?}");
            let text = f.to_string();
            assert!(
                text.starts_with("delivery to forecasts.audit failed: "),
                "{text}"
            );
            assert!(text.contains(hint), "{text}");
        }
    }
}
