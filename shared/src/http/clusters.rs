//! Clusters: the names that take runs (`GET /api/v1/clusters` and
//! `GET /api/v6/clusters`, strings, the shape Flotilla's UI renders in its
//! cluster select), every cluster with its status and tiers (`GET
//! /api/v7/clusters`, this service's own), and the registry's create, read,
//! update and delete (v6).

use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::json;

use crate::domain::cluster::{Cluster, ClusterInput};
use crate::http::input::json_body;
use crate::http::routes::{Operation, object_of};
use crate::http::{ApiResult, AppState, ok, ok_ignoring};

/// The cluster routes.
pub fn routes() -> Vec<Operation> {
    let tag = "clusters";
    vec![
        Operation::get("/api/v1/clusters", list_cluster_names)
            .doc(tag, "Names of the clusters that take runs")
            .returns_all::<String>("clusters"),
        Operation::get("/api/v6/clusters", list_cluster_names)
            .doc(
                tag,
                "Names of the clusters that take runs (the shape Flotilla's UI reads)",
            )
            .returns_all::<String>("clusters"),
        Operation::get("/api/v7/clusters", list_clusters)
            .doc(tag, "Every cluster, with its status and tiers")
            .returns_all::<Cluster>("clusters"),
        Operation::post("/api/v6/clusters", create_cluster)
            .doc(tag, "Register a cluster")
            .body::<ClusterInput>()
            .returns_shape(|g| answer("created", g)),
        Operation::get("/api/v6/clusters/{cluster_id}", get_cluster)
            .doc(tag, "Read a cluster")
            .returns::<Cluster>(),
        Operation::put("/api/v6/clusters/{cluster_id}", update_cluster)
            .doc(tag, "Change the fields given of a cluster")
            .body::<ClusterInput>()
            .returns_shape(|g| answer("updated", g)),
        Operation::delete("/api/v6/clusters/{cluster_id}", delete_cluster)
            .doc(tag, "Remove a cluster's registration")
            .returns_flag("deleted"),
    ]
}

/// `GET /api/v1/clusters` and `GET /api/v6/clusters`: the names of the
/// clusters that take new runs, as strings (the shape Flotilla's UI reads for
/// its cluster select).
async fn list_cluster_names(State(app): State<AppState>) -> ApiResult {
    let names: Vec<String> = app
        .known_clusters()
        .await?
        .into_iter()
        .filter(|c| c.is_active())
        .map(|c| c.name)
        .collect();
    ok(json!({ "total": names.len(), "clusters": names }))
}

/// `GET /api/v7/clusters`: every cluster with its status and tiers.
async fn list_clusters(State(app): State<AppState>) -> ApiResult {
    let clusters = app.known_clusters().await?;
    ok(json!({ "total": clusters.len(), "clusters": clusters }))
}

async fn create_cluster(State(app): State<AppState>, body: Bytes) -> ApiResult {
    let (input, ignored): (ClusterInput, _) = json_body(&body, &[])?;
    let cluster = app.create_cluster(input).await?;
    ok_ignoring(json!({ "created": true, "cluster": cluster }), ignored)
}

async fn get_cluster(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    ok(app.cluster(&id).await?)
}

async fn update_cluster(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let (input, ignored): (ClusterInput, _) = json_body(&body, &[])?;
    let cluster = app.update_cluster(&id, input).await?;
    ok_ignoring(json!({ "updated": true, "cluster": cluster }), ignored)
}

async fn delete_cluster(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    app.delete_cluster(&id).await?;
    ok(json!({ "deleted": true }))
}

/// `{flag: true, "cluster": {...}}`, the answer to a registration or change.
fn answer(flag: &str, generator: &mut schemars::SchemaGenerator) -> serde_json::Value {
    object_of(&[
        (flag, json!({"type": "boolean"})),
        ("cluster", generator.subschema_for::<Cluster>().to_value()),
    ])
}
