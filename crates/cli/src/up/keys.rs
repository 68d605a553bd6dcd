//! `up`'s keys: a stage key each for the validator and the aggregator, a
//! compliance and a supplier key, a key per registered customer of the
//! examples (which are signed with them), and the planner token; all made
//! for the run. None leaves the process but the token and the stage keys,
//! which `up` writes to a file only its user reads, for `forecastctl
//! demand --stage-keys`, and removes when it stops.

use std::path::{Path, PathBuf};

use forecast_model::Timestamp;
use forecast_model::attest::{Attester, Role, StageKeyEntry, StageKeys};
use forecast_model::keys::{KeyEntry, KeyRegistry};
use forecast_model::signing::Signer;
use forecast_planner::auth::Access;
use forecast_stage::trust::Trust;

/// The keys of a run: a stage key each for the validator and the
/// aggregator, a compliance key that signs the licence decisions and a
/// supplier key that signs the commits (each registered under its role).
pub(super) struct RunKeys {
    pub(super) trust: Trust,
    /// The stage keys as a key file holds them.
    pub(super) stage_lines: String,
    pub(super) compliance: Attester,
    pub(super) supplier: Attester,
}

pub(super) fn run_keys() -> anyhow::Result<RunKeys> {
    let now = Timestamp::now();
    let mut lines = String::new();
    for stage in [Role::Validator, Role::Aggregator] {
        lines += &StageKeyEntry::generate(stage, now)?.line();
        lines.push('\n');
    }
    let stage_keys = StageKeys::from_text(&lines, "the keys of this run")?;
    let mut entries = Vec::new();
    let mut signers = Vec::new();
    for role in [Role::Compliance, Role::Supplier] {
        let signer = Signer::new(forecast_model::signing::generate_key()?, None);
        entries.push(KeyEntry {
            role,
            ..KeyEntry::for_signer(&signer, "", now, None)
        });
        signers.push(signer.attester());
    }
    let registry = KeyRegistry::from_entries(entries)?;
    let supplier = signers
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no supplier key"))?;
    let compliance = signers
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no compliance key"))?;
    Ok(RunKeys {
        trust: Trust::from_keys(stage_keys, registry),
        stage_lines: lines,
        compliance,
        supplier,
    })
}

/// Makes a key for each registered customer of the examples, requires
/// signatures with them, and writes the examples signed (lines that do not
/// decode as they are) to a file in the temporary folder. The examples are
/// dated in the past: the live validator is told to accept a
/// `submitted_at` as old as the oldest of them (a deployment keeps the
/// default of 5 minutes).
pub(super) fn sign_examples(
    policy: forecast_validator::Policy,
    examples: &Path,
) -> anyhow::Result<(forecast_validator::Policy, PathBuf)> {
    use forecast_model::signing::{self, Signer};
    use std::collections::BTreeMap;
    use std::io::Write as _;

    let read_error = |e: std::io::Error| anyhow::anyhow!("cannot read {}: {e}", examples.display());
    let mut lines = crate::input::JsonLines::new(crate::input::open(examples).map_err(read_error)?);
    let mut docs = Vec::new();
    while let Some((_, bytes)) = lines.next_line().map_err(read_error)? {
        docs.push(match forecast_model::parse_submission(bytes) {
            Ok(doc) => Ok(doc),
            Err(_) => Err(bytes.to_vec()),
        });
    }
    let now = forecast_model::Timestamp::now();
    let mut signers: BTreeMap<String, (Signer, forecast_model::Timestamp)> = BTreeMap::new();
    for doc in docs.iter().flatten() {
        if !policy
            .settings()
            .registered_customers
            .contains(&doc.customer_id)
        {
            continue;
        }
        if let Some((_, from)) = signers.get_mut(&doc.customer_id) {
            if doc.submitted_at.millis() < from.millis() {
                *from = doc.submitted_at;
            }
            continue;
        }
        let signer = Signer::new(signing::generate_key()?, None);
        signers.insert(doc.customer_id.clone(), (signer, doc.submitted_at));
    }
    let entries = signers
        .iter()
        .map(|(customer, (signer, from))| {
            let until = forecast_model::Timestamp::from_millis(now.millis() + 24 * 3600 * 1000);
            forecast_validator::KeyEntry::for_signer(signer, customer, *from, Some(until))
        })
        .collect::<Vec<_>>();
    let oldest = entries
        .iter()
        .map(|e| e.valid_from.millis())
        .min()
        .unwrap_or(now.millis());
    let skew_seconds = (now.millis() - oldest).max(0) as u64 / 1000 + 3600;
    let policy = policy
        .with_key_registry(forecast_validator::KeyRegistry::from_entries(entries)?)?
        .with_max_skew_seconds(
            skew_seconds.max(forecast_validator::policy::DEFAULT_MAX_SUBMITTED_AT_SKEW_SECONDS),
        )?;

    let path =
        std::env::temp_dir().join(format!("forecast-up-{}.signed.jsonl", std::process::id()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for doc in docs {
        match doc {
            Ok(doc) => match signers.get(&doc.customer_id) {
                Some((signer, _)) => writeln!(out, "{}", crate::signing::signed_json(signer, doc))?,
                None => writeln!(out, "{}", doc.to_json())?,
            },
            Err(bytes) => {
                out.write_all(&bytes)?;
                writeln!(out)?;
            }
        }
    }
    out.flush()?;
    eprintln!(
        "signing the examples: a key for each of {} for this run, signatures required (the examples are dated in the past, so submitted_at may be up to {} days old); signed copy (removed when up stops): {}",
        signers.keys().cloned().collect::<Vec<_>>().join(", "),
        skew_seconds / 86_400,
        path.display()
    );
    Ok((policy, path))
}

/// A planner token made for the run and the access it opens; written to
/// `token_out` (mode 0600, replacing a token of an earlier run) when given.
pub(super) fn planner_token(token_out: Option<&Path>) -> anyhow::Result<(String, Access)> {
    use forecast_planner::auth::{Role, Tokens};
    let (token, entry) = Tokens::generate("up", &Role::Planner)?;
    let mut tokens = Tokens::default();
    tokens.add(entry).map_err(|e| anyhow::anyhow!(e))?;
    if let Some(path) = token_out {
        // A token of an earlier run is replaced (it is worthless now).
        let _ = std::fs::remove_file(path);
        crate::signing::write_new(path, format!("{token}\n").as_bytes(), 0o600)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok((token, Access::Tokens(std::sync::Arc::new(tokens))))
}

/// Writes the run's stage keys where only this user reads them (mode
/// 0600), for `forecastctl demand --stage-keys` while the run lasts; the
/// caller removes the file when the run stops.
pub(super) fn write_stage_keys(lines: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!(
        "forecast-up-{}.stage-keys.jsonl",
        std::process::id()
    ));
    // A file of an earlier run with the same process id holds its keys.
    let _ = std::fs::remove_file(&path);
    crate::signing::write_new(&path, lines.as_bytes(), 0o600)?;
    Ok(path)
}
