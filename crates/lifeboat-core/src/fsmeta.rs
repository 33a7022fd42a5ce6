//! File-system chores of the host-path writer: emptiness checks, clearing a
//! volume without following its links, and giving a volume's root directory
//! the owner, mode, times and extended attributes from its snapshot.

use std::fs::FileTimes;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustic_core::repofile::Node;

use crate::error::{Error, Result};
use crate::node::{unix_permissions, xattrs_of};

/// Whether a directory has no entries.
pub(crate) fn is_empty_dir(path: &Path) -> Result<bool> {
    let mut entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
    Ok(entries.next().is_none())
}

/// Removes everything inside `dir`, never following a symbolic link: a
/// volume's content is written by its containers and may point anywhere.
pub(crate) fn clear_dir(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| Error::io(&path, e))?;
        let removed = if file_type.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// Gives `dir` the metadata of the snapshot's root node.
pub(crate) fn apply_root_metadata(dir: &Path, node: &Node) -> Result<()> {
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
        let to_system = |t: rustic_core::jiff::Timestamp| std::time::SystemTime::from(t);
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
