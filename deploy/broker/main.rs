//! `tansu broker`: tansu 0.6.0's broker alone, with the arguments of the
//! released `tansu broker` subcommand that the pipeline uses (see
//! Cargo.toml for why this is not the `tansu` crate's binary).

use clap::{Parser, Subcommand};
use tansu_broker::{
    NODE_ID, TracingFormat, broker::Broker, coordinator::group::administrator::Controller, otel,
};
use tansu_sans_io::ErrorCode;
use tansu_storage::StorageContainer;
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

    /// Require SASL authentication of clients
    #[arg(long)]
    authentication: bool,

    /// Print nothing on start
    #[arg(long)]
    silent: bool,
}

#[tokio::main]
async fn main() -> Result<ErrorCode, tansu_broker::Error> {
    let _guard = otel::init(TracingFormat::Text)?;
    let Command::Broker(arg) = Cli::parse().command;
    let started = Instant::now();
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
    Broker::<Controller<StorageContainer>, StorageContainer>::builder()
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
        .await?
        .main(started)
        .await
}
