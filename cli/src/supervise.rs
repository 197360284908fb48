//! `flotilla-supervise <attempt-dir>`: runs one attempt of a run, started by
//! `flotilla serve` (see `shared::adapters::local::supervisor`). A binary of
//! its own so that what starts once per attempt is small and quick to start;
//! `flotilla supervise <attempt-dir>` does the same.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: flotilla-supervise <attempt-dir> (started by flotilla serve)");
        return ExitCode::from(64);
    };
    let code = shared::adapters::local::supervisor::supervise(PathBuf::from(dir));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
