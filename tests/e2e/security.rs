//! Who gets what: a run's environment holds its own variables and a short
//! allowlist of the server's, never the server's secrets.

use serde_json::json;

use crate::support::Server;

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
