//! Who may do what: a server beyond loopback asks every caller for a token
//! that names them, answers only to its own names, takes changes only from
//! its own pages, and lets only an owner (or an admin) stop a run or change
//! a definition. A run's environment holds its own variables and a short
//! allowlist of the server's, never the server's secrets. Idempotence keys
//! belong to their owner.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, flotilla_bin, free_port};

const ANA: &str = "ana-0123456789abcdef";
const BO: &str = "bo-0123456789abcdef0";
const ROOT: &str = "root-0123456789abcdef";

/// A server on loopback whose token file names ana, bo and root (an admin).
async fn team_server(dir: &std::path::Path) -> (Server, std::path::PathBuf) {
    let tokens = dir.join("tokens");
    std::fs::write(
        &tokens,
        format!("# the team\n{ANA} ana\n{BO} bo\n{ROOT} root admin\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let file = tokens.to_string_lossy().into_owned();
    let server = Server::start_with(&dir.join("data"), 1, &["--auth-token-file", &file]).await;
    (server, tokens)
}

/// `method path` with `token` as bearer (none when empty) and `headers`.
async fn call(
    server: &Server,
    method: Method,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server.http().request(method, server.url(path));
    if !token.is_empty() {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let answer = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn error(answer: &Value) -> String {
    answer["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_server_beyond_loopback_without_a_token_file_refuses_to_start_and_says_how() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(flotilla_bin())
        .args(["serve", "--listen", &format!("0.0.0.0:{}", free_port())])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success(), "it must not start");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--auth-token-file"), "{said}");
    assert!(said.contains("127.0.0.1"), "{said}");
}

#[tokio::test]
async fn with_a_token_file_every_api_request_needs_a_token_that_names_its_caller() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (server, tokens) = team_server(dir.path()).await;
    let (status, answer) = call(&server, Method::GET, "/api/v6/task", "", &[], None).await;
    assert_eq!(status, 401, "{answer}");
    assert!(error(&answer).contains("Authorization: Bearer"), "{answer}");
    assert!(
        error(&answer).contains(&tokens.to_string_lossy().into_owned()),
        "it says where the tokens are: {answer}"
    );
    let (status, _) = call(
        &server,
        Method::GET,
        "/api/v6/task",
        "wrong-but-long-token",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = call(&server, Method::GET, "/api/v6/task", ANA, &[], None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&server, Method::GET, "/api/v6/health", "", &[], None).await;
    assert_eq!(status, 200, "health needs no token");
    let (status, _) = call(&server, Method::GET, "/", "", &[], None).await;
    assert_eq!(status, 200, "the UI's page loads, to ask for the token");

    // A run reports its own status with its run token, not a user's.
    let (status, _) = call(
        &server,
        Method::POST,
        "/api/v6/task",
        ANA,
        &[],
        Some(json!({"alias": "reporter", "image": "i", "command": "sleep 60"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, run) = call(
        &server,
        Method::PUT,
        "/api/v6/task/alias/reporter/execute",
        ANA,
        &[],
        Some(json!({})),
    )
    .await;
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    crate::support::eventually("the run's process starts", || {
        !crate::support::processes_with_env("FLOTILLA_RUN_ID", &run_id).is_empty()
    })
    .await;
    let (status, _) = server
        .report(&run_id, r#"{"status":"STOPPED"}"#, None)
        .await;
    assert_eq!(status, 401, "neither a user's token nor the run's");
    let run_token = server.run_token(&run_id, 1).await;
    let (status, answer) = server
        .report(
            &run_id,
            r#"{"status":"STOPPED","exit_code":0}"#,
            Some(&run_token),
        )
        .await;
    assert_eq!(status, 200, "the run's own token is enough: {answer}");
}

#[tokio::test]
async fn a_made_up_token_file_is_private_and_its_path_is_in_the_log() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tokens = dir.path().join("made-tokens");
    let file = tokens.to_string_lossy().into_owned();
    let server =
        Server::start_with(&dir.path().join("data"), 1, &["--auth-token-file", &file]).await;
    let mode = std::fs::metadata(&tokens)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_default();
    assert_eq!(mode, 0o600);
    assert!(
        server.server_log().contains(&file),
        "{}",
        server.server_log()
    );
    let text = std::fs::read_to_string(&tokens).unwrap_or_default();
    let token = text
        .lines()
        .find(|l| !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    let (status, _) = call(&server, Method::GET, "/api/v6/task", &token, &[], None).await;
    assert_eq!(status, 200, "the made token works");
}

#[tokio::test]
async fn a_foreign_host_or_a_cross_site_change_is_refused_and_curl_still_works() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    let (status, answer) = call(
        &server,
        Method::GET,
        "/api/v6/task",
        "",
        &[("host", "rebound.attacker.example")],
        None,
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(error(&answer).contains("--allowed-hosts"), "{answer}");
    let (status, _) = call(
        &server,
        Method::GET,
        "/api/v6/task",
        "",
        &[("host", "localhost:5000")],
        None,
    )
    .await;
    assert_eq!(status, 200, "localhost is always this server's name");

    let definition = json!({"alias": "x", "image": "i", "command": "true"});
    let (status, answer) = call(
        &server,
        Method::POST,
        "/api/v6/task",
        "",
        &[
            ("origin", "https://attacker.example"),
            ("content-type", "text/plain"),
        ],
        Some(definition.clone()),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        error(&answer).contains("https://attacker.example"),
        "{answer}"
    );
    let own = server.base.clone();
    let (status, answer) = call(
        &server,
        Method::POST,
        "/api/v6/task",
        "",
        &[("origin", &own)],
        Some(definition.clone()),
    )
    .await;
    assert_eq!(status, 200, "the server's own pages may: {answer}");
    let (status, answer) = call(
        &server,
        Method::POST,
        "/api/v6/task",
        "",
        &[],
        Some(json!({"alias": "y", "image": "i", "command": "true"})),
    )
    .await;
    assert_eq!(status, 200, "no Origin (curl, scripts): {answer}");
    let (_, list) = server.get("/api/v6/task").await;
    assert_eq!(list["total"], 2, "the refused post stored nothing: {list}");
}

#[tokio::test]
async fn only_a_runs_owner_or_an_admin_may_stop_it_and_only_a_creator_may_change_a_definition() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (server, _) = team_server(dir.path()).await;
    let (status, created) = call(
        &server,
        Method::POST,
        "/api/v6/task",
        ANA,
        &[],
        Some(json!({"alias": "sleepy", "image": "i", "command": "sleep 60"})),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["created_by"], "ana");
    let id = created["definition_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let execute = "/api/v6/task/alias/sleepy/execute";
    let (status, run) = call(&server, Method::PUT, execute, ANA, &[], Some(json!({}))).await;
    assert_eq!(
        status, 200,
        "a known caller need not name themselves: {run}"
    );
    assert_eq!(run["user"], "ana", "{run}");
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    let (status, answer) = call(
        &server,
        Method::PUT,
        execute,
        BO,
        &[],
        Some(json!({"run_tags": {"owner_id": "ana"}})),
    )
    .await;
    assert_eq!(status, 403, "bo may not launch as ana: {answer}");
    assert!(error(&answer).contains("you are bo"), "{answer}");
    let v1 = format!("/api/v1/task/{id}/execute");
    let (status, by_v1) = call(&server, Method::PUT, &v1, BO, &[], Some(json!({}))).await;
    assert_eq!(
        (status, by_v1["user"].as_str()),
        (200, Some("bo")),
        "v1 asks for no owner: the caller owns it: {by_v1}"
    );
    let (status, answer) = call(
        &server,
        Method::PUT,
        &v1,
        BO,
        &[],
        Some(json!({"run_tags": {"owner_id": "ana"}})),
    )
    .await;
    assert_eq!(status, 403, "not even through v1: {answer}");

    let stop = format!("/api/v6/task/{id}/history/{run_id}");
    let (status, answer) = call(&server, Method::DELETE, &stop, BO, &[], None).await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        error(&answer).contains("belongs to ana"),
        "it names the owner: {answer}"
    );
    let (_, still) = call(
        &server,
        Method::GET,
        &format!("/api/v6/history/{run_id}"),
        BO,
        &[],
        None,
    )
    .await;
    assert_ne!(
        still["status"], "STOPPED",
        "a refused stop stops nothing: {still}"
    );
    let (status, answer) = call(
        &server,
        Method::PUT,
        &format!("/api/v6/task/{id}"),
        BO,
        &[],
        Some(json!({"command": "echo mine"})),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(error(&answer).contains("created by ana"), "{answer}");
    let (status, _) = call(
        &server,
        Method::DELETE,
        &format!("/api/v6/task/{id}"),
        BO,
        &[],
        None,
    )
    .await;
    assert_eq!(status, 403);

    let (status, answer) = call(&server, Method::DELETE, &stop, ROOT, &[], None).await;
    assert_eq!(status, 200, "an admin may stop anyone's run: {answer}");
    let (status, run) = call(&server, Method::PUT, execute, ANA, &[], Some(json!({}))).await;
    assert_eq!(status, 200, "{run}");
    let second = run["run_id"].as_str().unwrap_or_default().to_owned();
    let (status, answer) = call(
        &server,
        Method::DELETE,
        &format!("/api/v6/task/{id}/history/{second}"),
        ANA,
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200, "the owner may stop her run: {answer}");
    let (status, answer) = call(
        &server,
        Method::PUT,
        &format!("/api/v6/task/{id}"),
        ANA,
        &[],
        Some(json!({"command": "true"})),
    )
    .await;
    assert_eq!(status, 200, "the creator may change it: {answer}");
}

#[tokio::test]
async fn a_run_gets_the_allowlisted_server_variables_and_none_of_its_secrets() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start_with_env(
        &dir.path().join("data"),
        1,
        &["--pass-env", "TEAM_BUCKET"],
        &[
            ("SECRET_TOKEN", "hunter2-server-secret"),
            ("TEAM_BUCKET", "s3://team"),
            ("AWS_SECRET_ACCESS_KEY", "server-aws-key"),
        ],
    )
    .await;
    server.define("env", "env | sort").await;
    let run = server
        .execute("env", json!({"env": [{"name": "MINE", "value": "mine"}]}))
        .await;
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    let (ended, _) = server.wait_stopped(&run_id).await;
    assert_eq!(ended["exit_code"], 0, "{ended}");
    let (_, log) = server
        .get_text(&format!("/api/v6/{run_id}/logs?raw_text=true"))
        .await;
    assert!(
        !log.contains("hunter2"),
        "a server secret reached the run:\n{log}"
    );
    assert!(!log.contains("server-aws-key"), "{log}");
    assert!(
        log.contains("TEAM_BUCKET=s3://team"),
        "--pass-env passes it:\n{log}"
    );
    assert!(log.contains("MINE=mine"), "the run's own env:\n{log}");
    assert!(log.contains("PATH="), "PATH is passed by default:\n{log}");
    assert!(log.contains(&format!("FLOTILLA_RUN_ID={run_id}")), "{log}");
}

#[tokio::test]
async fn twenty_racing_executes_with_one_key_make_one_run_and_all_get_it_in_thirty_trials() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    server.define("race", "true").await;
    for trial in 0..30 {
        let key = format!("nightly-{trial}");
        let body = json!({"run_tags": {"owner_id": "ana"}, "idempotence_key": key}).to_string();
        let requests = (0..20).map(|_| {
            let body = body.clone();
            let http = server.http().clone();
            let url = server.url("/api/v6/task/alias/race/execute");
            tokio::spawn(async move {
                let answer = http
                    .put(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let status = answer.status().as_u16();
                let run: serde_json::Value = answer.json().await.unwrap_or_else(|e| panic!("{e}"));
                (status, run)
            })
        });
        let mut ids = std::collections::BTreeSet::new();
        for request in requests.collect::<Vec<_>>() {
            let (status, run) = request.await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                status, 200,
                "trial {trial}: every request gets the run: {run}"
            );
            ids.insert(run["run_id"].as_str().unwrap_or_default().to_owned());
        }
        assert_eq!(ids.len(), 1, "trial {trial}: one run for one key: {ids:?}");
    }
    let (_, runs) = server.get("/api/v6/history?limit=100").await;
    assert_eq!(runs["total"], 30, "one run per trial: {}", runs["total"]);

    let bo = server
        .send(
            reqwest::Method::PUT,
            "/api/v6/task/alias/race/execute",
            &json!({"run_tags": {"owner_id": "bo"}, "idempotence_key": "nightly-0"}).to_string(),
        )
        .await;
    assert_eq!(bo.0, 200, "{}", bo.1);
    assert_eq!(bo.1["user"], "bo", "bo's key is bo's: {}", bo.1);
    let (_, runs) = server.get("/api/v6/history?limit=100").await;
    assert_eq!(
        runs["total"], 31,
        "the same key from another owner made that owner a run"
    );
}

#[tokio::test]
async fn a_secret_reaches_the_process_and_its_value_appears_in_no_answer_or_log() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let secrets = dir.path().join("secrets");
    std::fs::write(&secrets, "# team secrets\nteam/api-key=s3cr3t-value-42\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let file = secrets.to_string_lossy().into_owned();
    let server = Server::start_with_env(
        &dir.path().join("data"),
        1,
        &["--secrets-file", &file],
        &[("SERVER_ONLY", "server-value-99")],
    )
    .await;
    let (status, created) = server
        .send(
            Method::POST,
            "/api/v6/task",
            &json!({
                "alias": "uses-key",
                "image": "i",
                // The value's MD5, so the command does not hold the value.
                "command": "test \"$(printf %s \"$API_KEY\" | md5sum | cut -c1-32)\" = 3eb20ed16cc8857183093640de567e3a && echo key-ok",
                "secrets": [{"name": "API_KEY", "value_from": "team/api-key"}],
            })
            .to_string(),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["definition_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let run = server.execute("uses-key", json!({})).await;
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    let (ended, _) = server.wait_stopped(&run_id).await;
    assert_eq!(ended["exit_code"], 0, "the process had the secret: {ended}");
    assert_eq!(
        ended["secrets"],
        json!([{"name": "API_KEY", "value_from": "team/api-key"}]),
        "the run says which secrets it took, by reference"
    );
    let (_, log) = server
        .get_text(&format!("/api/v6/{run_id}/logs?raw_text=true"))
        .await;
    assert!(log.contains("key-ok"), "{log}");

    let mut seen = String::new();
    for path in [
        format!("/api/v6/task/{id}"),
        "/api/v6/task".to_owned(),
        format!("/api/v6/history/{run_id}"),
        "/api/v6/history".to_owned(),
        format!("/api/v6/{run_id}/events"),
        format!("/api/v6/{run_id}/status"),
        format!("/api/v6/{run_id}/logs"),
    ] {
        let (_, text) = server.get_text(&path).await;
        seen.push_str(&text);
    }
    seen.push_str(&server.server_log());
    assert!(
        !seen.contains("s3cr3t-value-42"),
        "the value leaked:\n{seen}"
    );
    let (_, matched) = server
        .get("/api/v6/history?env=API_KEY%7Cs3cr3t-value-42")
        .await;
    assert_eq!(
        matched["total"], 0,
        "an env= filter cannot test a secret's value"
    );

    // With a secrets file, the server's environment is not a source: nobody
    // can name one of its variables to read it.
    server
        .send(
            Method::POST,
            "/api/v6/task",
            &json!({
                "alias": "reads-server", "image": "i", "command": "echo $STOLEN",
                "secrets": [{"name": "STOLEN", "value_from": "SERVER_ONLY"}],
            })
            .to_string(),
        )
        .await;
    let run = server.execute("reads-server", json!({})).await;
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    let (ended, _) = server.wait_stopped(&run_id).await;
    let reason = ended["exit_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("is not a key of the server's secrets file"),
        "{ended}"
    );
    let (_, log) = server
        .get_text(&format!("/api/v6/{run_id}/logs?raw_text=true"))
        .await;
    assert!(!log.contains("server-value-99"), "{log}");

    let refusals = [
        (
            json!({"alias": "r", "image": "i", "command": "true", "secrets": [{"name": "FLOTILLA_RUN_ID", "value_from": "x"}]}),
            "FLOTILLA_RUN_ID is reserved",
        ),
        (
            json!({"alias": "d", "image": "i", "command": "true", "env": [{"name": "K", "value": "v"}], "secrets": [{"name": "K", "value_from": "x"}]}),
            "also a plain env variable",
        ),
        (
            json!({"alias": "e", "image": "i", "command": "true", "secrets": [{"name": "K", "value_from": ""}]}),
            "needs a value_from",
        ),
    ];
    server
        .assert_refused(Method::POST, "/api/v6/task", refusals)
        .await;
}

#[tokio::test]
async fn the_ui_is_told_how_to_sign_in_without_a_token_and_an_issuer_with_a_token_file_is_refused()
{
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let open = Server::start(&dir.path().join("open"), 1).await;
    let (status, config) = call(&open, Method::GET, "/api/ui-config", "", &[], None).await;
    assert_eq!((status, config), (200, json!({"sign_in": "open"})));
    drop(open);

    let (team, tokens) = team_server(dir.path()).await;
    let (status, config) = call(&team, Method::GET, "/api/ui-config", "", &[], None).await;
    assert_eq!(
        (status, config),
        (200, json!({"sign_in": "token"})),
        "public, so the UI can read it before it has a token"
    );
    drop(team);

    let issuer = "https://issuer.example.com/pool";
    let oauth = Server::start_with(
        &dir.path().join("oauth"),
        1,
        &["--oauth-issuer", issuer, "--oauth-client-id", "ui"],
    )
    .await;
    let (_, config) = call(&oauth, Method::GET, "/api/ui-config", "", &[], None).await;
    assert_eq!(
        config,
        json!({"sign_in": "oauth", "oauth": {"issuer": issuer, "client_id": "ui", "scopes": "openid email"}})
    );
    drop(oauth);

    let out = std::process::Command::new(flotilla_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--oauth-issuer", issuer, "--oauth-client-id", "ui"])
        .arg("--auth-token-file")
        .arg(&tokens)
        .arg("--data-dir")
        .arg(dir.path().join("both"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success(), "it must not start");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("--oauth-issuer") && said.contains("pass one of the two"),
        "{said}"
    );
}
