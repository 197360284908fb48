//! The `flotilla serve` runtime: the whole service in one process, with no AWS.
//!
//! It wires the embedded adapters (SQLite, the local engine, local log files)
//! into the same [`App`] and [`router`](crate::http::router) the Lambda functions use, and runs the
//! two loops that replace SQS, EventBridge and the scheduled retry function:
//!
//! - the driver takes tickets off the SQLite queue (round-robin over clusters,
//!   passing over clusters at their `max_concurrency`) while fewer than
//!   `parallelism` processes run, submits them, and records
//!   every update the engine reports. Updates and submissions go through this
//!   one loop, so a run's events are always recorded in the order they happened;
//! - the retry sweep queues NEEDS_RETRY runs again and re-enqueues QUEUED runs
//!   whose ticket was lost.
//!
//! Every attempt runs under a supervisor that outlives this process (see
//! [`crate::adapters::local`]). At start-up, each run a previous process left
//! PENDING or RUNNING is launched again, which re-attaches to its supervisor:
//! a run still running is followed to its end, one that ended while the
//! server was down reports its real exit code, and one whose supervisor never
//! started is started, once. QUEUED runs simply wait their turn. On a
//! graceful shutdown (Ctrl-C, SIGTERM) running runs are stopped the same way a
//! user stops them.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::adapters::local::{LocalEngine, LocalLogs};
use crate::adapters::sqlite::{ClaimedTicket, SqliteStore};
use crate::app::{App, AppSettings, RunTokens, Runtime, SubmitOutcome};
use crate::domain::launch::DEFAULT_OWNER_VAR;
use crate::domain::query::RunQuery;
use crate::domain::run::RunStatus;
use crate::domain::spec::Engine;
use crate::error::StoreError;
use crate::http::router_with;
use crate::ports::{Clock, EngineUpdate, SystemClock};

/// Who stops running runs on a graceful shutdown.
pub const SHUTDOWN_STOPPER: &str = "flotilla serve shutting down";

/// Settings of `flotilla serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the database, run directories and logs live.
    pub data_dir: PathBuf,
    /// Runs executing at once.
    pub parallelism: usize,
    /// Value of `FLOTILLA_SERVER_MODE`.
    pub mode: String,
    /// Cluster used when an execute request names none.
    pub default_cluster: String,
    /// Attempts per run, the first included.
    pub max_attempts: u32,
    /// The most memory (MB) a run's memory may grow to after running out;
    /// the machine's memory when absent.
    pub max_memory: Option<u64>,
    /// Time between SIGTERM and SIGKILL when a run is stopped.
    pub stop_grace: Duration,
    /// Time between retry sweeps.
    pub retry_interval: Duration,
    /// Age after which a QUEUED run's ticket is enqueued again.
    pub requeue_after: Duration,
    /// The HTTP edge (CORS).
    pub http: crate::http::HttpOptions,
    /// The command that supervises one attempt, before the attempt's
    /// directory: `flotilla-supervise` beside the running binary, else the
    /// running binary's `supervise` command.
    pub supervisor: Vec<std::ffi::OsString>,
    /// The server's variables runs get (none other of its environment).
    pub pass_env: Vec<String>,
    /// The bearer tokens requests need; required to listen beyond loopback.
    pub auth_token_file: Option<PathBuf>,
    /// Host names requests may carry besides addresses, `localhost` and this
    /// machine's name.
    pub allowed_hosts: Vec<String>,
    /// `KEY=value` lines runs' secrets resolve from (else the server's
    /// environment).
    pub secrets_file: Option<PathBuf>,
    /// Where runs execute: in their image with docker or podman, or as
    /// host processes.
    pub runtime: crate::adapters::local::container::RuntimeRequest,
    /// The rates runs' costs are estimated at (a flat 0 unless set).
    pub prices: crate::domain::usage::PriceTable,
    /// A run is flagged as running long only past this.
    pub long_run_minimum: Duration,
    /// Where alerts (a run running long) are posted as JSON, if anywhere.
    pub alert_webhook: Option<String>,
}

impl ServeConfig {
    /// Defaults for `data_dir`: 127.0.0.1:5000, one run per core.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            data_dir,
            parallelism: std::thread::available_parallelism().map_or(2, |n| n.get()),
            mode: "local".to_owned(),
            default_cluster: "default".to_owned(),
            max_attempts: 3,
            max_memory: None,
            stop_grace: Duration::from_secs(10),
            retry_interval: Duration::from_secs(5),
            requeue_after: Duration::from_secs(60),
            http: crate::http::HttpOptions::default(),
            supervisor: default_supervisor(),
            pass_env: crate::adapters::local::DEFAULT_PASS_ENV
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            auth_token_file: None,
            allowed_hosts: Vec::new(),
            secrets_file: None,
            runtime: crate::adapters::local::container::RuntimeRequest::Auto,
            prices: crate::domain::usage::PriceTable::flat(0.0, 0.0),
            long_run_minimum: Duration::from_secs(
                60 * crate::domain::learning::LONG_RUN_MINIMUM_MINUTES as u64,
            ),
            alert_webhook: None,
        }
    }
}

/// `flotilla-supervise` beside the running binary when it is there (it starts
/// faster), else `<this binary> supervise`.
fn default_supervisor() -> Vec<std::ffi::OsString> {
    let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("flotilla"));
    let sibling = me.with_file_name("flotilla-supervise");
    if sibling.is_file() {
        vec![sibling.into_os_string()]
    } else {
        vec![me.into_os_string(), "supervise".into()]
    }
}

/// Why `flotilla serve` could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another `flotilla serve` holds the data directory.
    #[error("{0} is in use by another flotilla serve: stop it, or pass a different --data-dir")]
    DataDirInUse(PathBuf),
    /// A file-system step failed.
    #[error("could not {what} {path}")]
    Io {
        /// The step.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The listen address is unusable.
    #[error(
        "could not listen on {addr}: is another server using it? pass --listen to choose another address"
    )]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The database failed.
    #[error("the database failed")]
    Store(#[from] StoreError),
    /// The container runtime asked for does not answer.
    #[error("{0}; install it, start it, or pass --runtime auto (or process)")]
    Runtime(String),
    /// It would listen beyond loopback with nobody's identity asked.
    #[error(
        "listening on {0} would let anyone who can reach it run commands as this user: pass --auth-token-file <file> (a token is made in it if it does not exist yet), or listen on 127.0.0.1"
    )]
    Unprotected(SocketAddr),
    /// The UI would sign in at an issuer whose tokens this server refuses.
    #[error(
        "--oauth-issuer is for a server behind a gateway that checks the issuer's tokens, and a server with --auth-token-file takes only its own tokens: pass one of the two"
    )]
    SignInConflict,
    /// The token file cannot be used.
    #[error(transparent)]
    Tokens(#[from] crate::http::access::TokenFileError),
}

/// Runs the service until `shutdown` completes.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let io = |what, path: &PathBuf| {
        let path = path.clone();
        move |source| ServeError::Io { what, path, source }
    };
    let http = access_of(&config)?;
    std::fs::create_dir_all(&config.data_dir).map_err(io("create", &config.data_dir))?;
    let lock_path = config.data_dir.join("flotilla.lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("open", &lock_path))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| ServeError::DataDirInUse(config.data_dir.clone()))?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = SqliteStore::open(&config.data_dir.join("flotilla.db"), Arc::clone(&clock))?;
    let runs_dir = config.data_dir.join("runs");
    let choice = crate::adapters::local::container::choose(config.runtime)
        .await
        .map_err(ServeError::Runtime)?;
    info!(runtime = %choice.runtime.as_ref().map_or("process", |r| r.kind.program()), "runs execute {}", choice.why);
    let (updates_tx, updates_rx) = mpsc::unbounded_channel();
    let engine = Arc::new(
        LocalEngine::new(
            runs_dir.clone(),
            config.stop_grace,
            updates_tx,
            Arc::clone(&clock),
            config.supervisor.clone(),
        )
        .passing_env(&config.pass_env)
        .with_container_runtime(choice.runtime)
        .with_secrets(match &config.secrets_file {
            Some(path) => Some(crate::adapters::local::parse_secrets(
                &std::fs::read_to_string(path).map_err(io("read the secrets file", path))?,
            )),
            None => None,
        }),
    );
    let tokens = run_tokens(&config.data_dir.join("run-token.key"))?;
    let runtime = Runtime {
        queue: Arc::new(store.clone()),
        engine: engine.clone(),
        logs: Arc::new(LocalLogs::new(runs_dir)),
        clock: clock.clone(),
        publisher: config.alert_webhook.as_ref().map(|url| {
            Arc::new(crate::adapters::local::webhook::AlertWebhook::new(
                url.clone(),
                clock.clone(),
            )) as Arc<dyn crate::ports::EventPublisher>
        }),
        tokens: Some(tokens),
    };
    let settings = AppSettings {
        engine: Engine::Local,
        server_mode: config.mode.clone(),
        owner_var: DEFAULT_OWNER_VAR.to_owned(),
        default_cluster: config.default_cluster.clone(),
        requires_command: true,
        max_attempts: config.max_attempts,
        max_memory: Some(config.max_memory.unwrap_or_else(machine_memory_mb)),
        clusters: vec![],
        add_cluster_hint: String::new(),
        launch_limits: crate::domain::limits::LaunchLimits::Local,
        parallelism: Some(config.parallelism.max(1)),
        kubernetes_clusters: false,
        prices: config.prices.clone(),
        region: "local".to_owned(),
        long_run_minimum: chrono::Duration::from_std(config.long_run_minimum)
            .unwrap_or(chrono::Duration::MAX),
    };
    let app = Arc::new(App::new(Arc::new(store.clone()), runtime, settings));

    recover(&app, &engine, &store).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let driver = tokio::spawn(drive(
        Arc::clone(&app),
        store.clone(),
        Arc::clone(&engine),
        updates_rx,
        config.parallelism.max(1),
        stop_rx.clone(),
    ));
    let sweeper = tokio::spawn(sweep(
        Arc::clone(&app),
        config.retry_interval,
        config.requeue_after,
        stop_rx.clone(),
    ));
    let scheduler = tokio::spawn(schedule_loop(Arc::clone(&app), stop_rx));

    info!(
        address = %local_addr,
        data_dir = %config.data_dir.display(),
        parallelism = config.parallelism,
        "flotilla serve is listening"
    );
    let served = axum::serve(listener, router_with(Arc::clone(&app), &http))
        .with_graceful_shutdown(shutdown)
        .await;

    info!("shutting down: stopping running runs");
    for (run_id, _) in engine.live_tasks() {
        if let Err(e) = app.stop(&run_id, SHUTDOWN_STOPPER).await {
            warn!(run_id = %run_id, error = %e, "could not stop a run at shutdown");
        }
    }
    let _ = stop_tx.send(true);
    let _ = driver.await;
    let _ = sweeper.await;
    let _ = scheduler.await;
    served.map_err(|source| ServeError::Io {
        what: "serve HTTP on",
        path: PathBuf::from(local_addr.to_string()),
        source,
    })
}

/// The HTTP edge's options with who may call: tokens (required beyond
/// loopback), the host names requests may carry, and same-origin changes.
fn access_of(config: &ServeConfig) -> Result<crate::http::HttpOptions, ServeError> {
    use crate::http::access::{Access, HostRule, TokenTable};
    let oauth = matches!(config.http.sign_in, crate::http::sign_in::SignIn::OAuth(_));
    let tokens = match &config.auth_token_file {
        Some(_) if oauth => return Err(ServeError::SignInConflict),
        Some(path) => {
            let user = std::env::var("USER").unwrap_or_default();
            let (table, made) = TokenTable::load_or_create(path, &user)?;
            if made {
                info!(path = %path.display(), "made a token file: send its token as Authorization: Bearer <token>");
            }
            info!(path = %path.display(), "requests need a token from the token file");
            Some(Arc::new(table))
        }
        None if !config.listen.ip().is_loopback() => {
            return Err(ServeError::Unprotected(config.listen));
        }
        None => None,
    };
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok());
    let mut http = config.http.clone();
    http.access = Access {
        tokens,
        hosts: Some(HostRule::new(
            config.allowed_hosts.iter().cloned().chain(hostname),
        )),
        check_origin: true,
    };
    Ok(http)
}

/// The key of the run tokens, in `path` (0600), made with 32 random bytes
/// on the first start.
fn run_tokens(path: &std::path::Path) -> Result<RunTokens, ServeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |what, source| ServeError::Io {
        what,
        path: path.to_owned(),
        source,
    };
    let key = match std::fs::read(path) {
        Ok(key) if key.len() >= 32 => key,
        Ok(_) | Err(_) => {
            let mut key = vec![0u8; 32];
            getrandom::fill(&mut key)
                .map_err(|e| io("make a key for", std::io::Error::other(e.to_string())))?;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| io("create", e))?;
            file.write_all(&key).map_err(|e| io("write", e))?;
            file.sync_all().map_err(|e| io("write", e))?;
            key
        }
    };
    RunTokens::new(&key).map_err(|e| io("read the key in", std::io::Error::other(e)))
}

/// Start-up reconciliation after a crash or kill: every in-flight run is
/// launched again, which re-attaches to its attempt (see the module docs);
/// claims are released, and every QUEUED run gets its ticket back.
async fn recover(app: &App, engine: &LocalEngine, store: &SqliteStore) -> Result<(), ServeError> {
    use crate::ports::ExecutionEngine;
    let in_flight = app
        .list_runs(&RunQuery {
            statuses: vec![RunStatus::Pending, RunStatus::Running],
            paging: crate::domain::query::Paging {
                limit: crate::domain::query::MAX_LIMIT,
                offset: 0,
            },
            ..RunQuery::default()
        })
        .await
        .map_err(app_store_error)?;
    for run in in_flight.items {
        let run_id = &run.spec.run_id;
        match engine.launch(&app.launch_spec(&run)).await {
            Ok(launched) => {
                info!(run_id = %run_id, attempt = run.attempt, task_id = %launched.task_id, "re-attached to a run left in flight");
                // A stop asked for just before the crash may not have reached
                // the attempt: ask again (a stop is idempotent).
                if run.stop_requested_by.is_some()
                    && let Err(e) = engine
                        .stop(&run.spec.cluster, run_id, &launched.task_id)
                        .await
                {
                    warn!(run_id = %run_id, error = %e, "could not stop a run left in flight");
                }
            }
            Err(e) => {
                warn!(run_id = %run_id, error = %e, "could not re-attach to a run left in flight; it is stopped");
                app.abandon(
                    run_id,
                    &format!("flotilla serve restarted and could not follow this run: {e}"),
                )
                .await
                .map_err(app_store_error)?;
            }
        }
    }
    let released = store.release_all_claims().await?;
    if released > 0 {
        info!(
            released,
            "released queue claims left by the previous server"
        );
    }
    app.retry_tick(chrono::Duration::zero())
        .await
        .map_err(app_store_error)?;
    Ok(())
}

fn app_store_error(e: crate::error::AppError) -> ServeError {
    ServeError::Store(StoreError::backend(e))
}

/// The queue consumer and engine-update recorder (see the module docs).
///
/// Tickets are launched, and updates recorded, as tasks of their own, up to
/// `parallelism` runs at once, so that no step waits for another run's
/// writes. One run has at most one such task at a time: an update that
/// arrives while its run is being launched (a command that ends at once)
/// waits for the launch to be recorded, so a run's events are always
/// recorded in the order they happened.
async fn drive(
    app: Arc<App>,
    store: SqliteStore,
    engine: Arc<LocalEngine>,
    mut updates: mpsc::UnboundedReceiver<EngineUpdate>,
    parallelism: usize,
    mut stop: watch::Receiver<bool>,
) {
    let enqueued = store.enqueued();
    let mut last_cluster: Option<String> = None;
    // A task per run being launched or updated, by task id.
    let mut jobs: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    let mut job_runs: HashMap<tokio::task::Id, String> = HashMap::new();
    // Runs with a task in `jobs`; each with the updates waiting for it.
    let mut busy: HashMap<String, VecDeque<EngineUpdate>> = HashMap::new();
    // Runs being launched, with their cluster.
    let mut launching: HashMap<String, String> = HashMap::new();
    let start_record = |jobs: &mut tokio::task::JoinSet<()>,
                        job_runs: &mut HashMap<tokio::task::Id, String>,
                        update: EngineUpdate| {
        let app = Arc::clone(&app);
        let run_id = update.run_id.clone();
        let handle = jobs.spawn(async move { record(&app, update).await });
        job_runs.insert(handle.id(), run_id);
    };
    loop {
        let stopping = *stop.borrow();
        // Runs that hold a slot: attempts the engine follows, and launches
        // in flight that the engine does not follow yet.
        let used = engine.running()
            + launching
                .keys()
                .filter(|run_id| !engine.follows(run_id))
                .count();
        if stopping && used == 0 && jobs.is_empty() {
            return;
        }
        if !stopping && used < parallelism {
            // Clusters at their cap keep their tickets until a slot is free,
            // and clusters not active until they are again. A launch in
            // flight may not hold its slot yet: it counts.
            let mut in_flight: HashMap<String, u64> = HashMap::new();
            for cluster in launching.values() {
                *in_flight.entry(cluster.clone()).or_default() += 1;
            }
            let held = match app.clusters_held(&in_flight).await {
                Ok(held) => held,
                Err(e) => {
                    error!(error = %e, "could not read the clusters' status and caps");
                    Vec::new()
                }
            };
            match store.claim(last_cluster.clone(), app.now(), &held).await {
                Ok(Some(claimed)) => {
                    last_cluster = Some(claimed.ticket.cluster.clone());
                    let run_id = claimed.ticket.run_id.clone();
                    if busy.contains_key(&run_id) {
                        // A duplicate ticket while its run is being worked on:
                        // it will be looked at again.
                        let _ = store
                            .release(claimed.seq, app.now() + chrono::Duration::seconds(1))
                            .await;
                    } else {
                        busy.insert(run_id.clone(), VecDeque::new());
                        launching.insert(run_id.clone(), claimed.ticket.cluster.clone());
                        let (app, store) = (Arc::clone(&app), store.clone());
                        let handle = jobs.spawn(async move {
                            handle_ticket(&app, &store, claimed).await;
                        });
                        job_runs.insert(handle.id(), run_id);
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => error!(error = %e, "could not read the run queue"),
            }
        }
        tokio::select! {
            Some(update) = updates.recv() => {
                match busy.get_mut(&update.run_id) {
                    Some(waiting) => waiting.push_back(update),
                    None => {
                        busy.insert(update.run_id.clone(), VecDeque::new());
                        start_record(&mut jobs, &mut job_runs, update);
                    }
                }
            }
            Some(done) = jobs.join_next_with_id() => {
                let id = match &done {
                    Ok((id, ())) => *id,
                    Err(e) => {
                        error!(error = %e, "a launch or an update failed unexpectedly");
                        e.id()
                    }
                };
                let Some(run_id) = job_runs.remove(&id) else { continue };
                launching.remove(&run_id);
                let next = busy.get_mut(&run_id).and_then(VecDeque::pop_front);
                match next {
                    Some(update) => start_record(&mut jobs, &mut job_runs, update),
                    None => {
                        busy.remove(&run_id);
                    }
                }
            }
            () = enqueued.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn record(app: &App, update: EngineUpdate) {
    let run_id = update.run_id.clone();
    if let Err(e) = app.record_engine_update(update).await {
        error!(run_id = %run_id, error = %e, "could not record an engine update");
    }
}

async fn handle_ticket(app: &App, store: &SqliteStore, claimed: ClaimedTicket) {
    let ClaimedTicket { seq, ticket } = claimed;
    let retry_in = match app.submit(&ticket).await {
        Ok(SubmitOutcome::Launched { .. } | SubmitOutcome::Skipped) => None,
        Ok(SubmitOutcome::Failed { reason }) => {
            warn!(run_id = %ticket.run_id, reason = %reason, "launch failed for good; run stopped");
            None
        }
        Ok(SubmitOutcome::Deferred { reason }) => {
            warn!(run_id = %ticket.run_id, reason = %reason, "launch deferred");
            Some(chrono::Duration::seconds(5))
        }
        // The claim passes over the cluster until it launches again.
        Ok(SubmitOutcome::Held { .. }) => Some(chrono::Duration::zero()),
        Err(e) => {
            error!(run_id = %ticket.run_id, error = %e, "submit failed; the ticket will be tried again");
            Some(chrono::Duration::seconds(1))
        }
    };
    let done = match retry_in {
        None => store.ack(seq).await,
        Some(delay) => store.release(seq, app.now() + delay).await,
    };
    if let Err(e) = done {
        error!(run_id = %ticket.run_id, error = %e, "could not update the run queue");
    }
}

/// The retry sweep, every `interval`.
async fn sweep(
    app: Arc<App>,
    interval: Duration,
    requeue_after: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let requeue_after = chrono::Duration::from_std(requeue_after).unwrap_or(chrono::Duration::MAX);
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        match app.retry_tick(requeue_after).await {
            Ok(outcome) => {
                if !(outcome.requeued.is_empty() && outcome.gave_up.is_empty()) {
                    info!(requeued = ?outcome.requeued, gave_up = ?outcome.gave_up, "retry sweep");
                }
            }
            Err(e) => error!(error = %e, "retry sweep failed"),
        }
        match app.flag_long_runs().await {
            Ok((flagged, failed)) => {
                if !flagged.is_empty() {
                    info!(flagged = ?flagged, "runs running longer than usual");
                }
                if !failed.is_empty() {
                    warn!(failed = ?failed, "could not look at every running run's usual duration");
                }
            }
            Err(e) => error!(error = %e, "the running-long sweep failed"),
        }
    }
}

/// How often the scheduler looks for due schedules: a schedule's cron may
/// name seconds.
const SCHEDULER_TICK: Duration = Duration::from_secs(1);

/// The scheduler: fires the due schedules every [`SCHEDULER_TICK`].
async fn schedule_loop(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(SCHEDULER_TICK) => {}
            _ = stop.changed() => return,
        }
        match app.fire_due_schedules().await {
            Ok(outcome) => {
                if !outcome.fired.is_empty() {
                    info!(fired = ?outcome.fired, "schedules fired");
                }
                if !outcome.refused.is_empty() {
                    warn!(refused = ?outcome.refused, "scheduled fires launched no run");
                }
            }
            Err(e) => error!(error = %e, "the scheduler could not read the schedules"),
        }
    }
}

/// This machine's memory in MB (`MemTotal` of `/proc/meminfo`): the cap of
/// a run's memory growth when the server is given none. A machine that does
/// not say gets no lower cap than a terabyte.
fn machine_memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(1 << 20, |kb| (kb / 1024).max(1))
}
