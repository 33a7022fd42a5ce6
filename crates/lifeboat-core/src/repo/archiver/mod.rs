//! lifeboat's archiver: a source's entries into a snapshot, in restic's
//! repository format.
//!
//! The repository library has an archiver too; lifeboat used it first.
//! Profiled on two cores (perf, a root file system of 12.9k files), a
//! third of its time went to threads handing each blob and each file to
//! the next stage (futex and sched_yield: 146k and 158k calls in one
//! backup) and to compression and decompression contexts made anew for
//! every blob. Here each file is one job: a worker reads it, cuts it into
//! chunks, hashes, compresses, encrypts and checks each new chunk with
//! contexts it keeps, and hands the stored blobs to one packer thread. The
//! caller's thread walks the source, takes unchanged files from the
//! previous snapshot without reading them, and builds the trees. Two more
//! threads keep it fed, so that a backup where little changed is not one
//! thread's work: one lists the source (a `stat` and the extended
//! attributes of every entry), the other reads the previous snapshot's
//! trees in the order the walk will want them.
//!
//! What it writes is what restic writes: chunks cut where restic cuts
//! them, packs, index files, trees and a snapshot, so that restic reads and
//! checks the repository and shares its blobs. Nothing refers to a pack
//! before the index lists it, and the snapshot is written last.
//!
//! Its rooms: `walk` (the caller's thread), `workers`, `parent` (the
//! previous snapshot and its trees read ahead), `chunker`, `pack` (blobs
//! encoded and packed) and `index`; this file starts them and writes the
//! snapshot.

pub(crate) mod chunker;
pub(crate) mod index;
pub(crate) mod pack;
mod parent;
mod walk;
mod workers;

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Select, Sender};
use jiff::Zoned;
use rustic_core::repofile::{
    BlobType, Chunker as ChunkerKind, ConfigFile, Metadata, Node, NodeType, SnapshotFile, Tree,
};
use rustic_core::{BlobId, DataId, FileType, Id, OpenStatus, Repository, TreeId, WriteBackend};

use crate::error::{Error, ErrorClass, Result};
use crate::progress::TransferProgress;
use crate::repo::local_packs::LocalPacks;
use crate::repo::source::{Entry, Open, Source};
use chunker::{Chunker, Cutting};
use pack::{Codec, Encoded, Packer};
use parent::*;
use walk::*;
use workers::*;

/// What to archive and how to label it.
pub(crate) struct ArchiveRequest {
    pub(crate) base: PathBuf,
    pub(crate) snapshot_path: PathBuf,
    pub(crate) tags: Vec<String>,
    pub(crate) description: Option<String>,
    /// The snapshot's label: snapshots of one path with different labels
    /// never serve as each other's parent (a dump's files are not the
    /// volume's files).
    pub(crate) label: Option<String>,
    /// The snapshot unchanged files are taken from, instead of the latest
    /// of the same path.
    pub(crate) parent: Option<String>,
    /// Whether unchanged files may be taken from the previous snapshot of
    /// the same path without reading them.
    pub(crate) use_parent: bool,
    /// Whether a thread of its own lists the source ahead of the walk:
    /// worth it where listing is work (a `stat` and the extended
    /// attributes of each file on the host), not where the source parses
    /// on a thread of its own already and its entries carry their files'
    /// content (the engine's archive), which would only wait in memory.
    pub(crate) list_ahead: bool,
    /// Whether the files are commands' output, of unknown length until
    /// read (dumps). Each then goes to a worker alone, so that dumps of
    /// several databases can run side by side, and a file that waits for
    /// another (a manifest waiting for the counts taken from a dump) never
    /// queues behind it in one worker's batch.
    pub(crate) streams: bool,
    /// The time the snapshot records, instead of when it was taken.
    pub(crate) time: Option<Zoned>,
    pub(crate) progress: Arc<TransferProgress>,
}

/// How many source entries go to the walk at once, and how many such
/// batches may wait: the lister keeps ahead without holding the tree. A
/// batch also ends at [`BATCH_BYTES`] of files, for a source whose
/// entries carry their content.
const ENTRY_BATCH: usize = 128;
const ENTRY_BATCHES: usize = 2;

/// How many of the previous snapshot's trees may be read ahead, and how
/// many of their nodes in all (a directory can hold a hundred thousand).
const TREES_AHEAD: usize = 64;
const NODES_AHEAD: usize = 100_000;

/// Files go to the workers, and stored blobs to the packer, in batches
/// that end once they hold this many bytes: most files and blobs are
/// small, and one message each made threads wait on each other tens of
/// thousands of times a backup.
const BATCH_BYTES: u64 = 512 << 10;
/// At most this many files in a batch.
const BATCH_FILES: usize = 64;

/// Archives `source` into a snapshot; returns it once it is written (the
/// caller's backend may still hold it back).
pub(crate) fn archive<R>(
    repo: &Repository<OpenStatus>,
    backend: Arc<dyn WriteBackend>,
    local: Option<&LocalPacks>,
    source: &R,
    request: &ArchiveRequest,
    mut snap: SnapshotFile,
    cancelled: crate::cancel::Cancel,
) -> Result<SnapshotFile>
where
    R: Source,
{
    let started = Zoned::now();
    let config = repo.config().clone();
    let key = repo.key();
    let known = index::Known::load(repo)?;
    let snapshot_path = request
        .snapshot_path
        .to_str()
        .ok_or_else(|| {
            Error::BadRequest(format!("{} is not UTF-8", request.snapshot_path.display()))
        })?
        .to_string();
    snap.paths.add(snapshot_path);
    let cipher = crate::repo::crypto::cipher(&key);
    let parent = find_parent(repo, &snap, request);
    let parent_root = parent
        .as_ref()
        .and_then(|p| match known.tree(&backend, &cipher, p.tree) {
            Ok(tree) => Some(tree),
            Err(e) => {
                tracing::warn!("not using the previous snapshot's files: {e}");
                None
            }
        });
    if let Some(p) = &parent {
        snap.parent = Some(p.id);
        snap.parents = vec![p.id];
    }

    let workers = std::thread::available_parallelism()
        .map_or(2, std::num::NonZeroUsize::get)
        .max(2);
    let shared = Shared {
        known,
        added: Mutex::new(HashSet::new()),
        cutting: cutting(&config)?,
        progress: request.progress.clone(),
        failure: Mutex::new(None),
        nodes_ahead: AtomicUsize::new(0),
        walked: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        cancelled,
    };
    let mut codecs = (0..=workers)
        .map(|_| Codec::new(&key, &config))
        .collect::<Result<Vec<_>>>()?;
    let tree_codec = codecs
        .pop()
        .ok_or_else(|| Error::Other("no codec".to_string()))?;
    let packer = Packer::new(
        backend.clone(),
        local,
        &key,
        &config,
        shared.known.data_size,
        shared.known.tree_size,
    )?;

    let entries = source.entries();
    let parent_subtrees = parent_root.as_ref().map(subtrees).unwrap_or_default();
    let (walked, counts, packed) = std::thread::scope(|s| -> Result<_> {
        if request.progress.wants_total.load(Ordering::Relaxed) {
            s.spawn(|| {
                if let Err(e) = source.size() {
                    tracing::debug!("sizing the source: {e}");
                }
            });
        }
        let (job_tx, job_rx) = crossbeam_channel::bounded::<Vec<Job<R::Open>>>(workers);
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Vec<Done>>();
        let (blob_tx, blob_rx) = crossbeam_channel::bounded::<Vec<Encoded>>(workers * 2);
        let shared = &shared;
        let (tree_tx, tree_rx) = crossbeam_channel::bounded(TREES_AHEAD);
        let reader = TreeReader {
            shared,
            backend: &backend,
            cipher: &cipher,
        };
        s.spawn(move || reader.run(parent_subtrees, &tree_tx));
        let packing = s.spawn(move || {
            let mut packer = packer;
            for blob in blob_rx.iter().flatten() {
                if let Err(e) = packer.add(blob) {
                    shared.fail(&e);
                    return Err(e);
                }
            }
            packer.finish().inspect_err(|e| shared.fail(e))
        });
        for codec in codecs {
            let (jobs, done, blobs) = (job_rx.clone(), done_tx.clone(), blob_tx.clone());
            s.spawn(move || work(shared, codec, &jobs, &done, &blobs));
        }
        drop((job_rx, done_tx));
        let mut walk = Walk {
            shared,
            jobs: job_tx,
            pending: Vec::new(),
            pending_bytes: 0,
            file_per_batch: request.streams,
            done: done_rx,
            blobs: blob_tx,
            codec: tree_codec,
            backend: &backend,
            cipher: &cipher,
            trees_ahead: Some(tree_rx),
            tree_passed: None,
            frames: Vec::new(),
            stack: Vec::new(),
            root: None,
            counts: Counts::default(),
        };
        let walked = if request.list_ahead {
            let (entry_tx, entry_rx) = crossbeam_channel::bounded(ENTRY_BATCHES);
            s.spawn(move || list(shared, entries, &entry_tx));
            walk.run(entry_rx.iter().flatten(), request, parent_root)
            // Dropped here, the receiver stops the lister.
        } else {
            walk.run(entries, request, parent_root)
        }
        .inspect_err(|e| shared.fail(e));
        // The tree reader stops when its receiver is gone, or, waiting for
        // the walk to take trees, when the walk is over.
        walk.trees_ahead = None;
        shared.walked.store(true, Ordering::Relaxed);
        let Walk {
            jobs,
            blobs,
            counts,
            ..
        } = walk;
        drop((jobs, blobs));
        let packed = packing
            .join()
            .map_err(|_| Error::Other("the packer thread panicked".to_string()))?;
        Ok((walked, counts, packed))
    })?;
    let (root, counts, added) = match (walked, packed, shared.failure()) {
        (Ok(root), Ok(added), None) => (root, counts, added),
        // The first failure is the cause; the walk's or the packer's own
        // error may only follow from it ("the packer stopped").
        (walked, packed, Some(failure)) => {
            return Err(match (walked, packed) {
                (Err(e), _) | (_, Err(e)) if e.to_string() == failure.to_string() => e,
                _ => failure,
            });
        }
        (Err(e), _, None) | (_, Err(e), None) => return Err(e),
    };

    // Asked to stop, the archive publishes nothing, whatever it finished.
    if request.progress.stop_requested() {
        return Err(Error::Interrupted("stopped on request".to_string()));
    }
    snap.tree = root;
    let ended = Zoned::now();
    let summary = snap.summary.get_or_insert_with(Default::default);
    counts.apply(summary);
    summary.data_blobs = added.data_blobs;
    summary.tree_blobs = added.tree_blobs;
    summary.data_added = added.data_plain + added.tree_plain;
    summary.data_added_packed = added.data_stored + added.tree_stored;
    summary.data_added_files = added.data_plain;
    summary.data_added_files_packed = added.data_stored;
    summary.data_added_trees = added.tree_plain;
    summary.data_added_trees_packed = added.tree_stored;
    summary.backup_start = started.clone();
    summary.backup_end = ended.clone();
    summary.backup_duration = seconds_between(&started, &ended);
    // From the time the snapshot records only when it is when it began.
    let began = if request.time.is_some() {
        &started
    } else {
        &snap.time
    };
    summary.total_duration = seconds_between(began, &ended);
    write_snapshot(repo, &*backend, snap)
}

/// Writes `snap` as a new snapshot file (a copy of an existing one with
/// other tags, say) and returns it with its id.
pub(crate) fn write_snapshot(
    repo: &Repository<OpenStatus>,
    backend: &dyn WriteBackend,
    mut snap: SnapshotFile,
) -> Result<SnapshotFile> {
    let cipher = crate::repo::crypto::cipher(&repo.key());
    let json = serde_json::to_vec(&snap).map_err(|e| Error::Other(e.to_string()))?;
    let id = pack::write_file(
        backend,
        &cipher,
        pack::level(repo.config())?,
        FileType::Snapshot,
        &json,
    )?;
    snap.id = id.into();
    Ok(snap)
}

fn seconds_between(from: &Zoned, to: &Zoned) -> f64 {
    to.timestamp()
        .duration_since(from.timestamp())
        .as_secs_f64()
}

/// Lists the source for the walk, in batches, until it ends, the walk
/// stops taking them, or the archive fails.
fn list<I, O>(shared: &Shared, entries: I, out: &Sender<Vec<EntryResult<O>>>)
where
    I: Iterator<Item = EntryResult<O>>,
{
    let mut batch = Vec::with_capacity(ENTRY_BATCH);
    let mut bytes = 0;
    for entry in entries {
        if shared.stopped() {
            return;
        }
        if let Ok(e) = &entry {
            bytes += e.node.meta.size;
        }
        batch.push(entry);
        if batch.len() == ENTRY_BATCH || bytes >= BATCH_BYTES {
            if out.send(std::mem::take(&mut batch)).is_err() {
                return;
            }
            batch.reserve(ENTRY_BATCH);
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        let _ = out.send(batch);
    }
}

type EntryResult<O> = std::result::Result<Entry<O>, String>;

/// How the repository cuts files.
fn cutting(config: &ConfigFile) -> Result<Cutting> {
    Ok(match config.chunker() {
        ChunkerKind::Rabin => {
            let average = config.chunk_size();
            if !average.is_power_of_two() {
                return Err(Error::Other(format!(
                    "the repository's chunk size {average} is not a power of two"
                )));
            }
            Cutting::Rabin {
                polynom: config.poly().map_err(|e| {
                    Error::Other(format!("the repository's chunker: {}", e.display_log()))
                })?,
                average,
                min: config.chunk_min_size().max(64),
                max: config.chunk_max_size().max(config.chunk_min_size()),
            }
        }
        ChunkerKind::FixedSize => Cutting::Fixed(config.chunk_size().max(1)),
    })
}

/// What the walker and the workers share.
struct Shared {
    known: index::Known,
    /// Blobs handed to the packer in this run: each is stored once.
    added: Mutex<HashSet<BlobId>>,
    cutting: Cutting,
    progress: Arc<TransferProgress>,
    /// Why the archive cannot complete, and the class of it; everyone
    /// stops.
    failure: Mutex<Option<(ErrorClass, String)>>,
    /// The nodes of the trees [`TreeReader`] has read and the walk not
    /// yet taken.
    nodes_ahead: AtomicUsize,
    /// The walk is over: it takes no more trees.
    walked: AtomicBool,
    stop: AtomicBool,
    /// The run was interrupted ([`crate::repo::Repo::cancel`]): nothing
    /// will be published, so nothing more is read.
    cancelled: crate::cancel::Cancel,
}

impl Shared {
    /// Records why the archive cannot complete, unless an earlier
    /// failure did (the cause; what follows may only be its effect), and
    /// stops everyone.
    fn fail(&self, why: &Error) {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert_with(|| (why.class(), why.to_string()));
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The first failure, its class kept.
    fn failure(&self) -> Option<Error> {
        let (class, message) = self.failure.lock().ok().and_then(|f| f.clone())?;
        Some(Error::Context { class, message })
    }

    /// Whether everyone stops: the archive failed, or the caller asked it
    /// to stop (see [`TransferProgress::stop`]).
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self.progress.stop_requested()
            || self.cancelled.is_cancelled()
    }

    /// Whether this run should store the blob: neither the repository nor
    /// this run has it.
    fn claim(&self, id: BlobId, tpe: BlobType) -> bool {
        let held = match tpe {
            BlobType::Data => self.known.has_data(&id),
            BlobType::Tree => self.known.has_tree(&id),
        };
        !held
            && self
                .added
                .lock()
                .map(|mut added| added.insert(id))
                .unwrap_or(false)
    }
}
