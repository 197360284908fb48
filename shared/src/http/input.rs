//! Reading requests: JSON bodies whatever their Content-Type, field names
//! matched case-insensitively (Flotilla's UI sends `run_tags.OWNER_ID`), and
//! list query strings parsed against closed sets of keys.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::domain::EnvVar;
use crate::domain::query::{
    DefinitionQuery, DefinitionSortField, MAX_LIMIT, Paging, RunQuery, RunSortField, SortOrder,
    TextFilter, TimeRange,
};
use crate::domain::run::RunStatus;
use crate::http::error::ApiError;

/// Lower-cases the keys of `value` (an object) and of the nested objects named
/// by `paths` (`"run_tags"`, `"env[]"` for each element of the `env` array).
/// A key already in lower case wins over a differently cased duplicate. Keys of
/// user maps such as `labels` are left alone.
fn fold_keys(value: &mut Value, paths: &[&str]) {
    let Value::Object(map) = value else { return };
    let mut folded = Map::with_capacity(map.len());
    let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
    let (exact, other): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|(k, _)| *k == k.to_lowercase());
    for (k, v) in exact {
        folded.insert(k, v);
    }
    for (k, v) in other {
        folded.entry(k.to_lowercase()).or_insert(v);
    }
    for path in paths {
        let (head, rest) = path.split_once('.').unwrap_or((path, ""));
        let rest: Vec<&str> = if rest.is_empty() { vec![] } else { vec![rest] };
        if let Some(key) = head.strip_suffix("[]") {
            if let Some(Value::Array(items)) = folded.get_mut(key) {
                for item in items {
                    fold_keys(item, &rest);
                }
            }
        } else if let Some(inner) = folded.get_mut(head) {
            fold_keys(inner, &rest);
        }
    }
    *map = folded;
}

/// A request body type: its own fields come from its JSON Schema; the
/// fields of Flotilla's that this service takes but does not use are named
/// here, and are answered back under `ignored_fields`. Any other field is a
/// 400 that names it (and the nearest field there is), so a typo never goes
/// unnoticed.
pub trait Body: DeserializeOwned + schemars::JsonSchema + 'static {
    /// Flotilla's fields this service accepts and does not use.
    const FLOTILLA_FIELDS: &'static [&'static str] = &[];
    /// Whether any other field is taken too (a status report is a whole run).
    const OPEN: bool = false;
}

impl Body for crate::domain::definition::DefinitionInput {
    const FLOTILLA_FIELDS: &'static [&'static str] = &[
        "definition_id",
        "arn",
        "container_name",
        "privileged",
        "shared_memory_size",
        "user",
        "created_at",
        "updated_at",
    ];
}

impl Body for crate::domain::launch::LaunchRequest {
    const FLOTILLA_FIELDS: &'static [&'static str] = &["spark_extension", "command_hash"];
}

impl Body for TemplateExecution {
    const FLOTILLA_FIELDS: &'static [&'static str] =
        &["spark_extension", "command_hash", "run_tags"];
}

impl Body for crate::domain::template::TemplateInput {
    const FLOTILLA_FIELDS: &'static [&'static str] = &["template_id", "version", "created_at"];
}

impl Body for crate::domain::cluster::ClusterInput {
    const FLOTILLA_FIELDS: &'static [&'static str] = &[
        "id",
        "status_since",
        "updated_at",
        "emr_virtual_cluster",
        "spark_server_uri",
    ];
}

impl Body for crate::domain::report::StatusReport {
    const OPEN: bool = true;
}

/// The top-level field names of `T`'s JSON Schema, found once per type.
fn fields_of<T: schemars::JsonSchema + 'static>() -> std::sync::Arc<Vec<String>> {
    use std::any::TypeId;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static FIELDS: OnceLock<Mutex<HashMap<TypeId, Arc<Vec<String>>>>> = OnceLock::new();
    let cache = FIELDS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    Arc::clone(cache.entry(TypeId::of::<T>()).or_insert_with(|| {
        let schema = schemars::schema_for!(T);
        let mut names: Vec<String> = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        Arc::new(names)
    }))
}

/// The number of single-character edits between `a` and `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let replaced = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = replaced.min(previous + 1).min(row[j] + 1);
        }
    }
    row[b.len()]
}

/// The field a misspelt `name` most likely meant, if one is close.
fn nearest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4) && *d < k.len())
        .min()
        .map(|(_, k)| k)
}

/// Parses a JSON body into `T`. An empty body counts as `{}`. Errors name the
/// field and what was expected; a field `T` does not know is refused with the
/// nearest it does. Returns the body and the Flotilla fields it ignored.
pub fn json_body<T: Body>(body: &[u8], nested: &[&str]) -> Result<(T, Vec<String>), ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8 text: send JSON"))?;
    let mut value: Value = if text.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_str(text).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object, e.g. {\"alias\": \"…\"}",
        ));
    }
    fold_keys(&mut value, nested);
    let mut ignored = Vec::new();
    if let Value::Object(map) = &mut value {
        let known = fields_of::<T>();
        let mut problems = Vec::new();
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            if known.contains(&key) {
                continue;
            }
            if T::FLOTILLA_FIELDS.contains(&key.as_str()) || T::OPEN {
                map.remove(&key);
                ignored.push(key);
                continue;
            }
            problems.push(match nearest(&key, known.iter().map(String::as_str)) {
                Some(near) => format!("unknown field `{key}` — did you mean `{near}`?"),
                None => format!("unknown field `{key}`: the fields are {}", known.join(", ")),
            });
        }
        if !problems.is_empty() {
            return Err(crate::domain::ValidationError { problems }.into());
        }
    }
    let parsed = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match Some(path)
            .filter(|p| p != ".")
            .or_else(|| flattened_culprit::<T>(&value))
        {
            Some(path) => ApiError::bad_request(format!("invalid value for \"{path}\": {inner}")),
            None => ApiError::bad_request(format!("invalid request body: {inner}")),
        }
    })?;
    Ok((parsed, ignored))
}

/// The top-level field that makes `body` fail to parse as `T`, for errors
/// whose path serde loses: fields of a `#[serde(flatten)]`ed struct (the
/// resources, a template execution's launch fields) are parsed from a buffer
/// that does not track paths. Every field of a body is optional, so the
/// culprit is the one field that fails alone. Only runs on a refused body.
fn flattened_culprit<T: DeserializeOwned>(body: &Value) -> Option<String> {
    let Value::Object(map) = body else {
        return None;
    };
    map.iter()
        .find(|(key, field)| {
            let alone = Value::Object(Map::from_iter([((*key).clone(), (*field).clone())]));
            T::deserialize(&alone).is_err()
        })
        .map(|(key, _)| key.clone())
}

/// A v7 template execute body: the launch fields at the top level (the
/// cluster as `cluster_name`, the owner as `owner_id`), the payload and
/// `dry_run`.
#[derive(Debug, Clone, Default, serde::Deserialize, schemars::JsonSchema)]
pub struct TemplateExecution {
    /// Who launches it (required).
    pub owner_id: Option<String>,
    /// Cluster to run on.
    pub cluster_name: Option<String>,
    /// The payload, merged over the template's defaults.
    pub template_payload: Option<serde_json::Value>,
    /// Return the run without recording or queueing it.
    #[serde(default)]
    pub dry_run: bool,
    /// Every other launch field.
    #[serde(flatten)]
    pub launch: crate::domain::launch::LaunchRequest,
}

impl TemplateExecution {
    /// The launch request (the owner carried as `run_tags.owner_id`, the
    /// cluster as `cluster`), the payload, and whether it is a dry run.
    pub fn into_parts(self) -> (crate::domain::launch::LaunchRequest, Option<Value>, bool) {
        let mut launch = self.launch;
        launch.run_tags = Some(crate::domain::launch::RunTags {
            owner_id: self.owner_id,
            ..Default::default()
        });
        if self.cluster_name.as_deref().is_some_and(|c| !c.is_empty()) {
            launch.cluster = self.cluster_name;
        }
        (launch, self.template_payload, self.dry_run)
    }
}

/// A parsed query string: repeated keys keep every value, in order.
#[derive(Debug, Default, Clone)]
pub struct QueryPairs(Vec<(String, String)>);

impl QueryPairs {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            raw.map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        )
    }

    /// Every non-empty value of `key`.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The last non-empty value of `key`.
    pub fn one(&self, key: &str) -> Option<String> {
        self.all(key).pop()
    }

    /// The number `key` holds; as Flotilla reads it, a value that is not a
    /// whole number of 0 or more (Flotilla's own UI sends `offset=NaN` for a
    /// hand-typed page) counts as `default`, and [`Self::lenient`] names it.
    fn number(&self, key: &str, default: u64) -> u64 {
        self.one(key)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(default)
    }

    /// The paging values that were not whole numbers and were read as the
    /// default, each as `key=value`, for the envelope's `ignored`.
    pub fn lenient(&self) -> Vec<String> {
        ["limit", "offset"]
            .iter()
            .filter_map(|key| {
                let v = self.one(key)?;
                v.trim()
                    .parse::<u64>()
                    .is_err()
                    .then(|| format!("{key}={v}"))
            })
            .collect()
    }

    /// Refuses a query holding a NUL byte, which no filter can mean.
    pub fn refuse_nul(&self) -> Result<(), ApiError> {
        match self
            .0
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            Some((key, _)) => Err(ApiError::bad_request(format!(
                "{} holds a NUL byte: remove it",
                key.replace('\0', "\\0")
            ))),
            None => Ok(()),
        }
    }

    /// `limit` and `offset`.
    pub fn paging(&self) -> Result<Paging, ApiError> {
        let defaults = Paging::default();
        let limit = self.number("limit", defaults.limit);
        if limit > MAX_LIMIT {
            return Err(ApiError::bad_request(format!(
                "limit {limit} is too large: ask for at most {MAX_LIMIT} rows and page with offset"
            )));
        }
        Ok(Paging {
            limit,
            offset: self.number("offset", 0),
        })
    }

    /// `order`, or `default`.
    pub fn order(&self, default: SortOrder) -> Result<SortOrder, ApiError> {
        self.one("order")
            .map(|o| SortOrder::parse(&o))
            .transpose()
            .map(|o| o.unwrap_or(default))
            .map_err(ApiError::from)
    }

    /// The distinct keys present that are not in `known`, in order.
    pub fn unknown_keys(&self, known: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (k, _) in &self.0 {
            if !known.contains(&k.as_str()) && !out.contains(k) {
                out.push(k.clone());
            }
        }
        out
    }

    /// `env=NAME|VALUE` filters.
    pub fn env(&self) -> Result<Vec<EnvVar>, ApiError> {
        self.all("env")
            .into_iter()
            .map(|v| match v.split_once('|') {
                Some((name, value)) if !name.is_empty() && !value.contains('|') => {
                    Ok(EnvVar::new(name, value))
                }
                _ => Err(ApiError::bad_request(format!(
                    "env filter \"{v}\" is not valid: write it as NAME|VALUE, e.g. env=MODEL|v2"
                ))),
            })
            .collect()
    }

    /// `<field>_since` and `<field>_until`.
    pub fn time_range(&self, field: &str) -> Result<TimeRange, ApiError> {
        let get = |suffix: &str| {
            let key = format!("{field}_{suffix}");
            self.one(&key).map(|v| parse_time(&key, &v)).transpose()
        };
        Ok(TimeRange {
            since: get("since")?,
            until: get("until")?,
        })
    }

    /// Whether `key` is `true` (any case).
    pub fn flag(&self, key: &str) -> bool {
        self.one(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// Parses a time filter value: RFC 3339 (`2026-11-01T09:30:00Z`), a date and
/// time without zone (taken as UTC, as HTML inputs send it), or a date.
fn parse_time(key: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    let v = value.trim();
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(v, f).ok())
                .map(|t| t.and_utc())
                .ok_or(())
        })
        .or_else(|_| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
                .ok_or(())
        })
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{key} \"{value}\" is not a time: use RFC 3339 such as 2026-11-01T09:30:00Z, or a date such as 2026-11-01"
            ))
        })
}

/// Longest value a run list's cursor carries: a run id, alias or cluster is
/// far shorter, and a store may use the values in keys.
const MAX_CURSOR_VALUE: usize = 512;

/// Query keys every list understands besides its filters.
pub const PAGING_KEYS: &[&str] = &["limit", "offset", "sort_by", "order", "next_token"];

/// What a `next_token` carries, opaque to clients (hex of its JSON): the
/// fingerprint of the query it continues, and where the next page starts,
/// after a run's place (run lists) or at an offset (the small lists).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ListToken {
    q: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<crate::domain::query::RunCursor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
}

/// The `next_token` of a run list's page whose next page starts just after
/// the place `after`.
pub fn run_token(query: &RunQuery, after: crate::domain::query::RunCursor) -> String {
    encode_token(&ListToken {
        q: query.fingerprint(),
        after: Some(after),
        offset: None,
    })
}

/// The `next_token` of a small list's page whose next page starts at `offset`.
pub fn offset_token(fingerprint: String, offset: u64) -> String {
    encode_token(&ListToken {
        q: fingerprint,
        after: None,
        offset: Some(offset),
    })
}

fn encode_token(token: &ListToken) -> String {
    hex::encode(serde_json::to_vec(token).unwrap_or_default())
}

impl QueryPairs {
    /// The paging of a small list (`what`: "definition", "template"), whose
    /// `next_token` carries the offset its page starts at.
    pub fn offset_paging(&self, fingerprint: &str, what: &str) -> Result<Paging, ApiError> {
        let mut paging = self.paging()?;
        if let Some(token) = self.token(fingerprint)? {
            paging.offset = token.offset.ok_or_else(|| {
                ApiError::bad_request(format!(
                    "next_token is not one of a {what} list's: leave it out to start from the first page"
                ))
            })?;
        }
        Ok(paging)
    }

    /// The `next_token` sent, checked to continue the query `fingerprint`
    /// names; none when none was sent.
    fn token(&self, fingerprint: &str) -> Result<Option<ListToken>, ApiError> {
        let Some(text) = self.one("next_token").filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        if self.number("offset", 0) > 0 {
            return Err(ApiError::bad_request(
                "pass either offset or next_token, not both: a next_token already says where its page starts",
            ));
        }
        let token: ListToken = hex::decode(text.trim())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "next_token is not one this service made: pass the next_token of the previous page unchanged, or leave it out to start from the first page",
                )
            })?;
        if token.q != fingerprint {
            return Err(ApiError::bad_request(
                "next_token continues a list with other filters or another sort: send the same filters, sort_by and order as the page it came from, or leave it out to start again",
            ));
        }
        Ok(Some(token))
    }
}

/// Filter keys of run lists.
pub const RUN_FILTER_KEYS: &[&str] = &[
    "status",
    "definition_id",
    "alias",
    "group_name",
    "cluster",
    "cluster_name",
    "owner_id",
    "user",
    "image",
    "command",
    "exit_reason",
    "env",
    "queued_at_since",
    "queued_at_until",
    "started_at_since",
    "started_at_until",
    "finished_at_since",
    "finished_at_until",
];

/// Filter keys of definition lists.
pub const DEFINITION_FILTER_KEYS: &[&str] = &["alias", "group_name", "image", "env"];

/// Parses the query of a run list. Keys other than the ones documented are
/// ignored (Flotilla's UI forwards its own page parameters); the envelope
/// lists them under `ignored`.
pub fn run_query(q: &QueryPairs) -> Result<RunQuery, ApiError> {
    q.refuse_nul()?;
    let defaults = RunQuery::default();
    let mut statuses = Vec::new();
    for value in q.all("status") {
        let status = RunStatus::parse(&value).ok_or_else(|| {
            let names: Vec<_> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::bad_request(format!(
                "invalid status [{value}]: use one of {}",
                names.join(", ")
            ))
        })?;
        statuses.push(status);
    }
    let mut clusters = q.all("cluster");
    clusters.extend(q.all("cluster_name"));
    let mut owners = q.all("owner_id");
    owners.extend(q.all("user"));
    Ok(RunQuery {
        statuses,
        definition_ids: q.all("definition_id"),
        alias: TextFilter(q.all("alias")),
        group_name: TextFilter(q.all("group_name")),
        clusters,
        owners,
        image: TextFilter(q.all("image")),
        command: TextFilter(q.all("command")),
        exit_reason: TextFilter(q.all("exit_reason")),
        env: q.env()?,
        queued_at: q.time_range("queued_at")?,
        started_at: q.time_range("started_at")?,
        finished_at: q.time_range("finished_at")?,
        sort_by: q
            .one("sort_by")
            .map(|s| RunSortField::parse(&s))
            .transpose()?
            .unwrap_or(defaults.sort_by),
        order: q.order(defaults.order)?,
        paging: q.paging()?,
        after: None,
    })
    .and_then(|mut query| {
        if let Some(token) = q.token(&query.fingerprint())? {
            // A place this service made: a queue time in its one format and
            // values no longer than a run's (a store may key on them).
            let plausible = |c: &crate::domain::query::RunCursor| {
                chrono::DateTime::parse_from_rfc3339(&c.queued_at).is_ok()
                    && c.queued_at.len() == crate::domain::query::TIME_KEY_LEN
                    && c.run_id.len() <= MAX_CURSOR_VALUE
                    && c.primary.as_ref().is_none_or(|p| p.len() <= MAX_CURSOR_VALUE)
            };
            query.after = token.after.filter(plausible);
            if query.after.is_none() {
                return Err(ApiError::bad_request(
                    "next_token is not one of a run list's: leave it out to start from the first page",
                ));
            }
        }
        Ok(query)
    })
}

/// Parses the query of a definition list.
pub fn definition_query(q: &QueryPairs) -> Result<DefinitionQuery, ApiError> {
    q.refuse_nul()?;
    let defaults = DefinitionQuery::default();
    Ok(DefinitionQuery {
        alias: TextFilter(q.all("alias")),
        group_name: TextFilter(q.all("group_name")),
        image: TextFilter(q.all("image")),
        env: q.env()?,
        sort_by: q
            .one("sort_by")
            .map(|s| DefinitionSortField::parse(&s))
            .transpose()?
            .unwrap_or(defaults.sort_by),
        order: q.order(defaults.order)?,
        paging: q.paging()?,
    })
    .and_then(|mut query| {
        query.paging = q.offset_paging(&query.fingerprint(), "definition")?;
        Ok(query)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::launch::LaunchRequest;

    #[test]
    fn a_run_list_token_whose_place_this_service_could_not_have_made_is_refused() {
        let q = QueryPairs::parse(Some("limit=5"));
        let query = run_query(&q).unwrap();
        let good = crate::domain::query::RunCursor {
            primary: Some("2026-01-01T00:00:00.000000Z".into()),
            queued_at: "2026-01-01T00:00:00.000000Z".into(),
            run_id: "r-1".into(),
        };
        let send = |after: crate::domain::query::RunCursor| {
            let token = run_token(&query, after);
            run_query(&QueryPairs::parse(Some(&format!(
                "limit=5&next_token={token}"
            ))))
        };
        assert_eq!(send(good.clone()).unwrap().after, Some(good.clone()));
        for bad in [
            crate::domain::query::RunCursor {
                run_id: "r".repeat(MAX_CURSOR_VALUE + 1),
                ..good.clone()
            },
            crate::domain::query::RunCursor {
                primary: Some("p".repeat(MAX_CURSOR_VALUE + 1)),
                ..good.clone()
            },
            crate::domain::query::RunCursor {
                queued_at: "yesterday".into(),
                ..good.clone()
            },
        ] {
            let err = send(bad).unwrap_err();
            assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn upper_case_run_tags_fill_owner_id() {
        let (req, _): (LaunchRequest, _) = json_body(
            br#"{"RUN_TAGS":{"OWNER_ID":"me"},"Env":[{"NAME":"A","Value":"1"}],"labels":{"KeepCase":"x"}}"#,
            &["run_tags", "env[]"],
        )
        .unwrap();
        assert_eq!(req.run_tags.unwrap().owner_id.as_deref(), Some("me"));
        assert_eq!(req.env.unwrap()[0].name, "A");
        assert!(req.labels.unwrap().contains_key("KeepCase"));
    }

    #[test]
    fn a_wrongly_typed_field_is_named_in_the_error() {
        let err = json_body::<LaunchRequest>(br#"{"memory":"lots"}"#, &[]).unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
        assert!(err.message().contains("\"memory\""), "{}", err.message());
    }

    #[test]
    fn an_unknown_field_is_refused_with_the_nearest_and_flotillas_own_are_ignored() {
        let err = json_body::<LaunchRequest>(br#"{"comand":"x","memroy":5}"#, &[]).unwrap_err();
        assert!(
            err.message()
                .contains("unknown field `comand` — did you mean `command`?"),
            "{}",
            err.message()
        );
        assert!(
            err.message().contains("did you mean `memory`?"),
            "{}",
            err.message()
        );
        let (_, ignored) =
            json_body::<LaunchRequest>(br#"{"spark_extension":{},"command":"x"}"#, &[]).unwrap();
        assert_eq!(ignored, ["spark_extension"]);
        let err = json_body::<LaunchRequest>(br#"{"zzzzzzzzzzzz":1}"#, &[]).unwrap_err();
        assert!(
            err.message().contains("the fields are"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn an_empty_body_is_an_empty_object_and_a_list_is_refused() {
        assert!(json_body::<LaunchRequest>(b"  ", &[]).is_ok());
        assert!(json_body::<LaunchRequest>(b"[]", &[]).is_err());
    }

    #[test]
    fn a_non_numeric_limit_is_read_as_flotilla_does_and_an_unknown_sort_field_is_refused() {
        let q = QueryPairs::parse(Some("limit=abc&offset=NaN"));
        let query = run_query(&q).unwrap();
        assert_eq!(query.paging, Paging::default());
        assert_eq!(q.lenient(), ["limit=abc", "offset=NaN"]);
        let q = QueryPairs::parse(Some("offset=-20"));
        assert_eq!(run_query(&q).unwrap().paging.offset, 0);
        let q = QueryPairs::parse(Some("alias=%00"));
        assert!(run_query(&q).unwrap_err().message().contains("NUL"));
        let q = QueryPairs::parse(Some("sort_by=password"));
        assert!(run_query(&q).unwrap_err().message().contains("sort_by"));
        let q = QueryPairs::parse(Some("order=up"));
        assert!(run_query(&q).unwrap_err().message().contains("order"));
    }

    #[test]
    fn env_filters_need_a_name_and_a_value_and_times_must_parse() {
        let q = QueryPairs::parse(Some("env=A%7C1&env=B%7Cx"));
        assert_eq!(run_query(&q).unwrap().env.len(), 2);
        let q = QueryPairs::parse(Some("env=nobar"));
        assert!(run_query(&q).unwrap_err().message().contains("NAME|VALUE"));
        let q = QueryPairs::parse(Some(
            "started_at_since=2026-11-01&finished_at_until=2026-11-02T10:00:00Z&queued_at_since=2026-11-01T09:30",
        ));
        let query = run_query(&q).unwrap();
        assert!(query.started_at.since.is_some() && query.finished_at.until.is_some());
        assert!(query.queued_at.since.is_some());
        let q = QueryPairs::parse(Some("started_at_since=yesterday"));
        assert!(
            run_query(&q)
                .unwrap_err()
                .message()
                .contains("started_at_since")
        );
    }

    #[test]
    fn repeated_status_keys_are_all_kept() {
        let q = QueryPairs::parse(Some("status=QUEUED&status=RUNNING&unknown=1"));
        let query = run_query(&q).unwrap();
        assert_eq!(query.statuses, [RunStatus::Queued, RunStatus::Running]);
    }
}
