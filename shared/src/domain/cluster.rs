//! Clusters: where runs execute, each with its own queue, and which of them
//! an execute request lands on.
//!
//! A cluster is named once and its name is its id. Its status says whether it
//! takes new runs (`active`) or not (`maintenance`, `offline`); its
//! `allowed_tiers` say which tiers routing may send to it. The clusters a
//! deployment has without registering them (the default cluster, and on AWS
//! every cluster of the stack) count as active with no tiers.
//!
//! Routing, in order: the request's `cluster` (it must exist and be active);
//! else, with a `tier`, an active cluster allowing that tier (spread over
//! them by run id); else the definition's `target_cluster`; else the default
//! cluster.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::error::ValidationError;

/// Whether a cluster takes new runs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ClusterStatus {
    /// Takes new runs.
    #[default]
    Active,
    /// Temporarily takes none.
    Maintenance,
    /// Takes none.
    Offline,
}

impl ClusterStatus {
    /// Every status.
    pub const ALL: [ClusterStatus; 3] = [Self::Active, Self::Maintenance, Self::Offline];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Maintenance => "maintenance",
            Self::Offline => "offline",
        }
    }

    /// Parses a wire name.
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| {
                ValidationError::new(format!(
                    "status \"{value}\" is not a cluster status: use active, maintenance or offline"
                ))
            })
    }
}

/// A cluster, in Flotilla's ClusterMetadata shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Cluster {
    /// Same as `name`.
    pub id: String,
    /// Name; runs and queues refer to it.
    pub name: String,
    /// Whether it takes new runs.
    pub status: ClusterStatus,
    /// Why it has that status.
    #[serde(default)]
    pub status_reason: String,
    /// Since when.
    pub status_since: DateTime<Utc>,
    /// Tiers routing may send to it.
    #[serde(default)]
    pub allowed_tiers: Vec<String>,
    /// Free-form capabilities.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Version of the cluster software, for information.
    #[serde(default)]
    pub cluster_version: String,
    /// Namespace, for information.
    #[serde(default)]
    pub namespace: String,
    /// Region, for information.
    #[serde(default)]
    pub region: String,
    /// The most runs of this cluster launched at once (PENDING or
    /// RUNNING); none: only the engine's own limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Whether it is only implied by the deployment (never registered).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub implicit: bool,
}

/// A cluster create or update body. Unknown fields (Flotilla's EMR and Spark
/// settings) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
pub struct ClusterInput {
    /// Name (create; on update it must match).
    pub name: Option<String>,
    /// Status, default `active`.
    pub status: Option<String>,
    /// Why.
    pub status_reason: Option<String>,
    /// Tiers.
    pub allowed_tiers: Option<Vec<String>>,
    /// Capabilities.
    pub capabilities: Option<Vec<String>>,
    /// Version.
    pub cluster_version: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// The most runs launched at once; 0 removes the cap.
    pub max_concurrency: Option<i64>,
}

/// The highest `max_concurrency` a cluster takes.
pub const MAX_CONCURRENCY: i64 = 100_000;

/// Whether `name` can name a cluster (and therefore a queue).
pub fn is_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn name_problem(name: &str) -> String {
    format!("cluster name \"{name}\" is not valid: use up to 64 letters, digits, '-' or '_'")
}

impl Cluster {
    /// A cluster the deployment has without registering it.
    pub fn implicit(name: &str, now: DateTime<Utc>) -> Self {
        Self {
            id: name.to_owned(),
            name: name.to_owned(),
            status: ClusterStatus::Active,
            status_reason: String::new(),
            status_since: now,
            allowed_tiers: vec![],
            capabilities: vec![],
            cluster_version: String::new(),
            namespace: String::new(),
            region: String::new(),
            max_concurrency: None,
            updated_at: now,
            implicit: true,
        }
    }

    /// A new cluster from a create body.
    pub fn create(input: ClusterInput, now: DateTime<Utc>) -> Result<Self, ValidationError> {
        let name = input.name.clone().unwrap_or_default();
        let mut problems = Vec::new();
        if name.is_empty() {
            problems.push("name is required, e.g. {\"name\": \"gpu-team\"}".to_owned());
        } else if !is_cluster_name(&name) {
            problems.push(name_problem(&name));
        }
        let mut cluster = Self::implicit(&name, now);
        cluster.implicit = false;
        if let Err(e) = cluster.apply(input, now) {
            problems.extend(e.problems);
        }
        ValidationError::from_problems(problems)?;
        Ok(cluster)
    }

    /// This cluster with a full update applied (fields left out keep their
    /// value; the name cannot change).
    pub fn updated(
        &self,
        input: ClusterInput,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        if let Some(name) = input.name.as_deref().filter(|n| *n != self.name) {
            return Err(ValidationError::new(format!(
                "a cluster cannot be renamed (from \"{}\" to \"{name}\"): create a new one",
                self.name
            )));
        }
        let mut next = self.clone();
        next.implicit = false;
        next.apply(input, now)?;
        Ok(next)
    }

    fn apply(&mut self, input: ClusterInput, now: DateTime<Utc>) -> Result<(), ValidationError> {
        let mut problems = Vec::new();
        if let Some(status) = input.status.as_deref() {
            match ClusterStatus::parse(status) {
                Ok(s) => {
                    if s != self.status {
                        self.status_since = now;
                    }
                    self.status = s;
                }
                Err(e) => problems.extend(e.problems),
            }
        }
        {
            use crate::domain::limits::{
                MAX_NAME_BYTES, MAX_TEXT_BYTES, length_problem, names_problems, nul_problem,
            };
            let texts = [
                ("status_reason", &input.status_reason, MAX_TEXT_BYTES),
                ("cluster_version", &input.cluster_version, MAX_NAME_BYTES),
                ("namespace", &input.namespace, MAX_NAME_BYTES),
                ("region", &input.region, MAX_NAME_BYTES),
            ];
            for (field, value, max) in texts {
                if let Some(value) = value {
                    problems.extend(length_problem(field, value, max));
                    problems.extend(nul_problem(field, value));
                }
            }
            for (field, names) in [
                ("allowed_tiers", &input.allowed_tiers),
                ("capabilities", &input.capabilities),
            ] {
                if let Some(names) = names {
                    problems.extend(names_problems(field, names));
                }
            }
        }
        if let Some(tiers) = input.allowed_tiers {
            if tiers.iter().any(|t| t.trim().is_empty()) {
                problems.push("allowed_tiers: a tier cannot be empty".to_owned());
            }
            self.allowed_tiers = tiers;
        }
        if let Some(v) = input.status_reason {
            self.status_reason = v;
        }
        if let Some(v) = input.capabilities {
            self.capabilities = v;
        }
        if let Some(v) = input.cluster_version {
            self.cluster_version = v;
        }
        if let Some(v) = input.namespace {
            self.namespace = v;
        }
        if let Some(v) = input.region {
            self.region = v;
        }
        match input.max_concurrency {
            None => {}
            Some(0) => self.max_concurrency = None,
            Some(n @ 1..=MAX_CONCURRENCY) => self.max_concurrency = u32::try_from(n).ok(),
            Some(n) => problems.push(format!(
                "max_concurrency {n} is not valid: use 1 to {MAX_CONCURRENCY} runs at once, or 0 for no cap"
            )),
        }
        self.updated_at = now;
        ValidationError::from_problems(problems)
    }

    /// Whether it takes new runs.
    pub fn is_active(&self) -> bool {
        self.status == ClusterStatus::Active
    }
}

/// Why the queued runs of `cluster`, whose status is `status` (not
/// active), wait.
pub fn not_active_reason(cluster: &str, status: ClusterStatus) -> String {
    let state = match status {
        ClusterStatus::Maintenance => "in maintenance",
        ClusterStatus::Offline | ClusterStatus::Active => "offline",
    };
    format!("cluster {cluster} is {state}: its queued runs wait until it is active again")
}

/// What routing needs to know about one launch.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// The cluster the request names.
    pub cluster: Option<&'a str>,
    /// The request's tier.
    pub tier: Option<&'a str>,
    /// The definition's target cluster.
    pub target_cluster: Option<&'a str>,
    /// The deployment's default cluster.
    pub default_cluster: &'a str,
    /// Spreads tier routing over the eligible clusters (the run id).
    pub spread_key: &'a str,
}

/// Picks the cluster of a launch among `clusters` (every known cluster).
pub fn route(clusters: &[Cluster], request: RouteRequest<'_>) -> Result<String, ValidationError> {
    let names = || {
        clusters
            .iter()
            .filter(|c| c.is_active())
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = request.cluster.filter(|c| !c.is_empty()) {
        return match clusters.iter().find(|c| c.name == name) {
            Some(c) if c.is_active() => Ok(name.to_owned()),
            Some(c) => Err(ValidationError::new(format!(
                "cluster \"{name}\" is {} and takes no new runs{}: choose another, one of: {}",
                c.status.as_str(),
                if c.status_reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", c.status_reason)
                },
                names()
            ))),
            None if !is_cluster_name(name) => Err(ValidationError::new(name_problem(name))),
            None => Err(ValidationError::new(format!(
                "cluster \"{name}\" does not exist: use one of {}, or leave it out",
                names()
            ))),
        };
    }
    if let Some(tier) = request.tier.filter(|t| !t.is_empty()) {
        let mut eligible: Vec<&Cluster> = clusters
            .iter()
            .filter(|c| c.is_active() && c.allowed_tiers.iter().any(|t| t == tier))
            .collect();
        eligible.sort_by(|a, b| a.name.cmp(&b.name));
        if !eligible.is_empty() {
            let spread = request
                .spread_key
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
            return Ok(eligible[spread % eligible.len()].name.clone());
        }
    }
    Ok(request
        .target_cluster
        .filter(|c| !c.is_empty())
        .unwrap_or(request.default_cluster)
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH
    }

    fn cluster(name: &str, status: &str, tiers: &[&str]) -> Cluster {
        Cluster::create(
            ClusterInput {
                name: Some(name.into()),
                status: Some(status.into()),
                allowed_tiers: Some(tiers.iter().map(|t| t.to_string()).collect()),
                ..Default::default()
            },
            now(),
        )
        .unwrap()
    }

    fn req<'a>(cluster: Option<&'a str>, tier: Option<&'a str>) -> RouteRequest<'a> {
        RouteRequest {
            cluster,
            tier,
            target_cluster: Some("target"),
            default_cluster: "default",
            spread_key: "run-1",
        }
    }

    #[test]
    fn max_concurrency_takes_one_to_the_limit_zero_removes_it_and_anything_else_is_refused() {
        let with = |n: i64| {
            Cluster::create(
                ClusterInput {
                    name: Some("capped".into()),
                    max_concurrency: Some(n),
                    ..Default::default()
                },
                now(),
            )
        };
        assert_eq!(with(1).unwrap().max_concurrency, Some(1));
        let top = MAX_CONCURRENCY;
        assert_eq!(with(top).unwrap().max_concurrency, u32::try_from(top).ok());
        for bad in [-1, top + 1, i64::MAX, i64::MIN] {
            let e = with(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("max_concurrency {bad} is not valid"))
                    && e.contains("0 for no cap"),
                "{e}"
            );
        }
        let capped = with(10).unwrap();
        let removed = capped
            .updated(
                ClusterInput {
                    max_concurrency: Some(0),
                    ..Default::default()
                },
                now(),
            )
            .unwrap();
        assert_eq!(removed.max_concurrency, None, "0 removes the cap");
        let kept = capped.updated(ClusterInput::default(), now()).unwrap();
        assert_eq!(
            kept.max_concurrency,
            Some(10),
            "an update without it keeps it"
        );
    }

    #[test]
    fn a_named_cluster_must_exist_and_be_active() {
        let all = [
            cluster("prod", "active", &["1"]),
            cluster("old", "maintenance", &["1"]),
        ];
        assert_eq!(route(&all, req(Some("prod"), None)).unwrap(), "prod");
        let e = route(&all, req(Some("old"), None)).unwrap_err().to_string();
        assert!(e.contains("maintenance") && e.contains("prod"), "{e}");
        let e = route(&all, req(Some("nope"), None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn a_tier_routes_to_an_active_cluster_allowing_it_else_target_else_default() {
        let all = [
            cluster("a", "active", &["1", "2"]),
            cluster("b", "maintenance", &["3"]),
        ];
        assert_eq!(route(&all, req(None, Some("2"))).unwrap(), "a");
        assert_eq!(route(&all, req(None, Some("3"))).unwrap(), "target");
        let mut r = req(None, None);
        r.target_cluster = None;
        assert_eq!(route(&all, r).unwrap(), "default");
    }

    #[test]
    fn statuses_are_checked_and_names_are_fixed() {
        let e = Cluster::create(
            ClusterInput {
                name: Some("x y".into()),
                status: Some("ACTIVE".into()),
                ..Default::default()
            },
            now(),
        )
        .unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        let c = cluster("a", "active", &[]);
        let e = c
            .updated(
                ClusterInput {
                    name: Some("b".into()),
                    ..Default::default()
                },
                now(),
            )
            .unwrap_err();
        assert!(e.to_string().contains("renamed"));
    }
}
