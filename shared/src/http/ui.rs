//! The web UI: the files under `ui/` at the top of the repository, compiled
//! into the binary and served at `/` (the page) and `/ui/…` (its scripts and
//! styles) by the same router as the API, so `flotilla serve` and the `api`
//! Lambda both serve it and `cargo build` is all it takes to build it.
//!
//! The page is a single document whose views live in the URL fragment
//! (`#/runs/<run_id>`), so every link works on any path prefix, such as an
//! API Gateway stage. Assets answer with an `ETag` (the MD5 of their bytes)
//! and `Cache-Control: no-cache`, so a browser revalidates and a new release
//! is picked up at once.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// One embedded file: its path under `ui/`, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_str!(concat!("../../../ui/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/signin.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/forms.js", JS),
    asset!("js/tasks.js", JS),
    asset!("js/runs.js", JS),
    asset!("js/run.js", JS),
    asset!("js/templates.js", JS),
    asset!("js/clusters.js", JS),
    asset!("js/insights.js", JS),
    asset!("js/schedules.js", JS),
];

/// The ETag of each asset, in the order of [`ASSETS`], computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", super::views::command_hash(a.body)))
            .collect()
    })
}

fn serve(index: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = etags()[index].clone();
    let fresh = super::etag_matches(headers, &etag);
    let cache = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
        (header::CONTENT_TYPE, asset.content_type.to_owned()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (cache, asset.body).into_response()
}

/// `GET /`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

/// `GET /ui/{*path}`: a script or style sheet of the page.
pub async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.path == path) {
        Some(i) => serve(i, &headers),
        None => ApiError::not_found(format!(
            "no UI file {path}: the UI is served at / and its files under /ui/"
        ))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_the_page_imports_is_embedded() {
        let embedded: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            for line in asset.body.lines() {
                let Some(from) = line.split(" from ").nth(1) else {
                    continue;
                };
                if !line.trim_start().starts_with("import ") {
                    continue;
                }
                let target = from.trim().trim_end_matches(';').trim_matches('\'');
                let target = target.trim_start_matches("./");
                assert!(
                    embedded.contains(&format!("js/{target}").as_str()),
                    "{} imports {target}, which is not in ASSETS",
                    asset.path
                );
            }
        }
    }

    #[test]
    fn the_page_names_only_embedded_files() {
        let page = ASSETS[0].body;
        for reference in page.split("\"ui/").skip(1) {
            let path = reference.split('"').next().unwrap_or_default();
            assert!(
                ASSETS.iter().any(|a| a.path == path),
                "index.html references ui/{path}, which is not embedded"
            );
        }
    }
}
