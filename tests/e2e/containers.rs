//! Runs in their image, with the real `flotilla serve --runtime podman` and
//! the real podman (installed, configured and given its test images by
//! `scripts/podman-env`, which `scripts/test` sources). No image comes from a
//! registry: the images are built offline, and the registries a pull meets
//! are a stub on a loopback port that answers as a registry does for an
//! image it does not have.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, free_port};

fn image(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run scripts/test, or `source scripts/podman-env` first")
    })
}

fn bash_image() -> String {
    image("FLOTILLA_TEST_IMAGE_BASH")
}

async fn podman_server(dir: &tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut all = vec!["--runtime", "podman"];
    all.extend_from_slice(args);
    Server::start_with_env(&dir.path().join("data"), 2, &all, env).await
}

async fn define(server: &Server, body: Value) {
    let (status, def) = server
        .send(Method::POST, "/api/v6/task", &body.to_string())
        .await;
    assert_eq!(status, 200, "{def}");
}

async fn launch(server: &Server, alias: &str, extra: Value) -> String {
    let run = server.execute(alias, extra).await;
    run["run_id"].as_str().unwrap_or_default().to_owned()
}

/// Polls a run for up to two minutes (pulls and retries take a while on a
/// busy machine) until `done` holds.
async fn wait_long(server: &Server, run_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    server
        .wait_within(
            run_id,
            "what the test waits for",
            Duration::from_secs(120),
            done,
        )
        .await
        .0
}

async fn stopped(server: &Server, run_id: &str) -> Value {
    wait_long(server, run_id, |r| r["status"] == "STOPPED").await
}

/// The run's timeline as `reason: message` lines.
async fn timeline(server: &Server, run_id: &str) -> Vec<String> {
    let (_, events) = server.get(&format!("/api/v6/{run_id}/events")).await;
    events["pod_events"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e["reason"].as_str().unwrap_or_default(),
                        e["message"].as_str().unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn log_of(server: &Server, run_id: &str) -> String {
    server
        .get_text(&format!("/api/v6/{run_id}/logs?raw_text=true"))
        .await
        .1
}

/// Containers (any state) podman holds for `run_id`, found by label.
fn containers_of(run_id: &str) -> Vec<String> {
    let out = Command::new("podman")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label=flotilla.run_id={run_id}"))
        .output()
        .unwrap_or_else(|e| panic!("podman ps: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
#[ignore = "needs podman and the test images: scripts/test sources scripts/podman-env"]
async fn a_run_executes_in_its_image_with_its_env_and_secrets_and_returns_its_exit_code() {
    assert!(
        !std::path::Path::new("/etc/only-in-image").exists(),
        "the file must exist only in the image"
    );
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let secrets = dir.path().join("secrets");
    std::fs::write(&secrets, "team/key=s3cr3t-value-42\n").unwrap_or_else(|e| panic!("{e}"));
    let file = secrets.to_string_lossy().into_owned();
    let server = podman_server(&dir, &["--secrets-file", &file], &[]).await;
    define(
        &server,
        json!({
            "alias": "in-image", "group_name": "tests", "image": bash_image(),
            "memory": 128, "cpu": 512,
            "env": [{"name": "GREETING", "value": "hello from the definition"}],
            "secrets": [{"name": "API_KEY", "value_from": "team/key"}],
            "command": "cat /etc/only-in-image && echo \"$GREETING\" && test \"$API_KEY\" = s3cr3t-value-42 && echo \"run $FLOTILLA_RUN_ID\" && exit 7",
        }),
    )
    .await;
    let run_id = launch(&server, "in-image", json!({})).await;
    let ended = stopped(&server, &run_id).await;
    assert_eq!(ended["exit_code"], 7, "{ended}");
    let log = log_of(&server, &run_id).await;
    for line in [
        "this file exists only in the image",
        "hello from the definition",
        &format!("run {run_id}"),
    ] {
        assert!(log.contains(line), "{line:?} in the log: {log}");
    }
    assert!(!log.contains("s3cr3t"), "{log}");
    let timeline = timeline(&server, &run_id).await;
    let at = |prefix: &str| {
        timeline
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} in {timeline:#?}"))
    };
    assert!(at("RunSubmitted") < at("RunPreparing"), "{timeline:#?}");
    assert!(at("RunPreparing") < at("RunStarted"), "{timeline:#?}");
    assert!(
        timeline.iter().any(|l| l.contains("is on this machine")),
        "{timeline:#?}"
    );
    assert!(
        timeline
            .iter()
            .any(|l| l.contains("memory limited to 128 MB") && l.contains("0.50 cpus")),
        "{timeline:#?}"
    );
    assert!(
        containers_of(&run_id).is_empty(),
        "the ended container is removed"
    );
}

#[tokio::test]
#[ignore = "needs podman and the test images: scripts/test sources scripts/podman-env"]
async fn a_container_that_outgrows_its_memory_stops_with_the_out_of_memory_reason() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = podman_server(&dir, &[], &[]).await;
    define(
        &server,
        json!({
            "alias": "greedy", "group_name": "tests", "image": bash_image(), "memory": 64,
            // dd holds a 200 MB block in memory.
            "command": "dd if=/dev/zero of=/dev/null bs=200M count=1",
        }),
    )
    .await;
    let run_id = launch(&server, "greedy", json!({})).await;
    let ended = stopped(&server, &run_id).await;
    assert_eq!(ended["exit_code"], 137, "{ended}");
    assert_eq!(
        ended["exit_reason"], "out of memory (limit 64 MB)",
        "{ended}"
    );
    let here = std::env::current_dir().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !here.join("oom").exists(),
        "the runtime's out-of-memory marker stays out of the server's directory"
    );
}

#[tokio::test]
#[ignore = "needs podman and the test images: scripts/test sources scripts/podman-env"]
async fn a_stop_ends_the_container_within_the_grace_and_removes_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = podman_server(&dir, &[], &[]).await;
    define(
        &server,
        json!({"alias": "sleeper", "group_name": "tests", "image": bash_image(), "command": "echo up; sleep 600"}),
    )
    .await;
    let run_id = launch(&server, "sleeper", json!({})).await;
    wait_long(&server, &run_id, |r| r["status"] == "RUNNING").await;
    let definition_id = server.get(&format!("/api/v6/history/{run_id}")).await.1["definition_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let asked = Instant::now();
    let (status, answer) = server
        .delete(
            &format!("/api/v6/task/{definition_id}/history/{run_id}"),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let ended = stopped(&server, &run_id).await;
    // The grace is 2 s (the harness's --stop-grace-seconds): bash as the
    // container's first process ignores SIGTERM, so the kill ends it.
    assert!(
        asked.elapsed() < Duration::from_secs(60),
        "stopped in {:?}",
        asked.elapsed()
    );
    assert!(
        ended["exit_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("stopped by")),
        "{ended}"
    );
    assert!(
        containers_of(&run_id).is_empty(),
        "{:?}",
        containers_of(&run_id)
    );
}

#[tokio::test]
#[ignore = "needs podman and the test images: scripts/test sources scripts/podman-env"]
async fn a_killed_server_is_restarted_and_follows_the_container_to_its_real_exit_code_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut server = podman_server(&dir, &[], &[]).await;
    define(
        &server,
        json!({"alias": "steady", "group_name": "tests", "image": bash_image(), "command": "echo started; sleep 3; echo finishing; exit 5"}),
    )
    .await;
    let run_id = launch(&server, "steady", json!({})).await;
    wait_long(&server, &run_id, |r| r["status"] == "RUNNING").await;
    server.kill9();
    assert_eq!(
        containers_of(&run_id).len(),
        1,
        "the container outlives the server"
    );
    server.restart().await;
    let ended = stopped(&server, &run_id).await;
    assert_eq!(ended["exit_code"], 5, "{ended}");
    let log = log_of(&server, &run_id).await;
    assert_eq!(log.matches("started").count(), 1, "started once: {log}");
    assert!(log.contains("finishing"), "{log}");
}

#[tokio::test]
#[ignore = "needs podman and the test images: scripts/test sources scripts/podman-env"]
async fn a_server_killed_at_any_moment_of_a_container_run_runs_it_once_to_its_exit_code() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut server = podman_server(&dir, &[], &[]).await;
    define(
        &server,
        json!({"alias": "brief", "group_name": "tests", "image": bash_image(), "command": "echo started; sleep 1; exit 3"}),
    )
    .await;
    for round in 0..5u64 {
        let run_id = launch(&server, "brief", json!({})).await;
        // Anywhere from at once to well after the end, varied by the clock's
        // low bits so that every run of this test lands elsewhere too.
        let jitter = u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_micros()),
        );
        let wait = (round * 400 + jitter % 400) % 2_000;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.kill9();
        server.restart().await;
        let ended = stopped(&server, &run_id).await;
        assert_eq!(ended["exit_code"], 3, "killed after {wait} ms: {ended}");
        let log = log_of(&server, &run_id).await;
        assert_eq!(
            log.matches("started").count(),
            1,
            "killed after {wait} ms, started once: {log}"
        );
        let runs_dir = dir.path().join("data").join("runs").join(&run_id);
        assert!(
            !runs_dir.join("attempt-2.record").exists(),
            "one attempt only"
        );
    }
}

#[tokio::test]
#[ignore = "needs podman and the test images: scripts/test sources scripts/podman-env"]
async fn an_image_without_bash_stops_the_run_with_a_reason_that_says_so() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = podman_server(&dir, &[], &[]).await;
    define(
        &server,
        json!({"alias": "no-bash", "group_name": "tests", "image": image("FLOTILLA_TEST_IMAGE_BUSYBOX"), "command": "echo hi"}),
    )
    .await;
    let run_id = launch(&server, "no-bash", json!({})).await;
    let ended = stopped(&server, &run_id).await;
    assert!(
        ended["exit_reason"]
            .as_str()
            .is_some_and(|r| r.contains("has no bash") && r.contains("bash -c")),
        "{ended}"
    );
}

/// A registry on a loopback port that has no image at all: `/v2/` answers,
/// every manifest is `MANIFEST_UNKNOWN` (404), as a real registry answers
/// for a name or tag it does not hold. Returns its port.
async fn empty_registry() -> u16 {
    use axum::http::StatusCode;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let app = axum::Router::new()
        .route("/v2/", get(|| async { axum::Json(json!({})) }))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {}}]})),
            )
        });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

/// A `registries.conf` that lets podman speak plain HTTP to `port` on
/// loopback, and its path for `CONTAINERS_REGISTRIES_CONF`.
fn insecure_registries(dir: &tempfile::TempDir, ports: &[u16]) -> String {
    let path = dir.path().join("registries.conf");
    let text: String = ports
        .iter()
        .map(|p| format!("[[registry]]\nlocation = \"127.0.0.1:{p}\"\ninsecure = true\n\n"))
        .collect();
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path.to_string_lossy().into_owned()
}

#[tokio::test]
#[ignore = "needs podman and the test images: scripts/test sources scripts/podman-env"]
async fn an_image_its_registry_does_not_have_stops_the_run_with_a_reason_to_fix_its_name() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let port = empty_registry().await;
    let conf = insecure_registries(&dir, &[port]);
    let server = podman_server(&dir, &[], &[("CONTAINERS_REGISTRIES_CONF", &conf)]).await;
    let missing = format!("127.0.0.1:{port}/team/no-such-image:1.0");
    define(
        &server,
        json!({"alias": "typo", "group_name": "tests", "image": missing, "command": "echo never"}),
    )
    .await;
    let run_id = launch(&server, "typo", json!({})).await;
    let ended = stopped(&server, &run_id).await;
    let reason = ended["exit_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("was not found") && reason.contains("fix the image name"),
        "{ended}"
    );
    assert_eq!(ended["exit_code"], Value::Null, "{ended}");
    let timeline = timeline(&server, &run_id).await;
    assert!(
        timeline
            .iter()
            .any(|l| l.starts_with("RunPreparing")
                && l.contains(&format!("pulling image {missing}"))),
        "the timeline shows the pull while PENDING: {timeline:#?}"
    );
    assert!(
        !timeline.iter().any(|l| l.starts_with("RunStarted")),
        "{timeline:#?}"
    );
}

#[tokio::test]
#[ignore = "needs podman and the test images: scripts/test sources scripts/podman-env"]
async fn a_registry_that_cannot_be_reached_is_retried_as_an_infrastructure_failure() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Nothing listens there.
    let port = free_port();
    let conf = insecure_registries(&dir, &[port]);
    let server = podman_server(
        &dir,
        &["--max-attempts", "2"],
        &[("CONTAINERS_REGISTRIES_CONF", &conf)],
    )
    .await;
    define(
        &server,
        json!({"alias": "offline", "group_name": "tests", "image": format!("127.0.0.1:{port}/team/app:1"), "command": "echo never"}),
    )
    .await;
    let run_id = launch(&server, "offline", json!({})).await;
    let ended = stopped(&server, &run_id).await;
    let reason = ended["exit_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("gave up after 2 attempts") && reason.contains("could not be reached"),
        "{ended}"
    );
    let timeline = timeline(&server, &run_id).await;
    assert!(
        timeline.iter().any(|l| l.starts_with("RunNeedsRetry")),
        "{timeline:#?}"
    );
    assert!(
        timeline.iter().any(|l| l.starts_with("RunRequeued")),
        "{timeline:#?}"
    );
}

#[tokio::test]
#[ignore = "needs podman and the test images: scripts/test sources scripts/podman-env"]
async fn start_up_says_which_runtime_runs_jobs_and_a_missing_one_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start_with(&dir.path().join("auto"), 1, &["--runtime", "auto"]).await;
    let log = server.server_log();
    assert!(
        log.contains("--runtime auto found a container runtime: podman"),
        "{log}"
    );
    drop(server);
    // A PATH without podman or docker.
    let bin = flotilla_tests::flotilla_bin();
    let out = Command::new(&bin)
        .args(["serve", "--runtime", "docker", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path().join("docker"))
        .env("PATH", "/nonexistent")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("docker is not on PATH") && said.contains("--runtime auto"),
        "{said}"
    );
}

#[tokio::test]
#[ignore = "needs podman and the test images: scripts/test sources scripts/podman-env"]
async fn a_run_asking_for_gpus_where_the_runtime_has_none_stops_with_a_reason_that_says_so() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = podman_server(&dir, &[], &[]).await;
    define(
        &server,
        json!({"alias": "trainer", "group_name": "tests", "image": bash_image(), "gpu": 1, "command": "echo never on a cpu"}),
    )
    .await;
    let run_id = launch(&server, "trainer", json!({})).await;
    let ended = stopped(&server, &run_id).await;
    let reason = ended["exit_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("asks for 1 GPUs") && reason.contains("has none"),
        "{ended}"
    );
    assert!(
        !log_of(&server, &run_id).await.contains("never on a cpu"),
        "it did not run without its GPU"
    );
}
