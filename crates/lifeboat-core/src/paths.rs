//! Where lifeboat keeps its own files by default, and the generated
//! password file.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// lifeboat's directories for the current user.
pub(crate) struct Dirs {
    pub(crate) data: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) cache: PathBuf,
}

impl Dirs {
    /// System directories as root (lifeboat usually runs as root on the
    /// Docker host), the XDG base directories otherwise.
    pub(crate) fn for_current_user() -> Self {
        if nix::unistd::geteuid().is_root() {
            return Self {
                data: PathBuf::from("/var/lib/lifeboat"),
                config: PathBuf::from("/etc/lifeboat"),
                cache: PathBuf::from("/var/cache/lifeboat"),
            };
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
        let xdg = |var: &str, fallback: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map_or_else(|| home.join(fallback), PathBuf::from)
                .join("lifeboat")
        };
        Self {
            data: xdg("XDG_DATA_HOME", ".local/share"),
            config: xdg("XDG_CONFIG_HOME", ".config"),
            cache: xdg("XDG_CACHE_HOME", ".cache"),
        }
    }
}

/// Generates a password and writes it to `path` (mode 0600, parent 0700).
/// Refuses to overwrite an existing file: that file may be the only key to
/// an existing repository.
pub(crate) fn write_new_password(path: &Path) -> Result<String> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(dir, e))?;
    }
    let password = crate::random_hex(32);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(format!("{password}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(path, e))?;
    Ok(password)
}
