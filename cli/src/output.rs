//! How the commands print: a table for people, the API's JSON as it came
//! for scripts (`-o json`), and the progress line shown while a run waits,
//! which only a terminal gets.

use std::cell::RefCell;
use std::io::{IsTerminal, Write};

use serde_json::Value;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns (or `key: value` lines for one object).
    Table,
    /// The API's JSON, one document per answer.
    Json,
}

/// Where and how a command prints.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// Table or JSON.
    pub format: Format,
    /// Whether status words may be coloured.
    pub color: bool,
}

impl Out {
    /// `format`, coloured only when stdout is a terminal, `no_color` is not
    /// set and `NO_COLOR` is unset.
    pub fn new(format: Format, no_color: bool) -> Self {
        let color = !no_color
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::io::stdout().is_terminal();
        Self { format, color }
    }

    /// Prints `value` as JSON.
    pub fn json(&self, value: &Value) {
        println!("{value}");
    }

    /// Prints `value` as JSON with `-o json`, else what `human` prints.
    pub fn show(&self, value: &Value, human: impl FnOnce()) {
        match self.format {
            Format::Json => self.json(value),
            Format::Table => human(),
        }
    }

    /// `status` coloured by what it means.
    pub fn status(&self, status: &str) -> String {
        if !self.color {
            return status.to_owned();
        }
        let code = match status {
            "RUNNING" => "34",
            "STOPPED" => "1",
            "NEEDS_RETRY" => "33",
            _ => "2",
        };
        format!("\x1b[{code}m{status}\x1b[0m")
    }
}

/// `rows` under `headers`, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let visible = |s: &str| strip_ansi(s).chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(visible(cell));
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let last = i + 1 == cells.len();
            out.push_str(cell);
            if !last {
                let pad = widths[i].saturating_sub(visible(cell)) + 2;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A field of `value` as text: strings as they are, numbers and booleans
/// written out, nothing as `-`.
pub fn text(value: &Value, field: &str) -> String {
    match value.get(field) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A time field shortened to the second (`2026-11-01 09:30:00`).
pub fn time(value: &Value, field: &str) -> String {
    let t = text(value, field);
    if t == "-" {
        return t;
    }
    let t = t.replacen('T', " ", 1);
    t.split(['.', 'Z', '+']).next().unwrap_or(&t).to_owned()
}

/// `key: value` lines of the `fields` of one object.
pub fn record(value: &Value, fields: &[&str]) -> String {
    let width = fields.iter().map(|f| f.len()).max().unwrap_or(0);
    fields
        .iter()
        .filter(|f| value.get(**f).is_some_and(|v| !v.is_null()))
        .map(|f| {
            let v = match &value[*f] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{f:width$}  {v}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The line shown while a run waits: a spinner on stderr, on a terminal
/// only, so piped output holds only the log. It is shown only while the run
/// waits, and gone before any of the log is printed, so the log is never
/// interleaved with it.
pub struct Progress {
    enabled: bool,
    bar: RefCell<Option<indicatif::ProgressBar>>,
}

impl Progress {
    /// A spinner on stderr when `enabled` and both stdout and stderr are
    /// terminals: `flotilla run -f > log` gets none.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled: enabled && std::io::stdout().is_terminal() && std::io::stderr().is_terminal(),
            bar: RefCell::new(None),
        }
    }

    /// Shows `message` (a terminal only), starting the spinner if it is
    /// not there.
    pub fn show(&self, message: &str) {
        if !self.enabled {
            return;
        }
        let mut bar = self.bar.borrow_mut();
        let bar = bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        bar.set_message(message.to_owned());
    }

    /// Removes the line, so what follows starts at the left where it was.
    pub fn clear(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }

    /// Prints `line` on stderr (above the spinner, when there is one).
    pub fn note(&self, line: &str) {
        match self.bar.borrow().as_ref() {
            Some(bar) => bar.println(line),
            None => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_table_aligns_every_column_to_its_widest_cell_whatever_its_colour() {
        let rows = vec![
            vec![
                "a".to_owned(),
                "\x1b[34mRUNNING\x1b[0m".to_owned(),
                "x".to_owned(),
            ],
            vec!["long-name".to_owned(), "QUEUED".to_owned(), "y".to_owned()],
        ];
        let out = strip_ansi(&table(&["NAME", "STATUS", "X"], &rows));
        assert_eq!(
            out,
            "NAME       STATUS   X\na          RUNNING  x\nlong-name  QUEUED   y"
        );
    }

    #[test]
    fn fields_print_as_text_and_missing_ones_as_a_dash() {
        let v = json!({"a": "s", "n": 3, "t": "2026-11-01T09:30:00.123Z", "e": ""});
        assert_eq!(text(&v, "a"), "s");
        assert_eq!(text(&v, "n"), "3");
        assert_eq!(text(&v, "e"), "-");
        assert_eq!(text(&v, "missing"), "-");
        assert_eq!(time(&v, "t"), "2026-11-01 09:30:00");
    }
}
