//! The host-path writer: a snapshot's tree written into an empty directory.
//!
//! lifeboat restores itself rather than through the repository library's
//! restore, which reads up to twenty packs at once (half a gigabyte for a
//! small volume), stops the process on a write error (a full disk), and only
//! logs a failed chown or chmod. Here memory stays bounded (a few workers,
//! one blob each), every failure is an error that names its path, and the
//! steps are:
//!
//! - walk the tree in order; directories are made as they come, their
//!   metadata set at the end, deepest first (writing into a directory
//!   changes its times);
//! - files are created exclusively, without following links, and filled
//!   by a few workers; all-zero blocks become holes; owner, mode, extended
//!   attributes and times are set through the open file;
//! - links, fifos and devices are made by the walk; hard links once every
//!   file exists.
//!
//! Owners are restored by number: names mean nothing between a host and
//! the containers that use a volume.

use std::collections::HashMap;
use std::fs::{File, FileTimes};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

use rustic_core::repofile::{Node, NodeType};

use crate::error::{Error, Result};
use crate::progress::TransferProgress;
use crate::repo::node::{split_dev, unix_permissions, xattrs_of};
use crate::repo::{RepoReader, SnapshotNode};

/// How many files wait for a worker.
const QUEUE: usize = 64;

/// Writes the tree below `root` into `dest`, an existing, empty directory,
/// and gives `dest` itself the root's metadata.
pub(crate) fn restore_tree(
    reader: &RepoReader,
    root: &SnapshotNode,
    dest: &Path,
    progress: &TransferProgress,
) -> Result<()> {
    progress
        .bytes_total
        .store(reader.check_tree(root)?.bytes, Ordering::Relaxed);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let fail = |e: Error| {
        failed.store(true, Ordering::SeqCst);
        if let Ok(mut first) = first_error.lock()
            && first.is_none()
        {
            *first = Some(e);
        }
    };
    let as_root = nix::unistd::geteuid().is_root();
    let (tx, rx) = mpsc::sync_channel::<(PathBuf, File, Node)>(QUEUE);
    let rx = Mutex::new(rx);

    let mut later = Later::default();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let job = rx.lock().ok().and_then(|r| r.recv().ok());
                    let Some((path, file, node)) = job else { break };
                    if failed.load(Ordering::SeqCst) {
                        continue;
                    }
                    if let Err(e) = fill_file(reader, &path, file, &node, as_root, progress) {
                        fail(e);
                    }
                }
            });
        }
        // Where the walk stops early: a worker failed (its error is the
        // one reported), or the caller asked to stop.
        let halt = || {
            if failed.load(Ordering::SeqCst) {
                Some(Ok(()))
            } else if progress.stop_requested() {
                Some(Err(Error::Interrupted(
                    "the restore was stopped".to_string(),
                )))
            } else {
                None
            }
        };
        let walked = walk(reader, &root.0, dest, &tx, &mut later, as_root, &halt);
        drop(tx);
        if let Err(e) = walked {
            fail(e);
        }
    });
    if progress.stop_requested() {
        return Err(Error::Interrupted("the restore was stopped".to_string()));
    }
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    for (path, first) in &later.links {
        std::fs::hard_link(first, path).map_err(|e| Error::io(path, e))?;
    }
    for (path, node) in later.dirs.iter().rev() {
        set_metadata_by_path(path, node, as_root)?;
    }
    apply_root_metadata(dest, &root.0)
}

/// What is done once every file exists.
#[derive(Default)]
struct Later {
    /// Directories, in tree order: their metadata is set last.
    dirs: Vec<(PathBuf, Node)>,
    /// Hard links to make: (new name, first name).
    links: Vec<(PathBuf, PathBuf)>,
}

/// Makes directories, links and special files as the tree comes, and hands
/// files to the workers.
fn walk(
    reader: &RepoReader,
    root: &Node,
    dest: &Path,
    files: &mpsc::SyncSender<(PathBuf, File, Node)>,
    later: &mut Later,
    as_root: bool,
    halt: &dyn Fn() -> Option<Result<()>>,
) -> Result<()> {
    let mut first_of_inode: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for entry in reader.walk(root)? {
        if let Some(end) = halt() {
            return end;
        }
        let entry = entry?;
        let path = dest.join(&entry.path);
        let node = entry.node;
        match &node.node_type {
            NodeType::Dir => {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&path)
                    .map_err(|e| Error::io(&path, e))?;
                later.dirs.push((path, node));
            }
            NodeType::File => {
                if node.meta.links > 1 && node.meta.inode != 0 && node.meta.device_id != 0 {
                    let key = (node.meta.device_id, node.meta.inode);
                    if let Some(first) = first_of_inode.get(&key) {
                        later.links.push((path, first.clone()));
                        continue;
                    }
                    first_of_inode.insert(key, path.clone());
                }
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                // A worker that failed has stopped taking files.
                if files.send((path, file, node)).is_err() {
                    return Ok(());
                }
            }
            NodeType::Symlink { .. } => {
                std::os::unix::fs::symlink(node.node_type.to_link(), &path)
                    .map_err(|e| Error::io(&path, e))?;
                set_metadata_by_path(&path, &node, as_root)?;
            }
            NodeType::Fifo | NodeType::Dev { .. } | NodeType::Chardev { .. } => {
                make_special(&path, &node)?;
                set_metadata_by_path(&path, &node, as_root)?;
            }
            // A socket belongs to the process that listens on it.
            NodeType::Socket => {}
        }
    }
    Ok(())
}

fn make_special(path: &Path, node: &Node) -> Result<()> {
    use nix::sys::stat::{Mode, SFlag, mknod};
    let (kind, device) = match node.node_type {
        NodeType::Fifo => (SFlag::S_IFIFO, 0),
        NodeType::Chardev { device } => (SFlag::S_IFCHR, device),
        NodeType::Dev { device } => (SFlag::S_IFBLK, device),
        _ => return Ok(()),
    };
    let (major, minor) = split_dev(device);
    mknod(
        path,
        kind,
        Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(major, minor),
    )
    .map_err(|e| Error::io(path, std::io::Error::from(e)))
}

/// Writes a file's content (all-zero blocks as holes), then its metadata,
/// through the open file.
fn fill_file(
    reader: &RepoReader,
    path: &Path,
    file: File,
    node: &Node,
    as_root: bool,
    progress: &TransferProgress,
) -> Result<()> {
    let mut sparse = SparseWriter {
        file,
        length: 0,
        progress,
    };
    reader
        .dump(node, &mut sparse)
        .map_err(|e| with_path(path, e))?;
    let SparseWriter { file, length, .. } = sparse;
    // Trailing holes: the length is set, not written.
    file.set_len(length).map_err(|e| Error::io(path, e))?;
    progress.files_done.fetch_add(1, Ordering::Relaxed);
    set_metadata_of_file(&file, path, node, as_root)
}

fn with_path(path: &Path, e: Error) -> Error {
    match e {
        Error::Io { source, .. } => Error::io(path, source),
        other => Error::Other(format!("{}: {other}", path.display())),
    }
}

/// A writer that seeks over all-zero blocks instead of writing them, so
/// that sparse files come back sparse.
struct SparseWriter<'a> {
    file: File,
    length: u64,
    progress: &'a TransferProgress,
}

/// The block size below which zeros are written rather than skipped.
const HOLE: usize = 4096;

impl Write for SparseWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.progress.stop_requested() {
            return Err(TransferProgress::stopped_error());
        }
        for block in buf.chunks(HOLE) {
            if block.len() == HOLE && block.iter().all(|b| *b == 0) {
                self.file.seek(SeekFrom::Current(HOLE as i64))?;
            } else {
                self.file.write_all(block)?;
            }
        }
        self.length += buf.len() as u64;
        self.progress
            .bytes_done
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Owner first (changing it clears setuid bits), then mode, extended
/// attributes and times.
fn set_metadata_of_file(file: &File, path: &Path, node: &Node, as_root: bool) -> Result<()> {
    let meta = &node.meta;
    if as_root {
        std::os::unix::fs::fchown(file, meta.uid, meta.gid).map_err(|e| Error::io(path, e))?;
    }
    if let Some(mode) = meta.mode {
        file.set_permissions(std::fs::Permissions::from_mode(unix_permissions(mode)))
            .map_err(|e| Error::io(path, e))?;
    }
    for (name, value) in xattrs_of(node) {
        match xattr::FileExt::set_xattr(file, &name, &value) {
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOTSUP) => {}
            other => other.map_err(|e| Error::io(path, e))?,
        }
    }
    if let Some(mtime) = meta.mtime {
        let mut times = std::fs::FileTimes::new().set_modified(mtime.into());
        if let Some(atime) = meta.atime {
            times = times.set_accessed(atime.into());
        }
        file.set_times(times).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// The same for what is not an open file: directories (at the end), links
/// and special files, never following a link.
fn set_metadata_by_path(path: &Path, node: &Node, as_root: bool) -> Result<()> {
    let meta = &node.meta;
    if as_root {
        std::os::unix::fs::lchown(path, meta.uid, meta.gid).map_err(|e| Error::io(path, e))?;
    }
    if !node.is_symlink()
        && let Some(mode) = meta.mode
    {
        std::fs::set_permissions(
            path,
            std::fs::Permissions::from_mode(unix_permissions(mode)),
        )
        .map_err(|e| Error::io(path, e))?;
    }
    for (name, value) in xattrs_of(node) {
        // These do not follow links.
        match xattr::set(path, &name, &value) {
            Err(e)
                if e.raw_os_error() == Some(nix::libc::ENOTSUP)
                    || (node.is_symlink() && e.raw_os_error() == Some(nix::libc::EPERM)) => {}
            other => other.map_err(|e| Error::io(path, e))?,
        }
    }
    if let Some(mtime) = meta.mtime {
        use nix::sys::stat::{UtimensatFlags, utimensat};
        use nix::sys::time::TimeSpec;
        let spec =
            |t: jiff::Timestamp| TimeSpec::new(t.as_second(), i64::from(t.subsec_nanosecond()));
        utimensat(
            nix::fcntl::AT_FDCWD,
            path,
            &spec(meta.atime.unwrap_or(mtime)),
            &spec(mtime),
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| Error::io(path, std::io::Error::from(e)))?;
    }
    Ok(())
}
/// Gives `dir` the metadata of the snapshot's root node.
fn apply_root_metadata(dir: &Path, node: &Node) -> Result<()> {
    let meta = &node.meta;
    if meta.uid.is_some() || meta.gid.is_some() {
        std::os::unix::fs::lchown(dir, meta.uid, meta.gid).map_err(|e| Error::io(dir, e))?;
    }
    if let Some(mode) = meta.mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(unix_permissions(mode)))
            .map_err(|e| Error::io(dir, e))?;
    }
    for (name, value) in xattrs_of(node) {
        // A file system without extended attributes cannot hold them: that
        // is the target's limit, not a failed restore.
        match xattr::set(dir, &name, &value) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOTSUP) => {}
            Err(e) => return Err(Error::io(dir, e)),
        }
    }
    if let Some(mtime) = meta.mtime {
        let to_system = |t: jiff::Timestamp| std::time::SystemTime::from(t);
        let mut times = FileTimes::new().set_modified(to_system(mtime));
        if let Some(atime) = meta.atime {
            times = times.set_accessed(to_system(atime));
        }
        std::fs::File::open(dir)
            .and_then(|f| f.set_times(times))
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}
