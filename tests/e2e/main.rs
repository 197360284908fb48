//! End-to-end tests: the real `flotilla serve` binary on a loopback port, real
//! SQLite on disk, real child processes, driven over HTTP as a user would.

mod support;

mod api_catalog;
mod api_errors;
mod api_openapi;
mod api_routes;
mod bad_input;
mod cli;
mod cli_auth;
mod cli_terminal;
mod containers;
mod exactly_once;
mod insights;
mod lifecycle;
mod restart;
mod retries;
mod schedules;
mod security;
mod sizes;
