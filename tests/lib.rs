//! What the test targets share: finding the `flotilla` binary and a free
//! loopback port. The end-to-end tests live in `e2e/` (embedded backend) and
//! `aws/` (AWS backend on moto).

use std::path::{Path, PathBuf};

/// The `flotilla` binary: `$FLOTILLA_BIN`, or the one cargo built beside this test.
pub fn flotilla_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("FLOTILLA_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    // target/<profile>/deps/e2e-<hash> → target/<profile>/flotilla
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("flotilla"))
        .unwrap_or_default();
    assert!(
        bin.exists(),
        "{} does not exist: build it first with `cargo build -p flotilla-cli` (scripts/test does)",
        bin.display()
    );
    bin
}

/// A loopback port nobody listens on (for a moment).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A builder of HTTP clients for the tests. When the whole workspace is
/// built together, reqwest has the `flotilla` command's TLS, which takes the
/// process's rustls crypto provider: ring, installed here (installing it
/// again is harmless).
pub fn http() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// An HTTP client for the tests (see [`http`]).
pub fn http_client() -> reqwest::Client {
    http()
        .build()
        .unwrap_or_else(|e| panic!("cannot make an HTTP client: {e}"))
}
