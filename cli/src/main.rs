//! The `flotilla` command.
//!
//! `flotilla serve` runs the whole service on one machine: the REST API, SQLite
//! storage and the local process engine (see `shared::local`). With
//! `--backend aws` it serves the same API over the AWS adapters instead (see
//! `shared::lambda::serve_api`), configured like the `api` function.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shared::adapters::local::container::RuntimeRequest;
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
    /// Run the API on this machine: with SQLite and local processes (no AWS
    /// needed), or over AWS with --backend aws.
    Serve(Box<ServeArgs>),
    /// Run one attempt of a run (started by `flotilla serve`; see
    /// `shared::adapters::local::supervisor`).
    #[command(hide = true)]
    Supervise {
        /// The attempt's directory.
        attempt_dir: PathBuf,
    },
}

/// Where runs, definitions and logs live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    /// SQLite in --data-dir and local processes: nothing else needed.
    Embedded,
    /// DynamoDB, SQS, ECS, CloudWatch Logs and EventBridge, configured by the
    /// same FLOTILLA_* variables as the `api` function (see the README).
    Aws,
}

/// Where `flotilla serve` runs each attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RuntimeArg {
    /// podman, else docker, when one is installed and answers; else process.
    Auto,
    /// In the run's image with docker.
    Docker,
    /// In the run's image with podman.
    Podman,
    /// As a command on this machine (the image is recorded, not used).
    Process,
}

impl From<RuntimeArg> for RuntimeRequest {
    fn from(arg: RuntimeArg) -> Self {
        match arg {
            RuntimeArg::Auto => Self::Auto,
            RuntimeArg::Docker => Self::Docker,
            RuntimeArg::Podman => Self::Podman,
            RuntimeArg::Process => Self::Process,
        }
    }
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Storage and engine to serve the API over.
    #[arg(long, env = "FLOTILLA_BACKEND", value_enum, default_value_t = Backend::Embedded)]
    backend: Backend,
    /// Address to listen on.
    #[arg(long, env = "FLOTILLA_LISTEN", default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Directory for the database, run directories and logs.
    #[arg(long, env = "FLOTILLA_DATA_DIR", default_value = ".flotilla")]
    data_dir: PathBuf,
    /// Runs executing at once [default: number of cores].
    #[arg(long, env = "FLOTILLA_PARALLELISM")]
    parallelism: Option<usize>,
    /// Value of FLOTILLA_SERVER_MODE in every run [default: local; prod with
    /// --backend aws].
    #[arg(long, env = "FLOTILLA_MODE")]
    mode: Option<String>,
    /// Cluster used when an execute request names none.
    #[arg(long, env = "FLOTILLA_DEFAULT_CLUSTER", default_value = "default")]
    default_cluster: String,
    /// Attempts per run after infrastructure failures, the first included.
    #[arg(long, env = "FLOTILLA_MAX_ATTEMPTS", default_value_t = 3)]
    max_attempts: u32,
    /// The most memory (MB) a run's memory may grow to after it runs out
    /// (retry policies) [default: this machine's memory].
    #[arg(long, env = "FLOTILLA_MAX_MEMORY_MB")]
    max_memory_mb: Option<u64>,
    /// Seconds between SIGTERM and SIGKILL when a run is stopped.
    #[arg(long, env = "FLOTILLA_STOP_GRACE_SECONDS", default_value_t = 10)]
    stop_grace_seconds: u64,
    /// Origins a browser may call the API from, comma-separated (CORS), e.g.
    /// http://localhost:3000; `*` allows any. Default: none.
    #[arg(long, env = "FLOTILLA_CORS_ALLOWED_ORIGINS")]
    cors_origins: Option<String>,
    /// More of the server's environment variables runs get, comma-separated
    /// or repeated. Runs get PATH, HOME, LANG, TZ and USER and no other of
    /// the server's variables.
    #[arg(long, env = "FLOTILLA_PASS_ENV", value_delimiter = ',')]
    pass_env: Vec<String>,
    /// File of bearer tokens requests need, one per line: `<token> <user>
    /// [admin]`; made with one random admin token if it does not exist.
    /// Required to listen on anything but loopback.
    #[arg(long, env = "FLOTILLA_AUTH_TOKEN_FILE")]
    auth_token_file: Option<PathBuf>,
    /// Host names requests may name besides IP addresses, localhost and this
    /// machine's name, comma-separated (`.example.com` allows its subdomains).
    #[arg(long, env = "FLOTILLA_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// File of `KEY=value` lines that runs' secrets (`value_from`) resolve
    /// from. Without it, a secret's `value_from` names a variable of the
    /// server's environment.
    #[arg(long, env = "FLOTILLA_SECRETS_FILE")]
    secrets_file: Option<PathBuf>,
    /// Where runs execute: `auto` (podman, else docker, when one answers,
    /// else `process`), `docker` or `podman` (in the run's image), or
    /// `process` (commands on this machine; images ignored).
    #[arg(long, env = "FLOTILLA_RUNTIME", value_enum, default_value_t = RuntimeArg::Auto)]
    runtime: RuntimeArg,
    /// OAuth 2.0 issuer the UI signs its users in at (authorization code
    /// with PKCE), sending the ID token it gets as its bearer token: for a
    /// server behind a gateway that checks that issuer's tokens.
    #[arg(long, env = "FLOTILLA_OAUTH_ISSUER", requires = "oauth_client_id")]
    oauth_issuer: Option<String>,
    /// The UI's client id at --oauth-issuer (a public client, no secret).
    #[arg(long, env = "FLOTILLA_OAUTH_CLIENT_ID", requires = "oauth_issuer")]
    oauth_client_id: Option<String>,
    /// Scopes the UI asks --oauth-issuer for, space-separated.
    #[arg(long, env = "FLOTILLA_OAUTH_SCOPES", default_value = shared::http::sign_in::DEFAULT_SCOPES)]
    oauth_scopes: String,
}

impl ServeArgs {
    /// How the UI signs in, from the --oauth-* options.
    fn sign_in(&self) -> shared::http::sign_in::SignIn {
        use shared::http::sign_in::{OAuthSignIn, SignIn};
        match (&self.oauth_issuer, &self.oauth_client_id) {
            (Some(issuer), Some(client_id)) => SignIn::OAuth(OAuthSignIn {
                issuer: issuer.trim_end_matches('/').to_owned(),
                client_id: client_id.clone(),
                scopes: self.oauth_scopes.clone(),
                authorization_endpoint: None,
                token_endpoint: None,
            }),
            _ => SignIn::Open,
        }
    }
}

fn supervised(attempt_dir: PathBuf) -> ExitCode {
    let code = shared::adapters::local::supervisor::supervise(attempt_dir);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
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

fn report(e: &dyn std::error::Error) -> ExitCode {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    eprintln!("flotilla serve: {message}");
    ExitCode::FAILURE
}

async fn serve_embedded(args: ServeArgs) -> ExitCode {
    let sign_in = args.sign_in();
    let mut config = ServeConfig::new(args.data_dir);
    config.listen = args.listen;
    if let Some(n) = args.parallelism {
        config.parallelism = n.max(1);
    }
    config.mode = args.mode.unwrap_or_else(|| "local".to_owned());
    config.default_cluster = args.default_cluster;
    config.max_attempts = args.max_attempts.max(1);
    config.max_memory = args.max_memory_mb.map(|m| m.max(1));
    config.stop_grace = Duration::from_secs(args.stop_grace_seconds);
    config.auth_token_file = args.auth_token_file;
    config.allowed_hosts = args.allowed_hosts;
    config.secrets_file = args.secrets_file;
    config.runtime = args.runtime.into();
    for name in args.pass_env {
        let name = name.trim().to_owned();
        if !name.is_empty() && !config.pass_env.contains(&name) {
            config.pass_env.push(name);
        }
    }
    if let Some(origins) = &args.cors_origins {
        config.http = shared::http::HttpOptions::with_cors_origins(origins);
    }
    config.http.sign_in = sign_in;
    match serve(config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

async fn serve_aws(args: ServeArgs) -> ExitCode {
    let mut config = match shared::lambda::Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!(
                "flotilla serve --backend aws: {e}: set the same FLOTILLA_* variables as the api function (see the README)"
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(mode) = args.mode {
        config.mode = mode;
    }
    config.default_cluster = args.default_cluster;
    config.max_attempts = args.max_attempts.max(1);
    if let Some(mb) = args.max_memory_mb {
        config.max_memory_mb = mb.max(1);
    }
    if let Some(origins) = &args.cors_origins {
        config.http = shared::http::HttpOptions::with_cors_origins(origins);
    }
    match shared::lambda::serve_api(&config, args.listen, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

fn main() -> ExitCode {
    // A supervisor starts once per run attempt: it skips building the whole
    // command line parser (a large share of its start-up), runs no runtime
    // and no threads, and is one small synchronous process.
    let mut args = std::env::args_os().skip(1);
    if let (Some(command), Some(dir), None) = (args.next(), args.next(), args.next())
        && command == "supervise"
    {
        return supervised(PathBuf::from(dir));
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Supervise { attempt_dir } => supervised(attempt_dir),
        Command::Serve(args) => {
            shared::telemetry::init();
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(e) => return report(&e),
            };
            runtime.block_on(async {
                match args.backend {
                    Backend::Embedded => serve_embedded(*args).await,
                    Backend::Aws => serve_aws(*args).await,
                }
            })
        }
    }
}
