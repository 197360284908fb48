//! Browser tests: the UI the real `flotilla serve` serves at `/`, driven in
//! headless Chromium through chromedriver, as a user would use it. Each test
//! saves screenshots of the pages it visits under `tests/artifacts/ui/`.

#[allow(dead_code)]
#[path = "../e2e/support/mod.rs"]
mod support;

mod flows;
mod gateway;
mod harness;
mod webdriver;
