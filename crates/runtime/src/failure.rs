//! What a failure is about, which says whether trying again can help: the
//! domain of an error, its hint, and the exit code a command that fails
//! with it ends with.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// What a failure is about, which says whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// The record or input itself was refused (its size or form): trying
    /// again fails again until the record, the producer's or the topic's
    /// settings change.
    BadData,
    /// The broker did not answer in time or was unavailable: passing, the
    /// same work succeeds once it answers.
    Broker,
    /// This process was refused or set up wrong (authorization, a topic
    /// that does not exist, a setting, an address it cannot listen on): a
    /// fix of the deployment is needed.
    Internal,
}

impl Domain {
    /// What to do about a failure in this domain.
    pub fn hint(self) -> &'static str {
        match self {
            Domain::Broker => {
                "retriable: the records are read again when the service restarts; restart it once the broker answers"
            }
            Domain::BadData => {
                "not retriable as is: the broker refused the record itself; check the topic's and the producer's size limits (message.max.bytes)"
            }
            Domain::Internal => {
                "not retriable as is: the broker refused this client or a setting is wrong; check its credentials, ACLs, topics and flags"
            }
        }
    }

    /// The exit code of a command that fails in this domain, from BSD's
    /// sysexits.h, so that a supervisor can tell "restart it" (75,
    /// EX_TEMPFAIL) from "fix the deployment" (78, EX_CONFIG) and "fix the
    /// data" (65, EX_DATAERR). A failure of no known domain exits 1.
    pub fn exit_code(self) -> u8 {
        match self {
            Domain::BadData => 65,
            Domain::Broker => 75,
            Domain::Internal => 78,
        }
    }

    /// The domain of a librdkafka error.
    pub fn of_kafka(error: &KafkaError) -> Domain {
        use RDKafkaErrorCode as C;
        // A client librdkafka would not make: its settings are wrong.
        if matches!(
            error,
            KafkaError::ClientConfig(..) | KafkaError::ClientCreation(..)
        ) {
            return Domain::Internal;
        }
        match error.rdkafka_error_code() {
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
                | C::GroupAuthorizationFailed
                | C::TransactionalIdAuthorizationFailed
                | C::SaslAuthenticationFailed
                | C::Authentication
                | C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::InvalidConfig
                | C::UnsupportedVersion,
            ) => Domain::Internal,
            _ => Domain::Broker,
        }
    }

    /// The domain of the first cause in `error`'s chain that has one: a
    /// [`Classified`] error, a librdkafka error (a failed delivery's
    /// source is one), or an address that cannot be listened on. `None`
    /// for anything else (a file that cannot be read, say).
    pub fn of(error: &anyhow::Error) -> Option<Domain> {
        error.chain().find_map(|cause| {
            if let Some(c) = cause.downcast_ref::<Classified>() {
                Some(c.domain)
            } else if let Some(k) = cause.downcast_ref::<KafkaError>() {
                Some(Domain::of_kafka(k))
            } else {
                let io = cause.downcast_ref::<std::io::Error>()?;
                use std::io::ErrorKind as K;
                matches!(io.kind(), K::AddrInUse | K::AddrNotAvailable).then_some(Domain::Internal)
            }
        })
    }
}

/// An error whose domain its maker knows (a broker that does not answer, a
/// refused authentication).
#[derive(Debug)]
pub struct Classified {
    pub domain: Domain,
    message: String,
}

impl Classified {
    pub fn new(domain: Domain, message: impl Into<String>) -> Self {
        Self {
            domain,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Classified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Classified {}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn the_domain_is_found_under_any_context() {
        let refused = anyhow::Error::new(Classified::new(Domain::Internal, "refused"))
            .context("validator failed");
        assert_eq!(Domain::of(&refused), Some(Domain::Internal));
        let kafka: anyhow::Result<()> =
            Err(KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure).into());
        let kafka = kafka.context("reading the committed offsets").unwrap_err();
        assert_eq!(Domain::of(&kafka), Some(Domain::Broker));
        let in_use = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::AddrInUse))
            .context("cannot listen on 127.0.0.1:8080");
        assert_eq!(Domain::of(&in_use), Some(Domain::Internal));
        let missing = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::NotFound))
            .context("reading policy.toml");
        assert_eq!(Domain::of(&missing), None, "no domain: exit 1");
        assert_eq!(Domain::of(&anyhow::anyhow!("plain")), None);
    }

    #[test]
    fn each_domain_has_its_own_exit_code_and_none_is_a_usage_or_rejection_code() {
        let codes = [Domain::BadData, Domain::Broker, Domain::Internal].map(Domain::exit_code);
        assert_eq!(codes, [65, 75, 78]);
        assert!(codes.iter().all(|c| *c > 2 && *c != 130));
    }
}
