//! File-system chores of the host-path writer: emptiness checks, clearing a
//! volume without following its links, finding what is mounted below it.

use std::path::Path;

use crate::error::{Error, Result};

/// Whether a directory has no entries.
pub(crate) fn is_empty_dir(path: &Path) -> Result<bool> {
    let mut entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
    Ok(entries.next().is_none())
}

/// Removes everything inside `dir`, never following a symbolic link: a
/// volume's content is written by its containers and may point anywhere.
/// A file system mounted below `dir` is refused before anything is
/// removed: its files are not the target's (the engine binds a volume's
/// directory without what is mounted below it), and emptying would reach
/// into it.
pub(crate) fn clear_dir(dir: &Path) -> Result<()> {
    if let [first, ..] = mounts_below(dir).as_slice() {
        return Err(Error::Refused(format!(
            "a file system is mounted at {} inside {}: lifeboat does not empty a directory across mounts; unmount it, or restore elsewhere",
            first.display(),
            dir.display()
        )));
    }
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

/// The mount points strictly below `dir`, from this process's mount table.
pub(crate) fn mounts_below(dir: &Path) -> Vec<std::path::PathBuf> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|m| m != &dir && m.starts_with(&dir))
        .collect()
}

/// A path of the mount table, whose spaces, tabs, newlines and
/// backslashes are written as octal escapes (`\040`).
fn unescape_mount_path(field: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], escaped) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(
            unescape_mount_path("/srv/my\\040data\\134x"),
            Path::new("/srv/my data\\x")
        );
        assert_eq!(unescape_mount_path("/plain"), Path::new("/plain"));
    }

    #[test]
    fn mounts_below_a_directory_are_found() {
        // The root holds /proc, whatever else is mounted.
        assert!(
            mounts_below(Path::new("/"))
                .iter()
                .any(|m| m == Path::new("/proc"))
        );
        assert!(
            mounts_below(Path::new("/proc"))
                .iter()
                .all(|m| m != Path::new("/proc"))
        );
    }
}
