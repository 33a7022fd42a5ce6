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

/// How a file on disk differs from its snapshot node in type, owner or
/// permissions; `None` when it does not.
pub(crate) fn differences(node: &Node, path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    use rustic_core::repofile::NodeType;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    let t = meta.file_type();
    let type_ok = match &node.node_type {
        NodeType::File => t.is_file(),
        NodeType::Dir => t.is_dir(),
        NodeType::Symlink { .. } => t.is_symlink(),
        NodeType::Fifo => t.is_fifo(),
        NodeType::Chardev { device } => t.is_char_device() && meta.rdev() == *device,
        NodeType::Dev { device } => t.is_block_device() && meta.rdev() == *device,
        // Sockets are recreated by whoever listens on them.
        NodeType::Socket => return None,
    };
    if !type_ok {
        return Some(format!("is not a {}", node.node_type));
    }
    if node.is_symlink() {
        match std::fs::read_link(path) {
            Ok(target) if target == node.node_type.to_link() => {}
            Ok(target) => return Some(format!("points to {}", target.display())),
            Err(e) => return Some(e.to_string()),
        }
    }
    if let Some(uid) = node.meta.uid
        && meta.uid() != uid
    {
        return Some(format!("owner {} instead of {uid}", meta.uid()));
    }
    if let Some(gid) = node.meta.gid
        && meta.gid() != gid
    {
        return Some(format!("group {} instead of {gid}", meta.gid()));
    }
    if !node.is_symlink()
        && let Some(mode) = node.meta.mode
    {
        let want = unix_permissions(mode);
        let have = meta.mode() & 0o7777;
        if have != want {
            return Some(format!("mode {have:o} instead of {want:o}"));
        }
    }
    None
}
