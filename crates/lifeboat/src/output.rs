//! Everything the binary shows: tables, sizes, progress bars, logging and
//! the notice about a generated password.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use lifeboat_core::progress::TransferProgress;

/// Sets up logging to stderr; quiet unless asked.
pub(crate) fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "error",
        1 => "warn",
        2 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIFEBOAT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Bytes in binary units: `1.5 GiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A plain text table with aligned columns.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub(crate) fn print(&self) {
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|c| escape_controls(c)).collect())
            .collect();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                if i + 1 == cells.len() {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<w$}  "));
                }
            }
            println!("{}", out.trim_end());
        };
        line(&self.header);
        for row in &rows {
            line(row);
        }
    }
}

/// A table cell on one line: control characters (a newline or an escape
/// sequence in a volume's name or label) are shown escaped, everything
/// else as it is, so that quotes in sentences stay readable.
fn escape_controls(cell: &str) -> String {
    let mut out = String::with_capacity(cell.len());
    for c in cell.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Draws a transfer's counters as a bar on a terminal; does nothing
/// otherwise.
pub(crate) struct ProgressDisplay {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressDisplay {
    pub(crate) fn start(label: &str, progress: Arc<TransferProgress>, wanted: bool) -> Self {
        if !wanted || !std::io::stderr().is_terminal() {
            return Self {
                bar: None,
                ticker: None,
            };
        }
        progress
            .wants_total
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let bar = ProgressBar::new(0);
        bar.set_prefix(label.to_string());
        let known = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let unknown =
            ProgressStyle::with_template("{spinner} {prefix} {bytes} {msg} {binary_bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(unknown.clone());
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut has_total = false;
            loop {
                let s = progress.snapshot();
                if let Some(total) = s.bytes_total {
                    if !has_total {
                        ticking.set_style(known.clone());
                        has_total = true;
                    }
                    ticking.set_length(total.max(s.bytes_done));
                }
                ticking.set_position(s.bytes_done);
                ticking.set_message(format!("{} files", s.files_done));
                ticking.tick();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }

    pub(crate) fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Tells, where nobody can miss it, that a password was generated and that
/// without it nothing can be restored.
pub(crate) fn loud_password_notice(file: &Path) {
    let rule = "!".repeat(72);
    eprintln!("{rule}");
    eprintln!("!! lifeboat generated the repository password and stored it in:");
    eprintln!("!!     {}", file.display());
    eprintln!("!! WITHOUT THIS PASSWORD NOTHING IN THE REPOSITORY CAN BE RESTORED.");
    eprintln!("!! Copy it somewhere safe, away from this host, now.");
    eprintln!("{rule}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_naturally() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }

    #[test]
    fn cells_escape_control_characters_only() {
        assert_eq!(
            escape_controls("db's \"data\"\n\u{1b}[31m"),
            "db's \"data\"\\n\\u{1b}[31m"
        );
    }
}
