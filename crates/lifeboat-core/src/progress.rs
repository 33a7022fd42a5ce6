//! Progress of a long transfer, as counters the caller polls.
//!
//! The library never draws anything: it bumps these counters from whichever
//! thread does the work, and the binary renders them (a bar on a terminal,
//! nothing otherwise).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counters of one backup or restore of one volume.
#[derive(Debug, Default)]
pub struct TransferProgress {
    /// Bytes expected in all, when known (0 = unknown).
    pub bytes_total: AtomicU64,
    /// Bytes processed by the repository (chunked, hashed, stored or found).
    pub bytes_done: AtomicU64,
    /// Bytes taken from the engine's archive stream, for the engine reader.
    pub bytes_read: AtomicU64,
    /// Files opened so far.
    pub files_done: AtomicU64,
    /// Whether someone shows the total: then the source is sized first,
    /// alongside the backup (a second walk of it).
    pub wants_total: AtomicBool,
    /// Set by the caller to stop a restore (on SIGINT, say): its writer
    /// stops at the next file or piece and fails, and the restore undoes
    /// what it wrote.
    stop: AtomicBool,
}

/// A consistent-enough copy of the counters, for display.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgressSnapshot {
    pub bytes_total: Option<u64>,
    pub bytes_done: u64,
    pub files_done: u64,
}

impl TransferProgress {
    /// Reads the counters.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let total = self.bytes_total.load(Ordering::Relaxed);
        ProgressSnapshot {
            bytes_total: (total > 0).then_some(total),
            bytes_done: self
                .bytes_done
                .load(Ordering::Relaxed)
                .max(self.bytes_read.load(Ordering::Relaxed)),
            files_done: self.files_done.load(Ordering::Relaxed),
        }
    }

    /// Asks the transfer to stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether the transfer was asked to stop.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// An error for work stopped on request, for the writers' `io` paths.
    pub(crate) fn stopped_error() -> std::io::Error {
        std::io::Error::other("stopped on request")
    }

    /// Starts over, for the next volume.
    pub fn reset(&self) {
        for c in [
            &self.bytes_total,
            &self.bytes_done,
            &self.bytes_read,
            &self.files_done,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}
