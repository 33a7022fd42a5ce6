//! The restic-format repository: the only module that uses rustic_core's
//! repository API and rustic_backend.
//!
//! It finds the repository and its password (with the defaults that make the
//! first run one command), initialises and opens it with errors a script can
//! tell apart, archives sources into snapshots behind a gate that keeps a
//! failed read from ever publishing a snapshot, lists snapshots, and restores
//! a snapshot's tree to a directory or streams it as a tar archive.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustic_backend::BackendOptions;
use rustic_core::repofile::{KeyFile, MasterKey, Node, NodeType, SnapshotFile};
use rustic_core::{
    ConfigOptions, Credentials, Id, IndexedFullStatus, KeyOptions, LsOptions, OpenStatus,
    ReadBackend, ReadSource, Repository, RepositoryBackends, RepositoryOptions, RusticError,
    RusticResult, SnapshotOptions, WriteBackend,
};
use serde::Serialize;

pub(crate) mod archiver;
pub(crate) mod crypto;
pub(crate) mod local_packs;
pub(crate) mod lock;
pub(crate) mod node;
pub(crate) mod restorer;
pub(crate) mod verify;

use crate::error::{Error, Result};
use crate::progress::TransferProgress;
use local_packs::LocalPacks;

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

/// One snapshot, as the caller sees it.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotInfo {
    pub id: String,
    pub short_id: String,
    pub time: String,
    pub hostname: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    pub files: Option<u64>,
    pub bytes: Option<u64>,
    pub description: Option<String>,
    #[serde(skip)]
    pub(crate) file: SnapshotFile,
}

impl SnapshotInfo {
    /// Seconds since the epoch, for ordering.
    pub fn epoch_seconds(&self) -> i64 {
        self.file.time.timestamp().as_second()
    }

    /// A snapshot as the repository lists one, for tests of what picks
    /// among them; `time` as `2026-01-01T00:00:00+00:00[UTC]`.
    #[cfg(test)]
    pub(crate) fn example(id: &str, hostname: &str, tags: &[&str], time: &str) -> Self {
        let file = SnapshotFile {
            time: time.parse().expect("a time"),
            ..Default::default()
        };
        Self {
            id: id.into(),
            short_id: id[..8.min(id.len())].into(),
            time: time.into(),
            hostname: hostname.into(),
            paths: vec![],
            tags: tags.iter().map(|t| (*t).to_string()).collect(),
            files: None,
            bytes: None,
            description: None,
            file,
        }
    }
}

/// The snapshots of a repository, and the files that are not.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SnapshotListing {
    pub snapshots: Vec<SnapshotInfo>,
    pub unreadable: Vec<UnreadableSnapshot>,
}

/// A snapshot file that cannot be read (truncated, damaged, written with
/// another key).
#[derive(Clone, Debug, Serialize)]
pub struct UnreadableSnapshot {
    /// The file's name, the snapshot's full id.
    pub id: String,
    pub reason: String,
}

/// Reads every snapshot file of the repository that can be read, and
/// names those that cannot. The repository library reads them all or
/// fails, whichever one is damaged.
pub(crate) fn readable_snapshots(
    opened: &Repository<OpenStatus>,
) -> RusticResult<(Vec<SnapshotFile>, Vec<UnreadableSnapshot>)> {
    let listed: Vec<rustic_core::repofile::SnapshotId> = opened.list()?.collect();
    let mut files = Vec::with_capacity(listed.len());
    let mut read = std::collections::HashSet::new();
    // Failures carry no name here; they are found below by what is
    // missing.
    for (id, mut file) in opened
        .stream_files_list::<SnapshotFile>(listed.clone())?
        .flatten()
    {
        file.id = id;
        read.insert(id);
        files.push(file);
    }
    let mut unreadable = Vec::new();
    for id in listed.into_iter().filter(|id| !read.contains(id)) {
        let hex = id.to_hex().to_string();
        match opened.get_snapshots(&[hex.as_str()]) {
            Ok(mut again) => files.append(&mut again),
            Err(e) => unreadable.push(UnreadableSnapshot {
                id: hex,
                reason: one_line(&e),
            }),
        }
    }
    Ok((files, unreadable))
}

/// Totals of a restore.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoreTotals {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
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
    fn read_password(&self) -> Result<Option<Password>> {
        match &self.password {
            PasswordSource::Value(p) => Ok(Some(Password::plain(p.clone()))),
            PasswordSource::File(path) => match read_password_file(path)? {
                Some(p) => Ok(Some(p)),
                None => Err(Error::PasswordFileMissing { path: path.clone() }),
            },
            PasswordSource::DefaultFile(path) => read_password_file(path),
        }
    }

    fn expected_password_file(&self) -> PathBuf {
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

    fn backends(&self) -> Result<RepositoryBackends> {
        let backends = BackendOptions::default()
            .repository(self.location.clone())
            .options(self.options.clone())
            .to_backends()
            .map_err(|e| self.repo_error(&e))?;
        Ok(backends)
    }

    fn repo_error(&self, e: &RusticError) -> Error {
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
fn redact_url(location: &str) -> String {
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
struct Password {
    /// As restic reads it.
    value: String,
    /// The file's first line, untrimmed, when that differs: lifeboat read
    /// password files so before, and repositories made then open with it.
    earlier: Option<String>,
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
fn one_line(e: &RusticError) -> String {
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
fn create_private_dir(path: &Path) -> Result<()> {
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
fn make_private(repo_dir: &Path) -> Result<()> {
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
fn close_to_others(repo_dir: &Path) {
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

/// The zstd level of new repositories. Level 1 against zstd's default 3,
/// on a 553 MB root file system (bench/): first backup 2.05 s against
/// 2.37 s, repository 277 MB against 265 MB. A nightly backup's time is
/// load on a busy host; 4 % more space once, before deduplication, is
/// the cheaper side.
pub const DEFAULT_COMPRESSION: i32 = 1;

/// An open repository.
#[derive(Clone)]
pub struct Repo {
    settings: RepoSettings,
    /// The repository before opening; opened again from the master key
    /// (cheap: no key derivation) whenever an operation needs its own
    /// handle, since an opened repository cannot be shared.
    base: Repository<()>,
    key: MasterKey,
    gate: Arc<SnapshotGate>,
    /// Archives run one at a time: the snapshot gate holds one at a time.
    archiving: Arc<Mutex<()>>,
    /// Set when the run is interrupted: nothing is published after that.
    cancelled: Arc<std::sync::atomic::AtomicBool>,
    /// The shared lock held while the repository is in use.
    _lock: Option<Arc<crate::repo::lock::LockGuard>>,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("location", &self.settings.shown_location())
            .finish_non_exhaustive()
    }
}

impl Repo {
    /// Opens an existing repository.
    pub fn open(settings: &RepoSettings) -> Result<Self> {
        if !settings.exists()? {
            return Err(Error::RepositoryMissing {
                location: settings.shown_location(),
            });
        }
        let password = settings.read_password()?.ok_or_else(|| Error::NoPassword {
            location: settings.shown_location(),
            expected: settings.expected_password_file(),
        })?;
        let opened = Self::connect(settings, |repo| {
            repo.open(&Credentials::password(password.value.clone()))
        });
        let repo = match (opened, &password.earlier) {
            (Err(Error::WrongPassword { .. }), Some(earlier)) => {
                let repo = Self::connect(settings, |repo| {
                    repo.open(&Credentials::password(earlier.clone()))
                })
                .map_err(|_| Error::WrongPassword {
                    location: settings.shown_location(),
                })?;
                tracing::warn!(
                    "the repository at {} opened with the first line of {} as it is, white space included; restic trims that white space and cannot open the repository with this file: put the password alone in the file, or add a key restic can use",
                    settings.shown_location(),
                    settings.expected_password_file().display()
                );
                repo
            }
            (opened, _) => opened?,
        };
        // Once the password has opened it: only its owners may change it.
        if let Some(path) = settings.local_path() {
            close_to_others(&path);
        }
        Ok(repo)
    }

    /// Creates a new repository at lifeboat's default compression level;
    /// fails if one exists. With the default password source and no
    /// password file yet, a password is generated.
    pub fn init(settings: &RepoSettings) -> Result<(Self, OpenReport)> {
        Self::init_with(settings, DEFAULT_COMPRESSION)
    }

    /// Creates a new repository whose blobs are compressed with zstd at
    /// `compression` (-7, fastest, to 22, smallest; 0 stores them
    /// uncompressed).
    pub fn init_with(settings: &RepoSettings, compression: i32) -> Result<(Self, OpenReport)> {
        if !(-7..=22).contains(&compression) {
            return Err(Error::BadRequest(format!(
                "compression level {compression} is outside zstd's -7 to 22"
            )));
        }
        if settings.exists()? {
            return Err(Error::BadRequest(format!(
                "a repository already exists at {}",
                settings.shown_location()
            )));
        }
        let mut report = OpenReport {
            created: true,
            ..Default::default()
        };
        if let Some(path) = settings.local_path()
            && path.exists()
            && !path.is_dir()
        {
            return Err(Error::BadRequest(format!(
                "{} is not a directory: a repository is a directory of its own; choose another path",
                path.display()
            )));
        }
        let password = match settings.read_password()? {
            Some(p) => p.value,
            None => {
                let PasswordSource::DefaultFile(path) = &settings.password else {
                    return Err(Error::NoPassword {
                        location: settings.shown_location(),
                        expected: settings.expected_password_file(),
                    });
                };
                let password = crate::paths::write_new_password(path)?;
                report.generated_password_file = Some(path.clone());
                password
            }
        };
        let local = settings.local_path();
        if let Some(path) = &local {
            create_private_dir(path)?;
        }
        let repo = Self::connect(settings, |repo| {
            repo.init(
                &Credentials::password(password.clone()),
                &KeyOptions::default(),
                &ConfigOptions::default().set_compression(compression),
            )
        })?;
        repo.replace_initial_key(&password)?;
        if let Some(path) = &local {
            make_private(path)?;
        }
        Ok((repo, report))
    }

    /// Opens the repository, creating it first when it is lifeboat's
    /// default one and does not exist yet.
    pub fn open_or_create_default(settings: &RepoSettings) -> Result<(Self, OpenReport)> {
        if settings.is_default && !settings.exists()? {
            return Self::init(settings);
        }
        Ok((Self::open(settings)?, OpenReport::default()))
    }

    fn connect(
        settings: &RepoSettings,
        open: impl FnOnce(Repository<()>) -> RusticResult<Repository<OpenStatus>>,
    ) -> Result<Self> {
        let backends = settings.backends()?;
        let gate = Arc::new(SnapshotGate {
            inner: backends.repository(),
            held: Mutex::new(None),
            packs: settings.local_path().map(LocalPacks::new),
        });
        let backends = RepositoryBackends::new(gate.clone(), backends.repo_hot());
        let options = RepositoryOptions::default().cache_dir(settings.cache_dir.clone());
        let base = Repository::new(&options, &backends).map_err(|e| settings.repo_error(&e))?;
        let open = open(base.clone()).map_err(|e| settings.repo_error(&e))?;
        let key = open.key();
        let lock = match settings.local_path() {
            Some(dir) => {
                let lock = crate::repo::lock::lock_shared(&dir, &key, &settings.shown_location())?;
                if lock.is_some() {
                    let removed = crate::repo::local_packs::remove_abandoned(&dir);
                    if removed > 0 {
                        tracing::info!("removed {removed} unfinished pack(s) of a killed lifeboat");
                    }
                }
                lock.map(Arc::new)
            }
            None => {
                tracing::info!(
                    "{}: only local repositories are locked",
                    settings.shown_location()
                );
                None
            }
        };
        Ok(Self {
            settings: settings.clone(),
            base,
            key,
            _lock: lock,
            gate,
            archiving: Arc::new(Mutex::new(())),
            cancelled: Arc::default(),
        })
    }

    /// Replaces the key the repository library made at initialisation by
    /// one that costs what restic's keys cost: scrypt with N = 2^15, r = 8
    /// (32 MiB; restic calibrates to at most 60 MiB). The library's own
    /// (N = 2^17) takes 128 MiB and a third of a second at every opening,
    /// more than all the rest of a backup that finds nothing changed.
    fn replace_initial_key(&self, password: &str) -> Result<()> {
        let backend = self.gate.inner.clone();
        let old = backend
            .list(rustic_core::FileType::Key)
            .map_err(|e| self.error(&e))?;
        let mut salt = vec![0u8; 64];
        getrandom::fill(&mut salt).map_err(|e| Error::Other(format!("no randomness: {e}")))?;
        let mut key_file = KeyFile {
            hostname: Some(crate::host::hostname()),
            username: nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name),
            created: Some(rustic_core::jiff::Zoned::now()),
            kdf: "scrypt".to_string(),
            n: 1 << 15,
            r: 8,
            p: 1,
            data: Vec::new(),
            salt,
        };
        let (encrypt, k, r) = key_file
            .kdf_key(&password)
            .map_err(|e| self.error(&e))?
            .to_keys();
        let master = serde_json::to_vec(&self.key).map_err(|e| Error::Other(e.to_string()))?;
        key_file.data =
            crate::repo::crypto::seal_raw(&crate::repo::crypto::raw_key(&encrypt, &k, &r), &master);
        let bytes = serde_json::to_vec(&key_file).map_err(|e| Error::Other(e.to_string()))?;
        let id: Id = crate::repo::crypto::sha256_hex(&bytes)
            .parse()
            .map_err(|e: Box<RusticError>| self.error(&e))?;
        backend
            .write_bytes(rustic_core::FileType::Key, &id, false, bytes.into())
            .map_err(|e| self.error(&e))?;
        for old in old.into_iter().filter(|o| *o != id) {
            backend
                .remove(rustic_core::FileType::Key, &old, false)
                .map_err(|e| self.error(&e))?;
        }
        Ok(())
    }

    /// Where the repository is, as it may be shown (see
    /// [`RepoSettings::shown_location`]).
    pub fn location(&self) -> String {
        self.settings.shown_location()
    }

    /// The settings it was opened with.
    pub fn settings(&self) -> &RepoSettings {
        &self.settings
    }

    fn error(&self, e: &RusticError) -> Error {
        self.settings.repo_error(e)
    }

    fn opened(&self) -> Result<Repository<OpenStatus>> {
        self.base
            .clone()
            .open(&Credentials::Masterkey(self.key.clone()))
            .map_err(|e| self.error(&e))
    }

    /// Every snapshot, oldest first. A snapshot file that cannot be read
    /// is left out with a warning that names it, as restic does: one
    /// damaged file must not hide the others.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let listing = self.snapshot_listing()?;
        for bad in &listing.unreadable {
            tracing::warn!("skipping snapshot {}: {}", bad.id, bad.reason);
        }
        Ok(listing.snapshots)
    }

    /// Every readable snapshot, oldest first, and the snapshot files that
    /// cannot be read.
    pub fn snapshot_listing(&self) -> Result<SnapshotListing> {
        let (files, unreadable) =
            readable_snapshots(&self.opened()?).map_err(|e| self.error(&e))?;
        let mut snapshots: Vec<SnapshotInfo> = files.into_iter().map(snapshot_info).collect();
        snapshots.sort_by(|a, b| a.file.time.cmp(&b.file.time));
        Ok(SnapshotListing {
            snapshots,
            unreadable,
        })
    }

    /// Archives `source` into a new snapshot whose tree holds the source's
    /// root at `snapshot_path`. `base` is the path the source's entries are
    /// named below. The snapshot is published only when `accept` agrees
    /// once every entry has been read; otherwise the data written stays
    /// unreferenced (a later prune reclaims it) and no snapshot exists.
    pub(crate) fn archive<R>(
        &self,
        source: &R,
        request: &ArchiveRequest,
        accept: impl FnOnce() -> std::result::Result<(), String>,
    ) -> Result<SnapshotInfo>
    where
        R: ReadSource + 'static,
        <R as ReadSource>::Open: Send,
        <R as ReadSource>::Iter: Send,
    {
        let _one_at_a_time = self
            .archiving
            .lock()
            .map_err(|_| Error::Other("an earlier archive panicked".to_string()))?;
        let opened = self.opened()?;
        let mut snap = SnapshotOptions::default()
            .to_snapshot()
            .map_err(|e| self.error(&e))?;
        for tag in &request.tags {
            snap.tags.add(tag.clone());
        }
        snap.description = request.description.clone();
        if let Some(label) = &request.label {
            snap.label = label.clone();
        }
        self.gate.hold();
        let backend: Arc<dyn WriteBackend> = self.gate.clone();
        let archived = crate::repo::archiver::archive(
            &opened,
            backend,
            self.gate.packs.as_ref(),
            source,
            request,
            snap,
        );
        let verdict = match archived {
            Ok(snap) => accept()
                .and_then(|()| self.still_locked())
                .and_then(|()| self.not_cancelled())
                .map(|()| snap),
            Err(e) => Err(e.to_string()),
        };
        match verdict {
            Ok(snap) => {
                self.gate.release(true).map_err(|e| self.error(&e))?;
                Ok(snapshot_info(snap))
            }
            Err(reason) => {
                self.gate.release(false).map_err(|e| self.error(&e))?;
                Err(Error::Other(reason))
            }
        }
    }

    /// Stops publishing snapshots: an archive still running (its thread
    /// cannot be stopped half-way) ends without one.
    pub fn cancel(&self) {
        self.cancelled
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn not_cancelled(&self) -> std::result::Result<(), String> {
        if self.cancelled.load(std::sync::atomic::Ordering::SeqCst) {
            Err("the backup was interrupted".to_string())
        } else {
            Ok(())
        }
    }

    /// Whether the lock taken at opening is still held; a backup whose lock
    /// lapsed may have had its data pruned under it.
    fn still_locked(&self) -> std::result::Result<(), String> {
        match &self._lock {
            Some(lock) if !lock.is_held() => Err(format!(
                "the lock on {} could not be refreshed for too long: another program may have pruned data this backup relies on; not publishing the snapshot",
                self.settings.shown_location()
            )),
            _ => Ok(()),
        }
    }

    /// Writes a copy of `snapshot` with `tags` added, as a snapshot of its
    /// own: the same tree and time, another id. The original stays.
    pub(crate) fn save_tagged_copy(
        &self,
        snapshot: &SnapshotInfo,
        tags: &[String],
    ) -> Result<SnapshotInfo> {
        let _one_at_a_time = self
            .archiving
            .lock()
            .map_err(|_| Error::Other("an earlier archive panicked".to_string()))?;
        self.not_cancelled()
            .and_then(|()| self.still_locked())
            .map_err(Error::Other)?;
        let opened = self.opened()?;
        let mut file = snapshot.file.clone();
        for tag in tags {
            file.tags.add(tag.clone());
        }
        // A copy names what it was copied from, as restic's do.
        file.original = Some(file.original.unwrap_or(file.id));
        file.id = Default::default();
        let file = crate::repo::archiver::write_snapshot(&opened, &*self.gate, file)?;
        Ok(snapshot_info(file))
    }

    /// Deletes a snapshot (the first pass of a stopped backup, a copy
    /// that lost its purpose).
    pub(crate) fn delete_snapshot(&self, snapshot: &SnapshotInfo) -> Result<()> {
        self.opened()?
            .delete_snapshots(&[snapshot.file.id])
            .map_err(|e| self.error(&e))
    }

    /// Whether lifeboat holds a lock on the repository (it can only lock
    /// local repositories).
    pub fn is_locked(&self) -> bool {
        self._lock.is_some()
    }

    /// Opens the repository with its full index, for reading file content.
    pub(crate) fn reader(&self) -> Result<RepoReader> {
        let indexed = self.opened()?.to_indexed().map_err(|e| self.error(&e))?;
        Ok(RepoReader {
            repo: indexed,
            gate: self.gate.clone(),
            cipher: crate::repo::crypto::cipher(&self.key),
            recursive: LsOptions::default().recursive(true),
            settings: self.settings.clone(),
        })
    }
}

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

fn snapshot_info(file: SnapshotFile) -> SnapshotInfo {
    // The id's display form is its first eight digits.
    let id = file.id.to_hex().to_string();
    SnapshotInfo {
        short_id: id.chars().take(8).collect(),
        id,
        time: file.time.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        hostname: file.hostname.clone(),
        paths: file.paths.iter().cloned().collect(),
        tags: file.tags.iter().cloned().collect(),
        files: file.summary.as_ref().map(|s| s.total_files_processed),
        bytes: file.summary.as_ref().map(|s| s.total_bytes_processed),
        description: file.description.clone(),
        file,
    }
}

/// A repository opened for reading content.
pub(crate) struct RepoReader {
    repo: Repository<IndexedFullStatus>,
    /// File content is read blob by blob from here, past the repository
    /// library's blob cache: a restore reads each blob once, and the
    /// cache only held 32 MiB more.
    gate: Arc<SnapshotGate>,
    cipher: aes256ctr_poly1305aes::Aes256CtrPoly1305Aes,
    recursive: LsOptions,
    settings: RepoSettings,
}

impl Drop for RepoReader {
    fn drop(&mut self) {
        if let Some(packs) = &self.gate.packs {
            packs.close_reading();
        }
    }
}

/// One entry of a snapshot's tree below the restored root.
pub(crate) struct TreeEntry {
    /// Relative to the restored root; empty for the root itself.
    pub(crate) path: PathBuf,
    pub(crate) node: Node,
}

impl RepoReader {
    fn error(&self, e: &RusticError) -> Error {
        self.settings.repo_error(e)
    }

    /// The node at `path` in a snapshot.
    pub(crate) fn root(&self, snapshot: &SnapshotInfo, path: &str) -> Result<Node> {
        self.repo
            .node_from_snapshot_and_path(&snapshot.file, path)
            .map_err(|e| self.error(&e))
    }

    /// Walks the tree below `root` and refuses it when any entry could
    /// write outside the restore target: names that are empty, `.`, `..`
    /// or contain a slash, and duplicate names in one directory. Nothing is
    /// written before the whole tree has passed.
    pub(crate) fn check_tree(&self, root: &Node) -> Result<TreeSummary> {
        let mut summary = TreeSummary::default();
        let mut previous: Option<PathBuf> = None;
        for item in self.walk(root)? {
            let TreeEntry { path, node } = item?;
            let raw_name = node.name();
            let raw = std::os::unix::ffi::OsStrExt::as_bytes(&*raw_name);
            let name_ok = !raw.is_empty() && raw != b"." && raw != b".." && !raw.contains(&b'/');
            let path_ok = path.components().all(|c| matches!(c, Component::Normal(_)));
            if !name_ok || !path_ok {
                return Err(Error::Repository {
                    location: self.settings.shown_location(),
                    message: format!(
                        "refusing to restore: the snapshot holds an entry named {:?} under {:?}, which would escape the target",
                        node.name,
                        path.parent().unwrap_or(Path::new(""))
                    ),
                });
            }
            if previous.as_ref() == Some(&path) {
                return Err(Error::Repository {
                    location: self.settings.shown_location(),
                    message: format!(
                        "refusing to restore: {} appears twice in the snapshot",
                        path.display()
                    ),
                });
            }
            match node.node_type {
                NodeType::Dir => summary.dirs += 1,
                NodeType::File => {
                    summary.files += 1;
                    summary.bytes += node.meta.size;
                }
                NodeType::Socket => summary.sockets += 1,
                _ => summary.others += 1,
            }
            previous = Some(path);
        }
        Ok(summary)
    }

    /// The entries below `root` in tree order, paths relative to it.
    pub(crate) fn walk(&self, root: &Node) -> Result<impl Iterator<Item = Result<TreeEntry>> + '_> {
        let iter = self
            .repo
            .ls(root, &self.recursive)
            .map_err(|e| self.error(&e))?;
        Ok(iter.map(move |item| {
            item.map(|(path, node)| TreeEntry { path, node })
                .map_err(|e| self.error(&e))
        }))
    }

    /// Writes a file's content.
    pub(crate) fn dump(&self, node: &Node, w: &mut impl std::io::Write) -> Result<()> {
        for id in node.content.iter().flatten() {
            let blob = self.data_blob(id)?;
            w.write_all(&blob)
                .map_err(|e| Error::io(node.name().to_string_lossy().as_ref(), e))?;
        }
        Ok(())
    }

    /// One blob of file content, read from its pack.
    fn data_blob(&self, id: &rustic_core::DataId) -> Result<Vec<u8>> {
        let entry = self.repo.get_index_entry(id).map_err(|e| self.error(&e))?;
        let location = entry.location;
        let stored = self
            .gate
            .read_blob(&entry.pack, location.offset, location.length)
            .map_err(|e| self.error(&e))?;
        crate::repo::archiver::index::open_blob(&self.cipher, &stored, location.uncompressed_length)
            .map_err(|why| Error::Repository {
                location: self.settings.shown_location(),
                message: format!("reading blob {id} of pack {}: {why}", entry.pack),
            })
    }

    /// Restores the tree below `root` into the existing, empty directory
    /// `dest`, and `dest` itself gets the root's metadata.
    pub(crate) fn restore_to_dir(
        &self,
        root: &Node,
        dest: &Path,
        progress: Arc<TransferProgress>,
    ) -> Result<()> {
        progress.bytes_total.store(
            self.check_tree(root)?.bytes,
            std::sync::atomic::Ordering::Relaxed,
        );
        crate::repo::restorer::restore_tree(self, root, dest, &progress)
    }

    /// The number of bytes of a file's content, from the index (the size in
    /// the node's metadata may differ when the file changed while it was
    /// read).
    pub(crate) fn content_length(&self, node: &Node) -> Result<u64> {
        let mut total = 0u64;
        for id in node.content.iter().flatten() {
            let entry = self.repo.get_index_entry(id).map_err(|e| self.error(&e))?;
            total += u64::from(entry.data_length());
        }
        Ok(total)
    }

    /// The blobs of a file's content, in order, with their lengths.
    pub(crate) fn blob_lengths(&self, node: &Node) -> Result<Vec<(Id, u32)>> {
        node.content
            .iter()
            .flatten()
            .map(|id| {
                let entry = self.repo.get_index_entry(id).map_err(|e| self.error(&e))?;
                Ok((**id, entry.data_length()))
            })
            .collect()
    }

    /// A reader of a file's content, `length` bytes long.
    pub(crate) fn file_reader(&self, node: &Node, length: u64) -> Result<FileReader<'_>> {
        Ok(FileReader {
            reader: self,
            blobs: node.content.clone().unwrap_or_default().into_iter(),
            piece: bytes::Bytes::new(),
            left: length,
        })
    }

    /// The whole content of a small file below `root` (a manifest).
    pub(crate) fn read_small_file(&self, root: &Node, relative: &str) -> Result<Vec<u8>> {
        let node = self
            .repo
            .node_from_path(
                root.subtree.ok_or_else(|| {
                    Error::Other("the snapshot's root is not a directory".to_string())
                })?,
                Path::new(relative),
            )
            .map_err(|e| self.error(&e))?;
        let length = self.content_length(&node)?;
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut self.file_reader(&node, length)?, &mut data)
            .map_err(|e| Error::io(relative, e))?;
        Ok(data)
    }

    /// The node of the file at `relative` below `root`.
    pub(crate) fn node_below(&self, root: &Node, relative: &str) -> Result<Node> {
        let tree = root
            .subtree
            .ok_or_else(|| Error::Other("the snapshot's root is not a directory".to_string()))?;
        self.repo
            .node_from_path(tree, Path::new(relative))
            .map_err(|e| self.error(&e))
    }
}

/// Reads a file's content from the repository, blob by blob.
pub(crate) struct FileReader<'a> {
    reader: &'a RepoReader,
    blobs: std::vec::IntoIter<rustic_core::DataId>,
    piece: bytes::Bytes,
    left: u64,
}

impl std::io::Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.piece.is_empty() {
            if self.left == 0 {
                return Ok(0);
            }
            let Some(id) = self.blobs.next() else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the repository holds less content than its index says",
                ));
            };
            self.piece = self
                .reader
                .data_blob(&id)
                .map_err(|e| std::io::Error::other(e.to_string()))?
                .into();
        }
        let n = buf
            .len()
            .min(self.piece.len())
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.piece[..n]);
        bytes::Buf::advance(&mut self.piece, n);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Counts of a snapshot's tree.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct TreeSummary {
    pub files: u64,
    pub dirs: u64,
    /// Links, fifos and devices.
    pub others: u64,
    /// Sockets, which no restore makes: a socket is made by the process
    /// that listens on it.
    pub sockets: u64,
    pub bytes: u64,
}

/// Holds back snapshot files while an archive runs, so that a snapshot is
/// published only after the source has been checked. Everything else
/// (packs, index) goes through at once, in the order the repository format
/// requires; a held snapshot that is dropped leaves only unreferenced data.
/// The packs of a local repository are flushed to disk on a thread of
/// their own (see [`LocalPacks`]): nothing else is written, and no pack
/// read, before those it may refer to are on disk.
struct SnapshotGate {
    inner: Arc<dyn WriteBackend>,
    held: Mutex<Option<Vec<HeldSnapshot>>>,
    packs: Option<LocalPacks>,
}

/// A snapshot file waiting at the gate: its id, whether it may be cached,
/// and its content.
type HeldSnapshot = (Id, bool, rustic_core::BytesList);

impl SnapshotGate {
    /// The held snapshots. A panic elsewhere while the lock was taken must
    /// not open the gate, so a poisoned lock is used as it is.
    fn held(&self) -> std::sync::MutexGuard<'_, Option<Vec<HeldSnapshot>>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn hold(&self) {
        *self.held() = Some(Vec::new());
    }

    fn release(&self, publish: bool) -> RusticResult<()> {
        let held = self.held().take();
        if publish {
            self.flushed()?;
            for (id, cacheable, content) in held.into_iter().flatten() {
                self.inner
                    .write_bytes(rustic_core::FileType::Snapshot, &id, cacheable, content)?;
            }
        }
        Ok(())
    }

    /// Waits until the packs written so far are on disk.
    fn flushed(&self) -> RusticResult<()> {
        self.packs.as_ref().map_or(Ok(()), LocalPacks::flushed)
    }

    /// Reads a blob's stored bytes: `length` at `offset` of the pack
    /// `pack`.
    fn read_blob(&self, pack: &Id, offset: u32, length: u32) -> RusticResult<bytes::Bytes> {
        match &self.packs {
            Some(packs) => packs.read(pack, offset, length).map(bytes::Bytes::from),
            None => {
                self.inner
                    .read_partial(rustic_core::FileType::Pack, pack, false, offset, length)
            }
        }
    }

    /// Waits until the pack `id` is on disk, if it is on its way.
    fn flushed_pack(&self, tpe: rustic_core::FileType, id: &Id) -> RusticResult<()> {
        match &self.packs {
            Some(packs) if tpe == rustic_core::FileType::Pack => packs.flushed_pack(id),
            _ => Ok(()),
        }
    }
}

impl ReadBackend for SnapshotGate {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn list_with_size(&self, tpe: rustic_core::FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.inner.list_with_size(tpe)
    }
    fn list(&self, tpe: rustic_core::FileType) -> RusticResult<Vec<Id>> {
        self.inner.list(tpe)
    }
    fn read_full(&self, tpe: rustic_core::FileType, id: &Id) -> RusticResult<bytes::Bytes> {
        self.flushed_pack(tpe, id)?;
        self.inner.read_full(tpe, id)
    }
    fn read_partial(
        &self,
        tpe: rustic_core::FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<bytes::Bytes> {
        self.flushed_pack(tpe, id)?;
        self.inner.read_partial(tpe, id, cacheable, offset, length)
    }
    fn warmup_path(&self, tpe: rustic_core::FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
    fn needs_warm_up(&self) -> bool {
        self.inner.needs_warm_up()
    }
    fn warm_up(&self, tpe: rustic_core::FileType, id: &Id) -> RusticResult<()> {
        self.inner.warm_up(tpe, id)
    }
}

impl WriteBackend for SnapshotGate {
    fn create(&self) -> RusticResult<()> {
        self.inner.create()
    }
    fn write_bytes(
        &self,
        tpe: rustic_core::FileType,
        id: &Id,
        cacheable: bool,
        content: rustic_core::BytesList,
    ) -> RusticResult<()> {
        if tpe == rustic_core::FileType::Pack
            && let Some(packs) = &self.packs
        {
            return packs.write(id, content);
        }
        if tpe == rustic_core::FileType::Snapshot
            && let Some(held) = self.held().as_mut()
        {
            held.push((*id, cacheable, content));
            return Ok(());
        }
        self.flushed()?;
        self.inner.write_bytes(tpe, id, cacheable, content)
    }
    fn remove(&self, tpe: rustic_core::FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        self.inner.remove(tpe, id, cacheable)
    }
}

/// A repository in a temporary directory and a request to archive into
/// it, for tests of the modules that write snapshots.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub(crate) fn repo_in(dir: &Path) -> Repo {
        let settings = RepoSettings {
            location: dir.join("repo").display().to_string(),
            is_default: false,
            password: PasswordSource::Value("test".into()),
            options: BTreeMap::new(),
            cache_dir: dir.join("cache"),
        };
        Repo::init(&settings).expect("init").0
    }

    /// Entries below `/b`, the root named `v`.
    pub(crate) fn request() -> ArchiveRequest {
        ArchiveRequest {
            base: PathBuf::from("/b"),
            snapshot_path: PathBuf::from("/volumes/v"),
            tags: vec!["lifeboat".into(), "volume=v".into()],
            description: None,
            label: None,
            parent: None,
            use_parent: false,
            list_ahead: true,
            streams: false,
            progress: Arc::new(TransferProgress::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::io::Cursor;

    use rustic_core::repofile::Metadata;
    use rustic_core::{ReadSourceEntry, RusticResult};

    use super::*;

    /// A source that yields the entries it is given, names and all.
    struct Entries(Vec<(&'static str, &'static str, NodeType)>);

    impl ReadSource for Entries {
        type Open = Cursor<Vec<u8>>;
        type Iter = std::vec::IntoIter<RusticResult<ReadSourceEntry<Cursor<Vec<u8>>>>>;

        fn size(&self) -> RusticResult<Option<u64>> {
            Ok(None)
        }

        fn entries(&self) -> Self::Iter {
            self.0
                .iter()
                .map(|(path, name, node_type)| {
                    let node =
                        Node::new_node(OsStr::new(name), node_type.clone(), Metadata::default());
                    let open = node.is_file().then(|| Cursor::new(b"data".to_vec()));
                    Ok(ReadSourceEntry {
                        path: PathBuf::from(path),
                        node,
                        open,
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
        }
    }

    use super::testing::{repo_in, request};

    /// Files below `/b`, named and holding what is given.
    struct Files(Vec<(String, Vec<u8>)>);

    /// `count` files of 20 kB each, all different and incompressible.
    fn distinct(count: usize) -> Files {
        Files(
            (0..count)
                .map(|i| (format!("f{i:03}"), distinct_content(i)))
                .collect(),
        )
    }

    fn distinct_content(i: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ (i as u64 + 1);
        (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    impl ReadSource for Files {
        type Open = Cursor<Vec<u8>>;
        type Iter = std::vec::IntoIter<RusticResult<ReadSourceEntry<Cursor<Vec<u8>>>>>;

        fn size(&self) -> RusticResult<Option<u64>> {
            Ok(None)
        }

        fn entries(&self) -> Self::Iter {
            let root = Node::new_node(OsStr::new("v"), NodeType::Dir, Metadata::default());
            let files = self.0.iter().map(|(name, content)| {
                let meta = Metadata {
                    size: content.len() as u64,
                    ..Metadata::default()
                };
                Ok(ReadSourceEntry {
                    path: PathBuf::from("/b").join(name),
                    node: Node::new_node(OsStr::new(name), NodeType::File, meta),
                    open: Some(Cursor::new(content.clone())),
                })
            });
            std::iter::once(Ok(ReadSourceEntry {
                path: PathBuf::from("/b"),
                node: root,
                open: None,
            }))
            .chain(files)
            .collect::<Vec<_>>()
            .into_iter()
        }
    }

    /// Directories and fifos at the paths given, below `/b`; listing the
    /// last one takes `pause` (a slow disk).
    struct Paths(Vec<(String, NodeType)>, std::time::Duration);

    impl ReadSource for Paths {
        type Open = Cursor<Vec<u8>>;
        type Iter = Box<dyn Iterator<Item = RusticResult<ReadSourceEntry<Cursor<Vec<u8>>>>> + Send>;

        fn size(&self) -> RusticResult<Option<u64>> {
            Ok(None)
        }

        fn entries(&self) -> Self::Iter {
            let root = Node::new_node(OsStr::new("v"), NodeType::Dir, Metadata::default());
            let below = self.0.iter().map(|(path, node_type)| {
                let path = PathBuf::from("/b").join(path);
                let name = path.file_name().unwrap_or_default().to_os_string();
                Ok(ReadSourceEntry {
                    node: Node::new_node(&name, node_type.clone(), Metadata::default()),
                    path,
                    open: None,
                })
            });
            let entries: Vec<_> = std::iter::once(Ok(ReadSourceEntry {
                path: PathBuf::from("/b"),
                node: root,
                open: None,
            }))
            .chain(below)
            .collect();
            let (last, pause) = (entries.len() - 1, self.1);
            Box::new(entries.into_iter().enumerate().map(move |(i, entry)| {
                if i == last {
                    std::thread::sleep(pause);
                }
                entry
            }))
        }
    }

    #[test]
    fn a_backup_ends_though_the_trees_read_ahead_for_it_are_never_taken() -> Result<()> {
        // Regression: the previous snapshot's trees are read ahead up to
        // 100,000 nodes; when the directories holding more are gone, the
        // reader waited for the walk to take them after the walk had
        // ended, and the backup never finished.
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let repo = Arc::new(repo_in(dir.path()));
        let mut before = vec![("a".to_string(), NodeType::Dir)];
        for sub in 0..4 {
            before.push((format!("gone/s{sub}"), NodeType::Dir));
            before.extend((0..40_000).map(|i| (format!("gone/s{sub}/p{i:05}"), NodeType::Fifo)));
        }
        before.insert(1, ("gone".to_string(), NodeType::Dir));
        let quick = std::time::Duration::ZERO;
        repo.archive(&Paths(before, quick), &request(), || Ok(()))?;

        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let second = repo.clone();
        std::thread::spawn(move || {
            let request = ArchiveRequest {
                use_parent: true,
                ..request()
            };
            // The walk waits for its last entry while the reader reads
            // the gone directories' trees ahead, up to its limit.
            let source = Paths(
                vec![("a".to_string(), NodeType::Dir)],
                std::time::Duration::from_secs(3),
            );
            let _ = done_tx.send(second.archive(&source, &request, || Ok(())).map(|s| s.id));
        });
        let finished = done_rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .map_err(|_| Error::Other("the second backup did not end".to_string()))?;
        finished?;
        Ok(())
    }

    #[test]
    fn packs_are_listed_in_index_files_as_they_are_written() -> Result<()> {
        // Under test, data packs are 64 KiB and written packs are listed
        // once they hold 4 blobs: 40 files of 20 kB make many of both.
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let repo = repo_in(dir.path());
        let snapshot = repo.archive(&distinct(40), &request(), || Ok(()))?;

        let opened = repo.opened()?;
        let mut index_files = 0;
        let mut listed_packs = std::collections::HashMap::new();
        let mut listed_blobs = std::collections::HashSet::new();
        let mut data_blobs = 0;
        for file in opened
            .stream_files::<rustic_core::repofile::IndexFile>()
            .map_err(|e| repo.error(&e))?
        {
            let (_, file) = file.map_err(|e| repo.error(&e))?;
            index_files += 1;
            for pack in file.packs {
                *listed_packs.entry(pack.id).or_insert(0) += 1;
                for blob in pack.blobs {
                    assert!(listed_blobs.insert(blob.id), "a blob listed twice");
                    data_blobs += usize::from(blob.tpe == rustic_core::repofile::BlobType::Data);
                }
            }
        }
        assert!(index_files >= 3, "{index_files} index files");
        assert!(listed_packs.values().all(|&n| n == 1), "{listed_packs:?}");
        // A data blob a file, and the trees of /, /volumes and /volumes/v.
        assert_eq!((data_blobs, listed_blobs.len()), (40, 43));
        let mut on_disk = 0;
        for sub in
            std::fs::read_dir(dir.path().join("repo/data")).map_err(|e| Error::io("data", e))?
        {
            let sub = sub.map_err(|e| Error::io("data", e))?.path();
            on_disk += std::fs::read_dir(&sub)
                .map_err(|e| Error::io(&sub, e))?
                .count();
        }
        assert_eq!(on_disk, listed_packs.len());

        let reader = repo.reader()?;
        let root = reader.root(&snapshot, "/volumes/v")?;
        for i in [0, 17, 39] {
            let read = reader.read_small_file(&root, &format!("f{i:03}"))?;
            assert!(read == distinct_content(i), "f{i:03} reads back otherwise");
        }
        Ok(())
    }

    #[test]
    fn content_reads_back_whole_compressed_or_not() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let repo = repo_in(dir.path());
        // Text that compresses across several chunks, then random bytes
        // that do not compress. Past the largest chunk (8 MiB), so that it
        // is several chunks whatever the repository's polynomial: 4 MB
        // were one chunk in about one run of forty (no cut found).
        let mut content: Vec<u8> = (0..500_000u32)
            .flat_map(|i| format!("line {i} of a log\n").into_bytes())
            .collect();
        content.extend((0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        let snapshot = repo.archive(
            &Files(vec![("f".into(), content.clone())]),
            &request(),
            || Ok(()),
        )?;
        let reader = repo.reader()?;
        let root = reader.root(&snapshot, "/volumes/v")?;
        let node = reader.node_below(&root, "f")?;
        assert!(node.content.as_ref().is_some_and(|c| c.len() > 1));
        assert!(reader.read_small_file(&root, "f")? == content);
        let mut dumped = Vec::new();
        reader.dump(&node, &mut dumped)?;
        assert!(dumped == content);
        // A reader asked for less stops there.
        let mut head = Vec::new();
        std::io::Read::read_to_end(&mut reader.file_reader(&node, 1000)?, &mut head)
            .map_err(|e| Error::io("f", e))?;
        assert!(head == content[..1000]);
        Ok(())
    }

    #[test]
    fn a_file_is_as_long_as_what_was_read_of_it() -> Result<()> {
        // Dumps are listed with no size (the command has not run yet);
        // the snapshot must still say how long each file is.
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let repo = repo_in(dir.path());
        let source = Entries(vec![
            ("/b", "v", NodeType::Dir),
            ("/b/f", "f", NodeType::File),
            ("/b/g", "g", NodeType::File),
        ]);
        let snapshot = repo.archive(&source, &request(), || Ok(()))?;
        let reader = repo.reader()?;
        let root = reader.root(&snapshot, "/volumes/v")?;
        for name in ["f", "g"] {
            let node = reader.node_below(&root, name)?;
            assert_eq!(node.meta.size, 4, "{name}");
            assert_eq!(reader.content_length(&node)?, 4, "{name}");
        }
        assert_eq!(snapshot.bytes, Some(8));
        Ok(())
    }

    #[test]
    fn a_pack_that_cannot_be_written_is_the_error_reported() -> Result<()> {
        // Regression: the walk, finding the packer gone, failed with "the
        // packer stopped", and that hid why the packer had stopped. Here no
        // pack can be created, and 200 different trees follow the first.
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let repo = repo_in(dir.path());
        let data = dir.path().join("repo/data");
        std::fs::remove_dir_all(&data).map_err(|e| Error::io(&data, e))?;
        std::fs::write(&data, b"").map_err(|e| Error::io(&data, e))?;
        let paths = (0..200)
            .flat_map(|i| {
                [
                    (format!("d{i:03}"), NodeType::Dir),
                    (format!("d{i:03}/p{i:03}"), NodeType::Fifo),
                ]
            })
            .collect();
        let source = Paths(paths, std::time::Duration::ZERO);
        let failed = repo.archive(&source, &request(), || Ok(()));
        let message = failed.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("writing a pack"), "{message}");
        assert!(message.contains("repo/data"), "{message}");
        Ok(())
    }

    #[test]
    fn a_rejected_source_publishes_no_snapshot() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let repo = repo_in(dir.path());
        let source = Entries(vec![
            ("/b", "v", NodeType::Dir),
            ("/b/f", "f", NodeType::File),
        ]);
        let refused = repo.archive(&source, &request(), || {
            Err("a file could not be read".into())
        });
        assert!(refused.is_err());
        assert!(
            repo.snapshots()?.is_empty(),
            "a refused archive left a snapshot"
        );
        repo.archive(&source, &request(), || Ok(()))?;
        assert_eq!(repo.snapshots()?.len(), 1);
        Ok(())
    }

    /// Directories `depth` deep below `/b`, each named `d`, with a file at
    /// the bottom.
    struct Deep(usize);

    impl ReadSource for Deep {
        type Open = Cursor<Vec<u8>>;
        type Iter = std::vec::IntoIter<RusticResult<ReadSourceEntry<Cursor<Vec<u8>>>>>;

        fn size(&self) -> RusticResult<Option<u64>> {
            Ok(None)
        }

        fn entries(&self) -> Self::Iter {
            let dir =
                |name: &str| Node::new_node(OsStr::new(name), NodeType::Dir, Metadata::default());
            let mut path = PathBuf::from("/b");
            let mut entries = vec![Ok(ReadSourceEntry {
                path: path.clone(),
                node: dir("v"),
                open: None,
            })];
            for _ in 0..self.0 {
                path.push("d");
                entries.push(Ok(ReadSourceEntry {
                    path: path.clone(),
                    node: dir("d"),
                    open: None,
                }));
            }
            let meta = Metadata {
                size: 6,
                ..Metadata::default()
            };
            entries.push(Ok(ReadSourceEntry {
                path: path.join("f"),
                node: Node::new_node(OsStr::new("f"), NodeType::File, meta),
                open: Some(Cursor::new(b"bottom".to_vec())),
            }));
            entries.into_iter()
        }
    }

    #[test]
    fn credentials_in_a_location_are_not_shown() {
        assert_eq!(
            redact_url("rest:https://user:s3cret@host:8000/repo"),
            "rest:https://user:***@host:8000/repo"
        );
        assert_eq!(
            redact_url("rest:https://token@host/"),
            "rest:https://***@host/"
        );
        assert_eq!(
            redact_url("/var/lib/lifeboat/repo"),
            "/var/lib/lifeboat/repo"
        );
        assert_eq!(
            redact_url("rest:https://user:pa/ss@host/repo"),
            "rest:https://user:***@host/repo",
            "a / in the password"
        );
        assert_eq!(
            redact_url("opendal:s3://bucket/path?secret=abc"),
            "opendal:s3://bucket/path?***"
        );
        let settings = RepoSettings::new(None, Some("s3cret".into()), None);
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn a_directory_chain_thousands_deep_is_archived_on_a_small_stack() -> Result<()> {
        // Regression: a file finished by a worker after the walk had closed
        // the directories above it finished them by recursion, one stack
        // frame per level, and a volume 1,000 directories deep overflowed
        // the stack and aborted the whole run.
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let repo = repo_in(dir.path());
        let depth = 5_000;
        let archived = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let snapshot = repo.archive(&Deep(depth), &request(), || Ok(()))?;
                let reader = repo.reader()?;
                let root = reader.root(&snapshot, "/volumes/v")?;
                let summary = reader.check_tree(&root)?;
                let bottom = vec!["d"; depth].join("/") + "/f";
                Ok::<_, Error>((summary, reader.read_small_file(&root, &bottom)?))
            })
            .map_err(|e| Error::io("thread", e))?
            .join()
            .map_err(|_| Error::Other("the archive overflowed its stack".to_string()))??;
        assert_eq!((archived.0.dirs, archived.0.files), (depth as u64, 1));
        assert_eq!(archived.1, b"bottom");
        Ok(())
    }

    #[test]
    fn hostile_names_in_a_snapshot_are_refused_before_restore() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let repo = repo_in(dir.path());
        for hostile in ["..", "a/../../../etc/passwd", "."] {
            let source = Entries(vec![
                ("/b", "v", NodeType::Dir),
                ("/b/fine", "fine", NodeType::File),
                ("/b/x", hostile, NodeType::File),
            ]);
            let snapshot = repo.archive(&source, &request(), || Ok(()))?;
            let reader = repo.reader()?;
            let root = reader.root(&snapshot, "/volumes/v")?;
            let err = reader.check_tree(&root).expect_err(hostile);
            assert!(err.to_string().contains("escape"), "{hostile}: {err}");
        }
        let duplicate = Entries(vec![
            ("/b", "v", NodeType::Dir),
            ("/b/x", "same", NodeType::File),
            ("/b/y", "same", NodeType::File),
        ]);
        let snapshot = repo.archive(&duplicate, &request(), || Ok(()))?;
        let reader = repo.reader()?;
        let root = reader.root(&snapshot, "/volumes/v")?;
        let err = reader.check_tree(&root).expect_err("duplicate");
        assert!(err.to_string().contains("twice"), "{err}");
        Ok(())
    }
}
