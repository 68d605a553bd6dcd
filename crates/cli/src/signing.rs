//! `forecastctl keys generate` and `forecastctl sign`: a customer's side of
//! signed submissions, and the keys of the roles that sign records
//! (docs/signatures.md); `forecastctl keys stage`: the stages' secrets
//! (docs/security.md, "Trust between stages").

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use forecast_model::Timestamp;
use forecast_model::attest::{Role, StageKeyEntry};
use forecast_model::signing::{self, Signer};
use forecast_validator::KeyEntry;

use crate::{EXIT_REJECTED, RunError, input};

/// `forecastctl keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new Ed25519 signing key for a customer: writes PREFIX.key
    /// (private, PKCS#8 PEM, mode 0600; stays with the customer) and
    /// PREFIX.pub (public, SPKI PEM), and prints on standard output only
    /// the key registry entry, so that `>> keys.jsonl` registers it. Never
    /// overwrites a file.
    Generate(GenerateArgs),
    /// Make a new secret key for a stage (validator or aggregator) and
    /// append it to a stage-key file (created with mode 0600): the stage
    /// attests what it writes with it, and the stages after it believe
    /// only what it attested. Give the file to the stage and to the stages
    /// that read it; the secret is never printed.
    Stage(StageArgs),
}

/// Arguments of `keys stage`.
#[derive(Debug, Args)]
pub struct StageArgs {
    /// The stage the key attests for.
    #[arg(long, value_parser = ["validator", "aggregator"])]
    pub stage: String,
    /// The stage-key file to append to.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// When the stage starts attesting with it (RFC 3339); default now.
    /// To rotate, add the new key to every reader's file first, with a
    /// --valid-from after they are restarted.
    #[arg(long, value_name = "TIMESTAMP")]
    pub valid_from: Option<Timestamp>,
}

/// Arguments of `keys generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The customer the key signs for (its `customer_id`); required for a
    /// customer's key, refused for a role's.
    #[arg(long, value_name = "ID")]
    pub customer: Option<String>,
    /// Whom the key speaks for: a customer (its submissions), the
    /// compliance office (licence decisions and restricted-party lists,
    /// `licences load` / `screening load --signing-key`), the operator
    /// (supply plans, `supply load --signing-key`) or the supplier (its
    /// commits to customers, `allocate --commits-out --signing-key`).
    #[arg(long, default_value = "customer", value_parser = ["customer", "compliance", "operator", "supplier"])]
    pub role: String,
    /// Path and name of the key files, without extension.
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
    /// First instant the key signs for (RFC 3339); default now.
    #[arg(long, value_name = "TIMESTAMP")]
    pub valid_from: Option<Timestamp>,
    /// First instant it no longer signs for (RFC 3339); default one year
    /// after --valid-from. Rotate before then: register the next key while
    /// this one is still valid.
    #[arg(long, value_name = "TIMESTAMP")]
    pub valid_until: Option<Timestamp>,
}

/// Arguments of `sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The private key (PKCS#8 PEM, as `keys generate` writes it).
    #[arg(long, env = "FORECAST_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: PathBuf,
    /// Key id the signatures carry; default the id derived from the key
    /// (`ed25519:` and 16 hex digits), as `keys generate` registers it.
    #[arg(long, env = "FORECAST_KEY_ID", value_name = "ID")]
    pub key_id: Option<String>,
    /// Files holding one JSON document, or JSON Lines; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

const YEAR_MILLIS: i64 = 365 * 24 * 3600 * 1000;

/// Writes the key files and prints the registry entry.
pub fn generate(args: &GenerateArgs, out: &mut impl Write) -> Result<ExitCode, RunError> {
    let role = role_named(&args.role)?;
    let customer = match (role, args.customer.as_deref()) {
        (Role::Customer, Some(c)) if !c.is_empty() => c,
        (Role::Customer, _) => {
            return Err(RunError::Key(
                "--customer must name the customer the key signs for".into(),
            ));
        }
        (_, Some(_)) => {
            return Err(RunError::Key(format!(
                "--customer is for a customer's key; a {role} key speaks for the {role} only"
            )));
        }
        (_, None) => "",
    };
    let valid_from = args.valid_from.unwrap_or_else(now_to_the_second);
    let valid_until = args
        .valid_until
        .unwrap_or_else(|| Timestamp::from_millis(valid_from.millis() + YEAR_MILLIS));
    if valid_until.millis() <= valid_from.millis() {
        return Err(RunError::Key(format!(
            "--valid-until {valid_until} is not after --valid-from {valid_from}"
        )));
    }
    let key = signing::generate_key().map_err(|e| RunError::Key(e.to_string()))?;
    let public = key.verifying_key();
    let private_pem = signing::private_key_pem(&key).map_err(|e| RunError::Key(e.to_string()))?;
    let (key_path, pub_path) = (with_suffix(&args.out, "key"), with_suffix(&args.out, "pub"));
    write_new(&key_path, private_pem.as_bytes(), 0o600)?;
    write_new(
        &pub_path,
        signing::public_key_pem(&public).as_bytes(),
        0o644,
    )?;
    let entry = KeyEntry {
        role,
        ..KeyEntry::for_signer(
            &Signer::new(key, None),
            customer,
            valid_from,
            Some(valid_until),
        )
    };
    let line = serde_json::to_string(&entry).map_err(|e| RunError::Key(e.to_string()))?;
    writeln!(out, "{line}")?;
    out.flush()?;
    eprintln!(
        "wrote {} (private: keep it with {}, never share it) and {}; the registry entry for key {} is on standard output",
        key_path.display(),
        if role == Role::Customer {
            customer
        } else {
            role.as_str()
        },
        pub_path.display(),
        entry.key_id
    );
    Ok(ExitCode::SUCCESS)
}

/// The role a `--role`/`--stage` value names.
fn role_named(name: &str) -> Result<Role, RunError> {
    name.parse().map_err(RunError::Key)
}

/// Appends a new stage key to the stage-key file.
pub fn stage(args: &StageArgs) -> Result<ExitCode, RunError> {
    let valid_from = args.valid_from.unwrap_or_else(now_to_the_second);
    let entry = StageKeyEntry::generate(role_named(&args.stage)?, valid_from)
        .map_err(|e| RunError::Key(e.to_string()))?;
    append_private(&args.out, format!("{}\n", entry.line()).as_bytes())?;
    eprintln!(
        "appended the {} key {} (valid from {valid_from}) to {}: give it to the {} and to the stages that read what it writes; it is a secret",
        args.stage,
        entry.key_id,
        args.out.display(),
        args.stage
    );
    Ok(ExitCode::SUCCESS)
}

/// Appends `bytes` to `path`, creating it with mode 0600 when missing.
fn append_private(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| RunError::Key(format!("cannot open {}: {e}", path.display())))?;
    file.write_all(bytes)
        .map_err(|e| RunError::Key(format!("cannot write {}: {e}", path.display())))
}

/// Prints each document signed, one JSON line each.
pub fn sign(args: &SignArgs, out: &mut impl Write) -> Result<ExitCode, RunError> {
    let signer = forecast_producer::read_signer(&args.signing_key, args.key_id.clone())
        .map_err(|e| RunError::Key(e.to_string()))?;
    let mut all_signed = true;
    for path in &args.files {
        let submissions = input::read_submissions(path)?;
        for sub in submissions {
            match forecast_model::parse_submission(&sub.bytes) {
                Ok(doc) => writeln!(out, "{}", signed_json(&signer, doc))?,
                Err(e) => {
                    all_signed = false;
                    eprintln!(
                        "{}:{}: not signed: SCHEMA_INVALID{}: {}",
                        path.display(),
                        sub.line,
                        if e.field.is_empty() {
                            String::new()
                        } else {
                            format!(" at {}", e.field)
                        },
                        e.message
                    );
                }
            }
        }
    }
    out.flush()?;
    Ok(if all_signed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REJECTED)
    })
}

/// The JSON form of `doc` signed by `signer`. What is printed is the
/// decoded document, so fields the schema does not know are left out: they
/// are not signed and would not travel.
pub fn signed_json(signer: &Signer, mut doc: forecast_model::ForecastDocument) -> String {
    signer.sign(&mut doc);
    doc.to_json()
}

fn now_to_the_second() -> Timestamp {
    let now = Timestamp::now().millis();
    Timestamp::from_millis(now - now.rem_euclid(1000))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates `path` with `bytes`, refusing to replace an existing file.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), RunError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let fail = |e: io::Error| {
        RunError::Key(if e.kind() == io::ErrorKind::AlreadyExists {
            format!(
                "{} exists; not replacing a key (choose another --out)",
                path.display()
            )
        } else {
            format!("cannot write {}: {e}", path.display())
        })
    };
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)
}
