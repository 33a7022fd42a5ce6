//! Everything the binary shows: tables, sizes, progress bars, logging and
//! the notice about a generated password.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use lifeboat_core::progress::TransferProgress;

/// Prints a line on standard output. A reader that went away (`lifeboat
/// backup | head -1`) ends the output, not the work: lifeboat goes on
/// and exits with the work's own code.
macro_rules! outln {
    () => { $crate::output::write_line(false, format_args!("")) };
    ($($arg:tt)*) => { $crate::output::write_line(false, format_args!($($arg)*)) };
}

/// Prints a line on standard error, the same way.
macro_rules! errln {
    () => { $crate::output::write_line(true, format_args!("")) };
    ($($arg:tt)*) => { $crate::output::write_line(true, format_args!($($arg)*)) };
}

pub(crate) use {errln, outln};

/// Set when standard output could not be written for another reason than
/// a reader that went away (a full disk under a redirection): what a
/// script reads is incomplete, and the exit code must say so.
static OUTPUT_LOST: AtomicBool = AtomicBool::new(false);

pub(crate) fn write_line(to_stderr: bool, line: std::fmt::Arguments<'_>) {
    let written = if to_stderr {
        writeln!(std::io::stderr().lock(), "{line}")
    } else {
        writeln!(std::io::stdout().lock(), "{line}")
    };
    if let Err(e) = written
        && !to_stderr
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        OUTPUT_LOST.store(true, Ordering::Relaxed);
    }
}

/// Whether some of standard output was lost (see [`OUTPUT_LOST`]).
pub(crate) fn output_lost() -> bool {
    OUTPUT_LOST.load(Ordering::Relaxed)
        || std::io::stdout()
            .lock()
            .flush()
            .is_err_and(|e| e.kind() != std::io::ErrorKind::BrokenPipe)
}

/// Sets up logging to stderr: lifeboat's own warnings, and more with
/// `-v`s; other crates only their errors, their warnings from `-vv`.
pub(crate) fn init_logging(verbose: u8) {
    use tracing_subscriber::prelude::*;
    let (own, others) = match verbose {
        0 | 1 => ("warn", "error"),
        2 => ("info", "warn"),
        _ => ("debug", "info"),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIFEBOAT_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{others},lifeboat={own},lifeboat_core={own}"))
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .event_format(Guarded {
            timed: (verbose >= 2).then(|| tracing_subscriber::fmt::format().with_target(false)),
            plain: tracing_subscriber::fmt::format()
                .with_target(false)
                .without_time(),
        });
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .init();
}

/// Whether a line may be printed at all, at any verbosity and whatever
/// `LIFEBOAT_LOG` says: other crates' debugging lines show what they
/// handle, and the engine client's show whole container inspections,
/// environment (database passwords) included. Only lifeboat's own lines
/// go below `info`; none of them prints an environment or a credential.
fn may_print(target: &str, level: tracing::Level) -> bool {
    let own = target == "lifeboat"
        || target.starts_with("lifeboat::")
        || target == "lifeboat_core"
        || target.starts_with("lifeboat_core::");
    own || level <= tracing::Level::INFO
}

/// A line format that leaves out what [`may_print`] refuses, judged by
/// the line's real origin (lines of crates that log through `log` arrive
/// under the target `log`). Lines carry the time only when debugging.
struct Guarded {
    timed: Option<tracing_subscriber::fmt::format::Format>,
    plain: tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Full, ()>,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Guarded
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use tracing_log::NormalizeEvent;
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        if !may_print(meta.target(), *meta.level()) {
            return Ok(());
        }
        match &self.timed {
            Some(timed) => timed.format_event(ctx, writer, event),
            None => self.plain.format_event(ctx, writer, event),
        }
    }
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
            outln!("{}", out.trim_end());
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
    errln!("{rule}");
    errln!("!! lifeboat generated the repository password and stored it in:");
    errln!("!!     {}", file.display());
    errln!("!! WITHOUT THIS PASSWORD NOTHING IN THE REPOSITORY CAN BE RESTORED.");
    errln!("!! Copy it somewhere safe, away from this host, now.");
    errln!("{rule}");
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
    fn only_lifeboat_prints_below_info() {
        use tracing::Level;
        for target in ["lifeboat", "lifeboat::cli", "lifeboat_core::engine"] {
            assert!(may_print(target, Level::TRACE), "{target}");
        }
        for target in [
            "bollard::docker",
            "hyper_util::client",
            "rustic_core",
            "lifeboatish",
        ] {
            assert!(!may_print(target, Level::DEBUG), "{target}");
            assert!(may_print(target, Level::INFO), "{target}");
        }
    }

    #[test]
    fn cells_escape_control_characters_only() {
        assert_eq!(
            escape_controls("db's \"data\"\n\u{1b}[31m"),
            "db's \"data\"\\n\\u{1b}[31m"
        );
    }
}
