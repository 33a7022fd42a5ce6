//! How the command line shows what an operation tells while it runs: on
//! standard error, so that standard output holds only the result.

use std::sync::Mutex;

use lifeboat_core::backup::{Reader, TargetBackup};
use lifeboat_core::ops::{Event, Events};
use lifeboat_core::plan::Strategy;

use crate::output::{ProgressDisplay, errln, human_bytes};

/// Prints events; with `--json`, only what a script's user must see
/// anyway (a generated password, what was undone).
pub(crate) struct Reporter {
    json: bool,
    display: Mutex<Option<ProgressDisplay>>,
}

impl Reporter {
    pub(crate) fn new(json: bool) -> Self {
        Self {
            json,
            display: Mutex::new(None),
        }
    }

    fn end_display(&self) {
        if let Some(display) = self.display.lock().ok().and_then(|mut d| d.take()) {
            display.finish();
        }
    }
}

impl Events for Reporter {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Recovered { done } => errln!(
                "lifeboat: finished what a killed lifeboat left undone: {}",
                done.join("; ")
            ),
            Event::RecoveryFailed { error } => {
                errln!("lifeboat: could not finish what a killed lifeboat left undone: {error}");
            }
            Event::RepositoryCreated { location } => {
                errln!("lifeboat: created repository {location}");
            }
            Event::PasswordGenerated { file } => crate::output::loud_password_notice(file),
            Event::RepositoryUnlocked { location } => {
                if !self.json {
                    errln!(
                        "lifeboat: note: {location} is not on this host's file system and is not locked; do not prune it with restic while lifeboat writes to it"
                    );
                }
            }
            Event::WorkStarted { what, progress } => {
                self.end_display();
                let display = ProgressDisplay::start(what, progress.clone(), !self.json);
                if let Ok(mut d) = self.display.lock() {
                    *d = Some(display);
                }
            }
            Event::WorkEnded => self.end_display(),
            Event::TargetBackedUp(result) => {
                if !self.json {
                    target_lines(result);
                }
            }
            Event::PreviousSaved(previous) => errln!(
                "lifeboat: what the restore overwrites is saved in snapshot {} (tagged pre-restore): restoring it with --force undoes the restore",
                previous.short_id
            ),
            Event::Undone { done } => errln!("lifeboat: {}", done.join("; ")),
            Event::UndoFailed { error } => errln!("lifeboat: {error}"),
            Event::Waiting { why } => errln!("lifeboat: {why}"),
        }
    }
}

/// One target's result, and what happened on the way.
fn target_lines(result: &TargetBackup) {
    let how = match (result.strategy, result.reader) {
        (Some(Strategy::Dump), _) => "dump".to_string(),
        (strategy, reader) => format!(
            "{}{}",
            strategy.map(|s| format!("{s}, ")).unwrap_or_default(),
            reader_word(reader)
        ),
    };
    let kind = result.kind.as_str();
    match (&result.snapshot, &result.error) {
        (Some(s), None) => errln!(
            "{kind} {}: snapshot {} ({} files, {}, {} new, {:.1}s, {how})",
            result.name,
            s.short_id,
            result.files,
            human_bytes(result.bytes),
            human_bytes(result.bytes_added),
            result.seconds,
        ),
        (_, error) => errln!(
            "{kind} {}: FAILED: {}",
            result.name,
            error.as_deref().unwrap_or("no snapshot written")
        ),
    }
    if !result.vanished.is_empty() {
        errln!(
            "  {} file(s) disappeared while reading (not in the snapshot), first: {}",
            result.vanished.len(),
            result.vanished[0]
        );
    }
    if !result.sockets.is_empty() {
        errln!(
            "  {} socket(s) left out (a socket is made by the process that listens on it), first: {}",
            result.sockets.len(),
            result.sockets[0]
        );
    }
    for w in &result.stop_windows {
        errln!("  {} was stopped for {:.2}s", w.container, w.seconds);
    }
    for h in &result.hooks {
        errln!(
            "  {:?} hook in {}: `{}` {} ({:.1}s){}",
            h.phase,
            h.container,
            h.command,
            if h.ok { "ok" } else { "FAILED" },
            h.seconds,
            if h.ok || h.output.is_empty() {
                String::new()
            } else {
                format!(": {}", h.output)
            }
        );
    }
}

fn reader_word(reader: Option<Reader>) -> &'static str {
    match reader {
        Some(Reader::Host) => "host-path reader",
        Some(Reader::Engine) => "engine-archive reader",
        None => "not read",
    }
}
