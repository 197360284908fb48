//! The `flotilla` client commands against the real `flotilla serve`: run
//! as a user runs them, as child processes with their output piped, as a
//! script would.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, flotilla_bin, free_port};

/// `flotilla args…` against `server`, as user `tester` with no token, its
/// output captured (so stdout and stderr are pipes, not a terminal).
pub(crate) fn cli(server: &Server, args: &[&str]) -> Output {
    command(server, args)
        .output()
        .unwrap_or_else(|e| panic!("could not start flotilla: {e}"))
}

/// `flotilla args…` against `server` (`FLOTILLA_URL`).
pub(crate) fn command(server: &Server, args: &[&str]) -> Command {
    let mut c = bare_command(args);
    c.env("FLOTILLA_URL", &server.base);
    c
}

/// `flotilla args…` as user `tester`, with none of the variables that name
/// a server, a profile or credentials, and no config file of the machine's
/// (`XDG_CONFIG_HOME` is a directory that does not exist).
pub(crate) fn bare_command(args: &[&str]) -> Command {
    let mut c = Command::new(flotilla_bin());
    c.args(args)
        .env("USER", "tester")
        .env("XDG_CONFIG_HOME", "/nonexistent/flotilla-tests")
        .stdin(Stdio::null());
    for name in [
        "FLOTILLA_URL",
        "FLOTILLA_TOKEN",
        "FLOTILLA_TOKEN_FILE",
        "FLOTILLA_OWNER",
        "FLOTILLA_PROFILE",
        "FLOTILLA_CONFIG",
        "FLOTILLA_AUTH",
    ] {
        c.env_remove(name);
    }
    c
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub(crate) fn json_out(o: &Output) -> Value {
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

#[tokio::test]
async fn run_follow_prints_the_runs_log_and_exits_with_its_exit_code_0_or_3_and_nonzero_when_stopped()
 {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), 2).await;
    server.define("ok", "echo one; echo two >&2").await;
    server.define("three", "echo partial; exit 3").await;
    server.define("long", "echo started; sleep 600").await;

    let ok = cli(&server, &["run", "ok", "--follow"]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    assert_eq!(
        stdout(&ok),
        "one\ntwo\n",
        "stdout holds the log and only the log"
    );
    assert!(
        stderr(&ok).contains("STOPPED: exit code 0"),
        "the final status line: {}",
        stderr(&ok)
    );
    assert!(
        !stderr(&ok).contains('\r') && !stderr(&ok).contains('\x1b'),
        "no progress line when stderr is a pipe: {:?}",
        stderr(&ok)
    );

    let three = cli(&server, &["run", "three", "-f"]);
    assert_eq!(code(&three), 3, "{}", stderr(&three));
    assert_eq!(stdout(&three), "partial\n");

    // A run stopped while it is followed: the follower exits non-zero and
    // says why.
    let follower = command(&server, &["run", "long", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, page) = loop {
        let (status, page) = server
            .get("/api/v6/history?alias=long&status=RUNNING")
            .await;
        if page["total"].as_u64().unwrap_or(0) > 0 {
            break (status, page);
        }
        assert!(
            Instant::now() < deadline,
            "the followed run did not start within 60 s: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 200);
    let run_id = page["history"][0]["run_id"].as_str().unwrap().to_owned();
    let stop = cli(&server, &["stop", &run_id]);
    assert_eq!(code(&stop), 0, "{}", stderr(&stop));
    let followed = tokio::task::spawn_blocking(move || follower.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(code(&followed), 0, "{}", stderr(&followed));
    assert!(
        stdout(&followed).starts_with("started\n"),
        "{}",
        stdout(&followed)
    );
    assert!(
        stderr(&followed).contains(&format!("run {run_id} STOPPED")),
        "{}",
        stderr(&followed)
    );
    let (_, run) = server.get(&format!("/api/v6/history/{run_id}")).await;
    assert!(
        stderr(&followed).contains(run["exit_reason"].as_str().unwrap_or("?")),
        "the reason is on stderr: {}\n{run}",
        stderr(&followed)
    );

    // `logs` prints the whole log of an ended run; `logs -f` of an ended
    // run exits with its code at once.
    let logs = cli(&server, &["logs", &run_id]);
    assert_eq!((code(&logs), stdout(&logs)), (0, "started\n".to_owned()));
    let three_id = server.get("/api/v6/history?alias=three").await.1["history"][0]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = cli(&server, &["logs", &three_id, "-f"]);
    assert_eq!((code(&again), stdout(&again)), (3, "partial\n".to_owned()));
    let waited = cli(&server, &["status", &three_id, "--wait"]);
    assert_eq!(code(&waited), 3, "{}", stderr(&waited));
}

#[tokio::test]
async fn json_output_is_the_apis_json_and_runs_filters_by_status_alias_and_owner() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), 2).await;
    server.define("alpha", "exit 0").await;
    server.define("beta", "exit 1").await;
    for (alias, owner) in [("alpha", "ana"), ("alpha", "bo"), ("beta", "ana")] {
        let done = cli(&server, &["run", alias, "--owner", owner, "-f"]);
        assert!(code(&done) == 0 || alias == "beta", "{}", stderr(&done));
    }

    let all = json_out(&cli(&server, &["runs", "-o", "json"]));
    assert_eq!(all["total"], 3, "{all}");
    let by_alias = json_out(&cli(&server, &["runs", "--alias", "alpha", "-o", "json"]));
    assert_eq!(by_alias["total"], 2, "{by_alias}");
    let by_owner = json_out(&cli(&server, &["runs", "--owner", "bo", "-o", "json"]));
    assert_eq!(by_owner["total"], 1, "{by_owner}");
    assert_eq!(by_owner["history"][0]["user"], "bo");
    let queued = json_out(&cli(&server, &["runs", "--status", "queued", "-o", "json"]));
    assert_eq!(queued["total"], 0, "{queued}");
    let recent = json_out(&cli(
        &server,
        &["runs", "--since", "1h", "--alias", "beta", "-o", "json"],
    ));
    assert_eq!(recent["total"], 1, "{recent}");

    // One run's JSON is the API's, field for field.
    let run_id = by_owner["history"][0]["run_id"].as_str().unwrap();
    let shown = json_out(&cli(&server, &["status", run_id, "-o", "json"]));
    let (_, api) = server.get(&format!("/api/v6/history/{run_id}")).await;
    assert_eq!(shown, api);
    let events = json_out(&cli(&server, &["events", run_id, "-o", "json"]));
    assert!(
        events["pod_events"]
            .as_array()
            .is_some_and(|e| e.len() >= 3),
        "{events}"
    );

    // The table lists the runs, one line each under a header.
    let table = cli(&server, &["runs", "--alias", "alpha"]);
    let text = stdout(&table);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("RUN ID"), "{text}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains("alpha") && l.contains("STOPPED")),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour when piped: {text:?}");

    // Definitions: create from a file, show, update, list, remove.
    let file = dir.path().join("def.json");
    std::fs::write(
        &file,
        json!({"alias": "gamma", "image": "ubuntu", "command": "echo g", "memory": 256})
            .to_string(),
    )
    .unwrap();
    let created = cli(
        &server,
        &["task", "create", "-f", file.to_str().unwrap(), "-o", "json"],
    );
    assert_eq!(code(&created), 0, "{}", stderr(&created));
    assert_eq!(json_out(&created)["alias"], "gamma");
    std::fs::write(&file, json!({"memory": 512}).to_string()).unwrap();
    let updated = cli(
        &server,
        &["task", "update", "gamma", "-f", file.to_str().unwrap()],
    );
    assert_eq!(code(&updated), 0, "{}", stderr(&updated));
    let shown = json_out(&cli(&server, &["task", "show", "gamma", "-o", "json"]));
    assert_eq!(shown["memory"], 512, "{shown}");
    let listed = stdout(&cli(&server, &["task", "ls"]));
    assert!(listed.lines().any(|l| l.starts_with("gamma ")), "{listed}");
    let removed = cli(&server, &["task", "rm", "gamma"]);
    assert_eq!(code(&removed), 0, "{}", stderr(&removed));
    let gone = cli(&server, &["task", "show", "gamma"]);
    assert_eq!(code(&gone), 1, "{}", stderr(&gone));
}

#[tokio::test]
async fn bad_usage_exits_2_and_a_refusal_exits_1_with_the_servers_message_and_problems() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), 1).await;
    server.define("ok", "exit 0").await;

    for args in [
        vec!["run"],
        vec!["run", "ok", "-e", "NO_EQUALS_SIGN"],
        vec!["runs", "--since", "soon"],
        vec!["runs", "--status", "SLEEPING"],
        vec!["nonsense"],
    ] {
        let o = cli(&server, &args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty(), "{args:?} says what is wrong");
    }
    let file = dir.path().join("bad.json");
    std::fs::write(&file, "{ not json").unwrap();
    let o = cli(&server, &["task", "create", "-f", file.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("is not JSON"), "{}", stderr(&o));

    let missing = cli(&server, &["run", "no-such-alias"]);
    assert_eq!(code(&missing), 1);
    assert!(stderr(&missing).contains("404"), "{}", stderr(&missing));

    std::fs::write(
        &file,
        json!({"image": "ubuntu", "env": [{"name": "1BAD", "value": "x"}]}).to_string(),
    )
    .unwrap();
    let refused = cli(&server, &["task", "create", "-f", file.to_str().unwrap()]);
    assert_eq!(code(&refused), 1, "{}", stderr(&refused));
    let said = stderr(&refused);
    assert!(said.contains("(400)"), "{said}");
    let problems: Vec<&str> = said.lines().filter(|l| l.contains("  - ")).collect();
    assert_eq!(problems.len(), 2, "each problem on its own line: {said}");
    assert!(problems[0].contains("alias is required"), "{said}");
    assert!(problems[1].contains("1BAD"), "{said}");

    let unreachable = command(&server, &["runs"])
        .env("FLOTILLA_URL", format!("http://127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert_eq!(code(&unreachable), 1);
    assert!(
        stderr(&unreachable).contains("cannot reach"),
        "{}",
        stderr(&unreachable)
    );
}

#[tokio::test]
async fn with_a_token_file_the_cli_needs_a_token_and_its_runs_are_owned_by_the_tokens_user() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# the team\nana-0123456789abcdef0 ana\n").unwrap();
    let tokens = tokens.to_str().unwrap().to_owned();
    let server =
        Server::start_with(&dir.path().join("data"), 1, &["--auth-token-file", &tokens]).await;

    let refused = cli(&server, &["runs"]);
    assert_eq!(code(&refused), 1);
    assert!(stderr(&refused).contains("401"), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("--token"),
        "it says how to give one: {}",
        stderr(&refused)
    );

    let def = dir.path().join("def.json");
    std::fs::write(
        &def,
        json!({"alias": "mine", "image": "ubuntu", "command": "echo mine"}).to_string(),
    )
    .unwrap();
    let created = cli(
        &server,
        &[
            "--token-file",
            &tokens,
            "task",
            "create",
            "-f",
            def.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&created), 0, "{}", stderr(&created));
    let ran = command(&server, &["run", "mine", "-f"])
        .env("FLOTILLA_TOKEN", "ana-0123456789abcdef0")
        .output()
        .unwrap();
    assert_eq!(
        (code(&ran), stdout(&ran)),
        (0, "mine\n".to_owned()),
        "{}",
        stderr(&ran)
    );
    let runs = json_out(&cli(
        &server,
        &["--token-file", &tokens, "runs", "-o", "json"],
    ));
    assert_eq!(runs["history"][0]["user"], "ana", "{runs}");
}

#[tokio::test]
async fn a_template_runs_with_its_parameters_and_a_payload_its_schema_refuses_is_refused_before_launch()
 {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), 1).await;
    let file = dir.path().join("template.json");
    std::fs::write(
        &file,
        json!({
            "template_name": "train", "image": "ubuntu",
            "command_template": "echo epochs={{ .epochs }} model={{ .model }}",
            "schema": {"type": "object", "required": ["epochs"],
                       "properties": {"epochs": {"type": "integer", "minimum": 1}, "model": {"type": "string"}}},
            "defaults": {"model": "base"}
        })
        .to_string(),
    )
    .unwrap();
    let created = cli(
        &server,
        &["template", "create", "-f", file.to_str().unwrap()],
    );
    assert_eq!(code(&created), 0, "{}", stderr(&created));
    assert!(
        stdout(&created).starts_with("created train version 1"),
        "{}",
        stdout(&created)
    );
    let listed = stdout(&cli(&server, &["template", "ls"]));
    assert!(listed.lines().any(|l| l.starts_with("train ")), "{listed}");
    let shown = json_out(&cli(
        &server,
        &["template", "show", "train@1", "-o", "json"],
    ));
    assert_eq!(shown["template_name"], "train", "{shown}");

    let ran = cli(
        &server,
        &[
            "run",
            "--template",
            "train",
            "-p",
            "epochs=3",
            "-p",
            "model=resnet",
            "-f",
        ],
    );
    assert_eq!(code(&ran), 0, "{}", stderr(&ran));
    assert_eq!(stdout(&ran), "epochs=3 model=resnet\n");

    // A payload the schema refuses is refused here, with the server's own
    // problems and their places, and nothing is launched.
    let bad = cli(
        &server,
        &[
            "run",
            "--template",
            "train@latest",
            "-p",
            "epochs=0",
            "-p",
            "model=7",
        ],
    );
    assert_eq!(code(&bad), 1, "{}", stderr(&bad));
    let said = stderr(&bad);
    assert!(
        said.contains("template train version 1 does not take these parameters")
            && said.contains("no run was launched"),
        "{said}"
    );
    assert!(
        said.contains("template_payload/epochs") && said.contains("template_payload/model"),
        "every problem, with its location: {said}"
    );
    let (_, runs) = server.get("/api/v6/history").await;
    assert_eq!(runs["total"], 1, "only the good run was launched: {runs}");

    // What only the server can judge gets its message: a cluster it does
    // not have.
    let refused = cli(
        &server,
        &[
            "run",
            "--template",
            "train",
            "-p",
            "epochs=2",
            "--cluster",
            "nowhere",
        ],
    );
    assert_eq!(code(&refused), 1, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("error (400)") && stderr(&refused).contains("nowhere"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn help_lists_every_command_and_completions_are_printed_for_each_shell() {
    let help = Command::new(flotilla_bin()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for command in [
        "serve",
        "task",
        "template",
        "run",
        "runs",
        "logs",
        "status",
        "stop",
        "events",
        "completions",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "{command} is in --help:\n{text}"
        );
    }
    assert!(text.contains("Examples:"), "{text}");
    for shell in ["bash", "zsh", "fish"] {
        let script = Command::new(flotilla_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(script.status.code(), Some(0));
        let script = String::from_utf8_lossy(&script.stdout);
        assert!(
            script.contains("flotilla") && script.contains("runs"),
            "{shell}: {script}"
        );
    }
}

#[tokio::test]
async fn runs_watch_shows_a_run_launched_while_it_watches_and_ends_cleanly_on_ctrl_c() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), 1).await;
    server.define("watched", "true").await;
    let mut watcher = command(&server, &["runs", "--watch", "--alias", "watched"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    // The first table is there before the run exists.
    let first = seen.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(first.starts_with("RUN ID"), "{first}");
    let run = server.execute("watched", json!({})).await;
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = seen
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("the watch never showed run {run_id}"));
        if line.starts_with(&run_id) {
            break;
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(watcher.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let ended = tokio::task::spawn_blocking(move || watcher.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code(&ended), 0, "{}", stderr(&ended));
}
