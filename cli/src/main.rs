//! The `flotilla` command.
//!
//! `flotilla serve` runs the whole service on one machine: the REST API, SQLite
//! storage and the local process engine (see `shared::local`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shared::local::{ServeConfig, serve};

/// Flotilla: define a job once, launch runs of it, follow their state and logs.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API and the local engine on this machine (no AWS needed).
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "FLOTILLA_LISTEN", default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Directory for the database, run directories and logs.
    #[arg(long, env = "FLOTILLA_DATA_DIR", default_value = ".flotilla")]
    data_dir: PathBuf,
    /// Runs executing at once [default: number of cores].
    #[arg(long, env = "FLOTILLA_PARALLELISM")]
    parallelism: Option<usize>,
    /// Value of FLOTILLA_SERVER_MODE in every run.
    #[arg(long, env = "FLOTILLA_MODE", default_value = "local")]
    mode: String,
    /// Cluster used when an execute request names none.
    #[arg(long, env = "FLOTILLA_DEFAULT_CLUSTER", default_value = "default")]
    default_cluster: String,
    /// Attempts per run after infrastructure failures, the first included.
    #[arg(long, env = "FLOTILLA_MAX_ATTEMPTS", default_value_t = 3)]
    max_attempts: u32,
    /// Seconds between SIGTERM and SIGKILL when a run is stopped.
    #[arg(long, env = "FLOTILLA_STOP_GRACE_SECONDS", default_value_t = 10)]
    stop_grace_seconds: u64,
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    shared::telemetry::init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let mut config = ServeConfig::new(args.data_dir);
            config.listen = args.listen;
            if let Some(n) = args.parallelism {
                config.parallelism = n.max(1);
            }
            config.mode = args.mode;
            config.default_cluster = args.default_cluster;
            config.max_attempts = args.max_attempts.max(1);
            config.stop_grace = Duration::from_secs(args.stop_grace_seconds);
            if let Err(e) = serve(config, shutdown_signal()).await {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    message.push_str(": ");
                    message.push_str(&s.to_string());
                    source = s.source();
                }
                eprintln!("flotilla serve: {message}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
    }
}
