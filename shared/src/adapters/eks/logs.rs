//! Logs of EKS runs: read from the pod through the API server while it is
//! there, and from S3 once archived.
//!
//! - [`S3LogArchive`] keeps one object per attempt, `logs/<run id>/<attempt>.log`
//!   under the deployment's prefix, written by the reconciler when the
//!   attempt's pod ends ([`archive_pod_log`]), at most
//!   [`MAX_ARCHIVE_BYTES`] of it.
//! - [`EksLogs`] is the log source of a deployment with Kubernetes
//!   clusters: a run of one reads from the archive when its attempt is
//!   there, else from its pod (`GET …/pods/<pod>/log`, the `main`
//!   container); any other run's log comes from the deployment's own
//!   source. `last_seen` is a byte offset in the attempt's log, the same in
//!   the pod and in the archive, so a reader following a run carries on
//!   across the moment it is archived. A page is at most [`PAGE_BYTES`]
//!   and never splits a UTF-8 character.
//! - A run's `log_url` is the S3 console page of its current attempt's
//!   object.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::AsyncReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, LogParams};

use super::connect::KubeConnect;
use super::routed::kubernetes_cluster;
use super::s3::S3Objects;
use super::{ATTEMPT_LABEL, CONTAINER_NAME, RUN_ID_LABEL, label_value};
use crate::domain::run::Run;
use crate::domain::spec::Engine;
use crate::error::LogError;
use crate::ports::{AttemptLog, ClusterStore, LogPage, LogSource, LogStream};

/// Most bytes of a log one page carries.
pub const PAGE_BYTES: usize = 1024 * 1024;
/// Most bytes of an attempt's log archived; past them the archive says it
/// was cut.
pub const MAX_ARCHIVE_BYTES: usize = 64 * 1024 * 1024;
/// Most bytes of an answer to a PUT kept.
const ERROR_ANSWER_BYTES: usize = 4096;
/// Most bytes one whole-log answer carries (a Lambda answer holds 6 MB).
pub const MAX_RAW_BYTES: usize = crate::adapters::cloudwatch::MAX_RAW_BYTES;

fn backend(e: impl std::fmt::Display) -> LogError {
    LogError::Backend(e.to_string().into())
}

/// The key of `run_id`'s attempt `attempt` under `prefix`: the stack's
/// lifecycle rule expires everything under `logs/`.
pub fn archive_key(prefix: &str, run_id: &str, attempt: u32) -> String {
    format!("{prefix}logs/{run_id}/{attempt}.log")
}

/// Where ended attempts' logs are kept.
#[derive(Debug, Clone)]
pub struct S3LogArchive {
    objects: S3Objects,
    bucket: String,
    prefix: String,
    region: String,
}

impl S3LogArchive {
    /// Logs in `bucket` (reached through `objects`) under `prefix` (e.g.
    /// `""`, or `"flotilla/"`), in `region` (for console links).
    pub fn new(objects: S3Objects, bucket: &str, prefix: &str, region: &str) -> Self {
        Self {
            objects,
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            region: region.to_owned(),
        }
    }

    /// The object of `run_id`'s attempt `attempt`.
    pub fn key(&self, run_id: &str, attempt: u32) -> String {
        archive_key(&self.prefix, run_id, attempt)
    }

    /// The S3 console page of an attempt's object.
    pub fn console_url(&self, run_id: &str, attempt: u32) -> String {
        let key: String =
            form_urlencoded::byte_serialize(self.key(run_id, attempt).as_bytes()).collect();
        format!(
            "https://s3.console.aws.amazon.com/s3/object/{}?region={}&prefix={key}",
            self.bucket, self.region
        )
    }

    /// Whether an attempt's log is archived (a `HeadObject`; S3 answers a
    /// missing object with 404 to a caller that may list the bucket).
    pub async fn has(&self, run_id: &str, attempt: u32) -> Result<bool, LogError> {
        let key = self.key(run_id, attempt);
        let answer = self
            .objects
            .send("HEAD", &key, &[], Vec::new(), 0)
            .await
            .map_err(backend)?;
        match answer.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(backend(answer.problem(&format!("HEAD {key}")))),
        }
    }

    /// Archives an attempt's log (a `PutObject`).
    pub async fn put(&self, run_id: &str, attempt: u32, log: Vec<u8>) -> Result<(), LogError> {
        let key = self.key(run_id, attempt);
        let headers = [("content-type", "text/plain; charset=utf-8".to_owned())];
        let answer = self
            .objects
            .send("PUT", &key, &headers, log, ERROR_ANSWER_BYTES)
            .await
            .map_err(backend)?;
        if answer.status == 200 {
            Ok(())
        } else {
            Err(backend(answer.problem(&format!("PUT {key}"))))
        }
    }

    /// At most `len` bytes of an archived log from `offset`; `None` when
    /// the attempt is not archived.
    pub async fn read(
        &self,
        run_id: &str,
        attempt: u32,
        offset: usize,
        len: usize,
    ) -> Result<Option<Vec<u8>>, LogError> {
        let key = self.key(run_id, attempt);
        let range = [(
            "range",
            format!("bytes={offset}-{}", offset + len.max(1) - 1),
        )];
        let answer = self
            .objects
            .send("GET", &key, &range, Vec::new(), len.max(1))
            .await
            .map_err(backend)?;
        match answer.status {
            200 | 206 => Ok(Some(answer.body)),
            404 => Ok(None),
            // At or past the end (also: an empty log).
            416 => Ok(Some(Vec::new())),
            _ => Err(backend(answer.problem(&format!("GET {key}")))),
        }
    }
}

/// The longest prefix of `bytes` that is whole UTF-8 characters, as text
/// (invalid bytes inside it replaced).
fn whole_characters(bytes: &[u8]) -> (String, usize) {
    let end = match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        // A character cut at the end waits for the next page.
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => bytes.len(),
    };
    let text = String::from_utf8_lossy(bytes.get(..end).unwrap_or_default()).into_owned();
    (text, end)
}

/// Reads at most `limit` bytes of the `main` container's log of pod `name`
/// from `skip` on.
async fn pod_log(
    pods: &Api<Pod>,
    name: &str,
    skip: usize,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let params = LogParams {
        container: Some(CONTAINER_NAME.to_owned()),
        ..LogParams::default()
    };
    let reader = pods
        .log_stream(name, &params)
        .await
        .map_err(|e| format!("reading pod {name}'s log: {e}"))?;
    let mut reader = std::pin::pin!(reader);
    let mut skipped = Vec::new();
    let mut skipper = (&mut reader).take(skip as u64);
    // Bytes before the cursor are read and dropped, a page at a time.
    loop {
        skipped.clear();
        let n = (&mut skipper)
            .take(PAGE_BYTES as u64)
            .read_to_end(&mut skipped)
            .await
            .map_err(|e| format!("reading pod {name}'s log: {e}"))?;
        if n == 0 {
            break;
        }
    }
    let mut log = Vec::new();
    reader
        .take(limit as u64)
        .read_to_end(&mut log)
        .await
        .map_err(|e| format!("reading pod {name}'s log: {e}"))?;
    Ok(log)
}

/// The pod of `run_id`'s attempt `attempt`, by its labels.
async fn attempt_pod(
    pods: &Api<Pod>,
    run_id: &str,
    attempt: u32,
) -> Result<Option<String>, String> {
    let selector = format!(
        "{RUN_ID_LABEL}={},{ATTEMPT_LABEL}={attempt}",
        label_value(run_id)
    );
    let listed = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| format!("finding the pod of {run_id}'s attempt {attempt}: {e}"))?;
    // The newest, should a Job ever have made two.
    Ok(listed
        .items
        .into_iter()
        .filter_map(|p| Some((p.metadata.creation_timestamp.clone(), p.metadata.name?)))
        .max_by(|a, b| a.0.as_ref().map(|t| t.0).cmp(&b.0.as_ref().map(|t| t.0)))
        .map(|(_, name)| name))
}

/// Archives the log of `pod` (`run_id`'s attempt `attempt`) unless it is
/// archived already: whether it wrote one.
pub async fn archive_pod_log(
    archive: &S3LogArchive,
    pods: &Api<Pod>,
    pod: &Pod,
    run_id: &str,
    attempt: u32,
) -> Result<bool, String> {
    if archive
        .has(run_id, attempt)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(false);
    }
    let Some(name) = pod.metadata.name.as_deref() else {
        return Ok(false);
    };
    let mut log = pod_log(pods, name, 0, MAX_ARCHIVE_BYTES + 1).await?;
    if log.len() > MAX_ARCHIVE_BYTES {
        log.truncate(MAX_ARCHIVE_BYTES);
        log.extend_from_slice(
            format!("\n[flotilla: the log was cut at {MAX_ARCHIVE_BYTES} bytes when archived]\n")
                .as_bytes(),
        );
    }
    archive
        .put(run_id, attempt, log)
        .await
        .map_err(|e| format!("archiving the log to S3: {e}"))?;
    Ok(true)
}

/// The logs of a deployment with Kubernetes clusters.
pub struct EksLogs {
    deployment: Arc<dyn LogSource>,
    clusters: Arc<dyn ClusterStore>,
    connect: Arc<dyn KubeConnect>,
    archive: Option<S3LogArchive>,
}

impl EksLogs {
    /// Logs of Kubernetes clusters' runs from their pods and `archive`; the
    /// others' from `deployment`.
    pub fn new(
        deployment: Arc<dyn LogSource>,
        clusters: Arc<dyn ClusterStore>,
        connect: Arc<dyn KubeConnect>,
        archive: Option<S3LogArchive>,
    ) -> Self {
        Self {
            deployment,
            clusters,
            connect,
            archive,
        }
    }

    /// At most `len` bytes of `log` from `offset`: the archive's, else the
    /// pod's (nothing when neither has it yet).
    async fn read(
        &self,
        log: &AttemptLog<'_>,
        offset: usize,
        len: usize,
    ) -> Result<Option<Vec<u8>>, LogError> {
        let Some(cluster) = kubernetes_cluster(self.clusters.as_ref(), log.cluster)
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        if let Some(archive) = &self.archive
            && let Some(bytes) = archive.read(log.run_id, log.attempt, offset, len).await?
        {
            return Ok(Some(bytes));
        }
        let client = self.connect.client(&cluster).await.map_err(backend)?;
        let pods: Api<Pod> = Api::namespaced(client, cluster.job_namespace());
        let Some(pod) = attempt_pod(&pods, log.run_id, log.attempt)
            .await
            .map_err(backend)?
        else {
            return Ok(Some(Vec::new()));
        };
        match pod_log(&pods, &pod, offset, len).await {
            Ok(bytes) => Ok(Some(bytes)),
            // A pod whose container has not started has no log yet.
            Err(e) if e.contains("ContainerCreating") || e.contains("waiting to start") => {
                Ok(Some(Vec::new()))
            }
            Err(e) => Err(backend(e)),
        }
    }
}

#[async_trait]
impl LogSource for EksLogs {
    async fn page(
        &self,
        log: &AttemptLog<'_>,
        last_seen: Option<&str>,
    ) -> Result<LogPage, LogError> {
        let offset = match last_seen.filter(|s| !s.is_empty()) {
            None => 0,
            Some(cursor) => match cursor.parse::<usize>() {
                Ok(offset) => offset,
                Err(_)
                    if kubernetes_cluster(self.clusters.as_ref(), log.cluster)
                        .await
                        .ok()
                        .flatten()
                        .is_none() =>
                {
                    return self.deployment.page(log, last_seen).await;
                }
                Err(_) => {
                    return Err(LogError::BadCursor(format!(
                        "last_seen \"{cursor}\" is not a cursor this server issued: pass the last_seen of the previous page, or leave it out to start from the beginning"
                    )));
                }
            },
        };
        let Some(bytes) = self.read(log, offset, PAGE_BYTES).await? else {
            return self.deployment.page(log, last_seen).await;
        };
        let (text, used) = whole_characters(&bytes);
        Ok(LogPage {
            log: text,
            last_seen: (offset + used).to_string(),
        })
    }

    async fn stream(&self, log: &AttemptLog<'_>) -> Result<LogStream, LogError> {
        let Some(bytes) = self.read(log, 0, MAX_RAW_BYTES + 1).await? else {
            return self.deployment.stream(log).await;
        };
        if bytes.len() > MAX_RAW_BYTES {
            return Err(LogError::TooLarge {
                limit: MAX_RAW_BYTES,
            });
        }
        let chunk: Result<bytes::Bytes, std::io::Error> = Ok(bytes::Bytes::from(bytes));
        Ok(Box::pin(futures_util::stream::iter([chunk])))
    }

    fn link(&self, run: &Run) -> Option<String> {
        if run.spec.engine != Engine::Eks {
            return self.deployment.link(run);
        }
        let archive = self.archive.as_ref()?;
        Some(archive.console_url(&run.spec.run_id, run.attempt))
    }
}
