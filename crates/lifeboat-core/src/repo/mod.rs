//! The restic-format repository: the only room that uses rustic_core's
//! repository API and rustic_backend.
//!
//! It finds the repository and its password (with the defaults that make the
//! first run one command), initialises and opens it with errors a script can
//! tell apart, archives sources into snapshots behind a gate that keeps a
//! failed read from ever publishing a snapshot, lists snapshots, and restores
//! a snapshot's tree to a directory or streams it as a tar archive.
//!
//! Its rooms: `settings` (where the repository is, its password, its
//! errors), `snapshots` (listing them, damaged files skipped), `spec` (what
//! a snapshot's tags record), `gate` (the backend everything is written
//! through), `reader` (trees and content of snapshots), `source/` (the
//! interface the archiver reads through, and the host-path, engine-archive
//! and listed sources), `archiver/` (sources into snapshots), `restorer`,
//! `tarball` and `verify` (snapshots into directories or tar streams, and
//! the check of what a restore wrote), `local_packs`, `lock`, `crypto` and
//! `node` (the format's files, locks, encryption and file metadata). Other
//! rooms see a snapshot's files only as `SnapshotNode`s. This file opens
//! and holds a repository.

use std::sync::{Arc, Mutex};

use rustic_core::repofile::{KeyFile, MasterKey};
use rustic_core::{
    ConfigOptions, Credentials, Id, KeyOptions, LsOptions, OpenStatus, ReadBackend, Repository,
    RepositoryBackends, RepositoryOptions, RusticError, RusticResult, SnapshotOptions,
    WriteBackend,
};

pub(crate) mod archiver;
mod check;
pub(crate) mod crypto;
pub(crate) mod local_packs;
pub(crate) mod lock;
pub(crate) mod node;
mod prune;
pub(crate) mod restorer;
pub(crate) mod source;
pub mod spec;
pub(crate) mod tarball;
pub(crate) mod verify;

use crate::error::{Error, Result};
use local_packs::LocalPacks;
mod gate;
mod reader;
mod settings;
mod snapshots;
#[cfg(test)]
mod tests;

pub(crate) use archiver::ArchiveRequest;
pub use check::{CheckReport, ReadData};
pub use prune::PruneSummary;
pub use reader::TreeSummary;
pub(crate) use reader::{RepoReader, SnapshotNode};
pub use settings::{OpenReport, PasswordSource, RepoSettings};
pub(crate) use snapshots::readable_snapshots;
pub use snapshots::{SnapshotInfo, SnapshotListing, UnreadableSnapshot};

use gate::SnapshotGate;
use settings::{close_to_others, create_private_dir, make_private};
use snapshots::snapshot_info;

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
    /// Set when the run is interrupted: nothing is published after that,
    /// and archives stop reading.
    cancelled: crate::cancel::Cancel,
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
            return Err(Error::Refused(format!(
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
            return Err(Error::Refused(format!(
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
            cancelled: crate::cancel::Cancel::default(),
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
            created: Some(jiff::Zoned::now()),
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
        accept: impl FnOnce() -> Result<()>,
    ) -> Result<SnapshotInfo>
    where
        R: source::Source,
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
        if let Some(time) = &request.time {
            snap.time = time.clone();
        }
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
            self.cancelled.clone(),
        );
        let verdict = archived.and_then(|snap| {
            accept()?;
            self.still_locked()?;
            self.not_cancelled()?;
            Ok(snap)
        });
        match verdict {
            Ok(snap) => {
                self.gate.release(true).map_err(|e| self.error(&e))?;
                Ok(snapshot_info(snap))
            }
            Err(failure) => {
                self.gate.release(false).map_err(|e| self.error(&e))?;
                Err(failure)
            }
        }
    }

    /// Stops publishing snapshots: an archive still running stops reading
    /// at its next step and ends without one, and the streams it reads
    /// from the engine close.
    pub fn cancel(&self) {
        self.cancelled.cancel();
    }

    /// What [`Repo::cancel`] sets, for the work that reads for this
    /// repository to watch.
    pub(crate) fn cancellation(&self) -> crate::cancel::Cancel {
        self.cancelled.clone()
    }

    fn not_cancelled(&self) -> Result<()> {
        if self.cancelled.is_cancelled() {
            Err(Error::Interrupted("the backup was interrupted".to_string()))
        } else {
            Ok(())
        }
    }

    /// Whether the lock taken at opening is still held; a backup whose lock
    /// lapsed may have had its data pruned under it.
    fn still_locked(&self) -> Result<()> {
        match &self._lock {
            Some(lock) if !lock.is_held() => Err(Error::Other(format!(
                "the lock on {} could not be refreshed for too long: another program may have pruned data this backup relies on; not publishing the snapshot",
                self.settings.shown_location()
            ))),
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
        self.not_cancelled()?;
        self.still_locked()?;
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

    /// Deletes snapshots retention decided to remove. Their data stays
    /// until a prune.
    pub(crate) fn forget_snapshots(&self, snapshots: &[&SnapshotInfo]) -> Result<()> {
        let ids: Vec<_> = snapshots.iter().map(|s| s.file.id).collect();
        self.opened()?
            .delete_snapshots(&ids)
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

/// A repository in a temporary directory and a request to archive into
/// it, for tests of the modules that write snapshots.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::progress::TransferProgress;

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
            time: None,
            progress: Arc::new(TransferProgress::default()),
        }
    }
}
