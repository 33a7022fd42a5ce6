//! What a backup reads, and the interface the archiver reads it through.
//!
//! A [`Source`] hands the archiver a tree of entries; each file's content
//! is opened when the archiver gets to it. Three sources exist: a volume
//! read straight from its host path ([`HostSource`]), one read from the
//! engine's archive stream ([`ArchiveSource`]), and the few files lifeboat
//! makes itself, a database dump's ([`ListedSource`]).
//!
//! Every source records the problems it meets in a [`ReadLog`], and the
//! backup consults the log before it lets a snapshot be published: a
//! failed read must never produce a snapshot that looks complete.

mod archive;
mod host;
mod listed;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use rustic_core::repofile::Node;

use crate::progress::TransferProgress;

pub(crate) use archive::{
    ArchiveInput, ArchiveSource, Payload, Refetch, archive_components, read_payload,
};
pub(crate) use host::HostSource;
pub(crate) use listed::ListedSource;

/// Something the archiver reads: entries in tree order.
pub(crate) trait Source: Sync {
    type Open: Open;
    type Entries: Iterator<Item = Result<Entry<Self::Open>, String>> + Send;

    /// How many bytes the source holds, when it can tell; for progress
    /// only. It may walk the source, while the archiver reads it.
    fn size(&self) -> Result<Option<u64>, String>;

    /// The entries: every directory before what it holds, the entries of
    /// one directory in name order. Taken once.
    fn entries(&self) -> Self::Entries;
}

/// Opens the content of one file, when the archiver gets to it.
pub(crate) trait Open: Send {
    type Reader: Read;

    fn open(self) -> std::io::Result<Self::Reader>;
}

/// One entry of a source: where it is, what the repository records of it,
/// and how its content is read (files only).
pub(crate) struct Entry<O> {
    /// Below the base the source names its entries under.
    pub(crate) path: PathBuf,
    pub(in crate::repo) node: Node,
    pub(crate) open: Option<O>,
}

/// Problems met while reading a source.
#[derive(Debug, Default)]
pub(crate) struct ReadLog {
    /// Reasons the snapshot must not be written.
    pub(crate) fatal: Vec<String>,
    /// Files that vanished between listing and reading: not an error for a
    /// live volume, but reported.
    pub(crate) vanished: Vec<String>,
    /// Sockets, left out: a socket is made by the process that listens on
    /// it, holds no data, and neither the engine's archive nor a restore
    /// carries one.
    pub(crate) sockets: Vec<String>,
}

pub(crate) type SharedLog = Arc<Mutex<ReadLog>>;

pub(crate) fn record_fatal(log: &SharedLog, message: String) {
    if let Ok(mut log) = log.lock() {
        log.fatal.push(message);
    }
}

fn record_vanished(log: &SharedLog, path: &Path) {
    if let Ok(mut log) = log.lock() {
        log.vanished.push(path.display().to_string());
    }
}

/// A reader that records its errors.
pub(crate) struct CheckedReader<R> {
    inner: R,
    path: PathBuf,
    log: SharedLog,
}

impl<R: Read> Read for CheckedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            // The chunker retries an interrupted read.
            if e.kind() != std::io::ErrorKind::Interrupted {
                record_fatal(&self.log, format!("{}: {e}", self.path.display()));
            }
        })
    }
}

/// Opens a file's content, recording failures to open or read it.
pub(crate) struct CheckedOpen<O> {
    inner: O,
    path: PathBuf,
    log: SharedLog,
    progress: Arc<TransferProgress>,
}

impl<O> CheckedOpen<O> {
    pub(crate) fn new(
        inner: O,
        path: PathBuf,
        log: SharedLog,
        progress: Arc<TransferProgress>,
    ) -> Self {
        Self {
            inner,
            path,
            log,
            progress,
        }
    }
}

impl<O: Open> Open for CheckedOpen<O> {
    type Reader = CheckedReader<O::Reader>;

    fn open(self) -> std::io::Result<Self::Reader> {
        self.progress.files_done.fetch_add(1, Ordering::Relaxed);
        match self.inner.open() {
            Ok(inner) => Ok(CheckedReader {
                inner,
                path: self.path,
                log: self.log,
            }),
            Err(err) => {
                record_fatal(&self.log, format!("{}: {err}", self.path.display()));
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_errors_are_fatal_but_interruptions_are_not() {
        struct Failing(std::io::ErrorKind);
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(self.0.into())
            }
        }
        let log = SharedLog::default();
        for kind in [std::io::ErrorKind::Interrupted, std::io::ErrorKind::Other] {
            let mut r = CheckedReader {
                inner: Failing(kind),
                path: PathBuf::from("f"),
                log: log.clone(),
            };
            let _ = r.read(&mut [0u8; 8]);
        }
        assert_eq!(log.lock().expect("log").fatal.len(), 1);
    }
}
