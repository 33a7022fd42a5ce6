//! Removing unused volumes without losing data (`lifeboat prune`; the
//! module's name leaves "prune" and "forget" to the repository's
//! retention).
//!
//! `docker volume prune` deletes every volume no container mounts, backed
//! up or not. Here a volume goes only when a snapshot holds what it holds
//! now: one taken after its last change, or one taken just before removal
//! when asked to back up first. That snapshot stays, as a copy tagged
//! `pruned`, which `restore --pruned NAME` finds. Volumes labelled
//! `lifeboat.protect=true` never go.
//!
//! "Its last change" is the newest modification or status-change time of
//! anything in the volume, read on the host. A volume this host cannot
//! read (a remote engine, a driver such as NFS) has no known last change,
//! and so is removed only after a fresh backup.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::backup::{ReaderChoice, backup_target};
use crate::engine::{Engine, MountKind};
use crate::error::{Error, ErrorClass, Result};
use crate::inventory::Target;
use crate::progress::TransferProgress;
use crate::repo::spec::{TargetKind, TargetSpec};
use crate::repo::{Repo, SnapshotInfo};

/// The label that keeps a volume from ever being pruned.
pub const PROTECT_LABEL: &str = "lifeboat.protect";

/// The tag of the snapshot kept for a pruned volume.
pub const PRUNED_TAG: &str = "pruned";

/// An unused volume and whether it may go.
#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    pub name: String,
    pub driver: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub anonymous: bool,
    pub created_at: Option<String>,
    /// Size and file count, when the volume could be read on this host.
    pub bytes: Option<u64>,
    pub files: Option<u64>,
    /// The newest change to anything in the volume (RFC 3339).
    pub last_change: Option<String>,
    /// The newest file snapshot of the volume that is a restore point.
    pub last_snapshot: Option<SnapshotInfo>,
    pub state: State,
    #[serde(skip)]
    target: Target,
    #[serde(skip)]
    last_change_epoch: Option<i64>,
}

/// Whether a volume may be removed, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Labelled `lifeboat.protect=true`: never removed.
    Protected,
    /// A snapshot is newer than the volume's last change: removable.
    BackedUp,
    /// Changed since its newest snapshot.
    ChangedSinceBackup,
    /// No snapshot of its files.
    NoBackup,
    /// Its last change cannot be read on this host; only a fresh backup
    /// makes it removable.
    ChangeUnknown,
}

impl State {
    /// A short phrase for tables.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Protected => "protected",
            Self::BackedUp => "backed up",
            Self::ChangedSinceBackup => "changed since backup",
            Self::NoBackup => "no backup",
            Self::ChangeUnknown => "last change unknown",
        }
    }
}

impl Candidate {
    /// Whether pruning with `options` removes it.
    pub fn removable(&self, options: &PruneOptions) -> bool {
        match self.state {
            State::Protected => false,
            State::BackedUp => true,
            _ => options.backup_first,
        }
    }
}

/// What happened to one candidate.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub name: String,
    pub removed: bool,
    /// The snapshot kept for recovery, when removed.
    pub kept_snapshot: Option<SnapshotInfo>,
    /// Why it stayed, or what failed.
    pub reason: Option<String>,
    /// It was to go (backed up, or asked to be backed up first) and a
    /// step failed.
    pub failed: bool,
    /// What kind of failure, or of refusal, kept it.
    pub failure: Option<ErrorClass>,
}

/// Why a candidate stays: the reason in words, and its kind.
struct Kept {
    class: ErrorClass,
    reason: String,
}

impl Kept {
    fn new(class: ErrorClass, reason: impl Into<String>) -> Self {
        Self {
            class,
            reason: reason.into(),
        }
    }

    /// A failed step, named, keeping its error's class.
    fn failed(step: &str, e: &Error) -> Self {
        Self::new(e.class(), format!("{step}: {e}"))
    }
}

/// How to prune.
#[derive(Clone, Debug, Default)]
pub struct PruneOptions {
    /// Back up volumes without a current snapshot, then remove them.
    pub backup_first: bool,
    pub reader: ReaderChoice,
}

/// The unused volumes among `targets` (all of them, or those `names`
/// gives), with their backup state. Reads each readable volume whole for
/// its last change: call it on a blocking thread.
pub fn candidates(
    targets: &[Target],
    snapshots: &[SnapshotInfo],
    names: &[String],
) -> Result<Vec<Candidate>> {
    for name in names {
        let target = targets
            .iter()
            .find(|t| t.kind == MountKind::Volume && &t.name == name)
            .ok_or_else(|| Error::UnknownTarget(name.clone()))?;
        if !target.unused {
            let users: Vec<&str> = target.users.iter().map(|u| u.container.as_str()).collect();
            return Err(Error::Refused(format!(
                "{name} is in use by {}: only volumes no container mounts can be pruned",
                users.join(", ")
            )));
        }
    }
    Ok(targets
        .iter()
        .filter(|t| t.kind == MountKind::Volume && t.unused)
        .filter(|t| names.is_empty() || names.contains(&t.name))
        .map(|t| candidate(t, snapshots))
        .collect())
}

fn candidate(target: &Target, snapshots: &[SnapshotInfo]) -> Candidate {
    let scan = target
        .host_readable()
        .then_some(target.host_path.as_deref())
        .flatten()
        .and_then(|path| match scan(Path::new(path)) {
            Ok(scan) => Some(scan),
            Err(e) => {
                tracing::warn!("reading {}: {e}", target.name);
                None
            }
        });
    let last_snapshot = newest_file_snapshot(snapshots, &target.name);
    // Any value but an explicit no protects: a typo must not unprotect.
    let protected = target.labels.get(PROTECT_LABEL).is_some_and(|v| {
        !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "" | "false" | "0" | "no"
        )
    });
    let state = if protected {
        State::Protected
    } else {
        match (&last_snapshot, &scan) {
            (None, _) => State::NoBackup,
            (Some(_), None) => State::ChangeUnknown,
            // A whole second apart at least: status-change times come
            // from a coarser clock than the snapshot's.
            (Some(s), Some(scan)) if s.epoch_seconds() > scan.last_change + 1 => State::BackedUp,
            (Some(_), Some(_)) => State::ChangedSinceBackup,
        }
    };
    Candidate {
        name: target.name.clone(),
        driver: target.driver.clone(),
        labels: target.labels.clone(),
        anonymous: target.anonymous,
        created_at: target.created_at.clone(),
        bytes: scan.as_ref().map(|s| s.bytes),
        files: scan.as_ref().map(|s| s.files),
        last_change: scan.as_ref().map(|s| rfc3339(s.last_change)),
        last_snapshot,
        state,
        target: target.clone(),
        last_change_epoch: scan.map(|s| s.last_change),
    }
}

/// Removes the candidates that may go (all when `options.backup_first`,
/// except protected ones), each after writing the copy of its snapshot
/// tagged `pruned`. Never fails as a whole: each outcome says.
pub async fn prune(
    engine: &Engine,
    repo: &Repo,
    candidates: &[Candidate],
    options: &PruneOptions,
    progress: Arc<TransferProgress>,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for c in candidates {
        let outcome = match prune_one(engine, repo, c, options, progress.clone()).await {
            Ok(kept) => Outcome {
                name: c.name.clone(),
                removed: true,
                kept_snapshot: Some(kept),
                reason: None,
                failed: false,
                failure: None,
            },
            Err(kept) => Outcome {
                name: c.name.clone(),
                removed: false,
                kept_snapshot: None,
                reason: Some(kept.reason),
                failed: c.removable(options),
                failure: Some(kept.class),
            },
        };
        outcomes.push(outcome);
    }
    outcomes
}

async fn prune_one(
    engine: &Engine,
    repo: &Repo,
    c: &Candidate,
    options: &PruneOptions,
    progress: Arc<TransferProgress>,
) -> std::result::Result<SnapshotInfo, Kept> {
    let stamp = format!("pruned-at={}", rfc3339(now()));
    let kept = match c.state {
        State::Protected => {
            return Err(Kept::new(
                ErrorClass::Refused,
                format!("labelled {PROTECT_LABEL}=true"),
            ));
        }
        State::BackedUp => {
            let Some(snapshot) = c.last_snapshot.clone() else {
                return Err(Kept::new(ErrorClass::NotFound, "no snapshot"));
            };
            let repo = repo.clone();
            blocking(move || repo.save_tagged_copy(&snapshot, &[PRUNED_TAG.to_string(), stamp]))
                .await
                .map_err(|e| Kept::failed("keeping its snapshot", &e))?
        }
        _ if options.backup_first => {
            let tags = [PRUNED_TAG.to_string(), stamp];
            let result =
                backup_target(engine, repo, &c.target, options.reader, &tags, progress).await;
            match (result.snapshot, result.error) {
                (Some(snapshot), None) if result.vanished.is_empty() => snapshot,
                (Some(snapshot), None) => {
                    forget(repo, &snapshot, &c.name).await;
                    return Err(Kept::new(
                        ErrorClass::Refused,
                        "files vanished while it was backed up; run prune again",
                    ));
                }
                (_, error) => {
                    return Err(Kept::new(
                        result.failure.unwrap_or(ErrorClass::Other),
                        format!(
                            "backing it up failed: {}",
                            error.unwrap_or_else(|| "no snapshot was written".to_string())
                        ),
                    ));
                }
            }
        }
        state => {
            return Err(Kept::new(
                ErrorClass::Refused,
                format!(
                    "{}: back it up first (lifeboat backup {}, or prune --backup-first)",
                    state.describe(),
                    c.name
                ),
            ));
        }
    };
    // Last: nothing may have changed since the snapshot began, up to now.
    if let Some(path) = c.last_change_epoch.and(c.target.host_path.clone()) {
        let unchanged = blocking(move || rescan(&path))
            .await
            .is_ok_and(|after| kept.epoch_seconds() > after.last_change + 1);
        if !unchanged {
            forget(repo, &kept, &c.name).await;
            return Err(Kept::new(
                ErrorClass::Refused,
                format!(
                    "it changed after snapshot {} began; run prune again",
                    kept.short_id
                ),
            ));
        }
    }
    if let Err(e) = engine.remove_volume(&c.name).await {
        // The snapshot stays: a removal that failed half-way may have
        // taken data with it.
        return Err(Kept::new(
            e.class(),
            format!(
                "removing it: {e}; snapshot {} (tagged {PRUNED_TAG}) holds its data",
                kept.short_id
            ),
        ));
    }
    Ok(kept)
}

/// Deletes a snapshot tagged `pruned` for a volume that stays untouched:
/// it would only mislead `restore --pruned`.
async fn forget(repo: &Repo, snapshot: &SnapshotInfo, name: &str) {
    let repo = repo.clone();
    let copy = snapshot.clone();
    if let Err(e) = blocking(move || repo.delete_snapshot(&copy)).await {
        tracing::warn!(
            "could not delete snapshot {} tagged pruned for {name}, which stays: {e}",
            snapshot.short_id
        );
    }
}

/// The snapshot `restore --pruned NAME` restores: the newest one kept
/// when a volume of that name was pruned on this host. One pruned on
/// another host is named in the error, to be restored by its id.
pub fn pruned_snapshot(snapshots: &[SnapshotInfo], name: &str) -> Result<SnapshotInfo> {
    pruned_snapshot_of(snapshots, name, &crate::host::hostname())
}

fn pruned_snapshot_of(snapshots: &[SnapshotInfo], name: &str, host: &str) -> Result<SnapshotInfo> {
    let pruned: Vec<&SnapshotInfo> = snapshots
        .iter()
        .filter(|s| s.tags.iter().any(|t| t == PRUNED_TAG))
        .filter(|s| {
            TargetSpec::from_tags(&s.tags)
                .is_some_and(|spec| spec.kind == Some(TargetKind::Volume) && spec.name == name)
        })
        .collect();
    let newest = |here: bool| {
        pruned
            .iter()
            .filter(|s| (s.hostname == host) == here)
            .max_by_key(|s| s.epoch_seconds())
    };
    if let Some(snapshot) = newest(true) {
        return Ok((*snapshot).clone());
    }
    Err(Error::NotFound(match newest(false) {
        Some(elsewhere) => format!(
            "no volume {name} was pruned on this host ({host}); one was on {}: restore that snapshot by its id, `lifeboat restore {} --volume {name}`",
            elsewhere.hostname, elsewhere.short_id
        ),
        None => format!("no snapshot of a pruned volume {name} in the repository"),
    }))
}

/// The newest snapshot of the volume's files taken on this host: a volume
/// of the same name elsewhere, backed up into a shared repository, holds
/// other data.
fn newest_file_snapshot(snapshots: &[SnapshotInfo], name: &str) -> Option<SnapshotInfo> {
    crate::inventory::restore_points(snapshots, TargetKind::Volume, name)
        .into_iter()
        .filter(|s| {
            TargetSpec::from_tags(&s.tags).is_some_and(|spec| spec.extra("database").is_none())
        })
        .max_by_key(|s| s.epoch_seconds())
        .cloned()
}

/// What reading a volume whole found.
#[derive(Clone, Copy, Debug)]
struct Scan {
    bytes: u64,
    files: u64,
    /// The newest mtime or ctime of any entry, the root included, in
    /// seconds since the epoch.
    last_change: i64,
}

fn rescan(path: &str) -> Result<Scan> {
    scan(Path::new(path)).map_err(|e| Error::io(Path::new(path), e))
}

fn scan(root: &Path) -> std::io::Result<Scan> {
    let meta = std::fs::symlink_metadata(root)?;
    let mut found = Scan {
        bytes: 0,
        files: 0,
        last_change: meta.mtime().max(meta.ctime()),
    };
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            found.last_change = found.last_change.max(meta.mtime()).max(meta.ctime());
            if meta.is_dir() {
                dirs.push(entry.path());
            } else {
                found.files += 1;
                found.bytes += meta.len();
            }
        }
    }
    Ok(found)
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn rfc3339(epoch: i64) -> String {
    jiff::Timestamp::from_second(epoch)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| epoch.to_string())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Other(format!("a repository task stopped: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY1: &str = "2026-01-01T00:00:00+00:00[UTC]";
    const DAY2: &str = "2026-01-02T00:00:00+00:00[UTC]";
    const DAY3: &str = "2026-01-03T00:00:00+00:00[UTC]";
    const DAY4: &str = "2026-01-04T00:00:00+00:00[UTC]";

    #[test]
    fn only_this_hosts_file_snapshots_vouch_for_a_volume() {
        let here = crate::host::hostname();
        let snaps = [
            SnapshotInfo::example("11111111", &here, &["lifeboat", "volume=data"], DAY1),
            // Newer, but none of them holds this host's files as they are.
            SnapshotInfo::example(
                "22222222",
                &here,
                &["lifeboat", "volume=data", "prepass"],
                DAY2,
            ),
            SnapshotInfo::example(
                "33333333",
                &here,
                &["lifeboat", "volume=data", "pre-restore"],
                DAY2,
            ),
            SnapshotInfo::example(
                "44444444",
                &here,
                &["lifeboat", "volume=data", "database=postgres"],
                DAY3,
            ),
            SnapshotInfo::example(
                "55555555",
                "another-host",
                &["lifeboat", "volume=data"],
                DAY4,
            ),
            SnapshotInfo::example("66666666", &here, &["lifeboat", "volume=other"], DAY4),
            SnapshotInfo::example("77777777", &here, &["volume=data"], DAY4),
        ];
        let newest = newest_file_snapshot(&snaps, "data").map(|s| s.id);
        assert_eq!(newest.as_deref(), Some("11111111"));
        assert!(newest_file_snapshot(&snaps[1..], "data").is_none());
    }

    #[test]
    fn restore_pruned_takes_this_hosts_newest_and_names_the_others() -> Result<()> {
        let pruned = |id: &str, host: &str, time: &str| {
            SnapshotInfo::example(id, host, &["lifeboat", "volume=data", PRUNED_TAG], time)
        };
        let snaps = [
            pruned("aaaaaaaa", "here", DAY1),
            pruned("bbbbbbbb", "here", DAY2),
            pruned("cccccccc", "there", DAY3),
            SnapshotInfo::example("dddddddd", "here", &["lifeboat", "volume=data"], DAY4),
        ];
        assert_eq!(pruned_snapshot_of(&snaps, "data", "here")?.id, "bbbbbbbb");
        let elsewhere = pruned_snapshot_of(&snaps, "data", "new-host")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            elsewhere.contains("one was on there")
                && elsewhere.contains("`lifeboat restore cccccccc --volume data`"),
            "{elsewhere}"
        );
        let none = pruned_snapshot_of(&snaps, "other", "here")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            none.as_deref(),
            Some("no snapshot of a pruned volume other in the repository")
        );
        Ok(())
    }

    #[test]
    fn the_last_change_is_the_newest_of_any_entry() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("a"))?;
        std::fs::write(dir.path().join("a/f"), b"12345")?;
        std::fs::write(dir.path().join("g"), b"1")?;
        let first = scan(dir.path())?;
        assert_eq!((first.files, first.bytes), (2, 6));
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        for p in ["a/f", "g", "a", ""] {
            let f = std::fs::File::open(dir.path().join(p))?;
            f.set_modified(old)?;
        }
        // ctime cannot be set back: it is now, and it counts.
        let second = scan(dir.path())?;
        assert!(second.last_change >= now() - 60, "{second:?}");
        Ok(())
    }
}
