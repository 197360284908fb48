//! The `flotilla` command.
//!
//! `flotilla serve` runs the whole service on one machine: the REST API, SQLite
//! storage and the local process engine (see `shared::local`). With
//! `--backend aws` it serves the same API over the AWS adapters instead (see
//! `shared::lambda::serve_api`), configured like the `api` function.
//!
//! Every other command is a client of such a server (or of the stack's API):
//! `task`, `template`, `run`, `runs`, `logs`, `status`, `stop`, `events`
//! (see [`commands`]), and `completions` for the shells.

mod client;
mod commands;
mod config;
mod follow;
mod output;
mod sigv4;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shared::adapters::local::container::RuntimeRequest;
use shared::domain::usage::PriceTable;
use shared::local::{ServeConfig, serve};

/// Flotilla: define a job once, launch runs of it, follow their state and logs.
#[derive(Debug, Parser)]
#[command(
    name = "flotilla",
    version,
    about,
    after_help = "Examples:
  flotilla serve                                     # the service on this machine
  flotilla task create -f examples/hello-world.json  # define a job
  flotilla run hello-flotilla -e USERNAME=ana -f     # launch it, follow its log, exit with its code
  flotilla runs --status RUNNING                     # what runs now
  flotilla logs <run id> -f                          # follow a run's log

Exit codes: a followed run's own exit code (1 when it ended without one, 130
when interrupted); otherwise 0, 1 for an error the server or the network gave,
2 for a wrong use of the command."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: GlobalArgs,
}

/// Where the client commands talk to, and how they print. Each option
/// beats its variable, which beats the profile in use (see [`config`]).
#[derive(Debug, clap::Args)]
struct GlobalArgs {
    /// The API's URL [default: the profile's, else http://127.0.0.1:5000,
    /// `flotilla serve`'s].
    #[arg(long, global = true, env = "FLOTILLA_URL")]
    server: Option<String>,
    /// A profile of the config file: a server and how to reach it
    /// [default: the file's default_profile].
    #[arg(long, global = true, env = "FLOTILLA_PROFILE")]
    profile: Option<String>,
    /// The config file [default: $XDG_CONFIG_HOME/flotilla/config.toml, else
    /// ~/.config/flotilla/config.toml].
    #[arg(long, global = true, env = "FLOTILLA_CONFIG")]
    config: Option<PathBuf>,
    /// How requests prove who sends them [default: token when a token is
    /// given, else none].
    #[arg(long, global = true, env = "FLOTILLA_AUTH", value_enum)]
    auth: Option<config::AuthKind>,
    /// A bearer token: one of `flotilla serve --auth-token-file`'s, or a JWT
    /// the stack takes.
    #[arg(long, global = true, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file of tokens (`<token> <user> [admin]` lines, as `flotilla serve
    /// --auth-token-file` makes); its first token is sent.
    #[arg(long, global = true, env = "FLOTILLA_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// With --auth iam: the region requests are signed for [default: the
    /// one in an execute-api URL, else the AWS chain's].
    #[arg(long, global = true)]
    region: Option<String>,
    /// With --auth iam: the AWS profile whose credentials sign requests
    /// [default: the AWS chain's].
    #[arg(long, global = true)]
    aws_profile: Option<String>,
    /// Output: tables for people, or the API's JSON for scripts.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = output::Format::Table)]
    output: output::Format,
    /// No colours (also when NO_COLOR is set or stdout is not a terminal).
    #[arg(long, global = true)]
    no_color: bool,
}

impl GlobalArgs {
    /// The server and credentials these options, the environment and the
    /// config file name.
    fn target(&self) -> Result<config::Target, client::CliError> {
        let home = std::env::var("HOME").ok();
        let (path, required) = match &self.config {
            Some(path) => (Some(path.clone()), true),
            None => (
                config::default_path(
                    std::env::var("XDG_CONFIG_HOME").ok().as_deref(),
                    home.as_deref(),
                ),
                false,
            ),
        };
        let file = match &path {
            Some(path) => config::read(path, required)?.map(|file| (path.as_path(), file)),
            None => None,
        };
        let given = config::Given {
            config: path.clone(),
            profile: self.profile.clone(),
            settings: config::Profile {
                server: self.server.clone(),
                auth: self.auth,
                token: self.token.clone(),
                token_file: self.token_file.clone(),
                region: self.region.clone(),
                aws_profile: self.aws_profile.clone(),
                owner: None,
            },
        };
        config::resolve(given, file, home.as_deref())
    }
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
    /// Job definitions: ls, show, create, update, rm.
    Task {
        #[command(subcommand)]
        command: commands::TaskCommand,
    },
    /// Templates (parameterised jobs): ls, show, create.
    Template {
        #[command(subcommand)]
        command: commands::TemplateCommand,
    },
    /// Launch a run of a definition (or of a template), and follow it with -f.
    Run(Box<commands::RunArgs>),
    /// List runs, newest first, by status, alias, owner and time.
    Runs(commands::RunsArgs),
    /// Print a run's log; -f follows it to the end and exits with its code.
    Logs {
        /// The run.
        run_id: String,
        /// Follow the log as it grows, until the run ends.
        #[arg(short = 'f', long)]
        follow: bool,
        /// With -f: on Ctrl-C, stop the run without asking.
        #[arg(long, requires = "follow")]
        stop_on_interrupt: bool,
    },
    /// Show a run's status; --wait waits for its end and exits with its code.
    Status {
        /// The run.
        run_id: String,
        /// Wait until the run has ended.
        #[arg(long)]
        wait: bool,
    },
    /// Stop a run.
    Stop {
        /// The run.
        run_id: String,
    },
    /// Show a run's timeline: queued, launched, waits, started, stopped, retries.
    Events {
        /// The run.
        run_id: String,
    },
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
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
    /// US dollars per vCPU-hour a run's estimated cost counts (its requested
    /// cpu for the time it ran). Default 0.
    #[arg(
        long,
        env = "FLOTILLA_PRICE_VCPU_HOUR",
        default_value_t = 0.0,
        conflicts_with = "prices"
    )]
    price_vcpu_hour: f64,
    /// US dollars per GB-hour of requested memory a run's estimated cost
    /// counts. Default 0.
    #[arg(
        long,
        env = "FLOTILLA_PRICE_GB_HOUR",
        default_value_t = 0.0,
        conflicts_with = "prices"
    )]
    price_gb_hour: f64,
    /// A price table (JSON: `source` and `rates` by region, arch and
    /// capacity) instead of the two flat rates; runs here are priced as the
    /// region `local`.
    #[arg(long, env = "FLOTILLA_PRICES")]
    prices: Option<PathBuf>,
    /// URL a JSON alert is posted to when a run runs longer than its job
    /// usually takes (the shape of the AWS stack's "Flotilla Run Running
    /// Long" event).
    #[arg(long, env = "FLOTILLA_ALERT_WEBHOOK", value_parser = webhook_url)]
    alert_webhook: Option<String>,
    /// A run is flagged as running long only once it has run this long,
    /// whatever its job usually takes.
    #[arg(long, env = "FLOTILLA_LONG_RUN_MINIMUM_SECONDS", default_value_t = 300)]
    long_run_minimum_seconds: u64,
}

/// An http or https URL.
fn webhook_url(value: &str) -> Result<String, String> {
    let lower = value.to_ascii_lowercase();
    if (lower.starts_with("http://") || lower.starts_with("https://"))
        && value.len() > "https://".len()
    {
        Ok(value.to_owned())
    } else {
        Err(format!("{value:?} is not an http:// or https:// URL"))
    }
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
    eprintln!("flotilla serve: {}", client::chain(e));
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
    config.prices = match &args.prices {
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| PriceTable::parse(&text).map_err(|e| e.to_string()))
        {
            Ok(table) => table,
            Err(e) => {
                eprintln!("flotilla serve: --prices {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => {
            let rates = [
                ("--price-vcpu-hour", args.price_vcpu_hour),
                ("--price-gb-hour", args.price_gb_hour),
            ];
            if let Some((name, value)) = rates.iter().find(|(_, v)| !v.is_finite() || *v < 0.0) {
                eprintln!(
                    "flotilla serve: {name} is {value}; a rate is a number of dollars, 0 or more"
                );
                return ExitCode::from(2);
            }
            PriceTable::flat(args.price_vcpu_hour, args.price_gb_hour)
        }
    };
    config.alert_webhook = args.alert_webhook;
    config.long_run_minimum = Duration::from_secs(args.long_run_minimum_seconds);
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
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "flotilla", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Serve(args) => {
            shared::telemetry::init();
            // The alert webhook's client (reqwest over rustls) takes the
            // process's crypto provider: ring, as everywhere here.
            let _ = rustls::crypto::ring::default_provider().install_default();
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
        command => client_command(command, cli.global),
    }
}

/// Runs a command that is a client of the API.
fn client_command(command: Command, global: GlobalArgs) -> ExitCode {
    let outcome = (|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| client::CliError::Transport(format!("cannot start: {e}")))?;
        // reqwest's rustls takes the process's crypto provider: ring, as
        // the AWS SDK's. Installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let target = global.target()?;
        let out = output::Out::new(global.output, global.no_color);
        runtime.block_on(async {
            let client = client::Client::new(target).await?;
            match command {
                Command::Task { command } => commands::task(&client, out, command).await,
                Command::Template { command } => commands::template(&client, out, command).await,
                Command::Run(args) => commands::run(&client, out, *args).await,
                Command::Runs(args) => commands::runs(&client, out, args).await,
                Command::Logs {
                    run_id,
                    follow,
                    stop_on_interrupt,
                } => commands::logs(&client, &run_id, follow, stop_on_interrupt).await,
                Command::Status { run_id, wait } => {
                    commands::status(&client, out, &run_id, wait).await
                }
                Command::Stop { run_id } => commands::stop(&client, out, &run_id).await,
                Command::Events { run_id } => commands::events(&client, out, &run_id).await,
                Command::Serve(_) | Command::Supervise { .. } | Command::Completions { .. } => {
                    Ok(0)
                }
            }
        })
    })();
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            for line in e.lines() {
                eprintln!("flotilla: {line}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
