//! Where the repository is and how to open it: the location and its
//! backends, the password (read as restic reads it), the directories of a
//! local repository kept to their owner, and the repository library's
//! errors turned into lifeboat's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rustic_backend::BackendOptions;
use rustic_core::{RepositoryBackends, RusticError};
use serde::Serialize;

use crate::error::{Error, Result};

/// Where the repository is and how to open it.
#[derive(Clone, Debug)]
pub struct RepoSettings {
    /// A local path, or a backend URL (`opendal:s3`, `rest:...`).
    pub location: String,
    /// Whether `location` is the built-in default, which may be created on
    /// first use.
    pub is_default: bool,
    pub password: PasswordSource,
    /// Options of the storage backend (bucket, endpoint, keys, ...).
    pub options: BTreeMap<String, String>,
    pub cache_dir: PathBuf,
}

/// Where the repository password comes from.
#[derive(Clone)]
pub enum PasswordSource {
    /// Given directly (`LIFEBOAT_PASSWORD`).
    Value(String),
    /// Read from a file the user named (`LIFEBOAT_PASSWORD_FILE`).
    File(PathBuf),
    /// Read from the default file, generated when the default repository is
    /// created.
    DefaultFile(PathBuf),
}

impl std::fmt::Debug for PasswordSource {
    /// Never the password itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value(..)"),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::DefaultFile(p) => f.debug_tuple("DefaultFile").field(p).finish(),
        }
    }
}

/// What opening the repository did, beyond opening it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OpenReport {
    /// The repository was created by this call.
    pub created: bool,
    /// A password was generated and written to this file: without it,
    /// nothing in the repository can ever be restored.
    pub generated_password_file: Option<PathBuf>,
}

impl RepoSettings {
    /// Settings from explicit values, falling back to lifeboat's defaults:
    /// `/var/lib/lifeboat/repo` and `/etc/lifeboat/password` as root, the
    /// XDG directories otherwise.
    pub fn new(
        location: Option<String>,
        password: Option<String>,
        password_file: Option<PathBuf>,
    ) -> Self {
        let dirs = crate::paths::Dirs::for_current_user();
        let (location, is_default) = match location.filter(|l| !l.is_empty()) {
            Some(l) => (l, false),
            None => (dirs.data.join("repo").display().to_string(), true),
        };
        let password = match (password.filter(|p| !p.is_empty()), password_file) {
            (Some(p), _) => PasswordSource::Value(p),
            (None, Some(f)) => PasswordSource::File(f),
            (None, None) => PasswordSource::DefaultFile(dirs.config.join("password")),
        };
        Self {
            location,
            is_default,
            password,
            options: BTreeMap::new(),
            cache_dir: dirs.cache,
        }
    }

    /// The location as it may be shown: a backend URL's credentials
    /// (`rest:https://user:secret@host/`) are left out.
    pub fn shown_location(&self) -> String {
        redact_url(&self.location)
    }

    /// The local directory of the repository, when it is a local one.
    pub fn local_path(&self) -> Option<PathBuf> {
        if let Some(p) = self.location.strip_prefix("local:") {
            return Some(PathBuf::from(p));
        }
        let has_scheme = self
            .location
            .split_once(':')
            .is_some_and(|(scheme, _)| !scheme.contains('/') && scheme.len() > 1);
        (!has_scheme).then(|| PathBuf::from(&self.location))
    }

    /// The password, read as restic reads it (a file's content without
    /// the white space around it), so that restic opens what lifeboat
    /// opens with the same file; `None` when the default file does not
    /// exist yet.
    pub(super) fn read_password(&self) -> Result<Option<Password>> {
        match &self.password {
            PasswordSource::Value(p) => Ok(Some(Password::plain(p.clone()))),
            PasswordSource::File(path) => match read_password_file(path)? {
                Some(p) => Ok(Some(p)),
                None => Err(Error::PasswordFileMissing { path: path.clone() }),
            },
            PasswordSource::DefaultFile(path) => read_password_file(path),
        }
    }

    pub(super) fn expected_password_file(&self) -> PathBuf {
        match &self.password {
            PasswordSource::File(p) | PasswordSource::DefaultFile(p) => p.clone(),
            PasswordSource::Value(_) => PathBuf::from("LIFEBOAT_PASSWORD"),
        }
    }

    /// Whether a repository exists at the location.
    pub fn exists(&self) -> Result<bool> {
        match self.local_path() {
            Some(path) => Ok(path.join("config").is_file()),
            None => {
                let backends = self.backends()?;
                let ids = backends
                    .repository()
                    .list(rustic_core::FileType::Config)
                    .map_err(|e| self.repo_error(&e))?;
                Ok(!ids.is_empty())
            }
        }
    }

    pub(super) fn backends(&self) -> Result<RepositoryBackends> {
        let backends = BackendOptions::default()
            .repository(self.location.clone())
            .options(self.options.clone())
            .to_backends()
            .map_err(|e| self.repo_error(&e))?;
        Ok(backends)
    }

    pub(super) fn repo_error(&self, e: &RusticError) -> Error {
        if e.is_incorrect_password() {
            return Error::WrongPassword {
                location: self.shown_location(),
            };
        }
        // The library's messages may quote the location, credentials and
        // all (a URL it could not parse).
        Error::Repository {
            location: self.shown_location(),
            message: one_line(e).replace(&self.location, &self.shown_location()),
        }
    }
}

/// `location` without the password (or token) of a URL's user part, and
/// without its query (where tokens go too).
pub(super) fn redact_url(location: &str) -> String {
    let Some(scheme_end) = location.find("://").map(|i| i + 3) else {
        return location.to_string();
    };
    let (head, rest) = location.split_at(scheme_end);
    let (rest, query) = match rest.split_once('?') {
        Some((rest, _)) => (rest, "?***"),
        None => (rest, ""),
    };
    // The user part ends at the last `@`: a password may hold a `/` that
    // its writer did not escape, so the path cannot be told from it, and
    // a path with an `@` is hidden too rather than a password shown.
    let Some(at) = rest.rfind('@') else {
        return format!("{head}{rest}{query}");
    };
    let user = match rest[..at].split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{head}{user}{}{query}", &rest[at..])
}

/// A repository password, and how an earlier lifeboat read the same file.
#[derive(Clone)]
pub(super) struct Password {
    /// As restic reads it.
    pub(super) value: String,
    /// The file's first line, untrimmed, when that differs: lifeboat read
    /// password files so before, and repositories made then open with it.
    pub(super) earlier: Option<String>,
}

impl Password {
    fn plain(value: String) -> Self {
        Self {
            value,
            earlier: None,
        }
    }
}

/// Reads a password file the way restic does; `None` when it does not
/// exist. An empty one is refused: it would open nothing, or anything.
fn read_password_file(path: &Path) -> Result<Option<Password>> {
    let content = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    // As restic's: without a byte-order mark, and without white space.
    let content = content.strip_prefix('\u{feff}').unwrap_or(&content);
    let value = content.trim().to_string();
    if value.is_empty() {
        return Err(Error::PasswordFileEmpty {
            path: path.to_path_buf(),
        });
    }
    let first_line = content.lines().next().unwrap_or_default();
    let earlier = (first_line != value).then(|| first_line.to_string());
    Ok(Some(Password { value, earlier }))
}

/// The message of a repository-library error, on one line, without its
/// report boilerplate.
pub(super) fn one_line(e: &RusticError) -> String {
    let text = e.display_log();
    let text = text.strip_prefix("Error: ").unwrap_or(&text);
    // What the library appends (its kind, and its cause in the long form
    // of its own errors, backtrace and all) is replaced by the cause's
    // own one line.
    let message = text.split(" (kind: related to ").next().unwrap_or(text);
    let line = match std::error::Error::source(e) {
        Some(cause) => match cause
            .downcast_ref::<RusticError>()
            .or_else(|| cause.downcast_ref::<Box<RusticError>>().map(AsRef::as_ref))
        {
            Some(inner) => format!("{message}: {}", one_line(inner)),
            None => format!("{message}: {cause}"),
        },
        None => message.to_string(),
    };
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Creates the directory of a new local repository, readable by its owner
/// only, as restic makes it (0700). A directory that exists keeps its
/// mode: whoever made it chose it.
pub(super) fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io(path, e))
}

/// Gives the directories the repository library made in a new repository
/// restic's mode, 0700: its files (the key among them) are then out of
/// other users' reach whatever their own mode.
pub(super) fn make_private(repo_dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let private = |dir: &Path| {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e))
    };
    for sub in ["data", "index", "keys", "locks", "snapshots"] {
        let dir = repo_dir.join(sub);
        if !dir.is_dir() {
            continue;
        }
        private(&dir)?;
        if sub == "data" {
            for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    private(&entry.path())?;
                }
            }
        }
    }
    Ok(())
}

/// Takes other users' access away from a local repository that gives it
/// (one made by an earlier lifeboat, whose directories were 0755): its
/// key file would let them try passwords offline. The group's access
/// stays, as restic keeps a repository's group permissions.
pub(super) fn close_to_others(repo_dir: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(meta) = std::fs::metadata(repo_dir) else {
        return;
    };
    if meta.mode() & 0o007 == 0 || meta.uid() != nix::unistd::geteuid().as_raw() {
        return;
    }
    let mode = meta.mode() & 0o7770;
    match std::fs::set_permissions(repo_dir, std::fs::Permissions::from_mode(mode)) {
        Ok(()) => tracing::warn!(
            "{} was open to every user of this host; it is now {mode:o}, as restic makes repositories",
            repo_dir.display()
        ),
        Err(e) => tracing::debug!("{}: {e}", repo_dir.display()),
    }
}
