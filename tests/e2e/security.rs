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
