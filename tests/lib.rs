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
