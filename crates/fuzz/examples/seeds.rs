//! Writes the seed corpora of the fuzz targets into `fuzz/seeds/TARGET/`
//! from the examples (and the conformance sample, when `../shared` is
//! beside the repository): `cargo run -p forecast-fuzz --example seeds`.
//! The seeds are committed; run this again when a decoder's input changes.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use forecast_model::{DemandSnapshot, Quarter, Registry, SnapshotRow, Timestamp, Units, wire};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = root().join("fuzz/seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let repo = root();
    let mut documents: Vec<Vec<u8>> = Vec::new();
    let mut sources = vec![repo.join("examples/stream.jsonl")];
    let sample = repo.join("../shared/conformance/stream.jsonl");
    if sample.exists() {
        sources.push(sample);
    }
    for source in &sources {
        let text = std::fs::read_to_string(source).unwrap();
        // At most 40 lines a source: the fuzzer mutates, it needs variety,
        // not volume.
        documents.extend(text.lines().take(40).map(|l| l.as_bytes().to_vec()));
    }
    // A signed document, with the key the targets' registry holds.
    let signer = forecast_fuzz::seed_signer();
    let mut signed = forecast_model::parse_submission(&documents[0]).unwrap();
    signer.sign(&mut signed);
    documents.push(signed.to_json().into_bytes());

    for (i, doc) in documents.iter().enumerate() {
        write("json_document", &format!("{i:03}.json"), doc);
        if let Ok(parsed) = forecast_model::parse_submission(doc) {
            write(
                "framed_document",
                &format!("{i:03}.avro"),
                &wire::encode_document(&parsed),
            );
        }
    }

    // Verdicts (the validator's, of a few documents) and a snapshot.
    let validator = forecast_validator::Validator::new(forecast_validator::Policy::default());
    for (i, doc) in documents.iter().take(12).enumerate() {
        let judged = validator.judge_framed(doc, Registry::embedded());
        let verdict = validator.verdict(&judged, Timestamp::from_millis(0), None);
        write(
            "framed_records",
            &format!("verdict-{i:02}.avro"),
            &wire::encode_verdict(&verdict),
        );
    }
    let snapshot = DemandSnapshot {
        customer_id: "TENCENT".into(),
        sequence: 7,
        as_of: Timestamp::from_millis(1_750_000_000_000),
        rows: vec![SnapshotRow {
            sku: "H20".into(),
            quarter: Quarter::new(2026, 3).unwrap(),
            units: Units {
                firm_units: 1200,
                planning_units: 300,
            },
        }],
    };
    write(
        "framed_records",
        "snapshot.avro",
        &wire::encode_snapshot(&snapshot),
    );
    let licence_snapshot = forecast_model::LicenceSnapshot {
        customer_id: "ALIBABA".into(),
        as_of: Timestamp::from_millis(1_750_000_000_000),
        rows: vec![forecast_model::LicenceCell {
            sku: "H20".into(),
            quarter: Quarter::new(2026, 4).unwrap(),
            licence_status: forecast_model::ExposureStatus::Revoked,
            units: Units {
                firm_units: 10_000,
                planning_units: 27_000,
            },
        }],
        lost: vec![forecast_model::LostDocument {
            document_id: "ALI-2026-0001".into(),
            customer_id: "ALIBABA".into(),
            revision: 1,
            application_number: "Z-7201843".into(),
            licence_status: forecast_model::ExposureStatus::Revoked,
            decided_at: Timestamp::from_millis(1_764_748_800_000).with_offset_minutes(480),
            firm_units: 10_000,
            planning_units: 27_000,
        }],
        lost_not_listed: 0,
        references: vec![forecast_model::Reference {
            application_number: "Z-7201843".into(),
            sku: "H20".into(),
            units: 37_000,
        }],
    };
    write(
        "framed_records",
        "licence-snapshot.avro",
        &wire::encode_licence_snapshot(&licence_snapshot),
    );
    let licences = forecast_model::licence::read_decisions(
        &std::fs::read_to_string(repo.join("examples/licences.jsonl")).unwrap(),
        "examples/licences.jsonl",
    )
    .unwrap();
    for (i, d) in licences.iter().enumerate() {
        write(
            "framed_records",
            &format!("decision-{i:02}.avro"),
            &wire::encode_decision(d),
        );
    }

    for (target, name, file) in [
        (
            "screening_list",
            "examples.csv",
            "examples/restricted-parties.csv",
        ),
        (
            "screening_list",
            "update.csv",
            "examples/restricted-parties-update.csv",
        ),
        ("policy_toml", "examples.toml", "examples/policy.toml"),
        ("supply", "examples.csv", "examples/supply.csv"),
        ("licence_file", "examples.jsonl", "examples/licences.jsonl"),
    ] {
        write(target, name, &std::fs::read(repo.join(file)).unwrap());
    }
    let sample_list = repo.join("../shared/conformance/restricted.csv");
    if sample_list.exists() {
        write(
            "screening_list",
            "conformance.csv",
            &std::fs::read(sample_list).unwrap(),
        );
    }
    write(
        "policy_toml",
        "signatures.toml",
        b"signatures = \"optional\"\nmax_submitted_at_skew_seconds = 600\nregistered_customers = [\"TENCENT\"]\n",
    );
    write(
        "supply",
        "record",
        b"H20/2026-Q3\n{\"sku\":\"H20\",\"quarter\":\"2026-Q3\",\"on_hand\":100,\"ordered\":50}",
    );
    write("supply", "tombstone", b"H20/2026-Q4");

    let entry = forecast_validator::KeyEntry::for_signer(
        &signer,
        "TENCENT",
        Timestamp::from_millis(0),
        Some(Timestamp::from_millis(4_102_444_800_000)),
    );
    let mut revoked = entry.clone();
    revoked.revoked = true;
    let registry = [entry, revoked]
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect::<String>();
    write("key_registry", "two.jsonl", registry.as_bytes());

    let mut tokens = String::new();
    for (name, role) in [("planner", "planner"), ("tencent", "customer:TENCENT")] {
        let role = forecast_planner::auth::Role::parse(role).unwrap();
        let (_, entry) = forecast_planner::auth::Tokens::generate(name, &role).unwrap();
        tokens += &(serde_json::to_string(&entry).unwrap() + "\n");
    }
    write("tokens_file", "two.jsonl", tokens.as_bytes());

    for (i, path) in [
        "v1/demand",
        "v1/demand?customer=TENCENT&quarter=2026-Q3&sku=H20",
        "v1/demand/stream?customer=TENCENT",
        "v1/documents/TCT-1",
        "v1/rejections?code=SKU_UNKNOWN&customer=TENCENT&limit=5",
        "v1/supply?quarter=2026-Q3",
        "v1/coverage?sku=H20",
        "openapi.json",
        "v1/demand?quarter=2026-Q9",
    ]
    .iter()
    .enumerate()
    {
        write("api_request", &format!("{i:02}"), path.as_bytes());
    }
    eprintln!("seeds written to fuzz/seeds");
}
