//! The test harness: starts the real `flotilla serve` binary on a free loopback
//! port with its own data directory, and talks to it over HTTP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use flotilla_tests::{flotilla_bin, free_port};

/// A running `flotilla serve`.
pub struct Server {
    child: Option<Child>,
    /// Base URL, e.g. `http://127.0.0.1:5123`.
    pub base: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    port: u16,
    parallelism: usize,
    extra_args: Vec<String>,
    extra_env: Vec<(String, String)>,
    log_path: PathBuf,
    http: reqwest::Client,
}

impl Server {
    /// Starts a server with `parallelism` and waits until it answers.
    pub async fn start(data_dir: &Path, parallelism: usize) -> Self {
        Self::start_with(data_dir, parallelism, &[]).await
    }

    /// [`Server::start`] with more `flotilla serve` arguments.
    pub async fn start_with(data_dir: &Path, parallelism: usize, args: &[&str]) -> Self {
        Self::start_with_env(data_dir, parallelism, args, &[]).await
    }

    /// [`Server::start_with`], the server's environment holding `env` too.
    pub async fn start_with_env(
        data_dir: &Path,
        parallelism: usize,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut server = Self {
            child: None,
            base: String::new(),
            data_dir: data_dir.to_owned(),
            port: free_port(),
            parallelism,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            extra_env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            log_path: data_dir.with_extension("server.log"),
            http: flotilla_tests::http_client(),
        };
        server.base = format!("http://127.0.0.1:{}", server.port);
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        self.spawn_process();
        self.wait_until_serving().await;
    }

    /// Kills the server with SIGKILL and starts it again without waiting
    /// until it serves (so that the next kill may land during its recovery).
    pub fn restart_without_waiting(&mut self) {
        self.kill9();
        self.spawn_process();
    }

    /// Waits until the server answers its health route.
    pub async fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.http.get(self.url("/api/v6/health")).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("flotilla serve exited with {status}: {}", self.server_log());
            }
            assert!(
                Instant::now() < deadline,
                "flotilla serve did not answer within 30 s: {}",
                self.server_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn spawn_process(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("{e}"));
        let err = log.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(flotilla_bin())
            .args(["serve", "--listen"])
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--parallelism", &self.parallelism.to_string()])
            .args(["--stop-grace-seconds", "2"])
            // Runs are host commands unless a test asks for a container
            // runtime, whatever this machine has installed.
            .args(
                (!self.extra_args.iter().any(|a| a.starts_with("--runtime")))
                    .then_some(["--runtime", "process"])
                    .into_iter()
                    .flatten(),
            )
            .args(&self.extra_args)
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("could not start flotilla serve: {e}"));
        self.child = Some(child);
    }

    /// The token attempt `attempt` of `run_id` was given (as
    /// `FLOTILLA_RUN_TOKEN`), read from the environment of its running
    /// process, as the run itself reads it. A run is RUNNING once its
    /// supervisor has started, a moment before the supervisor starts the
    /// command: this waits (up to a minute) for the command's process.
    pub async fn run_token(&self, run_id: &str, attempt: u32) -> String {
        let attempt = attempt.to_string();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(token) = token_of(run_id, &attempt) {
                return token;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no running process of {run_id} attempt {attempt} holds a token"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// PUT a self-report for `run_id`, with `token` when given.
    pub async fn report(&self, run_id: &str, body: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .put(self.url(&format!("/api/v6/{run_id}/status")))
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.header("X-Flotilla-Run-Token", token);
        }
        json_of(request.send().await.unwrap_or_else(|e| panic!("{e}"))).await
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the server printed so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Kills the server with SIGKILL (no clean-up of any kind).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// The HTTP client, for requests the helpers do not cover.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A full URL.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends each body of `cases` to `method path` and asserts it is a 400
    /// whose `error` holds the case's text.
    pub async fn assert_refused<'a>(
        &self,
        method: reqwest::Method,
        path: &str,
        cases: impl IntoIterator<Item = (Value, &'a str)>,
    ) {
        for (body, needle) in cases {
            let (status, answer) = self.send(method.clone(), path, &body.to_string()).await;
            assert_eq!(status, 400, "{needle}: {answer}");
            let error = answer["error"].as_str().unwrap_or_default();
            assert!(error.contains(needle), "{needle}: {answer}");
        }
    }

    /// GET, returning status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        json_of(r).await
    }

    /// GET, returning status and the body as text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// Sends `body` as raw bytes with `curl -d`'s Content-Type, as the quick-start does.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: &str) -> (u16, Value) {
        let r = self
            .http
            .request(method, self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        json_of(r).await
    }

    /// DELETE with extra headers.
    pub async fn delete(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self.http.delete(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        json_of(req.send().await.unwrap_or_else(|e| panic!("{e}"))).await
    }

    /// Creates a definition and returns it.
    pub async fn define(&self, alias: &str, command: &str) -> Value {
        let body = json!({"alias": alias, "group_name": "tests", "image": "ubuntu:latest", "command": command});
        let (status, def) = self
            .send(reqwest::Method::POST, "/api/v6/task", &body.to_string())
            .await;
        assert_eq!(status, 200, "{def}");
        def
    }

    /// Executes a definition by alias with extra body fields, returning the run.
    pub async fn execute(&self, alias: &str, extra: Value) -> Value {
        let mut body = json!({"run_tags": {"owner_id": "tester"}});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let path = format!("/api/v6/task/alias/{alias}/execute");
        let (status, run) = self
            .send(reqwest::Method::PUT, &path, &body.to_string())
            .await;
        assert_eq!(status, 200, "{run}");
        run
    }

    /// Polls a run until `done` holds, recording every status seen.
    pub async fn wait_for(
        &self,
        run_id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> (Value, Vec<String>) {
        self.wait_within(run_id, what, Duration::from_secs(30), done)
            .await
    }

    /// Polls a run until `done` holds, for at most `bound` (more than
    /// [`Self::wait_for`]'s 30 s where a run waits for a retry sweep or a
    /// container runtime), recording every status seen.
    pub async fn wait_within(
        &self,
        run_id: &str,
        what: &str,
        bound: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> (Value, Vec<String>) {
        let deadline = Instant::now() + bound;
        let mut seen: Vec<String> = Vec::new();
        loop {
            let (status, run) = self.get(&format!("/api/v6/history/{run_id}")).await;
            assert_eq!(status, 200, "{run}");
            let s = run["status"].as_str().unwrap_or_default().to_owned();
            if seen.last() != Some(&s) {
                seen.push(s);
            }
            if done(&run) {
                return (run, seen);
            }
            assert!(
                Instant::now() < deadline,
                "run {run_id} did not become {what} within {} s: {run}\n{}",
                bound.as_secs(),
                self.server_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until the run is STOPPED.
    pub async fn wait_stopped(&self, run_id: &str) -> (Value, Vec<String>) {
        self.wait_for(run_id, "STOPPED", |r| r["status"] == "STOPPED")
            .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A graceful stop, so the runs it started are stopped too.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Whether a process exists and is not a zombie waiting to be reaped.
pub fn process_exists(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

/// Polls `cond` for up to 10 s.
pub async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Live processes (not zombies) whose environment holds `NAME=value`.
/// The `FLOTILLA_RUN_TOKEN` of a running process of `run_id`'s attempt
/// `attempt`, if one has started.
fn token_of(run_id: &str, attempt: &str) -> Option<String> {
    processes_with_env("FLOTILLA_RUN_ID", run_id)
        .into_iter()
        .find_map(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let vars: Vec<String> = environ
                .split(|b| *b == 0)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            let of_attempt = vars
                .iter()
                .any(|v| v.strip_prefix("FLOTILLA_RUN_ATTEMPT=") == Some(attempt));
            vars.iter()
                .find_map(|v| v.strip_prefix("FLOTILLA_RUN_TOKEN=").map(str::to_owned))
                .filter(|_| of_attempt)
        })
}

pub fn processes_with_env(name: &str, value: &str) -> Vec<String> {
    let wanted = format!("{name}={value}").into_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| process_exists(pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == wanted.as_slice()))
        })
        .collect()
}
