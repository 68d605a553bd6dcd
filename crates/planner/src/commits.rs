//! The supplier's commits as the planner serves them: the commit in force
//! per customer, read from the `commits` topic (signed by a supplier key,
//! checked by the feed), kept as signed so that a customer reading its own
//! can verify it offline (`forecastctl commits verify`).

use std::collections::BTreeMap;

use forecast_model::commit::{Commit, SignedCommit};

/// The commit in force per customer.
#[derive(Debug, Default)]
pub struct Commits {
    by_customer: BTreeMap<String, (SignedCommit, Commit)>,
}

impl Commits {
    /// Takes a record of the topic (`None`: a tombstone of `customer`'s
    /// commit); returns whether what is in force changed.
    pub fn set(&mut self, customer: &str, record: Option<(SignedCommit, Commit)>) -> bool {
        match record {
            Some((signed, commit)) => {
                let same = self
                    .by_customer
                    .get(customer)
                    .is_some_and(|(s, _)| s.commit.get() == signed.commit.get());
                self.by_customer
                    .insert(customer.to_owned(), (signed, commit));
                !same
            }
            None => self.by_customer.remove(customer).is_some(),
        }
    }

    /// The commits of `customer` (`None`: every customer's), signed, by
    /// customer.
    pub fn signed(&self, customer: Option<&str>) -> Vec<&SignedCommit> {
        self.by_customer
            .iter()
            .filter(|(c, _)| customer.is_none_or(|want| want == c.as_str()))
            .map(|(_, (s, _))| s)
            .collect()
    }

    /// Every commit in force, decoded, by customer.
    pub fn commits(&self) -> impl Iterator<Item = &Commit> {
        self.by_customer.values().map(|(_, c)| c)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use forecast_model::allocation::Method;
    use forecast_model::attest::Attester;
    use forecast_model::signing::{Signer, generate_key};

    fn signed(customer: &str, at: i64, signer: &Attester) -> (SignedCommit, Commit) {
        let commit = Commit {
            customer_id: customer.into(),
            allocated_at: forecast_model::Timestamp::from_millis(at),
            method: Method::ProRata,
            lines: Vec::new(),
        };
        (
            SignedCommit::sign(&commit, "commits", signer).unwrap(),
            commit,
        )
    }

    #[test]
    fn one_commit_per_customer_the_last_in_force() {
        let signer = Signer::new(generate_key().unwrap(), None).attester();
        let mut c = Commits::default();
        assert!(c.set("TENCENT", Some(signed("TENCENT", 1, &signer))));
        assert!(c.set("ALIBABA", Some(signed("ALIBABA", 1, &signer))));
        // The same bytes again change nothing; a later commit does.
        assert!(!c.set("TENCENT", Some(signed("TENCENT", 1, &signer))));
        assert!(c.set("TENCENT", Some(signed("TENCENT", 2, &signer))));
        assert_eq!(c.signed(None).len(), 2);
        let own = c.signed(Some("TENCENT"));
        assert_eq!(own.len(), 1);
        assert!(own[0].commit.get().contains("\"allocated_at\""));
        assert!(c.signed(Some("BYTEDANCE")).is_empty());
        assert!(c.set("TENCENT", None));
        assert!(!c.set("TENCENT", None));
        assert_eq!(c.commits().count(), 1);
    }
}
