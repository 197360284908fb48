//! What every browser test starts with: the real `flotilla serve` on a
//! loopback port and headless Chromium pointed at its UI, plus the checks a
//! page must pass wherever a test looks at one (every control labelled, no
//! sideways scrolling) and screenshots saved as artifacts.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::Server;
use crate::webdriver::{Browser, Element};

/// How long a page may take to show what a test waits for.
pub const WAIT: Duration = Duration::from_secs(30);

/// Where screenshots go: `FLOTILLA_UI_ARTIFACTS`, else `tests/artifacts/ui`.
pub fn artifacts_dir() -> PathBuf {
    std::env::var_os("FLOTILLA_UI_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts/ui"))
}

/// A server with its UI open in a browser.
pub struct Ui {
    /// The running `flotilla serve`.
    pub server: Server,
    /// The browser.
    pub browser: Browser,
    name: &'static str,
    _data: tempfile::TempDir,
}

impl Ui {
    /// Starts a server and a 1280×900 browser; `name` prefixes the screenshots.
    pub async fn start(name: &'static str) -> Self {
        Self::start_with(name, &[]).await
    }

    /// [`Ui::start`] with more `flotilla serve` arguments.
    pub async fn start_with(name: &'static str, args: &[&str]) -> Self {
        let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let server = Server::start_with(&data.path().join("data"), 4, args).await;
        let browser = Browser::start(1280, 900).await;
        Self {
            server,
            browser,
            name,
            _data: data,
        }
    }

    /// Opens a view of the UI, e.g. `#/runs`.
    pub async fn open(&self, fragment: &str) {
        self.browser
            .goto(&format!("{}/{fragment}", self.server.base))
            .await;
    }

    /// Finds an element, waiting for it.
    pub async fn find(&self, css: &str) -> Element {
        self.browser.find(css).await
    }

    /// Replaces the text of an input.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear().await;
        el.send_keys(text).await;
    }

    /// Waits until `css` shows `text`.
    pub async fn wait_text(&self, css: &str, text: &str) -> String {
        self.browser.wait_for_text(css, text, WAIT).await
    }

    /// Waits until the page's heading is `text`.
    pub async fn wait_heading(&self, text: &str) {
        self.wait_text("main h1", text).await;
    }

    /// Checks the page as it stands (every control labelled, nothing wider
    /// than the window) and saves a screenshot of all of it.
    pub async fn shot(&self, what: &str) -> PathBuf {
        self.assert_controls_labelled().await;
        self.assert_no_sideways_scroll().await;
        let path = artifacts_dir().join(format!("{}-{what}.png", self.name));
        self.browser.screenshot_full(&path).await;
        path
    }

    /// Every input, select and textarea has a label or an aria-label.
    pub async fn assert_controls_labelled(&self) {
        let unlabelled = self
            .browser
            .execute(
                "return [...document.querySelectorAll('input, select, textarea')]
                   .filter(el => el.type !== 'hidden')
                   .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
                   .map(el => el.outerHTML);",
                vec![],
            )
            .await;
        assert_eq!(
            unlabelled,
            json!([]),
            "controls without a label on {}",
            self.browser.current_url().await
        );
    }

    /// The page does not scroll sideways: tables scroll inside their own box.
    pub async fn assert_no_sideways_scroll(&self) {
        let widths = self
            .browser
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth];",
                vec![],
            )
            .await;
        let (content, window) = (widths[0].as_i64(), widths[1].as_i64());
        assert!(
            content <= window,
            "the page is {content:?} px wide in a {window:?} px window at {}",
            self.browser.current_url().await
        );
    }

    /// The rows of a table, each as its cells' text.
    pub async fn rows(&self, table: &str) -> Vec<Vec<String>> {
        let value = self
            .browser
            .execute(
                "const t = document.querySelector(arguments[0]);
                 if (!t) return null;
                 return [...t.querySelectorAll('tbody tr')].map(tr => [...tr.cells].map(td => td.innerText.trim()));",
                vec![json!(table)],
            )
            .await;
        serde_json::from_value::<Option<Vec<Vec<String>>>>(value)
            .unwrap_or_else(|e| panic!("rows of {table}: {e}"))
            .unwrap_or_default()
    }

    /// Waits until a table has `n` rows, and returns them.
    pub async fn wait_rows(&self, table: &str, n: usize) -> Vec<Vec<String>> {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let rows = self.rows(table).await;
            if rows.len() == n {
                return rows;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{table} did not come to {n} rows: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The run id the page's URL names (`#/runs/<run_id>`).
    pub async fn run_id_in_url(&self) -> String {
        let url = self.browser.current_url().await;
        url.rsplit_once("#/runs/")
            .map(|(_, id)| id.to_owned())
            .unwrap_or_else(|| panic!("not on a run view: {url}"))
    }

    /// A run, read from the API.
    pub async fn run(&self, run_id: &str) -> Value {
        let (status, run) = self.server.get(&format!("/api/v6/history/{run_id}")).await;
        assert_eq!(status, 200, "{run}");
        run
    }
}
