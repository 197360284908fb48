//! A small W3C WebDriver client for the browser tests: owns the chromedriver
//! process (and the headless Chromium it starts), one session on it, and the
//! element handles that session hands out. Every call panics with the
//! WebDriver error and message when the driver refuses it.

#![allow(dead_code)]

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tempfile::TempDir;

/// The WebDriver key code for Tab, for [`Element::send_keys`].
pub const KEY_TAB: &str = "\u{E004}";
/// The WebDriver key code for Enter, for [`Element::send_keys`].
pub const KEY_ENTER: &str = "\u{E007}";

/// The JSON key under which W3C WebDriver puts an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long [`Browser::find`] and [`Element::find`] wait for an element.
const FIND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long chromedriver gets to answer `/status` with `ready: true`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// The pause between two polls of the page.
const POLL: Duration = Duration::from_millis(100);
/// The tallest window (in px) [`Browser::screenshot_full`] will resize to.
const MAX_FULL_HEIGHT: u32 = 4000;
/// How much of the page text a failed wait prints.
const PAGE_TEXT_LIMIT: usize = 2000;

/// A refusal from the driver: the W3C `error` code and its `message`, or a
/// transport failure (error `"transport"`).
#[derive(Debug)]
struct WdError {
    status: u16,
    error: String,
    message: String,
}

impl fmt::Display for WdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {}: {}", self.status, self.error, self.message)
    }
}

/// One WebDriver session: the HTTP client and the session's base URL
/// (`http://127.0.0.1:PORT/session/ID`).
#[derive(Clone)]
struct Session {
    client: reqwest::Client,
    url: String,
}

impl Session {
    /// Sends one command and returns its `value`, or the driver's error.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WdError> {
        send(&self.client, method, &format!("{}{path}", self.url), body).await
    }

    /// Sends one command and returns its `value`; panics naming `what` on error.
    async fn must(&self, what: &str, method: Method, path: &str, body: Option<Value>) -> Value {
        self.call(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("webdriver {what}: {e}"))
    }

    /// Runs a synchronous script, returning the driver's error if it fails.
    async fn script(&self, script: &str, args: Vec<Value>) -> Result<Value, WdError> {
        self.call(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// The current URL and the page's visible text (truncated), for panics.
    async fn describe_page(&self) -> String {
        let url = match self.call(Method::GET, "/url", None).await {
            Ok(v) => truncate(v.as_str().unwrap_or_default(), 300),
            Err(e) => format!("<unknown: {e}>"),
        };
        let text = match self
            .script(
                "return document.body ? document.body.innerText : '<no body>';",
                vec![],
            )
            .await
        {
            Ok(v) => truncate(v.as_str().unwrap_or_default(), PAGE_TEXT_LIMIT),
            Err(e) => format!("<unknown: {e}>"),
        };
        format!("page {url}, text:\n{text}")
    }

    /// Finds one element under `scope` (`""` for the document, or
    /// `/element/ID`) by CSS selector, polling until `timeout`.
    async fn find_polling(&self, scope: &str, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        let path = format!("{scope}/element");
        loop {
            let last = match self.call(Method::POST, &path, Some(by_css(css))).await {
                Ok(v) => return self.element(&v, css),
                Err(e) if e.error == "no such element" => e,
                Err(e) => panic!("webdriver find {css:?}: {e}"),
            };
            if Instant::now() >= deadline {
                panic!(
                    "no element matches {css:?} after {timeout:?} ({last}); {}",
                    self.describe_page().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// All elements under `scope` matching `css` right now.
    async fn find_all_now(&self, scope: &str, css: &str) -> Vec<Element> {
        let found = self
            .must(
                &format!("find all {css:?}"),
                Method::POST,
                &format!("{scope}/elements"),
                Some(by_css(css)),
            )
            .await;
        found
            .as_array()
            .unwrap_or_else(|| panic!("webdriver find all {css:?}: not a list: {found}"))
            .iter()
            .map(|v| self.element(v, css))
            .collect()
    }

    /// Wraps an element reference from a response.
    fn element(&self, value: &Value, css: &str) -> Element {
        let id = value
            .get(ELEMENT_KEY)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("webdriver find {css:?}: no element reference in {value}"));
        Element {
            session: self.clone(),
            id: id.to_string(),
            css: css.to_string(),
        }
    }
}

/// Sends one WebDriver command to `url` and unwraps the `value` member.
async fn send(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, WdError> {
    let transport = |e: reqwest::Error| WdError {
        status: 0,
        error: "transport".to_string(),
        message: format!("{url}: {e}"),
    };
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    let mut reply: Value = response.json().await.map_err(transport)?;
    let value = reply
        .get_mut("value")
        .map(Value::take)
        .unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(value);
    }
    let field = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Err(WdError {
        status: status.as_u16(),
        error: field("error"),
        message: field("message"),
    })
}

/// A W3C locator for a CSS selector.
fn by_css(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

/// The first `limit` characters of `text`, marked when cut.
fn truncate(text: &str, limit: usize) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(limit).collect();
    if chars.next().is_some() {
        format!("{head}… (truncated)")
    } else {
        head
    }
}

/// Decodes standard base64 (as screenshots come), ignoring whitespace.
fn decode_base64(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for byte in text.bytes() {
        let digit = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            other => panic!("screenshot: invalid base64 byte {other:#x}"),
        };
        acc = (acc << 6) | u32::from(digit);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// A headless Chromium driven through chromedriver. Dropping it kills
/// chromedriver and everything it started.
pub struct Browser {
    session: Session,
    driver: Child,
    port: u16,
    session_id: String,
    log: PathBuf,
    profile: TempDir,
}

impl Browser {
    /// Starts chromedriver (`$FLOTILLA_CHROMEDRIVER` or `/usr/bin/chromedriver`)
    /// on a free loopback port, waits until it is ready, and opens a session
    /// on a headless Chromium (`$FLOTILLA_CHROMIUM` or `/usr/bin/chromium`)
    /// with a `width`×`height` window and a fresh profile.
    pub async fn start(width: u32, height: u32) -> Browser {
        let driver_bin = std::env::var("FLOTILLA_CHROMEDRIVER")
            .unwrap_or_else(|_| "/usr/bin/chromedriver".to_string());
        let chromium_bin =
            std::env::var("FLOTILLA_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string());
        let profile = tempfile::Builder::new()
            .prefix("flotilla-chromium-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating the browser profile directory: {e}"));
        let user_data = profile.path().join("profile");
        let log = profile.path().join("chromedriver.log");
        let log_file =
            File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let log_err = log_file
            .try_clone()
            .unwrap_or_else(|e| panic!("cloning {}: {e}", log.display()));

        let port = flotilla_tests::free_port();
        let mut driver = {
            use std::os::unix::process::CommandExt;
            Command::new(&driver_bin)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log_file)
                .stderr(log_err)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {driver_bin}: {e}"))
        };

        let client = flotilla_tests::http()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_else(|e| panic!("building the HTTP client: {e}"));
        let base = format!("http://127.0.0.1:{port}");

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = driver
                .try_wait()
                .unwrap_or_else(|e| panic!("waiting for {driver_bin}: {e}"))
            {
                panic!(
                    "{driver_bin} exited with {status} before it was ready; it printed:\n{}",
                    read_log(&log)
                );
            }
            let status = send(&client, Method::GET, &format!("{base}/status"), None).await;
            if let Ok(status) = &status {
                if status.get("ready") == Some(&Value::Bool(true)) {
                    break;
                }
            }
            if Instant::now() >= deadline {
                kill_group(&mut driver);
                let last = match status {
                    Ok(v) => v.to_string(),
                    Err(e) => e.to_string(),
                };
                panic!(
                    "{driver_bin} not ready after {STARTUP_TIMEOUT:?} (last /status: {last}); it printed:\n{}",
                    read_log(&log)
                );
            }
            tokio::time::sleep(POLL).await;
        }

        let args = [
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-quic".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--disable-dev-shm-usage".to_string(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", user_data.display()),
        ];
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": chromium_bin, "args": args },
                }
            }
        });
        let created = send(
            &client,
            Method::POST,
            &format!("{base}/session"),
            Some(capabilities),
        )
        .await;
        let created = match created {
            Ok(v) => v,
            Err(e) => {
                kill_group(&mut driver);
                panic!(
                    "creating a session on {chromium_bin}: {e}; chromedriver printed:\n{}",
                    read_log(&log)
                );
            }
        };
        let session_id = created
            .get("sessionId")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("new session reply has no sessionId: {created}"))
            .to_string();

        Browser {
            session: Session {
                client,
                url: format!("{base}/session/{session_id}"),
            },
            driver,
            port,
            session_id,
            log,
            profile,
        }
    }

    /// The loopback port chromedriver listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What chromedriver has printed so far (including Chromium's stderr).
    pub fn driver_log(&self) -> String {
        read_log(&self.log)
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.session
            .must(
                &format!("goto {url}"),
                Method::POST,
                "/url",
                Some(json!({ "url": url })),
            )
            .await;
    }

    /// The URL of the current page.
    pub async fn current_url(&self) -> String {
        let url = self
            .session
            .must("current url", Method::GET, "/url", None)
            .await;
        url.as_str().unwrap_or_default().to_string()
    }

    /// Resizes the browser window. This is the outer size: in headless
    /// Chromium the viewport is shorter by the (invisible) browser chrome;
    /// see [`Browser::set_viewport_size`].
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.session
            .must(
                &format!("set window size {width}x{height}"),
                Method::POST,
                "/window/rect",
                Some(json!({ "width": width, "height": height })),
            )
            .await;
    }

    /// Resizes the window so that the viewport (`window.innerWidth` ×
    /// `window.innerHeight`) is `width`×`height`.
    pub async fn set_viewport_size(&self, width: u32, height: u32) {
        let chrome = self
            .execute(
                "return [window.outerWidth - window.innerWidth, \
                         window.outerHeight - window.innerHeight];",
                vec![],
            )
            .await;
        let extra = |i: usize| {
            chrome
                .get(i)
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0)
        };
        self.set_window_size(width + extra(0), height + extra(1))
            .await;
    }

    /// Finds one element by CSS selector, waiting up to 10 s for it to exist;
    /// panics naming the selector, the current URL and the page text.
    pub async fn find(&self, css: &str) -> Element {
        self.find_within(css, FIND_TIMEOUT).await
    }

    /// Finds one element by CSS selector, waiting up to `timeout` for it to
    /// exist; panics naming the selector, the current URL and the page text.
    pub async fn find_within(&self, css: &str, timeout: Duration) -> Element {
        self.session.find_polling("", css, timeout).await
    }

    /// All elements matching `css` now (no waiting).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.session.find_all_now("", css).await
    }

    /// Waits until the element matching `css` exists and its text contains
    /// `text` (polling every 100 ms); returns that text. Panics after
    /// `timeout` with the last text seen.
    pub async fn wait_for_text(&self, css: &str, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut last = "<no element matched>".to_string();
        loop {
            match self
                .session
                .call(Method::POST, "/element", Some(by_css(css)))
                .await
            {
                Ok(v) => {
                    let element = self.session.element(&v, css);
                    match element
                        .session
                        .call(Method::GET, &element.path("/text"), None)
                        .await
                    {
                        Ok(seen) => {
                            let seen = seen.as_str().unwrap_or_default().to_string();
                            if seen.contains(text) {
                                return seen;
                            }
                            last = format!("{seen:?}");
                        }
                        Err(e) if e.error == "stale element reference" => {}
                        Err(e) => panic!("webdriver text of {css:?}: {e}"),
                    }
                }
                Err(e) if e.error == "no such element" => {
                    last = "<no element matched>".to_string();
                }
                Err(e) => panic!("webdriver find {css:?}: {e}"),
            }
            if Instant::now() >= deadline {
                panic!(
                    "{css:?} never contained {text:?} within {timeout:?}; last text: {last}; {}",
                    self.session.describe_page().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until no element matches `css`; panics after `timeout`.
    pub async fn wait_gone(&self, css: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = self.find_all(css).await.len();
            if left == 0 {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{left} element(s) still match {css:?} after {timeout:?}; {}",
                    self.session.describe_page().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs a synchronous script with `args` (see [`Element::as_arg`]) and
    /// returns what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.session
            .script(script, args)
            .await
            .unwrap_or_else(|e| panic!("webdriver execute {}: {e}", truncate(script, 200)))
    }

    /// Saves a PNG screenshot of the viewport to `path`, creating its parent
    /// directories.
    pub async fn screenshot(&self, path: &Path) {
        let png = self
            .session
            .must("screenshot", Method::GET, "/screenshot", None)
            .await;
        let png = decode_base64(png.as_str().unwrap_or_default());
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Saves a PNG screenshot of the whole page (up to 4000 px tall) to
    /// `path`: grows the window to the document's height, takes the
    /// screenshot, and restores the window.
    pub async fn screenshot_full(&self, path: &Path) {
        let rect = self
            .session
            .must("window rect", Method::GET, "/window/rect", None)
            .await;
        let dimension = |name: &str| {
            rect.get(name)
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or_else(|| panic!("window rect without a usable {name}: {rect}"))
        };
        let (width, height) = (dimension("width"), dimension("height"));
        let sizes = self
            .execute(
                "const d = document.documentElement, b = document.body;
                 return [Math.max(d.scrollHeight, b ? b.scrollHeight : 0),
                         window.outerHeight - window.innerHeight];",
                vec![],
            )
            .await;
        let size = |i: usize| {
            sizes
                .get(i)
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0)
        };
        let full = size(0)
            .saturating_add(size(1))
            .clamp(height, MAX_FULL_HEIGHT.max(height));
        if full != height {
            self.set_window_size(width, full).await;
        }
        self.screenshot(path).await;
        if full != height {
            self.set_window_size(width, height).await;
        }
    }

    /// The element that has focus (for typing keys such as [`KEY_TAB`]).
    pub async fn active_element(&self) -> Element {
        let v = self
            .session
            .must("active element", Method::GET, "/element/active", None)
            .await;
        self.session.element(&v, "<active element>")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

/// Kills chromedriver's process group (chromedriver and the Chromium it
/// started) and reaps chromedriver.
fn kill_group(driver: &mut Child) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if let Ok(pgid) = i32::try_from(driver.id()) {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    let _ = driver.kill();
    let _ = driver.wait();
}

/// chromedriver's output so far, or why it cannot be read.
fn read_log(log: &Path) -> String {
    match std::fs::read(log) {
        Ok(bytes) => truncate(&String::from_utf8_lossy(&bytes), 8000),
        Err(e) => format!("<cannot read {}: {e}>", log.display()),
    }
}

/// One element of the page, as the session sees it. Holds the session, so it
/// can be used on its own; it goes stale if the page replaces the node.
#[derive(Clone)]
pub struct Element {
    session: Session,
    id: String,
    /// The selector that found it, for panic messages.
    css: String,
}

impl fmt::Debug for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Element({:?}, {})", self.css, self.id)
    }
}

impl Element {
    /// The command path for this element plus `suffix`.
    fn path(&self, suffix: &str) -> String {
        format!("/element/{}{suffix}", self.id)
    }

    /// Sends a command about this element; panics naming `what` on error.
    async fn must(&self, what: &str, method: Method, suffix: &str, body: Option<Value>) -> Value {
        self.session
            .must(
                &format!("{what} of {:?}", self.css),
                method,
                &self.path(suffix),
                body,
            )
            .await
    }

    /// This element as a script argument for [`Browser::execute`].
    pub fn as_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    /// Clicks the element (the driver scrolls it into view first).
    pub async fn click(&self) {
        self.must("click", Method::POST, "/click", Some(json!({})))
            .await;
    }

    /// Types `text` into the element (see [`KEY_TAB`], [`KEY_ENTER`]).
    pub async fn send_keys(&self, text: &str) {
        self.must(
            &format!("send keys {text:?}"),
            Method::POST,
            "/value",
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Empties an input or textarea.
    pub async fn clear(&self) {
        self.must("clear", Method::POST, "/clear", Some(json!({})))
            .await;
    }

    /// The element's rendered text (innerText).
    pub async fn text(&self) -> String {
        let v = self.must("text", Method::GET, "/text", None).await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// The attribute `name`, or `None` when the element does not have it.
    pub async fn attr(&self, name: &str) -> Option<String> {
        let v = self
            .must(
                &format!("attribute {name}"),
                Method::GET,
                &format!("/attribute/{name}"),
                None,
            )
            .await;
        match v {
            Value::Null => None,
            Value::String(s) => Some(s),
            other => Some(other.to_string()),
        }
    }

    /// The DOM property `name`.
    pub async fn property(&self, name: &str) -> Value {
        self.must(
            &format!("property {name}"),
            Method::GET,
            &format!("/property/{name}"),
            None,
        )
        .await
    }

    /// The current `value` of an input, textarea or select (`""` if none).
    pub async fn value(&self) -> String {
        match self.property("value").await {
            Value::Null => String::new(),
            Value::String(s) => s,
            other => other.to_string(),
        }
    }

    /// Finds a descendant by CSS selector, waiting up to 10 s for it.
    pub async fn find(&self, css: &str) -> Element {
        self.session
            .find_polling(&self.path(""), css, FIND_TIMEOUT)
            .await
    }

    /// All descendants matching `css` now (no waiting).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.session.find_all_now(&self.path(""), css).await
    }

    /// Whether the element is rendered visibly.
    pub async fn is_displayed(&self) -> bool {
        let v = self
            .must("displayed", Method::GET, "/displayed", None)
            .await;
        v.as_bool().unwrap_or(false)
    }

    /// Selects the `<option>` of this `<select>` whose value or visible text
    /// equals `choice`, firing bubbling `input` and `change` events; panics
    /// listing the options when none matches.
    pub async fn select(&self, choice: &str) {
        let script = "
            const [select, choice] = arguments;
            if (!(select instanceof HTMLSelectElement)) {
                return { ok: false, why: 'not a <select> but <' + select.tagName.toLowerCase() + '>' };
            }
            const options = Array.from(select.options);
            const option = options.find(o => o.value === choice)
                || options.find(o => o.text.trim() === choice.trim());
            if (!option) {
                return { ok: false, why: 'no such option', options: options.map(o => [o.value, o.text]) };
            }
            option.selected = true;
            select.dispatchEvent(new Event('input', { bubbles: true }));
            select.dispatchEvent(new Event('change', { bubbles: true }));
            return { ok: true };";
        let result = self
            .session
            .script(script, vec![self.as_arg(), json!(choice)])
            .await
            .unwrap_or_else(|e| panic!("webdriver select {choice:?}: {e}"));
        if result.get("ok") != Some(&Value::Bool(true)) {
            panic!(
                "select {choice:?}: {}; options [value, text]: {}",
                result.get("why").unwrap_or(&Value::Null),
                result.get("options").unwrap_or(&Value::Null)
            );
        }
    }
}
