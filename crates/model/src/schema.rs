//! The wire contract's schemas, embedded from `schemas/*.avsc`, and the
//! schema-id registry.
//!
//! Ids are fixed in the repository (see `schemas/README.md`), so producers
//! and consumers agree with no registry server. [`Registry::register`] adds
//! schemas fetched from a Confluent-compatible registry under their ids.
//! Every schema is parsed once, at first use.

use std::collections::HashMap;
use std::sync::LazyLock;

use apache_avro::Schema;

/// What a schema describes; the current version of each is what this build writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Values of `forecasts.submitted` (and the document inside `forecasts.validated`).
    ForecastDocument,
    /// Values of `forecasts.audit`.
    Verdict,
    /// Values of `demand.by-customer`.
    DemandSnapshot,
    /// Values of `licences.decisions`.
    LicenceDecision,
    /// Values of `demand.by-licence`.
    LicenceSnapshot,
    /// Values of `screening.lists`.
    ScreeningList,
}

impl Subject {
    /// Name, as a registry subject would have it.
    pub const fn name(self) -> &'static str {
        match self {
            Subject::ForecastDocument => "forecast-document",
            Subject::Verdict => "verdict",
            Subject::DemandSnapshot => "demand-snapshot",
            Subject::LicenceDecision => "licence-decision",
            Subject::LicenceSnapshot => "licence-snapshot",
            Subject::ScreeningList => "screening-list",
        }
    }

    /// The id of the version this build writes.
    pub const fn current_id(self) -> u32 {
        match self {
            Subject::ForecastDocument => FORECAST_DOCUMENT_V3,
            Subject::Verdict => VERDICT_V3,
            Subject::DemandSnapshot => DEMAND_SNAPSHOT_V1,
            Subject::LicenceDecision => LICENCE_DECISION_V2,
            Subject::LicenceSnapshot => LICENCE_SNAPSHOT_V3,
            Subject::ScreeningList => SCREENING_LIST_V1,
        }
    }
}

/// First draft of the document: no `ship_to`, no `signed_by`.
pub const FORECAST_DOCUMENT_V1: u32 = 1;
/// The document as the spec writes it.
pub const FORECAST_DOCUMENT_V2: u32 = 2;
/// The verdict record.
pub const VERDICT_V1: u32 = 3;
/// The per-customer demand snapshot.
pub const DEMAND_SNAPSHOT_V1: u32 = 4;
/// The verdict record with the submission's customer.
pub const VERDICT_V2: u32 = 5;
pub const FORECAST_DOCUMENT_V3: u32 = 6;
/// A decision on a licence application.
pub const LICENCE_DECISION_V1: u32 = 7;
/// One customer's demand by licence status within one partition.
pub const LICENCE_SNAPSHOT_V1: u32 = 8;
/// A decision on a licence application for one customer (`customer_id`).
pub const LICENCE_DECISION_V2: u32 = 9;
/// [`LICENCE_SNAPSHOT_V1`] with the status `FOREIGN_LICENCE`.
pub const LICENCE_SNAPSHOT_V2: u32 = 10;
/// [`VERDICT_V2`] with the stage `RESCREEN` and `screening_version`.
pub const VERDICT_V3: u32 = 11;
/// [`LICENCE_SNAPSHOT_V2`] with the status `SCREENING_HOLD`.
pub const LICENCE_SNAPSHOT_V3: u32 = 12;
/// One version of the restricted-party list.
pub const SCREENING_LIST_V1: u32 = 13;

/// A schema shipped in this build.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedSchema {
    pub id: u32,
    pub subject: Subject,
    pub version: u32,
    /// File name under `schemas/`.
    pub file: &'static str,
    pub source: &'static str,
}

/// Every schema of `schemas/`, with its fixed id.
pub const EMBEDDED: &[EmbeddedSchema] = &[
    EmbeddedSchema {
        id: FORECAST_DOCUMENT_V1,
        subject: Subject::ForecastDocument,
        version: 1,
        file: "forecast-document.v1.avsc",
        source: include_str!("../../../schemas/forecast-document.v1.avsc"),
    },
    EmbeddedSchema {
        id: FORECAST_DOCUMENT_V2,
        subject: Subject::ForecastDocument,
        version: 2,
        file: "forecast-document.v2.avsc",
        source: include_str!("../../../schemas/forecast-document.v2.avsc"),
    },
    EmbeddedSchema {
        id: VERDICT_V1,
        subject: Subject::Verdict,
        version: 1,
        file: "verdict.v1.avsc",
        source: include_str!("../../../schemas/verdict.v1.avsc"),
    },
    EmbeddedSchema {
        id: DEMAND_SNAPSHOT_V1,
        subject: Subject::DemandSnapshot,
        version: 1,
        file: "demand-snapshot.v1.avsc",
        source: include_str!("../../../schemas/demand-snapshot.v1.avsc"),
    },
    EmbeddedSchema {
        id: VERDICT_V2,
        subject: Subject::Verdict,
        version: 2,
        file: "verdict.v2.avsc",
        source: include_str!("../../../schemas/verdict.v2.avsc"),
    },
    EmbeddedSchema {
        id: FORECAST_DOCUMENT_V3,
        subject: Subject::ForecastDocument,
        version: 3,
        file: "forecast-document.v3.avsc",
        source: include_str!("../../../schemas/forecast-document.v3.avsc"),
    },
    EmbeddedSchema {
        id: LICENCE_DECISION_V1,
        subject: Subject::LicenceDecision,
        version: 1,
        file: "licence-decision.v1.avsc",
        source: include_str!("../../../schemas/licence-decision.v1.avsc"),
    },
    EmbeddedSchema {
        id: LICENCE_SNAPSHOT_V1,
        subject: Subject::LicenceSnapshot,
        version: 1,
        file: "licence-snapshot.v1.avsc",
        source: include_str!("../../../schemas/licence-snapshot.v1.avsc"),
    },
    EmbeddedSchema {
        id: LICENCE_DECISION_V2,
        subject: Subject::LicenceDecision,
        version: 2,
        file: "licence-decision.v2.avsc",
        source: include_str!("../../../schemas/licence-decision.v2.avsc"),
    },
    EmbeddedSchema {
        id: LICENCE_SNAPSHOT_V2,
        subject: Subject::LicenceSnapshot,
        version: 2,
        file: "licence-snapshot.v2.avsc",
        source: include_str!("../../../schemas/licence-snapshot.v2.avsc"),
    },
    EmbeddedSchema {
        id: VERDICT_V3,
        subject: Subject::Verdict,
        version: 3,
        file: "verdict.v3.avsc",
        source: include_str!("../../../schemas/verdict.v3.avsc"),
    },
    EmbeddedSchema {
        id: LICENCE_SNAPSHOT_V3,
        subject: Subject::LicenceSnapshot,
        version: 3,
        file: "licence-snapshot.v3.avsc",
        source: include_str!("../../../schemas/licence-snapshot.v3.avsc"),
    },
    EmbeddedSchema {
        id: SCREENING_LIST_V1,
        subject: Subject::ScreeningList,
        version: 1,
        file: "screening-list.v1.avsc",
        source: include_str!("../../../schemas/screening-list.v1.avsc"),
    },
];

/// A schema known under an id.
#[derive(Debug)]
pub struct Registered {
    pub id: u32,
    pub subject: Subject,
    pub version: u32,
    pub schema: Schema,
}

/// Error of a schema that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("schema id {id} ({subject}) does not parse: {source}")]
pub struct SchemaError {
    pub id: u32,
    pub subject: &'static str,
    #[source]
    pub source: Box<apache_avro::Error>,
}

/// Schemas by id.
#[derive(Debug, Default)]
pub struct Registry {
    by_id: HashMap<u32, Registered>,
}

static EMBEDDED_REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let mut registry = Registry::default();
    for s in EMBEDDED {
        // The embedded schemas are tested to parse (schema::tests); a build
        // whose schemas do not parse must not start.
        #[allow(clippy::expect_used)]
        registry
            .register(s.id, s.subject, s.version, s.source)
            .expect("embedded schema parses");
    }
    registry
});

impl Registry {
    /// The schemas shipped with this build, parsed once.
    pub fn embedded() -> &'static Registry {
        &EMBEDDED_REGISTRY
    }

    /// Adds (or replaces) a schema under `id`.
    pub fn register(
        &mut self,
        id: u32,
        subject: Subject,
        version: u32,
        source: &str,
    ) -> Result<(), SchemaError> {
        let schema = Schema::parse_str(source).map_err(|e| SchemaError {
            id,
            subject: subject.name(),
            source: Box::new(e),
        })?;
        self.by_id.insert(
            id,
            Registered {
                id,
                subject,
                version,
                schema,
            },
        );
        Ok(())
    }

    /// The schema registered under `id`.
    pub fn get(&self, id: u32) -> Option<&Registered> {
        self.by_id.get(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_schema_parses_and_has_a_unique_id() {
        let mut ids = std::collections::HashSet::new();
        for s in EMBEDDED {
            assert!(ids.insert(s.id), "duplicate id {}", s.id);
            Schema::parse_str(s.source)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", s.file));
            assert!(Registry::embedded().get(s.id).is_some());
        }
        for subject in [
            Subject::ForecastDocument,
            Subject::Verdict,
            Subject::DemandSnapshot,
            Subject::LicenceDecision,
            Subject::LicenceSnapshot,
            Subject::ScreeningList,
        ] {
            let current = Registry::embedded().get(subject.current_id()).unwrap();
            assert_eq!(current.subject, subject);
            let newest = EMBEDDED
                .iter()
                .filter(|s| s.subject == subject)
                .map(|s| s.version)
                .max();
            assert_eq!(
                Some(current.version),
                newest,
                "{} writes its newest version",
                subject.name()
            );
        }
    }

    #[test]
    fn a_schema_that_does_not_parse_is_an_error_that_names_it() {
        let err = Registry::default()
            .register(99, Subject::Verdict, 9, "{\"type\": \"record\"}")
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("schema id 99 (verdict) does not parse"),
            "{err}"
        );
    }
}
