//! A volume read straight from its host path.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustic_core::repofile::{Node, NodeType};
use rustic_core::{LocalSource, LocalSourceSaveOptions, ReadSource, ReadSourceEntry, RusticError};

use super::{CheckedReader, Entry, Open, SharedLog, Source, record_fatal, record_vanished};
use crate::progress::TransferProgress;

/// The I/O error at the bottom of a walker's error, if any.
fn io_error_of(err: &RusticError) -> Option<&std::io::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        // The walker's errors do not expose their cause as a source.
        if let Some(io) = c
            .downcast_ref::<ignore::Error>()
            .and_then(ignore::Error::io_error)
        {
            return Some(io);
        }
        cause = c.source();
    }
    None
}

pub(crate) struct HostSource {
    inner: LocalSource,
    root: PathBuf,
    /// The directory files are opened relative to: the root, or its parent
    /// when the root is a single file.
    anchor: Arc<std::os::fd::OwnedFd>,
    anchor_path: PathBuf,
    root_is_dir: bool,
    root_name: OsString,
    log: SharedLog,
    progress: Arc<TransferProgress>,
}

impl HostSource {
    /// `root` is the directory (or single file) to read; `root_name` the
    /// name its own node gets in the snapshot (the last part of the
    /// snapshot path).
    pub(crate) fn new(
        root: &Path,
        root_name: OsString,
        log: SharedLog,
        progress: Arc<TransferProgress>,
    ) -> Result<Self, String> {
        let root = std::fs::canonicalize(root).map_err(|e| format!("{}: {e}", root.display()))?;
        let root_is_dir = root.is_dir();
        let anchor_path = if root_is_dir {
            root.clone()
        } else {
            root.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/"))
        };
        let anchor = nix::fcntl::open(
            &anchor_path,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| format!("{}: {e}", anchor_path.display()))?;
        let inner = LocalSource::new(
            LocalSourceSaveOptions::default(),
            &rustic_core::Excludes::default(),
            &rustic_core::LocalSourceFilterOptions::default(),
            &[&root],
        )
        .map_err(|e| e.display_log())?;
        Ok(Self {
            inner,
            root,
            anchor: Arc::new(anchor),
            anchor_path,
            root_is_dir,
            root_name,
            log,
            progress,
        })
    }

    /// The node of the root directory itself. The walker of the repository
    /// library skips it, but its owner and mode matter: a PostgreSQL data
    /// directory that comes back as root:root 0755 does not start.
    fn root_entry(&self) -> Result<Entry<HostOpen>, String> {
        let walk_error =
            |detail: String| format!("reading the metadata of {}: {detail}", self.root.display());
        let dir_entry = ignore::WalkBuilder::new(&self.root)
            .max_depth(Some(0))
            .standard_filters(false)
            .build()
            .next()
            .ok_or_else(|| walk_error("no entry".to_string()))?
            .map_err(|e| walk_error(e.to_string()))?;
        let entry = LocalSourceSaveOptions::default()
            .map_entry(dir_entry)
            .map_err(|e| walk_error(e.to_string()))?;
        Ok(Entry {
            path: entry.path,
            node: Node::new_node(&self.root_name, entry.node.node_type, entry.node.meta),
            open: None,
        })
    }
}

/// Opens one file of a [`HostSource`], safely (see there).
pub(crate) struct HostOpen {
    anchor: Arc<std::os::fd::OwnedFd>,
    relative: PathBuf,
    path: PathBuf,
    inode: u64,
    log: SharedLog,
    progress: Arc<TransferProgress>,
}

/// Opens `relative` below `anchor` without following any symbolic link.
fn open_beneath(anchor: &std::os::fd::OwnedFd, relative: &Path) -> nix::Result<std::fs::File> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let fd = match nix::fcntl::openat2(anchor, relative, how) {
        Err(nix::errno::Errno::ENOSYS) => {
            nix::fcntl::openat(anchor, relative, flags, nix::sys::stat::Mode::empty())?
        }
        other => other?,
    };
    Ok(std::fs::File::from(fd))
}

impl Open for HostOpen {
    type Reader = CheckedReader<std::fs::File>;

    fn open(self) -> std::io::Result<Self::Reader> {
        use std::os::unix::fs::MetadataExt;
        self.progress.files_done.fetch_add(1, Ordering::Relaxed);
        let gone = |why: &str| std::io::Error::other(format!("{} {why}", self.path.display()));
        let file = match open_beneath(&self.anchor, &self.relative) {
            Ok(f) => f,
            // Gone, or now a link (or below one): what the walk listed is
            // not there any more.
            Err(
                nix::errno::Errno::ENOENT
                | nix::errno::Errno::ELOOP
                | nix::errno::Errno::ENOTDIR
                | nix::errno::Errno::EXDEV,
            ) => {
                record_vanished(&self.log, &self.path);
                return Err(gone("vanished or was replaced by a link"));
            }
            Err(e) => {
                record_fatal(&self.log, format!("{}: {}", self.path.display(), e.desc()));
                return Err(gone(e.desc()));
            }
        };
        match file.metadata() {
            Ok(m) if m.ino() == self.inode && m.is_file() => Ok(CheckedReader {
                inner: file,
                path: self.path,
                log: self.log,
            }),
            Ok(_) => {
                record_vanished(&self.log, &self.path);
                Err(gone("was replaced by another file"))
            }
            Err(e) => {
                record_fatal(&self.log, format!("{}: {e}", self.path.display()));
                Err(gone("could not be examined"))
            }
        }
    }
}

impl Source for HostSource {
    type Open = HostOpen;
    type Entries = Box<dyn Iterator<Item = Result<Entry<HostOpen>, String>> + Send>;

    fn size(&self) -> Result<Option<u64>, String> {
        let size = self.inner.size().map_err(|e| e.display_log())?;
        if let Some(size) = size {
            self.progress.bytes_total.store(size, Ordering::Relaxed);
        }
        Ok(size)
    }

    fn entries(&self) -> Self::Entries {
        let log = self.log.clone();
        let progress = self.progress.clone();
        let anchor = self.anchor.clone();
        let anchor_path = self.anchor_path.clone();
        let rest = self.inner.entries().filter_map(move |entry| match entry {
            Ok(ReadSourceEntry { path, node, .. }) if node.node_type == NodeType::Socket => {
                if let Ok(mut l) = log.lock() {
                    l.sockets.push(path.display().to_string());
                }
                None
            }
            Ok(ReadSourceEntry { path, node, open }) => {
                let open = open.map(|_| HostOpen {
                    anchor: anchor.clone(),
                    relative: path
                        .strip_prefix(&anchor_path)
                        .unwrap_or(&path)
                        .to_path_buf(),
                    path: path.clone(),
                    inode: node.meta.inode,
                    log: log.clone(),
                    progress: progress.clone(),
                });
                Some(Ok(Entry { path, node, open }))
            }
            Err(err) => {
                // The walker looks metadata up lazily: an entry removed
                // since its directory was listed is a vanished file.
                if io_error_of(&err).is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
                    if let Ok(mut l) = log.lock() {
                        l.vanished.push(err.display_log());
                    }
                } else {
                    record_fatal(&log, err.display_log());
                }
                // Dropped here rather than by the repository library, which
                // would only log it.
                None
            }
        });
        if !self.root_is_dir {
            // A single file: the walker yields it as its only entry.
            return Box::new(rest);
        }
        let root = self
            .root_entry()
            .inspect_err(|err| record_fatal(&self.log, err.clone()));
        Box::new(std::iter::once(root).chain(rest))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// The file entry named `name` of a host source over `dir`.
    fn host_entry(dir: &Path, name: &str, log: &SharedLog) -> Entry<HostOpen> {
        let source = HostSource::new(
            dir,
            OsString::from("vol"),
            log.clone(),
            Arc::new(TransferProgress::default()),
        )
        .expect("source");
        source
            .entries()
            .filter_map(Result::ok)
            .find(|e| e.path.ends_with(name))
            .expect("entry")
    }

    fn read_through(entry: Entry<HostOpen>) -> Option<Vec<u8>> {
        let mut data = Vec::new();
        entry.open?.open().ok()?.read_to_end(&mut data).ok()?;
        Some(data)
    }

    #[test]
    fn a_file_swapped_for_a_link_after_the_walk_is_not_read() -> std::io::Result<()> {
        let outside = tempfile::tempdir()?;
        std::fs::write(outside.path().join("secret"), b"host secret")?;
        let volume = tempfile::tempdir()?;
        std::fs::write(volume.path().join("f"), b"volume data")?;
        std::fs::create_dir(volume.path().join("d"))?;
        std::fs::write(volume.path().join("d/g"), b"more data")?;
        let log = SharedLog::default();

        // The file itself becomes a link.
        let entry = host_entry(volume.path(), "f", &log);
        std::fs::remove_file(volume.path().join("f"))?;
        std::os::unix::fs::symlink(outside.path().join("secret"), volume.path().join("f"))?;
        assert_eq!(read_through(entry), None, "read through a swapped-in link");

        // A directory above it becomes a link to a place with a file of
        // the same name.
        let entry = host_entry(volume.path(), "d/g", &log);
        std::fs::write(outside.path().join("g"), b"host file")?;
        std::fs::remove_dir_all(volume.path().join("d"))?;
        std::os::unix::fs::symlink(outside.path(), volume.path().join("d"))?;
        assert_eq!(
            read_through(entry),
            None,
            "read through a swapped-in directory link"
        );

        let log = std::mem::take(&mut *log.lock().expect("log"));
        assert_eq!(log.vanished.len(), 2, "{:?}", log.vanished);
        assert!(log.fatal.is_empty(), "{:?}", log.fatal);
        Ok(())
    }

    #[test]
    fn a_file_replaced_by_another_is_not_read_as_the_first() -> std::io::Result<()> {
        let volume = tempfile::tempdir()?;
        std::fs::write(volume.path().join("f"), b"old")?;
        let log = SharedLog::default();
        let entry = host_entry(volume.path(), "f", &log);
        std::fs::write(volume.path().join("new"), b"new content")?;
        std::fs::rename(volume.path().join("new"), volume.path().join("f"))?;
        assert_eq!(read_through(entry), None);
        assert_eq!(log.lock().expect("log").vanished.len(), 1);

        // Unchanged, it reads.
        let entry = host_entry(volume.path(), "f", &log);
        assert_eq!(read_through(entry).as_deref(), Some(&b"new content"[..]));
        Ok(())
    }
}
