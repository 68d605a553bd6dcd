//! `tansu broker`: tansu 0.6.0's broker alone, with the arguments of the
//! released `tansu broker` subcommand that the pipeline uses (see
//! Cargo.toml for why this is not the `tansu` crate's binary).

use clap::{Parser, Subcommand};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512, digest::typenum::Unsigned as _};
use std::path::{Path, PathBuf};
use tansu_broker::{
    NODE_ID, TracingFormat, broker::Broker, coordinator::group::administrator::Controller, otel,
};
use tansu_sans_io::{ErrorCode, ScramMechanism};
use tansu_storage::{ScramCredential, Storage, StorageContainer};
use tokio::time::Instant;
use url::Url;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "tansu 0.6.0's Kafka-protocol broker, as the forecast pipeline runs it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker
    Broker(Arg),
}

#[derive(Debug, clap::Args)]
struct Arg {
    /// All members of the same cluster should use the same id
    #[arg(long, env = "CLUSTER_ID", default_value = "tansu_cluster")]
    cluster_id: String,

    /// The broker listens on this address
    #[arg(long, env = "LISTENER_URL", default_value = "tcp://0.0.0.0:9092")]
    listener_url: Url,

    /// This location is advertised to clients in metadata
    #[arg(
        long,
        env = "ADVERTISED_LISTENER_URL",
        default_value = "tcp://localhost:9092"
    )]
    advertised_listener_url: Url,

    /// memory://tansu/ (in memory) or sqlite:///PATH/tansu.db (survives a restart)
    #[arg(long, env = "STORAGE_ENGINE", default_value = "memory://tansu/")]
    storage_engine: Url,

    /// Require SASL authentication of clients (SCRAM-SHA-256 or
    /// SCRAM-SHA-512; the users come from --scram-credentials)
    #[arg(long)]
    authentication: bool,

    /// Users to store before serving: one `NAME:PASSWORD` per line (`#`
    /// comments); both SCRAM mechanisms are stored for each. Needs
    /// --authentication and sqlite storage (tansu 0.6.0's memory engine
    /// stores no credentials). Passwords are never printed.
    #[arg(long, env = "SCRAM_CREDENTIALS_FILE", value_name = "FILE")]
    scram_credentials: Option<PathBuf>,

    /// Print nothing on start
    #[arg(long)]
    silent: bool,
}

/// Iterations of the stored SCRAM credentials (Kafka's minimum is 4096).
const SCRAM_ITERATIONS: u32 = 4096;

#[tokio::main]
async fn main() -> Result<ErrorCode, tansu_broker::Error> {
    let _guard = otel::init(TracingFormat::Text)?;
    let Command::Broker(arg) = Cli::parse().command;
    let started = Instant::now();
    let users = match &arg.scram_credentials {
        None => Vec::new(),
        Some(path) => match read_users(path, &arg) {
            Ok(users) => users,
            Err(message) => {
                eprintln!("error: {message}");
                std::process::exit(2);
            }
        },
    };
    if !arg.silent {
        println!(
            "tansu broker {} (forecast-tansu)",
            env!("CARGO_PKG_VERSION")
        );
        println!(
            "listening on: {} (advertised: {})",
            arg.listener_url, arg.advertised_listener_url
        );
        let mut storage = arg.storage_engine.clone();
        let _ = storage.set_password(None);
        println!("storage: {storage}");
    }
    let mut broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
        .node_id(NODE_ID)
        .cluster_id(arg.cluster_id)
        .incarnation_id(Uuid::now_v7())
        .advertised_listener(arg.advertised_listener_url)
        .otlp_endpoint_url(None)
        .schema_registry(None)
        .storage(arg.storage_engine)
        .listener(arg.listener_url)
        .authentication(arg.authentication)
        .tls_server_config(None)
        .silent(arg.silent)
        .build()
        .await?;
    if !users.is_empty() {
        // A user's row refers to the cluster's, which registering makes
        // (main() registers again, which changes nothing): stored before,
        // an INSERT ... SELECT FROM cluster adds nothing, without an error.
        broker.register().await?;
    }
    for (name, password) in &users {
        for mechanism in [ScramMechanism::Scram256, ScramMechanism::Scram512] {
            broker
                .storage()
                .upsert_user_scram_credential(
                    name,
                    mechanism,
                    scram_credential(mechanism, password),
                )
                .await?;
            // Read back: a user who is not stored would only show as
            // clients refused later.
            if broker
                .storage()
                .user_scram_credential(name, mechanism)
                .await?
                .is_none()
            {
                eprintln!("error: the SCRAM credential of user {name} was not stored");
                std::process::exit(1);
            }
        }
    }
    if !arg.silent && arg.authentication {
        println!(
            "authentication: SASL SCRAM-SHA-256/512, {} user(s) stored now",
            users.len()
        );
    }
    broker.main(started).await
}

/// The users of `path`, refused with a message that names the file and line
/// (never the password) when a line is not `NAME:PASSWORD`, or when the
/// broker could not use them.
fn read_users(path: &Path, arg: &Arg) -> Result<Vec<(String, String)>, String> {
    let shown = path.display();
    if !arg.authentication {
        return Err(format!(
            "--scram-credentials {shown} without --authentication: the users would not be asked for"
        ));
    }
    if arg.storage_engine.scheme() != "sqlite" {
        return Err(format!(
            "--scram-credentials needs sqlite storage (--storage-engine sqlite:///PATH); \
             tansu 0.6.0's {} engine stores no SCRAM credentials",
            arg.storage_engine.scheme()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|error| format!("{shown}: {error}"))?;
    let mut users = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((name, password)) if !name.is_empty() && !password.is_empty() => {
                users.push((name.to_owned(), password.to_owned()));
            }
            _ => {
                return Err(format!(
                    "{shown}, line {}: expected NAME:PASSWORD, both non-empty",
                    number + 1
                ));
            }
        }
    }
    if users.is_empty() {
        return Err(format!("{shown}: no users (one NAME:PASSWORD per line)"));
    }
    Ok(users)
}

/// (StoredKey, ServerKey) of `password` with the hash `$digest`.
macro_rules! scram_keys {
    ($digest:ty, $password:expr, $salt:expr) => {{
        let mut salted = [0; <$digest as hmac::digest::OutputSizeUser>::OutputSize::USIZE];
        pbkdf2::pbkdf2_hmac::<$digest>($password.as_bytes(), $salt, SCRAM_ITERATIONS, &mut salted);
        let hmac = |message: &[u8]| {
            let mut mac = <Hmac<$digest>>::new_from_slice(&salted).expect("HMAC takes any key");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        };
        (
            <$digest>::digest(hmac(b"Client Key")).to_vec(),
            hmac(b"Server Key"),
        )
    }};
}

/// The stored form of `password` (RFC 5802, section 3; RFC 7677): a random
/// salt, the iterations, StoredKey = H(HMAC(SaltedPassword, "Client Key"))
/// and ServerKey = HMAC(SaltedPassword, "Server Key").
fn scram_credential(mechanism: ScramMechanism, password: &str) -> ScramCredential {
    let salt: [u8; 32] = rand::random();
    let (stored_key, server_key) = match mechanism {
        ScramMechanism::Scram256 => scram_keys!(Sha256, password, &salt),
        ScramMechanism::Scram512 => scram_keys!(Sha512, password, &salt),
    };
    ScramCredential {
        salt: salt.to_vec().into(),
        iterations: SCRAM_ITERATIONS as i32,
        stored_key: stored_key.into(),
        server_key: server_key.into(),
    }
}
