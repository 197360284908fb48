//! Tracing set-up, in one place.
//!
//! The level comes from `AWS_LAMBDA_LOG_LEVEL`, then `RUST_LOG`, then `info`;
//! output is JSON when `AWS_LAMBDA_LOG_FORMAT=JSON` (the Lambda convention) or
//! `FLOTILLA_LOG_FORMAT=json`, plain text otherwise.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call does nothing.
pub fn init() {
    let filter = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .map(|level| EnvFilter::new(level.to_lowercase()))
        .unwrap_or_else(|| EnvFilter::new("info"));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"))
        || std::env::var("FLOTILLA_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
