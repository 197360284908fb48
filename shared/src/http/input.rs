//! Reading requests: JSON bodies whatever their Content-Type, field names
//! matched case-insensitively (Flotilla's UI sends `run_tags.OWNER_ID`), and
//! list query strings parsed against closed sets of keys.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::domain::query::{
    DefinitionQuery, DefinitionSortField, MAX_LIMIT, Paging, RunQuery, RunSortField, SortOrder,
    TextFilter,
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

/// Parses a JSON body into `T`. An empty body counts as `{}`. Errors name the
/// field and what was expected.
pub fn json_body<T: DeserializeOwned>(body: &[u8], nested: &[&str]) -> Result<T, ApiError> {
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
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::bad_request(format!("invalid request body: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid value for \"{path}\": {inner}"))
        }
    })
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

    fn number(&self, key: &str, default: u64) -> Result<u64, ApiError> {
        match self.one(key) {
            None => Ok(default),
            Some(v) => v.trim().parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "{key} must be a whole number of 0 or more, got \"{v}\""
                ))
            }),
        }
    }

    /// `limit` and `offset`.
    pub fn paging(&self) -> Result<Paging, ApiError> {
        let defaults = Paging::default();
        let limit = self.number("limit", defaults.limit)?;
        if limit > MAX_LIMIT {
            return Err(ApiError::bad_request(format!(
                "limit {limit} is too large: ask for at most {MAX_LIMIT} rows and page with offset"
            )));
        }
        Ok(Paging {
            limit,
            offset: self.number("offset", 0)?,
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

    /// Whether `key` is `true` (any case).
    pub fn flag(&self, key: &str) -> bool {
        self.one(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// Parses the query of a run list. Keys other than the ones documented are
/// ignored (Flotilla's UI forwards its own page parameters).
pub fn run_query(q: &QueryPairs) -> Result<RunQuery, ApiError> {
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
    Ok(RunQuery {
        statuses,
        definition_ids: q.all("definition_id"),
        alias: TextFilter(q.all("alias")),
        group_name: TextFilter(q.all("group_name")),
        clusters,
        sort_by: q
            .one("sort_by")
            .map(|s| RunSortField::parse(&s))
            .transpose()?
            .unwrap_or(defaults.sort_by),
        order: q.order(defaults.order)?,
        paging: q.paging()?,
    })
}

/// Parses the query of a definition list.
pub fn definition_query(q: &QueryPairs) -> Result<DefinitionQuery, ApiError> {
    let defaults = DefinitionQuery::default();
    Ok(DefinitionQuery {
        alias: TextFilter(q.all("alias")),
        group_name: TextFilter(q.all("group_name")),
        image: TextFilter(q.all("image")),
        sort_by: q
            .one("sort_by")
            .map(|s| DefinitionSortField::parse(&s))
            .transpose()?
            .unwrap_or(defaults.sort_by),
        order: q.order(defaults.order)?,
        paging: q.paging()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::launch::LaunchRequest;

    #[test]
    fn upper_case_run_tags_fill_owner_id() {
        let req: LaunchRequest = json_body(
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
    fn an_empty_body_is_an_empty_object_and_a_list_is_refused() {
        assert!(json_body::<LaunchRequest>(b"  ", &[]).is_ok());
        assert!(json_body::<LaunchRequest>(b"[]", &[]).is_err());
    }

    #[test]
    fn a_non_numeric_limit_and_an_unknown_sort_field_are_refused() {
        let q = QueryPairs::parse(Some("limit=abc"));
        assert!(run_query(&q).unwrap_err().message().contains("limit"));
        let q = QueryPairs::parse(Some("sort_by=password"));
        assert!(run_query(&q).unwrap_err().message().contains("sort_by"));
        let q = QueryPairs::parse(Some("order=up"));
        assert!(run_query(&q).unwrap_err().message().contains("order"));
    }

    #[test]
    fn repeated_status_keys_are_all_kept() {
        let q = QueryPairs::parse(Some("status=QUEUED&status=RUNNING&unknown=1"));
        let query = run_query(&q).unwrap();
        assert_eq!(query.statuses, [RunStatus::Queued, RunStatus::Running]);
    }
}
