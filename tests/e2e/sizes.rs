//! `flotilla serve` takes any size: Fargate's sizes and its lack of GPUs
//! bind the ECS engine only. Registry credentials are kept and shown here
//! too, and documented in the OpenAPI document.

use reqwest::Method;
use serde_json::json;

use crate::support::Server;

#[tokio::test]
async fn a_local_definition_takes_sizes_fargate_does_not_and_a_gpu_and_its_runs_run_as_asked() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:flotilla/registry";
    let body = json!({"alias": "big", "image": "registry.example.com/team/job:1", "command": "true",
                      "memory": 4096, "cpu": 256, "gpu": 1, "repository_credentials": arn});
    let (status, def) = server
        .send(Method::POST, "/api/v6/task", &body.to_string())
        .await;
    assert_eq!(status, 200, "{def}");
    assert_eq!(
        (&def["memory"], &def["cpu"], &def["gpu"]),
        (&json!(4096), &json!(256), &json!(1))
    );
    let (_, read) = server.get("/api/v6/task/alias/big").await;
    assert_eq!(read["repository_credentials"], arn, "{read}");

    let run = server.execute("big", json!({"memory": 3000})).await;
    assert_eq!(
        (&run["memory"], &run["cpu"], &run["gpu"]),
        (&json!(3000), &json!(256), &json!(1)),
        "a local run is not sized for Fargate: {run}"
    );
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    let (done, _) = server.wait_stopped(&run_id).await;
    assert_eq!(done["exit_code"], 0, "{done}");

    let template = json!({"template_name": "fit", "image": "ubuntu:latest", "command_template": "true",
                          "schema": {"type": "object"}, "memory": 4096, "gpu": 1});
    let (status, created) = server
        .send(Method::POST, "/api/v7/template", &template.to_string())
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        created["template"]["cpu"], 256,
        "the template default, not Fargate's: {created}"
    );

    let bad = json!({"alias": "bad", "image": "i", "repository_credentials": "registry-password"});
    let (status, answer) = server
        .send(Method::POST, "/api/v6/task", &bad.to_string())
        .await;
    assert_eq!(
        status, 400,
        "a malformed ARN is wrong on every engine: {answer}"
    );

    let (_, doc) = server.get("/api/openapi.json").await;
    for schema in ["Definition", "DefinitionInput"] {
        let field = &doc["components"]["schemas"][schema]["properties"]["repository_credentials"];
        assert!(
            field["description"]
                .as_str()
                .is_some_and(|d| d.contains("Secrets Manager")),
            "{schema}: {field}"
        );
    }
}
