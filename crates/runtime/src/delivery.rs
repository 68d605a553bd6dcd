//! A failed delivery: the output, librdkafka's error, and what to do about
//! it.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// What a failure is about, which says whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// The record itself was refused (its size or form): sending it again
    /// fails again until the record, the producer's or the topic's
    /// settings change.
    BadData,
    /// The broker did not take it in time or was unavailable: passing,
    /// the same records succeed once it answers.
    Broker,
    /// This client was refused (authorization, a topic that does not
    /// exist, a setting): a fix of the deployment is needed.
    Internal,
}

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
        use RDKafkaErrorCode as C;
        match self.error.rdkafka_error_code() {
            Some(
                C::MessageSizeTooLarge
                | C::InvalidRecord
                | C::BadMessage
                | C::InvalidMessage
                | C::InvalidMessageSize
                | C::MessageBatchTooLarge,
            ) => Domain::BadData,
            Some(
                C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::TransactionalIdAuthorizationFailed
                | C::SaslAuthenticationFailed
                | C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::InvalidConfig
                | C::UnsupportedVersion,
            ) => Domain::Internal,
            _ => Domain::Broker,
        }
    }

    /// What to do about it.
    pub fn retry_hint(&self) -> &'static str {
        match self.domain() {
            Domain::Broker => {
                "retriable: the records are read again when the service restarts; restart it once the broker answers"
            }
            Domain::BadData => {
                "not retriable as is: the broker refused the record itself; check the topic's and the producer's size limits (message.max.bytes)"
            }
            Domain::Internal => {
                "not retriable as is: the broker refused this client; check its credentials, ACLs and the topic"
            }
        }
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
            let text = f.to_string();
            assert!(
                text.starts_with("delivery to forecasts.audit failed: "),
                "{text}"
            );
            assert!(text.contains(hint), "{text}");
        }
    }
}
