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

pub(crate) mod chunker;
pub(crate) mod index;
pub(crate) mod pack;

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

use crate::error::{Error, Result};
use crate::progress::TransferProgress;
use crate::repo::local_packs::LocalPacks;
use crate::repo::source::{Entry, Open, Source};
use chunker::{Chunker, Cutting};
use pack::{Codec, Encoded, Packer};

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
                    shared.fail(e.to_string());
                    return Err(e);
                }
            }
            packer.finish().inspect_err(|e| shared.fail(e.to_string()))
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
        .inspect_err(|e| shared.fail(e.to_string()));
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
                (Err(e), _) | (_, Err(e)) if e.to_string() == failure => e,
                _ => Error::Other(failure),
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
    summary.total_duration = seconds_between(&snap.time, &ended);
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

/// The snapshot whose files are taken when unchanged: the one asked for,
/// or the latest of the same host, label and paths.
fn find_parent(
    repo: &Repository<OpenStatus>,
    snap: &SnapshotFile,
    request: &ArchiveRequest,
) -> Option<SnapshotFile> {
    if !request.use_parent {
        return None;
    }
    if let Some(id) = &request.parent {
        return match repo.get_snapshot_from_str(id, |_| true) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!("parent snapshot {id}: {}", e.display_log());
                None
            }
        };
    }
    let snapshots = match crate::repo::readable_snapshots(repo) {
        Ok((snapshots, _)) => snapshots,
        Err(e) => {
            tracing::warn!("listing snapshots for a parent: {}", e.display_log());
            return None;
        }
    };
    snapshots
        .into_iter()
        .filter(|p| p.hostname == snap.hostname && p.label == snap.label && p.paths == snap.paths)
        .max_by(|a, b| a.time.cmp(&b.time))
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

/// The subtrees of a tree's directories, in name order, with their names.
fn subtrees(tree: &Tree) -> Vec<(String, TreeId)> {
    tree.nodes
        .iter()
        .filter(|n| n.is_dir())
        .filter_map(|n| Some((n.name.clone(), n.subtree?)))
        .collect()
}

/// A tree of the previous snapshot, read ahead: where it is (the names
/// of the directories down to it), its id, and it (or why not).
struct TreeAhead {
    path: Vec<String>,
    id: TreeId,
    tree: Result<Tree>,
}

/// Reads the previous snapshot's trees ahead of the walk.
struct TreeReader<'a> {
    shared: &'a Shared,
    backend: &'a Arc<dyn WriteBackend>,
    cipher: &'a aes256ctr_poly1305aes::Aes256CtrPoly1305Aes,
}

impl TreeReader<'_> {
    /// Reads the trees below `roots` (the root's subtrees) depth first, in
    /// name order: the order in which the walk enters directories, since
    /// the source lists them sorted too. Paths in that order only grow.
    fn run(&self, roots: Vec<(String, TreeId)>, out: &Sender<TreeAhead>) {
        let mut stack: Vec<(Vec<String>, TreeId)> = roots
            .into_iter()
            .rev()
            .map(|(name, id)| (vec![name], id))
            .collect();
        while let Some((path, id)) = stack.pop() {
            while self.shared.nodes_ahead.load(Ordering::Relaxed) > NODES_AHEAD {
                // Trees the walk will never take (a directory gone from the
                // source) count until it ends.
                if self.shared.stopped() || self.shared.walked.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            if self.shared.stopped() {
                return;
            }
            let tree = self.shared.known.tree(self.backend, self.cipher, id);
            if let Ok(tree) = &tree {
                self.shared
                    .nodes_ahead
                    .fetch_add(tree.nodes.len(), Ordering::Relaxed);
                stack.extend(subtrees(tree).into_iter().rev().map(|(name, sub)| {
                    let mut below = path.clone();
                    below.push(name);
                    (below, sub)
                }));
            }
            if out.send(TreeAhead { path, id, tree }).is_err() {
                return;
            }
        }
    }
}

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
    /// Why the archive cannot complete; everyone stops.
    failure: Mutex<Option<String>>,
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
    fn fail(&self, why: String) {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert(why);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
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

/// A file to read, and where its node goes.
struct Job<O> {
    frame: usize,
    slot: usize,
    node: Node,
    open: Option<O>,
}

/// A file read: its node with its content, or why it is left out.
struct Done {
    frame: usize,
    slot: usize,
    node: std::result::Result<Node, String>,
}

/// Stored blobs on their way to the packer, in batches.
struct Outbox<'a> {
    packer: &'a Sender<Vec<Encoded>>,
    batch: Vec<Encoded>,
    bytes: u64,
}

impl<'a> Outbox<'a> {
    fn new(packer: &'a Sender<Vec<Encoded>>) -> Self {
        Self {
            packer,
            batch: Vec::new(),
            bytes: 0,
        }
    }

    fn push(&mut self, blob: Encoded) -> std::result::Result<(), String> {
        self.bytes += blob.bytes.len() as u64;
        self.batch.push(blob);
        if self.bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::result::Result<(), String> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        self.packer
            .send(std::mem::take(&mut self.batch))
            .map_err(|_| "the packer stopped".to_string())
    }
}

/// A worker: batches of whole files, one file at a time.
fn work<O: Open>(
    shared: &Shared,
    mut codec: Codec,
    jobs: &Receiver<Vec<Job<O>>>,
    done: &Sender<Vec<Done>>,
    blobs: &Sender<Vec<Encoded>>,
) {
    let mut outbox = Outbox::new(blobs);
    for batch in jobs {
        let mut finished = Vec::with_capacity(batch.len());
        for job in batch {
            let node = if shared.stopped() {
                Err("stopped".to_string())
            } else {
                read_file(shared, &mut codec, job.node, job.open, &mut outbox)
            };
            finished.push(Done {
                frame: job.frame,
                slot: job.slot,
                node,
            });
        }
        // The files' blobs are on their way before the files are done.
        if let Err(e) = outbox.flush() {
            shared.fail(e);
        }
        if done.send(finished).is_err() {
            return;
        }
    }
}

fn read_file<O: Open>(
    shared: &Shared,
    codec: &mut Codec,
    mut node: Node,
    open: Option<O>,
    blobs: &mut Outbox<'_>,
) -> std::result::Result<Node, String> {
    let reader = open
        .ok_or_else(|| "no content to read".to_string())?
        .open()
        .map_err(|e| e.to_string())?;
    let mut chunker = Chunker::new(reader, &shared.cutting, node.meta.size);
    let mut content = Vec::new();
    let mut size = 0;
    while let Some(chunk) = chunker.next_chunk().map_err(|e| e.to_string())? {
        if shared.stopped() {
            return Err("stopped".to_string());
        }
        size += chunk.len() as u64;
        let raw = pack::hash(chunk);
        let id = Id::new(raw);
        shared
            .progress
            .bytes_done
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if shared.claim(BlobId::from(id), BlobType::Data) {
            // From here other files count on this blob being stored: any
            // failure to store it fails the whole snapshot.
            let stored = codec
                .encode(BlobType::Data, raw, chunk)
                .map_err(|e| e.to_string())
                .and_then(|blob| blobs.push(blob));
            if let Err(e) = stored {
                shared.fail(e.clone());
                return Err(e);
            }
        }
        content.push(DataId::from(id));
    }
    node.content = Some(content);
    // What was read, not what the listing said: a dump streams with no
    // size known in advance, and a live file may grow or shrink while it
    // is read.
    node.meta.size = size;
    Ok(node)
}

/// Counts for the snapshot's summary.
#[derive(Default)]
struct Counts {
    files_new: u64,
    files_changed: u64,
    files_unmodified: u64,
    files: u64,
    bytes: u64,
    dirs_new: u64,
    dirs_changed: u64,
    dirs_unmodified: u64,
    dirs: u64,
    dir_bytes: u64,
}

impl Counts {
    fn apply(&self, s: &mut rustic_core::repofile::SnapshotSummary) {
        s.files_new = self.files_new;
        s.files_changed = self.files_changed;
        s.files_unmodified = self.files_unmodified;
        s.total_files_processed = self.files;
        s.total_bytes_processed = self.bytes;
        s.dirs_new = self.dirs_new;
        s.dirs_changed = self.dirs_changed;
        s.dirs_unmodified = self.dirs_unmodified;
        s.total_dirs_processed = self.dirs;
        s.total_dirsize_processed = self.dir_bytes;
    }
}

/// A directory being built: its nodes in the source's order, some still
/// being read.
struct Frame {
    /// Its node, in its parent's tree; `None` for the root.
    node: Option<Node>,
    name: OsString,
    /// The names of its node and of those above it, from the root's
    /// first child: where [`TreeReader`] finds the previous version.
    path: Vec<String>,
    /// Where its node goes: the parent frame and slot.
    up: Option<(usize, usize)>,
    nodes: Vec<Option<Node>>,
    waiting: usize,
    closed: bool,
    /// The same directory in the previous snapshot, and how far its sorted
    /// nodes have been looked through.
    before: Option<Tree>,
    before_id: Option<TreeId>,
    cursor: usize,
}

impl Frame {
    /// The previous snapshot's node of this name.
    fn before(&mut self, name: &str) -> Option<&Node> {
        let nodes = &self.before.as_ref()?.nodes;
        while let Some(node) = nodes.get(self.cursor) {
            match node.name.as_str().cmp(name) {
                std::cmp::Ordering::Less => self.cursor += 1,
                std::cmp::Ordering::Equal => return Some(node),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }
}

/// The walk of the source, on the caller's thread.
struct Walk<'a, O> {
    shared: &'a Shared,
    jobs: Sender<Vec<Job<O>>>,
    /// Files for the next batch, and their size.
    pending: Vec<Job<O>>,
    pending_bytes: u64,
    /// Each file goes to a worker alone (see [`ArchiveRequest::streams`]).
    file_per_batch: bool,
    done: Receiver<Vec<Done>>,
    blobs: Sender<Vec<Encoded>>,
    codec: Codec,
    backend: &'a Arc<dyn WriteBackend>,
    cipher: &'a aes256ctr_poly1305aes::Aes256CtrPoly1305Aes,
    /// The previous snapshot's trees as [`TreeReader`] reads them; `None`
    /// once it has no more.
    trees_ahead: Option<Receiver<TreeAhead>>,
    /// A tree read ahead for a directory further on.
    tree_passed: Option<TreeAhead>,
    /// Every directory met so far, by the index jobs and children know it
    /// by; a finished one's slot is emptied. Boxed: an emptied slot then
    /// takes a pointer's room, not a frame's (hundreds of bytes), for each
    /// of a volume's directories until the backup ends.
    frames: Vec<Option<Box<Frame>>>,
    /// The open directories, outermost first.
    stack: Vec<usize>,
    root: Option<TreeId>,
    counts: Counts,
}

/// Whether a file is as it was in the previous snapshot: same type, size,
/// modification time, change time (when both have one) and inode (when
/// both have one).
fn unchanged(before: &Node, now: &Node) -> bool {
    let (b, n) = (&before.meta, &now.meta);
    before.node_type == now.node_type
        && b.size == n.size
        && b.mtime == n.mtime
        && b.ctime.zip(n.ctime).is_none_or(|(x, y)| x == y)
        && (b.inode == 0 || n.inode == 0 || b.inode == n.inode)
}

impl<O: Open> Walk<'_, O> {
    fn run(
        &mut self,
        entries: impl Iterator<Item = EntryResult<O>>,
        request: &ArchiveRequest,
        parent: Option<Tree>,
    ) -> Result<TreeId> {
        let root = self.open_frame(None, OsString::new(), None);
        if let Some(frame) = self.frames[root].as_mut() {
            frame.before = parent;
        }
        for entry in entries {
            if self.shared.stopped() {
                break;
            }
            if request.progress.stop_requested() {
                break;
            }
            let Entry { path, node, open } = match entry {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!("skipping an entry: {e}");
                    continue;
                }
            };
            let snapshot_path = match path.strip_prefix(&request.base) {
                Ok(rest) => request.snapshot_path.join(rest),
                Err(_) => path,
            };
            let mut names = names(&snapshot_path);
            let is_dir = node.is_dir();
            if !is_dir {
                names.pop();
            }
            self.enter(&names, is_dir.then_some(node.clone()))?;
            if !is_dir {
                self.add(node, open)?;
            }
            self.collect(false)?;
        }
        self.send_pending()?;
        while let Some(top) = self.stack.pop() {
            self.close(top)?;
        }
        while self.root.is_none() {
            if self.shared.stopped() {
                break;
            }
            self.collect(true)?;
        }
        match (self.shared.failure(), self.root) {
            (Some(failure), _) => Err(Error::Other(failure)),
            (None, Some(root)) => Ok(root),
            (None, None) => Err(Error::Other("the archive stopped".to_string())),
        }
    }

    /// Makes the open directories those of `names`, closing the others and
    /// opening the missing ones; the last is `dir`'s own node, when the
    /// entry is a directory.
    fn enter(&mut self, names: &[OsString], dir: Option<Node>) -> Result<()> {
        // The root frame has no name: the stack's depth below it is the
        // path's length.
        let mut keep = 1;
        while keep < self.stack.len()
            && keep - 1 < names.len()
            && self.frames[self.stack[keep]]
                .as_ref()
                .is_some_and(|f| f.name == names[keep - 1])
        {
            keep += 1;
        }
        if dir.is_some() {
            // A directory entry opens its own frame, even if one of that
            // name is open (it is then closed first); the root stays.
            keep = keep.min(names.len()).max(1);
        }
        while self.stack.len() > keep {
            if let Some(top) = self.stack.pop() {
                self.close(top)?;
            }
        }
        let missing = names.len() + 1 - self.stack.len().min(names.len() + 1);
        for (i, name) in names[names.len() - missing..].iter().enumerate() {
            let last = i + 1 == missing;
            let node = match (&dir, last) {
                (Some(node), true) => node.clone(),
                _ => Node::new_node(
                    name,
                    NodeType::Dir,
                    Metadata {
                        mode: Some(0o755),
                        ..Default::default()
                    },
                ),
            };
            let parent = *self
                .stack
                .last()
                .ok_or_else(|| Error::Other("no root".to_string()))?;
            let slot = {
                let frame = self.frame(parent)?;
                frame.nodes.push(None);
                frame.waiting += 1;
                frame.nodes.len() - 1
            };
            // The previous snapshot's directory of that name.
            let parent_frame = self.frame(parent)?;
            let before_id = parent_frame
                .before(&node.name)
                .filter(|b| b.is_dir())
                .and_then(|b| b.subtree);
            let mut path = parent_frame.path.clone();
            path.push(node.name.clone());
            let before = before_id.and_then(|id| {
                self.read_ahead(&path, id).or_else(|| {
                    self.shared
                        .known
                        .tree(self.backend, self.cipher, id)
                        .inspect_err(|e| tracing::warn!("previous snapshot: {e}"))
                        .ok()
                })
            });
            let index = self.open_frame(Some(node), name.clone(), Some((parent, slot)));
            let frame = self.frame(index)?;
            frame.path = path;
            frame.before = before;
            frame.before_id = before_id;
        }
        Ok(())
    }

    /// The tree `id` of the directory at `path`, from [`TreeReader`]:
    /// `None` when it has none for it (it could not read it, or it has
    /// passed it), and the walk reads it itself. The trees of paths before
    /// `path` are of directories the walk passed over; one further on
    /// waits for its turn.
    fn read_ahead(&mut self, path: &[String], id: TreeId) -> Option<Tree> {
        loop {
            let ahead = match self.tree_passed.take() {
                Some(ahead) => ahead,
                None => {
                    let received = self.trees_ahead.as_ref()?.recv();
                    let Ok(ahead) = received else {
                        self.trees_ahead = None;
                        return None;
                    };
                    if let Ok(tree) = &ahead.tree {
                        self.shared
                            .nodes_ahead
                            .fetch_sub(tree.nodes.len(), Ordering::Relaxed);
                    }
                    ahead
                }
            };
            match ahead.path.as_slice().cmp(path) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return ahead.tree.ok().filter(|_| ahead.id == id);
                }
                std::cmp::Ordering::Greater => {
                    self.tree_passed = Some(ahead);
                    return None;
                }
            }
        }
    }

    fn open_frame(
        &mut self,
        node: Option<Node>,
        name: OsString,
        up: Option<(usize, usize)>,
    ) -> usize {
        self.frames.push(Some(Box::new(Frame {
            node,
            name,
            path: Vec::new(),
            up,
            nodes: Vec::new(),
            waiting: 0,
            closed: false,
            before: None,
            before_id: None,
            cursor: 0,
        })));
        let index = self.frames.len() - 1;
        self.stack.push(index);
        index
    }

    fn frame(&mut self, index: usize) -> Result<&mut Frame> {
        self.frames
            .get_mut(index)
            .and_then(Option::as_mut)
            .map(|frame| &mut **frame)
            .ok_or_else(|| Error::Other("a directory was finished twice".to_string()))
    }

    /// Adds a non-directory entry to the innermost open directory: taken
    /// from the previous snapshot when unchanged, else read by a worker.
    fn add(&mut self, mut node: Node, open: Option<O>) -> Result<()> {
        let index = *self
            .stack
            .last()
            .ok_or_else(|| Error::Other("no root".to_string()))?;
        let known = &self.shared.known;
        let frame = self.frames[index]
            .as_mut()
            .ok_or_else(|| Error::Other("a closed directory".to_string()))?;
        let before = frame.before(&node.name).cloned();
        self.counts.files += 1;
        let same = before.as_ref().filter(|b| unchanged(b, &node));
        match (&before, same) {
            (None, _) => self.counts.files_new += 1,
            (Some(_), None) => self.counts.files_changed += 1,
            (Some(_), Some(_)) => self.counts.files_unmodified += 1,
        }
        if !node.is_file() {
            self.counts.bytes += node.meta.size;
            frame.nodes.push(Some(node));
            return Ok(());
        }
        if let Some(content) = same
            .and_then(|b| b.content.as_ref())
            .filter(|c| c.iter().all(|id| known.has_data(&BlobId::from(**id))))
        {
            node.content = Some(content.clone());
            self.counts.bytes += node.meta.size;
            self.shared
                .progress
                .bytes_done
                .fetch_add(node.meta.size, Ordering::Relaxed);
            frame.nodes.push(Some(node));
            return Ok(());
        }
        frame.nodes.push(None);
        frame.waiting += 1;
        let slot = frame.nodes.len() - 1;
        self.pending_bytes += node.meta.size;
        self.pending.push(Job {
            frame: index,
            slot,
            node,
            open,
        });
        if self.file_per_batch
            || self.pending_bytes >= BATCH_BYTES
            || self.pending.len() >= BATCH_FILES
        {
            self.send_pending()?;
        }
        Ok(())
    }

    /// Hands the pending files to the workers, taking in finished files
    /// while they are all busy.
    fn send_pending(&mut self) -> Result<()> {
        self.pending_bytes = 0;
        let mut job = Some(std::mem::take(&mut self.pending)).filter(|p| !p.is_empty());
        while let Some(pending) = job.take() {
            let mut select = Select::new();
            let send = select.send(&self.jobs);
            select.recv(&self.done);
            let operation = select.select();
            if operation.index() == send {
                operation
                    .send(&self.jobs, pending)
                    .map_err(|_| Error::Other("the workers stopped".to_string()))?;
            } else {
                let done = operation.recv(&self.done);
                job = Some(pending);
                if let Ok(done) = done {
                    self.finished(done)?;
                }
            }
        }
        Ok(())
    }

    /// Takes in finished files: those ready, or (with `wait`) at least one
    /// batch.
    fn collect(&mut self, wait: bool) -> Result<()> {
        if wait {
            match self.done.recv() {
                Ok(done) => self.finished(done)?,
                Err(_) => {
                    self.shared.fail("the workers stopped".to_string());
                    return Ok(());
                }
            }
        }
        while let Ok(done) = self.done.try_recv() {
            self.finished(done)?;
        }
        Ok(())
    }

    fn finished(&mut self, batch: Vec<Done>) -> Result<()> {
        batch
            .into_iter()
            .try_for_each(|done| self.finished_file(done))
    }

    fn finished_file(&mut self, done: Done) -> Result<()> {
        let node = match done.node {
            Ok(node) => {
                self.counts.bytes += node.meta.size;
                Some(node)
            }
            Err(e) => {
                // The source recorded what matters (a file that vanished,
                // one it could not read); the node is left out, as the
                // repository library does.
                tracing::warn!("leaving out a file: {e}");
                None
            }
        };
        self.fill(done.frame, done.slot, node)
    }

    /// Puts a node in its slot; a closed directory with every node in is
    /// finished, and its own node put in its parent's slot, and so on up.
    /// A loop, not a recursion: a file finished last at the bottom of a
    /// directory chain thousands deep finishes them all, and the stack of
    /// the thread it runs on is small.
    fn fill(&mut self, index: usize, slot: usize, node: Option<Node>) -> Result<()> {
        let (mut index, mut slot, mut node) = (index, slot, node);
        loop {
            let frame = self.frame(index)?;
            if let Some(place) = frame.nodes.get_mut(slot) {
                *place = node;
            }
            frame.waiting = frame.waiting.saturating_sub(1);
            if !frame.closed || frame.waiting > 0 {
                return Ok(());
            }
            match self.finish(index)? {
                Some((parent, parent_slot, dir)) => {
                    (index, slot, node) = (parent, parent_slot, Some(dir));
                }
                None => return Ok(()),
            }
        }
    }

    fn close(&mut self, index: usize) -> Result<()> {
        let frame = self.frame(index)?;
        frame.closed = true;
        if frame.waiting == 0
            && let Some((parent, slot, dir)) = self.finish(index)?
        {
            self.fill(parent, slot, Some(dir))?;
        }
        Ok(())
    }

    /// Stores a finished directory's tree; returns its node and where it
    /// goes in its parent (`None` for the root).
    fn finish(&mut self, index: usize) -> Result<Option<(usize, usize, Node)>> {
        let frame = *self
            .frames
            .get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| Error::Other("a directory was finished twice".to_string()))?;
        let tree = Tree {
            nodes: frame.nodes.into_iter().flatten().collect(),
        };
        let (bytes, id) = tree
            .serialize()
            .map_err(|e| Error::Other(format!("writing a tree: {e}")))?;
        self.counts.dirs += 1;
        self.counts.dir_bytes += bytes.len() as u64;
        match frame.before_id {
            Some(before) if before == id => self.counts.dirs_unmodified += 1,
            Some(_) => self.counts.dirs_changed += 1,
            None if frame.up.is_some() => self.counts.dirs_new += 1,
            None => {}
        }
        if self.shared.claim(BlobId::from(*id), BlobType::Tree) {
            let blob = self
                .codec
                .encode(BlobType::Tree, pack::hash(&bytes), &bytes)?;
            if self.blobs.send(vec![blob]).is_err() {
                let why = "the packer stopped".to_string();
                self.shared.fail(why.clone());
                return Err(Error::Other(why));
            }
        }
        match (frame.up, frame.node) {
            (Some((parent, slot)), Some(mut node)) => {
                node.subtree = Some(id);
                Ok(Some((parent, slot, node)))
            }
            _ => {
                self.root = Some(id);
                Ok(None)
            }
        }
    }
}

/// The names of a path's normal components.
fn names(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            _ => None,
        })
        .collect()
}
