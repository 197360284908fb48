//! Run logs from the files the local engine's supervisors write: one per
//! attempt, `<runs>/<run_id>/attempt-<n>.log`, paged by byte offset.
//! Runs recorded before logs were kept per attempt have one log for all
//! attempts, `<runs>/<run_id>/output.log`, which is read for any attempt.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::attempt::{AttemptDir, LEGACY_LOG};
use crate::error::LogError;
use crate::ports::{AttemptLog, LogPage, LogSource, LogStream};

/// Largest log page returned at once.
pub const LOG_PAGE_BYTES: usize = 256 * 1024;

/// Reads run logs from the files the local engine writes.
#[derive(Debug, Clone)]
pub struct LocalLogs {
    runs_dir: PathBuf,
}

impl LocalLogs {
    /// Logs under `runs_dir`.
    pub fn new(runs_dir: PathBuf) -> Self {
        Self { runs_dir }
    }

    fn path(&self, log: &AttemptLog<'_>) -> PathBuf {
        let per_attempt = AttemptDir::new(&self.runs_dir, log.run_id, log.attempt).log();
        let legacy = self.runs_dir.join(log.run_id).join(LEGACY_LOG);
        if !per_attempt.exists() && legacy.exists() {
            legacy
        } else {
            per_attempt
        }
    }
}

fn log_backend(e: std::io::Error) -> LogError {
    LogError::Backend(Box::new(e))
}

/// Reads up to [`LOG_PAGE_BYTES`] from `offset`, ending on a line or at least a
/// character boundary; returns the text and the bytes consumed.
fn read_page(path: &Path, offset: u64) -> Result<(String, u64), LogError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((String::new(), 0)),
        Err(e) => return Err(log_backend(e)),
    };
    let len = file.metadata().map_err(log_backend)?.len();
    if offset > len {
        return Err(LogError::BadCursor(format!(
            "last_seen {offset} is past the end of this run's log ({len} bytes): pass the last_seen of the previous page"
        )));
    }
    file.seek(SeekFrom::Start(offset)).map_err(log_backend)?;
    let mut buf = Vec::with_capacity((len - offset).min(LOG_PAGE_BYTES as u64) as usize);
    file.take(LOG_PAGE_BYTES as u64)
        .read_to_end(&mut buf)
        .map_err(log_backend)?;
    if buf.len() == LOG_PAGE_BYTES
        && let Some(last_newline) = buf.iter().rposition(|b| *b == b'\n')
    {
        buf.truncate(last_newline + 1);
    }
    let consumed = match std::str::from_utf8(&buf) {
        Ok(_) => buf.len(),
        // A character cut at the end: leave it for the next page.
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => buf.len(),
    };
    buf.truncate(consumed);
    Ok((String::from_utf8_lossy(&buf).into_owned(), consumed as u64))
}

#[async_trait]
impl LogSource for LocalLogs {
    async fn page(
        &self,
        log: &AttemptLog<'_>,
        last_seen: Option<&str>,
    ) -> Result<LogPage, LogError> {
        let offset = match last_seen.filter(|s| !s.is_empty()) {
            None => 0,
            Some(s) => s.parse::<u64>().map_err(|_| {
                LogError::BadCursor(format!(
                    "last_seen \"{s}\" is not a cursor this server issued: pass the last_seen of the previous page, or leave it out to start from the beginning"
                ))
            })?,
        };
        let path = self.path(log);
        let (log, consumed) = tokio::task::spawn_blocking(move || read_page(&path, offset))
            .await
            .map_err(|e| LogError::Backend(Box::new(e)))??;
        Ok(LogPage {
            log,
            last_seen: (offset + consumed).to_string(),
        })
    }

    async fn stream(&self, log: &AttemptLog<'_>) -> Result<LogStream, LogError> {
        match tokio::fs::File::open(self.path(log)).await {
            Ok(file) => Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
                file,
                64 * 1024,
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Box::pin(
                tokio_util::io::ReaderStream::new(tokio::io::empty()),
            )),
            Err(e) => Err(log_backend(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join("log");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_page_never_splits_a_character_and_the_next_page_starts_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        // "é" is two bytes; cut the file after its first byte.
        let full = "abc é\n".as_bytes();
        let path = write(&dir, &full[..5]);
        let (text, consumed) = read_page(&path, 0).unwrap();
        assert_eq!((text.as_str(), consumed), ("abc ", 4));
        let path = write(&dir, full);
        let (text, consumed) = read_page(&path, 4).unwrap();
        assert_eq!((text.as_str(), consumed), ("é\n", 3));
    }

    #[test]
    fn a_full_page_ends_on_a_line_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let line = "x".repeat(99) + "\n";
        let body = line.repeat(LOG_PAGE_BYTES / 100 + 10);
        let path = write(&dir, body.as_bytes());
        let (text, consumed) = read_page(&path, 0).unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(consumed as usize % 100, 0);
        let (rest, _) = read_page(&path, consumed).unwrap();
        assert_eq!(text.len() + rest.len(), body.len());
    }

    #[test]
    fn a_cursor_past_the_end_is_refused_and_a_missing_log_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, b"hi\n");
        assert!(matches!(read_page(&path, 99), Err(LogError::BadCursor(_))));
        let (text, consumed) = read_page(&dir.path().join("none"), 0).unwrap();
        assert_eq!((text.as_str(), consumed), ("", 0));
    }
}
