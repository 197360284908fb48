//! What a run may ask of Fargate, through the api and submit functions on
//! moto: sizes Fargate takes (refused at save and at execute otherwise, with
//! the sizes that would do), no GPUs, spot or on-demand capacity, and
//! registry credentials for images from private registries.

use axum::http::Method;
use serde_json::{Value, json};

use crate::{Stack, stack};

fn error(answer: &Value) -> &str {
    answer["error"].as_str().unwrap_or_default()
}

const FOUR_GB_ON_256: &str = "memory 4096 MB on Fargate takes cpu 512, 1024 or 2048; cpu 256 takes memory 512, 1024 or 2048 MB";

impl Stack {
    /// Delivers the one run queued and returns the RunTask body that
    /// launched it (a family's first launch also tries one before the
    /// family is registered).
    pub(crate) async fn launched_run_task(&self) -> Value {
        self.counter.reset();
        assert_eq!(self.deliver_queue(false).await, 1);
        let bodies = self.counter.bodies("RunTask");
        assert!(!bodies.is_empty() && bodies.len() <= 2, "{bodies:?}");
        bodies[bodies.len() - 1].clone()
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn sizes_fargate_does_not_take_and_gpus_are_refused_at_save_and_at_execute_saying_what_to_fix()
 {
    let s = stack().await;
    let define = |body: Value| s.call(Method::POST, "/api/v6/task", body);
    let base =
        json!({"alias": "train", "group_name": "ml", "image": "ubuntu:latest", "command": "train"});
    let with = |extra: Value| {
        let mut body = base.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };

    // At save.
    let (status, answer) = define(with(json!({"memory": 4096, "cpu": 256}))).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error(&answer), FOUR_GB_ON_256);
    let (status, answer) = define(with(json!({"memory": 3000}))).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        error(&answer),
        "memory 3000 MB is not a Fargate size: the nearest are 2048 and 3072 MB"
    );
    let (status, answer) = define(with(json!({"gpu": 1}))).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        error(&answer).starts_with("gpu 1: this deployment's clusters have no GPUs")
            && error(&answer).contains("Fargate"),
        "{answer}"
    );

    // Memory alone is taken, and kept as given; its runs get the smallest
    // cpu that takes it.
    let (status, def) = define(with(json!({"memory": 4096}))).await;
    assert_eq!(status, 200, "{def}");
    assert_eq!(def["memory"], 4096);
    assert!(
        def.get("cpu").is_none(),
        "a definition shows what it was given: {def}"
    );
    let id = def["definition_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v6/task/{id}");
    let update = |body: Value| s.call(Method::PUT, &path, body);
    let (status, answer) = update(json!({"cpu": 256})).await;
    assert_eq!(
        status, 400,
        "an update is checked with what it keeps: {answer}"
    );
    assert_eq!(error(&answer), FOUR_GB_ON_256);
    let (status, answer) = update(json!({"gpu": 1})).await;
    assert_eq!(status, 400, "{answer}");
    let (_, stored) = s
        .call(Method::GET, &format!("/api/v6/task/{id}"), Value::Null)
        .await;
    assert_eq!(
        (&stored["memory"], &stored["cpu"], &stored["gpu"]),
        (&json!(4096), &Value::Null, &Value::Null),
        "a refused update changes nothing: {stored}"
    );

    // At execute.
    let execute = |extra: Value| {
        let mut body = json!({"run_tags": {"owner_id": "ana"}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s.call(Method::PUT, "/api/v6/task/alias/train/execute", body)
    };
    let (status, answer) = execute(json!({"cpu": 256})).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error(&answer), FOUR_GB_ON_256);
    let (status, answer) = execute(json!({"gpu": 1, "cluster": "default"})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        error(&answer).starts_with("gpu 1: cluster \"default\" has no GPUs"),
        "the cluster is named: {answer}"
    );
    let (status, answer) = execute(json!({"memory": 1024, "cpu": 1024})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(error(&answer).contains("cpu 1024 takes memory 2048 to 8192 MB"));

    let (status, run) = execute(json!({})).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(
        (&run["memory"], &run["cpu"], &run["cpu_limit"]),
        (&json!(4096), &json!(512), &json!(512)),
        "a run shows the size it launches with: {run}"
    );
    let body = s.launched_run_task().await;
    assert_eq!(
        (&body["overrides"]["cpu"], &body["overrides"]["memory"]),
        (&json!("512"), &json!("4096")),
        "{body}"
    );

    // A template keeps its runs' whole size: Fargate's for its memory.
    let template = json!({"template_name": "fit", "image": "ubuntu:latest", "command_template": "fit",
                          "schema": {"type": "object"}, "memory": 8192});
    let (status, created) = s
        .call(Method::POST, "/api/v7/template", template.clone())
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["template"]["cpu"], 1024, "{created}");
    let mut gpu_template = template.clone();
    gpu_template["gpu"] = json!(1);
    let (status, answer) = s.call(Method::POST, "/api/v7/template", gpu_template).await;
    assert_eq!(status, 400, "{answer}");
    assert!(error(&answer).contains("no GPUs"), "{answer}");
    let (status, answer) = s
        .call(
            Method::PUT,
            "/api/v7/template/name/fit/version/latest/execute",
            json!({"owner_id": "ana", "template_payload": {}, "cpu": 256}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        error(&answer).starts_with("memory 8192 MB on Fargate takes cpu 1024, 2048 or 4096"),
        "{answer}"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn a_spot_run_launches_on_fargate_spot_and_an_ondemand_run_on_fargate() {
    let s = stack().await;
    let (status, def) = s
        .call(
            Method::POST,
            "/api/v6/task",
            json!({"alias": "nightly", "image": "ubuntu:latest", "command": "run"}),
        )
        .await;
    assert_eq!(status, 200, "{def}");
    for (asked, shown) in [
        (None, "spot"),
        (Some("spot"), "spot"),
        (Some("ondemand"), "ondemand"),
    ] {
        let mut body = json!({"run_tags": {"owner_id": "ana"}});
        if let Some(lifecycle) = asked {
            body["node_lifecycle"] = json!(lifecycle);
        }
        let (status, run) = s
            .call(Method::PUT, "/api/v6/task/alias/nightly/execute", body)
            .await;
        assert_eq!(status, 200, "{run}");
        assert_eq!(run["node_lifecycle"], shown);
        let task = s.launched_run_task().await;
        if shown == "spot" {
            assert_eq!(
                task["capacityProviderStrategy"],
                json!([{"capacityProvider": "FARGATE_SPOT", "weight": 1}]),
                "{asked:?}: {task}"
            );
            assert!(task.get("launchType").is_none(), "{task}");
        } else {
            assert_eq!(task["launchType"], "FARGATE", "{task}");
            assert!(task.get("capacityProviderStrategy").is_none(), "{task}");
        }
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn a_definitions_registry_credentials_are_shown_and_reach_the_registered_task_definition() {
    let s = stack().await;
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:flotilla/registry-AbCdEf";
    let (status, answer) = s
        .call(
            Method::POST,
            "/api/v6/task",
            json!({"alias": "private", "image": "registry.example.com/team/job:1", "repository_credentials": "flotilla/registry"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        error(&answer).starts_with(
            "repository_credentials \"flotilla/registry\" is not a Secrets Manager secret ARN"
        ),
        "{answer}"
    );
    let (status, def) = s
        .call(
            Method::POST,
            "/api/v6/task",
            json!({"alias": "private", "image": "registry.example.com/team/job:1", "command": "run", "repository_credentials": arn}),
        )
        .await;
    assert_eq!(status, 200, "{def}");
    assert_eq!(def["repository_credentials"], arn);
    let id = def["definition_id"].as_str().unwrap();
    let (_, read) = s
        .call(Method::GET, "/api/v6/task/alias/private", Value::Null)
        .await;
    assert_eq!(read["repository_credentials"], arn, "{read}");
    let (_, listed) = s.call(Method::GET, "/api/v6/task", Value::Null).await;
    assert_eq!(listed["definitions"][0]["repository_credentials"], arn);

    let (status, run) = s
        .call(
            Method::PUT,
            &format!("/api/v6/task/{id}/execute"),
            json!({"run_tags": {"owner_id": "ana"}}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    s.launched_run_task().await;
    let registered = s.counter.bodies("RegisterTaskDefinition");
    assert_eq!(
        registered[0]["containerDefinitions"][0]["repositoryCredentials"],
        json!({"credentialsParameter": arn})
    );
    let task = &s.tasks().await[0];
    let described = s
        .clients
        .ecs
        .describe_tasks()
        .cluster("flotilla-default")
        .tasks(task)
        .send()
        .await
        .unwrap();
    let family = s
        .clients
        .ecs
        .describe_task_definition()
        .task_definition(described.tasks()[0].task_definition_arn().unwrap())
        .send()
        .await
        .unwrap();
    let container = &family.task_definition().unwrap().container_definitions()[0];
    assert_eq!(container.image(), Some("registry.example.com/team/job:1"));
    assert_eq!(
        container
            .repository_credentials()
            .map(|c| c.credentials_parameter()),
        Some(arn)
    );

    // An empty value removes it.
    let (status, updated) = s
        .call(
            Method::PUT,
            &format!("/api/v6/task/{id}"),
            json!({"repository_credentials": ""}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert!(updated.get("repository_credentials").is_none(), "{updated}");
}
