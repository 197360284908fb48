//! A run's whole life on a Kubernetes cluster, through the use cases the
//! functions call (execute, submit, the reconciler, logs, stop), against a
//! fake API server served through kube-rs's `tower-test` mock: it keeps the
//! Jobs it is sent and answers pod, log and event reads from pods the test
//! moves through their phases. Logs are archived to S3 on moto.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Request, Response};
use k8s_openapi::api::batch::v1::Job;
use kube::client::Body;
use serde_json::{Value, json};

use super::connect::KubeConnect;
use super::logs::{EksLogs, S3LogArchive};
use super::reconcile::reconcile;
use super::routed::RoutedEngine;
use crate::app::App;
use crate::domain::cluster::{Cluster, ClusterInput, KubernetesSettings};
use crate::domain::run::{MAX_PREPARING_STEPS, RunStatus};
use crate::domain::spec::Engine;
use crate::error::EngineError;
use crate::ports::{RunTicket, TaskLookup};
use crate::testing::app::TestApp;
use crate::testing::moto::Moto;

const NAMESPACE: &str = "ml";

/// What the fake API server holds.
#[derive(Default)]
struct FakeCluster {
    jobs: BTreeMap<String, Value>,
    creates: usize,
    deletes: Vec<(String, String)>,
    pods: Vec<Value>,
    logs: BTreeMap<String, String>,
    events: Vec<Value>,
    version: u64,
    /// What the next watch of pods sends, one event a line, and the
    /// `resourceVersion` each watch started from.
    watch: Vec<Value>,
    watched_from: Vec<String>,
}

type Shared = Arc<Mutex<FakeCluster>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, FakeCluster> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

fn answer(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    answer(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}),
    )
}

/// Whether `pod` matches a `labelSelector` of `key` and `key=value` terms.
fn selected(pod: &Value, selector: &str) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let labels = &pod["metadata"]["labels"];
        match term.split_once('=') {
            Some((key, value)) => labels[key] == value,
            None => !labels[term].is_null(),
        }
    })
}

fn query(request: &Request<Body>, name: &str) -> Option<String> {
    form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The fake API server's answer to `request`.
async fn serve(shared: &Shared, request: Request<Body>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let jobs = format!("/apis/batch/v1/namespaces/{NAMESPACE}/jobs");
    let pods = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    if method == Method::POST && path == jobs {
        let body = request.into_body().collect_bytes().await.unwrap();
        let job: Value = serde_json::from_slice(&body).unwrap();
        // What kube sends must be a Job the typed API reads back.
        serde_json::from_value::<Job>(job.clone()).unwrap();
        let name = job["metadata"]["name"].as_str().unwrap().to_owned();
        let mut cluster = lock(shared);
        if cluster.jobs.contains_key(&name) {
            return status(
                409,
                "AlreadyExists",
                &format!("jobs.batch \"{name}\" already exists"),
            );
        }
        cluster.creates += 1;
        cluster.jobs.insert(name, job.clone());
        return answer(201, &job);
    }
    if let Some(name) = path.strip_prefix(&format!("{jobs}/")) {
        let mut cluster = lock(shared);
        return match method {
            Method::GET => match cluster.jobs.get(name) {
                Some(job) => answer(200, job),
                None => status(404, "NotFound", &format!("jobs.batch \"{name}\" not found")),
            },
            Method::DELETE => {
                let body = query(&request, "propagationPolicy").unwrap_or_default();
                cluster.deletes.push((name.to_owned(), body));
                match cluster.jobs.remove(name) {
                    Some(job) => answer(200, &job),
                    None => status(404, "NotFound", &format!("jobs.batch \"{name}\" not found")),
                }
            }
            _ => status(405, "MethodNotAllowed", "no"),
        };
    }
    if method == Method::GET && path == pods && query(&request, "watch").is_some() {
        let mut cluster = lock(shared);
        cluster
            .watched_from
            .push(query(&request, "resourceVersion").unwrap_or_default());
        let lines: String = cluster
            .watch
            .drain(..)
            .map(|event| format!("{event}\n"))
            .collect();
        return Response::builder()
            .status(200)
            .body(Body::from(lines.into_bytes()))
            .unwrap();
    }
    if method == Method::GET && path == pods {
        let selector = query(&request, "labelSelector").unwrap_or_default();
        let cluster = lock(shared);
        let items: Vec<&Value> = cluster
            .pods
            .iter()
            .filter(|p| selected(p, &selector))
            .collect();
        return answer(
            200,
            &json!({"kind": "PodList", "apiVersion": "v1",
                    "metadata": {"resourceVersion": cluster.version.to_string()}, "items": items}),
        );
    }
    if method == Method::GET
        && let Some(name) = path
            .strip_prefix(&format!("{pods}/"))
            .and_then(|p| p.strip_suffix("/log"))
    {
        assert_eq!(query(&request, "container").as_deref(), Some("main"));
        let cluster = lock(shared);
        return match cluster.logs.get(name) {
            Some(log) => Response::builder()
                .status(200)
                .body(Body::from(log.clone().into_bytes()))
                .unwrap(),
            None => status(404, "NotFound", &format!("pods \"{name}\" not found")),
        };
    }
    if method == Method::GET && path == format!("/api/v1/namespaces/{NAMESPACE}/events") {
        assert_eq!(
            query(&request, "fieldSelector").as_deref(),
            Some("involvedObject.kind=Pod")
        );
        let cluster = lock(shared);
        return answer(
            200,
            &json!({"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": cluster.events}),
        );
    }
    status(
        404,
        "NotFound",
        &format!("the fake API server has no {method} {path}"),
    )
}

/// A client of a fake API server, and what the server holds.
fn fake_cluster() -> (kube::Client, Shared) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let shared = Shared::default();
    let state = shared.clone();
    tokio::spawn(async move {
        while let Some((request, reply)) = handle.next_request().await {
            reply.send_response(serve(&state, request).await);
        }
    });
    (kube::Client::new(service, "default"), shared)
}

/// Hands every cluster the fake's client.
struct FakeConnect(kube::Client);

#[async_trait]
impl KubeConnect for FakeConnect {
    async fn client(&self, _cluster: &Cluster) -> Result<kube::Client, EngineError> {
        Ok(self.0.clone())
    }
}

/// A pod of Job `job` in `phase` with container state `state`.
fn pod(job: &Value, phase: &str, version: u64, state: Value) -> Value {
    let labels = job["spec"]["template"]["metadata"]["labels"].clone();
    let name = format!("{}-x7k2p", job["metadata"]["name"].as_str().unwrap());
    let mut labels = labels;
    labels["job-name"] = job["metadata"]["name"].clone();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "resourceVersion": version.to_string(),
                     "labels": labels, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": "ip-10-0-3-9.ec2.internal", "containers": [{"name": "main", "image": "python:3.12"}]},
        "status": {"phase": phase, "containerStatuses": [{"name": "main", "image": "python:3.12",
                   "imageID": "", "ready": false, "restartCount": 0, "state": state}]},
    })
}

fn event(pod: &str, reason: &str, message: &str, second: u32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{pod}.{second}"), "namespace": NAMESPACE},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": NAMESPACE},
        "reason": reason, "message": message, "type": "Warning",
        "lastTimestamp": format!("2026-01-01T00:{:02}:{:02}Z", second / 60, second % 60),
    })
}

struct Eks {
    t: TestApp,
    app: App,
    connect: FakeConnect,
    archive: S3LogArchive,
    api: Shared,
    _moto: Moto,
}

async fn eks() -> Eks {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket("run-logs").send().await.unwrap();
    let objects = super::s3::S3Objects::new(
        "run-logs",
        "us-east-1",
        Some(&moto.endpoint),
        sdk.credentials_provider(),
    )
    .unwrap();
    let archive = S3LogArchive::new(objects, "run-logs", "", "us-east-1");
    let (client, api) = fake_cluster();
    let t = TestApp::new();
    let mut app = (*t.app).clone();
    app.settings.kubernetes_clusters = true;
    let storage = Arc::new(t.store.clone());
    app.engine = Arc::new(RoutedEngine::new(
        app.engine.clone(),
        storage.clone(),
        Arc::new(FakeConnect(client.clone())),
    ));
    app.logs = Arc::new(EksLogs::new(
        app.logs.clone(),
        storage,
        Arc::new(FakeConnect(client.clone())),
        Some(archive.clone()),
    ));
    app.create_cluster(ClusterInput {
        name: Some("gpu".into()),
        engine: Some("eks".into()),
        namespace: Some(NAMESPACE.into()),
        kubernetes: Some(KubernetesSettings {
            endpoint: "https://0123456789ABCDEF.gr7.us-east-1.eks.amazonaws.com".into(),
            certificate_authority: "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t".into(),
            gpu_resource: Some("nvidia.com/gpu".into()),
            ..KubernetesSettings::default()
        }),
        ..ClusterInput::default()
    })
    .await
    .unwrap();
    Eks {
        t,
        app,
        connect: FakeConnect(client),
        archive,
        api,
        _moto: moto,
    }
}

impl Eks {
    async fn pass(&self) -> super::reconcile::ReconcileOutcome {
        reconcile(
            &self.app,
            &self.connect,
            Some(&self.archive),
            Duration::ZERO,
        )
        .await
        .unwrap()
    }

    async fn launch(&self, command: &str) -> crate::domain::run::Run {
        let definition = self.t.define("train", command).await;
        let mut request = TestApp::request("ann");
        request.cluster = Some("gpu".into());
        request.engine = Some("eks".into());
        request.resources.gpu = Some(1);
        self.app
            .execute(
                crate::app::DefinitionRef::Id(&definition.definition_id),
                crate::domain::launch::OwnerRule::OwnerId,
                request,
                &crate::domain::identity::Caller::Anyone,
            )
            .await
            .unwrap()
    }

    fn job(&self) -> Value {
        let api = lock(&self.api);
        assert_eq!(api.jobs.len(), 1, "one Job");
        api.jobs.values().next().unwrap().clone()
    }

    fn set_pod(&self, pod: Value, log: Option<&str>) {
        let mut api = lock(&self.api);
        api.version += 1;
        let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
        api.pods.retain(|p| p["metadata"]["name"] != name.as_str());
        api.pods.push(pod);
        if let Some(log) = log {
            api.logs.insert(name, log.to_owned());
        }
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn a_run_on_an_eks_cluster_is_one_job_goes_pending_running_stopped_and_its_log_is_read_live_then_from_s3()
 {
    let eks = eks().await;
    let run = eks.launch("python train.py").await;
    let run_id = run.spec.run_id.clone();
    assert_eq!(run.spec.engine, Engine::Eks);
    assert!(run_id.starts_with("eks-") && run_id.len() == 36, "{run_id}");
    assert_eq!(run.status, RunStatus::Queued);

    // What a dry run would show is the Job the launch creates.
    let manifest = eks.app.engine_manifest(&run).await.unwrap().unwrap();
    assert_eq!(manifest["kind"], "Job");
    assert_eq!(manifest["metadata"]["namespace"], NAMESPACE);

    // A submit delivered twice at once, then once more: one Job.
    let ticket = RunTicket::of(&run);
    let (a, b) = tokio::join!(eks.app.submit(&ticket), eks.app.submit(&ticket));
    a.unwrap();
    b.unwrap();
    eks.app.submit(&ticket).await.unwrap();
    let job = eks.job();
    assert_eq!(job["metadata"]["name"], format!("{run_id}-1"));
    assert_eq!(manifest, job, "the dry run showed what was created");
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
    let run = eks.app.run(&run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Pending);
    assert_eq!(run.task_id.as_deref(), Some(format!("{run_id}-1").as_str()));

    // Pending, unschedulable for a while: the pod's events are steps of
    // preparing, at most the cap however many the cluster keeps.
    let pending = pod(
        &job,
        "Pending",
        1,
        json!({"waiting": {"reason": "ContainerCreating"}}),
    );
    let pod_name = pending["metadata"]["name"].as_str().unwrap().to_owned();
    eks.set_pod(pending, None);
    lock(&eks.api).events = (0..300)
        .map(|i| {
            event(
                &pod_name,
                "FailedScheduling",
                "0/3 nodes are available: 3 Insufficient nvidia.com/gpu",
                i,
            )
        })
        .collect();
    let first = eks.pass().await;
    assert_eq!((first.clusters, first.pods_seen), (1, 1));
    eks.pass().await;
    let run = eks.app.run(&run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Pending);
    let steps: Vec<String> = eks
        .app
        .run_events(&run_id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            crate::domain::event::RunEvent::RunPreparing { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps.len(),
        MAX_PREPARING_STEPS as usize,
        "capped per attempt"
    );
    assert!(
        steps[0].starts_with("FailedScheduling: 0/3 nodes"),
        "{steps:?}"
    );

    // Running: its log is read from the pod, a page after another.
    eks.set_pod(
        pod(
            &job,
            "Running",
            2,
            json!({"running": {"startedAt": "2026-01-01T00:10:00Z"}}),
        ),
        Some("epoch 1 loss 0.9\n"),
    );
    eks.pass().await;
    let run = eks.app.run(&run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.host.as_deref(), Some("ip-10-0-3-9.ec2.internal"));
    let page = eks.app.log_page(&run_id, None, None).await.unwrap();
    assert_eq!(page.log, "epoch 1 loss 0.9\n");
    lock(&eks.api).logs.insert(
        pod_name.clone(),
        "epoch 1 loss 0.9\népoch 2 loss 0.4\n".into(),
    );
    let next = eks
        .app
        .log_page(&run_id, None, Some(&page.last_seen))
        .await
        .unwrap();
    assert_eq!(
        next.log, "époch 2 loss 0.4\n",
        "from where the last page ended"
    );

    // It ends with exit code 3: the log is archived, then the end recorded.
    let log = "epoch 1 loss 0.9\népoch 2 loss 0.4\nTraceback: diverged\n";
    eks.set_pod(
        pod(
            &job,
            "Failed",
            3,
            json!({"terminated": {"exitCode": 3, "reason": "Error",
            "finishedAt": "2026-01-01T00:20:00Z"}}),
        ),
        Some(log),
    );
    let ended = eks.pass().await;
    assert_eq!(ended.archived, 1);
    let run = eks.app.run(&run_id).await.unwrap();
    assert_eq!((run.status, run.exit_code), (RunStatus::Stopped, Some(3)));
    let again = eks.pass().await;
    assert_eq!(
        (again.recorded, again.archived),
        (0, 0),
        "a second pass changes nothing"
    );

    // The cluster cleans the Job and its pod up: the log is S3's now.
    {
        let mut api = lock(&eks.api);
        api.pods.clear();
        api.logs.clear();
        api.jobs.clear();
    }
    let page = eks.app.log_page(&run_id, None, None).await.unwrap();
    assert_eq!(page.log, log);
    let rest = eks
        .app
        .log_page(&run_id, None, Some(&next.last_seen))
        .await
        .unwrap();
    assert_eq!(
        rest.log, "Traceback: diverged\n",
        "the live cursor reads on in S3"
    );
    let link = eks.app.logs.link(&run).unwrap();
    assert_eq!(
        link,
        format!(
            "https://s3.console.aws.amazon.com/s3/object/run-logs?region=us-east-1&prefix=logs%2F{run_id}%2F1.log"
        )
    );
    assert_eq!(lock(&eks.api).creates, 1, "never a second Job");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn stopping_an_eks_run_deletes_its_job_in_the_foreground_and_a_job_gone_unseen_is_known_as_gone()
 {
    let eks = eks().await;
    let run = eks.launch("sleep 3600").await;
    let run_id = run.spec.run_id.clone();
    eks.app.submit(&RunTicket::of(&run)).await.unwrap();
    let job = eks.job();
    eks.set_pod(
        pod(
            &job,
            "Running",
            2,
            json!({"running": {"startedAt": "2026-01-01T00:10:00Z"}}),
        ),
        Some("working\n"),
    );
    eks.pass().await;
    eks.app.stop(&run_id, "ann").await.unwrap();
    let task = format!("{run_id}-1");
    assert_eq!(
        lock(&eks.api).deletes,
        [(task.clone(), String::new())],
        "deleted once"
    );
    // kube sends the propagation policy in the body, not the query: the
    // engine's own tests assert it; here the Job is gone.
    let seen = eks.app.now();
    let found = eks
        .app
        .engine
        .look_up("gpu", std::slice::from_ref(&task), seen)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&found[..], [TaskLookup::Known { .. }]),
        "its pod is still there: {found:?}"
    );
    lock(&eks.api).pods.clear();
    let found = eks
        .app
        .engine
        .look_up("gpu", std::slice::from_ref(&task), seen)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&found[..], [TaskLookup::Unknown { reason, .. }] if reason.contains("no Job")),
        "{found:?}"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn a_kubernetes_run_whose_cluster_is_no_longer_registered_fails_saying_so_and_runs_nowhere_else()
 {
    let eks = eks().await;
    let run = eks.launch("python train.py").await;
    eks.app.delete_cluster("gpu").await.unwrap();
    let outcome = eks.app.submit(&RunTicket::of(&run)).await.unwrap();
    assert!(
        matches!(&outcome, crate::app::SubmitOutcome::Failed { reason } if reason.contains("no longer registered as a Kubernetes cluster")),
        "{outcome:?}"
    );
    assert!(lock(&eks.api).jobs.is_empty(), "no Job");
    let after = eks.app.run(&run.spec.run_id).await.unwrap();
    assert_eq!(after.status, RunStatus::Stopped, "{after:?}");
    assert!(
        eks.t.engine.launches().is_empty(),
        "nothing launched on the server's own engine"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn after_its_list_a_pass_watches_the_pods_from_the_lists_version_and_records_each_change() {
    let eks = eks().await;
    let run = eks.launch("python train.py").await;
    let run_id = run.spec.run_id.clone();
    eks.app.submit(&RunTicket::of(&run)).await.unwrap();
    let job = eks.job();
    eks.set_pod(
        pod(
            &job,
            "Pending",
            1,
            json!({"waiting": {"reason": "ContainerCreating"}}),
        ),
        None,
    );
    let running = pod(
        &job,
        "Running",
        2,
        json!({"running": {"startedAt": "2026-01-01T00:10:00Z"}}),
    );
    let done = pod(
        &job,
        "Succeeded",
        3,
        json!({"terminated": {"exitCode": 0, "reason": "Completed",
        "finishedAt": "2026-01-01T00:20:00Z"}}),
    );
    let name = done["metadata"]["name"].as_str().unwrap().to_owned();
    {
        let mut api = lock(&eks.api);
        api.logs.insert(name, "done\n".into());
        // Reordered and repeated, as a watch may deliver them: the newest
        // state wins and the older ones change nothing.
        api.watch = vec![
            json!({"type": "MODIFIED", "object": running.clone()}),
            json!({"type": "MODIFIED", "object": done.clone()}),
            json!({"type": "MODIFIED", "object": running}),
            json!({"type": "DELETED", "object": done}),
        ];
    }
    let pass = reconcile(
        &eks.app,
        &eks.connect,
        Some(&eks.archive),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(pass.pods_seen, 5, "one listed, four watched: {pass:?}");
    assert_eq!(
        lock(&eks.api).watched_from,
        ["1"],
        "from the list's version"
    );
    let run = eks.app.run(&run_id).await.unwrap();
    assert_eq!((run.status, run.exit_code), (RunStatus::Stopped, Some(0)));
    assert_eq!(pass.archived, 1, "archived once, though seen ended twice");
    let page = eks.app.log_page(&run_id, None, None).await.unwrap();
    assert_eq!(page.log, "done\n");
}

#[tokio::test]
async fn a_server_without_the_eks_engine_refuses_a_kubernetes_cluster_rather_than_run_its_runs_elsewhere()
 {
    let t = TestApp::new();
    let err = t
        .app
        .create_cluster(ClusterInput {
            name: Some("gpu".into()),
            engine: Some("eks".into()),
            kubernetes: Some(KubernetesSettings {
                endpoint: "https://k8s.example".into(),
                certificate_authority: "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t".into(),
                ..KubernetesSettings::default()
            }),
            ..ClusterInput::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("this server runs no Kubernetes clusters"),
        "{err}"
    );
}
