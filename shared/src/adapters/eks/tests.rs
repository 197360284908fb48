//! The EKS engine against a mock API server in kube-rs's own convention: a
//! `tower-test` service that asserts each request and answers with the
//! shapes the API server sends. No Kubernetes API server runs here.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use http::{Method, Request, Response};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Toleration};
use kube::client::Body;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::pods::pod_update;
use super::*;
use crate::domain::SecretRef;
use crate::domain::spec::Resources;
use crate::ports::EngineChange;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn engine(settings: EksSettings) -> (EksEngine, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (
        EksEngine::new(kube::Client::new(service, "default"), settings),
        handle,
    )
}

fn spec() -> LaunchSpec {
    LaunchSpec {
        run_id: "eks-5b0e-4c1a-9d7e-2f3a4b5c6d7e".to_owned(),
        attempt: 2,
        definition_id: "Train Model (v2)".to_owned(),
        cluster: "gpu".to_owned(),
        image: "ghcr.io/acme/train:1.4".to_owned(),
        command: Some("python train.py --epochs 3".to_owned()),
        env: vec![
            crate::domain::EnvVar::new("MODE", "definition"),
            crate::domain::EnvVar::new("MODE", "run"),
            crate::domain::EnvVar::new("FLOTILLA_RUN_ID", "eks-5b0e-4c1a-9d7e-2f3a4b5c6d7e"),
        ],
        resources: Resources {
            memory: Some(4096),
            cpu: Some(1536),
            gpu: Some(2),
            ephemeral_storage: None,
        },
        active_deadline_seconds: Some(7200),
        secrets: vec![
            SecretRef {
                name: "DB_PASSWORD".to_owned(),
                value_from: "warehouse".to_owned(),
            },
            SecretRef {
                name: "API_TOKEN".to_owned(),
                value_from: "tokens:acme-api".to_owned(),
            },
        ],
        node_lifecycle: NodeLifecycle::Spot,
        ports: vec![8080],
        repository_credentials: None,
        arch: None,
        service_account: None,
        engine: crate::domain::spec::Engine::Eks,
    }
}

fn settings() -> EksSettings {
    let mut s = EksSettings::in_namespace("flotilla");
    s.service_account = Some("flotilla-runs".to_owned());
    s.spot.node_selector = BTreeMap::from([(
        "eks.amazonaws.com/capacityType".to_owned(),
        "SPOT".to_owned(),
    )]);
    s.spot.tolerations = vec![Toleration {
        key: Some("spot".to_owned()),
        operator: Some("Exists".to_owned()),
        effect: Some("NoSchedule".to_owned()),
        ..Toleration::default()
    }];
    s.ondemand.node_selector = BTreeMap::from([(
        "eks.amazonaws.com/capacityType".to_owned(),
        "ON_DEMAND".to_owned(),
    )]);
    s
}

fn as_json(job: &Job) -> Value {
    serde_json::to_value(job).unwrap()
}

#[test]
fn a_runs_job_holds_its_command_env_secrets_resources_and_placement_and_never_retries_itself() {
    let job = as_json(&job_manifest(&spec(), &settings()).unwrap());
    assert_eq!(job["metadata"]["name"], "eks-5b0e-4c1a-9d7e-2f3a4b5c6d7e-2");
    assert_eq!(job["metadata"]["namespace"], "flotilla");
    let labels = json!({
        "flotilla.run_id": "eks-5b0e-4c1a-9d7e-2f3a4b5c6d7e",
        "flotilla.attempt": "2",
        "flotilla.node_lifecycle": "spot",
    });
    assert_eq!(job["metadata"]["labels"], labels);
    assert_eq!(
        job["metadata"]["annotations"]["flotilla/definition-id"],
        "Train Model (v2)"
    );
    assert_eq!(job["spec"]["backoffLimit"], 0, "retries are Flotilla's");
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 7200);
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 3600);
    let pod = &job["spec"]["template"];
    assert_eq!(
        pod["metadata"]["labels"], labels,
        "the pod carries the run too"
    );
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(pod["spec"]["serviceAccountName"], "flotilla-runs");
    assert_eq!(
        pod["spec"]["nodeSelector"],
        json!({"eks.amazonaws.com/capacityType": "SPOT"})
    );
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}])
    );
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["name"], "main");
    assert_eq!(c["image"], "ghcr.io/acme/train:1.4");
    assert_eq!(
        c["command"],
        json!(["bash", "-c", "python train.py --epochs 3"])
    );
    assert_eq!(
        c["env"],
        json!([
            {"name": "MODE", "value": "definition"},
            {"name": "MODE", "value": "run"},
            {"name": "FLOTILLA_RUN_ID", "value": "eks-5b0e-4c1a-9d7e-2f3a4b5c6d7e"},
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "warehouse", "key": "DB_PASSWORD", "optional": false}}},
            {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "tokens", "key": "acme-api", "optional": false}}},
        ]),
        "the run's env in order (a later entry wins), then its secrets by reference"
    );
    assert_eq!(
        c["resources"],
        json!({
            "requests": {"memory": "4096Mi", "cpu": "1500m"},
            "limits": {"memory": "4096Mi", "cpu": "1500m", "nvidia.com/gpu": "2"},
        }),
        "requests equal limits; GPUs are a limit"
    );
    assert_eq!(c["ports"], json!([{"containerPort": 8080}]));
}

#[test]
fn an_ondemand_run_is_placed_on_ondemand_nodes_and_a_run_without_a_command_keeps_its_images() {
    let mut s = spec();
    s.node_lifecycle = NodeLifecycle::Ondemand;
    s.command = None;
    s.secrets.clear();
    s.resources = Resources::default();
    s.active_deadline_seconds = None;
    let job = as_json(&job_manifest(&s, &settings()).unwrap());
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        pod["nodeSelector"],
        json!({"eks.amazonaws.com/capacityType": "ON_DEMAND"})
    );
    assert!(pod.get("tolerations").is_none(), "{pod}");
    assert!(pod["containers"][0].get("command").is_none());
    assert_eq!(pod["containers"][0]["resources"], json!({}));
    assert!(job["spec"].get("activeDeadlineSeconds").is_none());
    assert_eq!(
        job["metadata"]["labels"]["flotilla.node_lifecycle"],
        "ondemand"
    );
}

#[test]
fn a_secret_that_names_no_kubernetes_secret_is_refused_saying_the_form() {
    let mut s = spec();
    s.secrets = vec![SecretRef {
        name: "DB_PASSWORD".to_owned(),
        value_from: "arn:aws:secretsmanager:us-east-1:1:secret:db".to_owned(),
    }];
    let err = job_manifest(&s, &settings()).unwrap_err();
    assert!(matches!(err, EngineError::Permanent { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("DB_PASSWORD"), "{message}");
    assert!(message.contains("\"<secret>:<key>\""), "{message}");
}

proptest! {
    #[test]
    fn every_job_name_is_a_dns_label_unique_per_attempt(run_id in "\\PC{0,80}", attempt in 1u32..20) {
        let name = job_name(&run_id, attempt);
        prop_assert!(name.len() <= MAX_NAME_LEN, "{name}");
        prop_assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{name}");
        prop_assert!(name.starts_with(|c: char| c.is_ascii_alphanumeric()), "{name}");
        prop_assert!(name.ends_with(|c: char| c.is_ascii_alphanumeric()), "{name}");
        prop_assert_ne!(name, job_name(&run_id, attempt + 1));
    }
}

/// An answer of the API server: `code` with `body` as JSON.
fn answer(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

/// The API server's Status answer of a failed request.
fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    answer(
        code,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        }),
    )
}

async fn body_of(request: Request<Body>) -> Value {
    let bytes = request.into_body().collect_bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_launch_creates_the_attempts_job_and_a_redelivered_launch_finds_it_instead_of_a_second() {
    let (engine, mut handle) = engine(settings());
    let server = tokio::spawn(async move {
        for round in 0..2 {
            let (request, respond) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::POST);
            assert_eq!(
                request.uri().path(),
                "/apis/batch/v1/namespaces/flotilla/jobs"
            );
            let job = body_of(request).await;
            assert_eq!(job["metadata"]["name"], "eks-5b0e-4c1a-9d7e-2f3a4b5c6d7e-2");
            if round == 0 {
                respond.send_response(answer(201, &job));
            } else {
                respond.send_response(status(
                    409,
                    "AlreadyExists",
                    "jobs.batch \"eks-5b0e-4c1a-9d7e-2f3a4b5c6d7e-2\" already exists",
                ));
            }
        }
    });
    let first = engine.launch(&spec()).await.unwrap();
    let again = engine.launch(&spec()).await.unwrap();
    assert_eq!(first.task_id, "eks-5b0e-4c1a-9d7e-2f3a4b5c6d7e-2");
    assert_eq!(again, first, "the same Job, not a second one");
    server.await.unwrap();
}

#[tokio::test]
async fn a_refused_launch_is_permanent_with_what_to_fix_and_a_busy_server_is_retried() {
    let answers = [
        (
            403,
            "Forbidden",
            "jobs.batch is forbidden: User \"flotilla\" cannot create resource \"jobs\"",
            true,
        ),
        (
            422,
            "Invalid",
            "Job.batch \"x\" is invalid: spec.template.spec.containers[0].image: Required value",
            true,
        ),
        (429, "TooManyRequests", "slow down", false),
        (500, "InternalError", "etcd is unhappy", false),
    ];
    for (code, reason, message, permanent) in answers {
        let (engine, mut handle) = engine(settings());
        let server = tokio::spawn(async move {
            let (_, respond) = handle.next_request().await.unwrap();
            respond.send_response(status(code, reason, message));
        });
        let err = engine.launch(&spec()).await.unwrap_err();
        server.await.unwrap();
        assert_eq!(
            matches!(err, EngineError::Permanent { .. }),
            permanent,
            "{code}: {err:?}"
        );
        if permanent {
            assert!(err.to_string().contains(message), "{err}");
        }
        if code == 403 {
            assert!(err.to_string().contains("Role"), "{err}");
        }
    }
}

#[tokio::test]
async fn a_stop_deletes_the_job_in_the_foreground_and_a_job_already_gone_is_stopped() {
    let (engine, mut handle) = engine(settings());
    let server = tokio::spawn(async move {
        for round in 0..2 {
            let (request, respond) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::DELETE);
            assert_eq!(
                request.uri().path(),
                "/apis/batch/v1/namespaces/flotilla/jobs/eks-run-1"
            );
            let body = body_of(request).await;
            assert_eq!(body["propagationPolicy"], "Foreground", "{body}");
            if round == 0 {
                respond.send_response(answer(
                    200,
                    &json!({
                        "apiVersion": "batch/v1", "kind": "Job",
                        "metadata": {"name": "eks-run-1", "namespace": "flotilla",
                                     "finalizers": ["foregroundDeletion"]},
                    }),
                ));
            } else {
                respond.send_response(status(
                    404,
                    "NotFound",
                    "jobs.batch \"eks-run-1\" not found",
                ));
            }
        }
    });
    engine.stop("gpu", "eks-run", "eks-run-1").await.unwrap();
    engine.stop("gpu", "eks-run", "eks-run-1").await.unwrap();
    server.await.unwrap();
}

fn pod(phase: &str, status: Value) -> Pod {
    let mut status = status;
    status["phase"] = json!(phase);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "eks-run-1-abcde", "namespace": "flotilla", "resourceVersion": "4711",
            "labels": {"flotilla.run_id": "eks-run", "flotilla.attempt": "1",
                       "flotilla.node_lifecycle": "spot", "job-name": "eks-run-1"},
        },
        "spec": {"nodeName": "ip-10-0-1-7.ec2.internal", "containers": [{"name": "main", "image": "busybox"}]},
        "status": status,
    }))
    .unwrap()
}

fn container(state: Value) -> Value {
    json!({"containerStatuses": [{"name": "main", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0, "state": state}]})
}

#[test]
fn each_pod_state_is_the_update_its_run_records() {
    let seen = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let change = |p: Pod| pod_update(&p, seen).unwrap().change;

    let creating = pod(
        "Pending",
        container(json!({"waiting": {"reason": "ContainerCreating"}})),
    );
    let update = pod_update(&creating, seen).unwrap();
    assert_eq!((update.run_id.as_str(), update.attempt), ("eks-run", 1));
    assert_eq!(update.engine_version, Some(4711));
    assert_eq!(
        update.change,
        EngineChange::Submitted {
            task_id: "eks-run-1".into()
        }
    );

    for reason in [
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
    ] {
        let p = pod(
            "Pending",
            container(json!({"waiting": {"reason": reason, "message": "secret \"db\" not found"}})),
        );
        assert_eq!(
            change(p),
            EngineChange::InfrastructureFailure {
                reason: format!("{reason}: secret \"db\" not found")
            }
        );
    }

    let unschedulable = pod(
        "Pending",
        json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                               "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}),
    );
    assert_eq!(
        change(unschedulable),
        EngineChange::Progress {
            message: "waiting for a node: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
                .into()
        }
    );

    let running = pod(
        "Running",
        container(json!({"running": {"startedAt": "2026-01-01T00:01:00Z"}})),
    );
    let update = pod_update(&running, seen).unwrap();
    assert_eq!(
        update.change,
        EngineChange::Started {
            task_id: Some("eks-run-1".into()),
            host: Some("ip-10-0-1-7.ec2.internal".into())
        }
    );
    assert_eq!(
        update.at,
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap()
    );

    let exited = |code: i32, reason: &str| {
        pod(
            if code == 0 { "Succeeded" } else { "Failed" },
            container(json!({"terminated": {"exitCode": code, "reason": reason,
                                            "finishedAt": "2026-01-01T00:05:00Z"}})),
        )
    };
    assert_eq!(
        change(exited(0, "Completed")),
        EngineChange::Exited {
            usage: None,
            exit_code: Some(0),
            reason: None
        }
    );
    assert_eq!(
        change(exited(3, "Error")),
        EngineChange::Exited {
            usage: None,
            exit_code: Some(3),
            reason: Some("Error".into())
        }
    );
    match change(exited(137, "OOMKilled")) {
        EngineChange::Exited {
            usage: None,
            exit_code: Some(137),
            reason: Some(r),
        } => assert!(r.starts_with(crate::domain::retry::OUT_OF_MEMORY), "{r}"),
        other => panic!("{other:?}"),
    }

    let mut evicted = pod(
        "Failed",
        json!({"reason": "Evicted", "message": "The node was low on resource: memory.",
               "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"}]}),
    );
    match change(evicted.clone()) {
        EngineChange::InfrastructureFailure { reason } => {
            assert!(reason.starts_with(SPOT_INTERRUPTION_PREFIX), "{reason}");
            assert!(reason.contains("Evicted"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    evicted
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(LIFECYCLE_LABEL.into(), "ondemand".into());
    match change(evicted) {
        EngineChange::InfrastructureFailure { reason } => {
            assert!(!reason.starts_with(SPOT_INTERRUPTION_PREFIX), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    let past_deadline = pod("Failed", json!({"reason": "DeadlineExceeded"}));
    assert_eq!(
        change(past_deadline),
        EngineChange::Exited {
            usage: None,
            exit_code: None,
            reason: Some("exceeded its active_deadline_seconds and was stopped".into())
        }
    );

    let mut stranger = pod("Running", json!({}));
    stranger.metadata.labels = None;
    assert!(pod_update(&stranger, seen).is_none(), "not a run's pod");
}

const SPOT_INTERRUPTION_PREFIX: &str = crate::domain::retry::SPOT_INTERRUPTION;

/// Environment variable naming the `kubernetes-validate` executable
/// (`scripts/kube-schema-env` installs it).
const KUBERNETES_VALIDATE_VAR: &str = "FLOTILLA_KUBERNETES_VALIDATE";

/// Runs kubernetes-validate, strict, against Kubernetes 1.33 on `manifests`;
/// whether it passed, and what it said.
fn kubernetes_validate(manifests: &[Value]) -> (bool, String) {
    let program = std::env::var(KUBERNETES_VALIDATE_VAR).unwrap_or_else(|_| {
        panic!("{KUBERNETES_VALIDATE_VAR} is not set: run scripts/test, which installs kubernetes-validate and sets it")
    });
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = manifests
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let path = dir.path().join(format!("job-{i}.json"));
            std::fs::write(&path, serde_json::to_vec_pretty(m).unwrap()).unwrap();
            path
        })
        .collect();
    let output = std::process::Command::new(program)
        .args(["--kubernetes-version", "1.33.0", "--strict"])
        .args(&files)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

#[test]
#[ignore = "needs kubernetes-validate: run scripts/test"]
fn every_job_manifest_the_engine_makes_is_valid_against_the_kubernetes_schema() {
    let mut minimal = spec();
    minimal.node_lifecycle = NodeLifecycle::Ondemand;
    minimal.command = None;
    minimal.secrets.clear();
    minimal.env.clear();
    minimal.ports.clear();
    minimal.resources = Resources::default();
    minimal.active_deadline_seconds = None;
    let mut storage = spec();
    storage.resources.ephemeral_storage = Some(20480);
    storage.resources.gpu = None;
    let manifests: Vec<Value> = [spec(), minimal, storage]
        .iter()
        .map(|s| as_json(&job_manifest(s, &settings()).unwrap()))
        .collect();
    let (valid, said) = kubernetes_validate(&manifests);
    assert!(valid, "{said}");

    // The check itself can fail: a misspelt field is refused.
    let mut misspelt = manifests[0].clone();
    let spec = misspelt["spec"].as_object_mut().unwrap();
    let limit = spec.remove("backoffLimit").unwrap();
    spec.insert("backofLimit".to_owned(), limit);
    let (valid, said) = kubernetes_validate(&[misspelt]);
    assert!(!valid, "a Job with backofLimit passed: {said}");
}
