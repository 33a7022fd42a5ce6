//! Restore: a snapshot back into a volume or a bind-mount directory.
//!
//! The steps: find the snapshot, check its whole tree before anything is
//! written, prepare the target (create the volume with its recorded driver,
//! options and labels, or make sure an existing one is empty), write, and
//! undo what this restore created when it fails. A non-empty target is
//! refused unless forced; forcing first snapshots what is about to be
//! overwritten, so every restore can be undone.
//!
//! Its rooms: `target` (making the target ready and judging it), `write`
//! (writing, checking and undoing), `dump` (restoring database dumps).

mod dump;
mod target;
mod write;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::backup::{Reader, ReaderChoice};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::progress::TransferProgress;
use crate::repo::spec::{TargetKind, TargetSpec};
use crate::repo::{Repo, SnapshotInfo, SnapshotListing, TreeSummary};

pub use dump::{DumpDestination, DumpRestoreReport, DumpRestoreRequest, restore_dump};
use target::{Destination, prepare, refuse_if_running, refuse_protected_path};
use write::TargetRestore;

/// Told where what a forced restore overwrites was saved, as soon as it
/// is, before anything is overwritten: an interrupted restore has said it.
#[derive(Clone, Default)]
pub struct OnPrevious(Option<Arc<Tell>>);

type Tell = dyn Fn(&SnapshotInfo) + Send + Sync;

impl OnPrevious {
    pub fn new(f: impl Fn(&SnapshotInfo) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    fn tell(&self, previous: &SnapshotInfo) {
        if let Some(f) = &self.0 {
            f(previous);
        }
    }
}

impl std::fmt::Debug for OnPrevious {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "OnPrevious(..)"
        } else {
            "OnPrevious(none)"
        })
    }
}

/// What to restore where.
#[derive(Clone, Debug, Default)]
pub struct RestoreRequest {
    /// A snapshot id (or a unique prefix), or `latest`.
    pub snapshot: String,
    /// The volume (name) or bind mount (host path) the snapshot is of.
    pub target: Option<String>,
    /// Restore into this volume or directory instead of the original.
    pub to: Option<String>,
    /// Overwrite a non-empty target, after snapshotting it.
    pub force: bool,
    pub writer: ReaderChoice,
    pub on_previous: OnPrevious,
}

/// What a restore did.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub snapshot: SnapshotInfo,
    pub kind: TargetKind,
    /// The volume name or directory restored into.
    pub target: String,
    pub created_volume: bool,
    /// The snapshot of the target's previous content, when forced.
    pub previous_content: Option<SnapshotInfo>,
    pub writer: Reader,
    pub tree: TreeSummary,
    pub seconds: f64,
}

/// Finds the snapshot a request names in the repository (see
/// [`resolve_snapshot`]); one whose file cannot be read is named as such.
async fn find_snapshot(
    repo: &Repo,
    snapshot: &str,
    target: Option<&str>,
) -> Result<(SnapshotInfo, TargetSpec)> {
    let repo = repo.clone();
    let (snapshot, target) = (snapshot.to_string(), target.map(str::to_string));
    blocking(move || {
        let listing = repo.snapshot_listing()?;
        for bad in &listing.unreadable {
            tracing::warn!("skipping snapshot {}: {}", bad.id, bad.reason);
        }
        resolve_listed(&listing, &snapshot, target.as_deref(), &repo.location())
    })
    .await
}

/// [`resolve_snapshot`] among a listing that may hold unreadable
/// snapshots: a prefix that one of them shares may mean that one, and is
/// refused as ambiguous; one that names only it says it cannot be read.
fn resolve_listed(
    listing: &SnapshotListing,
    snapshot: &str,
    target: Option<&str>,
    location: &str,
) -> Result<(SnapshotInfo, TargetSpec)> {
    let damaged = listing
        .unreadable
        .iter()
        .find(|b| snapshot != "latest" && b.id.starts_with(snapshot));
    if let Some(bad) = damaged
        && listing.snapshots.iter().any(|s| s.id.starts_with(snapshot))
    {
        return Err(Error::BadRequest(format!(
            "{snapshot} matches several snapshots, among them {}, which cannot be read: give more of the id",
            bad.id
        )));
    }
    resolve_snapshot(&listing.snapshots, snapshot, target).map_err(|e| match damaged {
        Some(bad) => Error::Repository {
            location: location.to_string(),
            message: format!("snapshot {} cannot be read: {}", bad.id, bad.reason),
        },
        None => e,
    })
}

/// Finds the snapshot a request names. `latest` needs the target and is
/// the newest of this host's snapshots of it: a volume of the same name on
/// another host holds other data, so one taken there is restored only by
/// its id (the error names it). An id may come without a target. When both
/// are given they must agree: restoring the wrong volume's data because of
/// a typo is worse than an error.
pub fn resolve_snapshot(
    snapshots: &[SnapshotInfo],
    snapshot: &str,
    target: Option<&str>,
) -> Result<(SnapshotInfo, TargetSpec)> {
    resolve_snapshot_on(snapshots, snapshot, target, &crate::host::hostname())
}

fn resolve_snapshot_on(
    snapshots: &[SnapshotInfo],
    snapshot: &str,
    target: Option<&str>,
    host: &str,
) -> Result<(SnapshotInfo, TargetSpec)> {
    let wanted = target.map(|t| {
        if t.starts_with('/') {
            (TargetKind::Bind, t.trim_end_matches('/').to_string())
        } else {
            (TargetKind::Volume, t.to_string())
        }
    });
    let ours = snapshots
        .iter()
        .filter_map(|s| TargetSpec::from_tags(&s.tags).map(|spec| (s, spec)));
    if snapshot == "latest" {
        let Some((kind, name)) = wanted else {
            return Err(Error::BadRequest(
                "`latest` needs the volume: add --volume NAME".to_string(),
            ));
        };
        let points: Vec<_> = ours
            .filter(|(_, spec)| {
                spec.kind == Some(kind) && spec.name == name && spec.is_restore_point()
            })
            .collect();
        let newest = |here: bool| {
            points
                .iter()
                .filter(|(s, _)| (s.hostname == host) == here)
                .max_by_key(|(s, _)| s.epoch_seconds())
        };
        if let Some((s, spec)) = newest(true) {
            return Ok(((*s).clone(), spec.clone()));
        }
        return Err(Error::NotFound(match newest(false) {
            Some((elsewhere, _)) => format!(
                "no snapshot of {name} was taken on this host ({host}); the newest, {}, was taken on {}: restore it by its id if that is the data you want",
                elsewhere.short_id, elsewhere.hostname
            ),
            None => format!("no snapshot of {name} in the repository"),
        }));
    }
    let matches: Vec<_> = snapshots
        .iter()
        .filter(|s| s.id.starts_with(snapshot))
        .collect();
    let found = match matches.as_slice() {
        [] => {
            return Err(Error::NotFound(format!(
                "no snapshot {snapshot} in the repository"
            )));
        }
        [one] => *one,
        _ => {
            return Err(Error::BadRequest(format!(
                "{snapshot} matches {} snapshots: give more of the id",
                matches.len()
            )));
        }
    };
    let spec = TargetSpec::from_tags(&found.tags).ok_or_else(|| {
        Error::BadRequest(format!(
            "snapshot {} was not written by lifeboat: restore it with restic",
            found.short_id
        ))
    })?;
    if let Some((kind, name)) = wanted
        && (spec.kind != Some(kind) || spec.name != name)
    {
        return Err(Error::BadRequest(format!(
            "snapshot {} is of {}, not of {name}; use --to to restore it elsewhere",
            found.short_id, spec.name
        )));
    }
    Ok((found.clone(), spec))
}

/// Restores a snapshot.
pub async fn restore(
    engine: &Engine,
    repo: &Repo,
    request: &RestoreRequest,
    progress: Arc<TransferProgress>,
) -> Result<RestoreReport> {
    let started = Instant::now();
    if let Some(to) = &request.to
        && !to.starts_with('/')
    {
        crate::engine::check_volume_name(to)?;
    }
    let (snapshot, spec) =
        find_snapshot(repo, &request.snapshot, request.target.as_deref()).await?;
    if let Some(database) = spec.extra("database") {
        return Err(Error::BadRequest(format!(
            "snapshot {} holds dumps of a {database} database, not files: restore it into a running database container with --into CONTAINER",
            snapshot.short_id
        )));
    }
    let dest_name = request.to.clone().unwrap_or_else(|| spec.name.clone());
    let dest_kind = if dest_name.starts_with('/') {
        TargetKind::Bind
    } else {
        TargetKind::Volume
    };

    // Check the snapshot before touching the target.
    let (tree, root_is_dir) = {
        let repo = repo.clone();
        let snapshot = snapshot.clone();
        let path = spec.snapshot_path();
        blocking(move || {
            let reader = repo.reader()?;
            let root = reader.root(&snapshot, &path.to_string_lossy())?;
            Ok((reader.check_tree(&root)?, root.is_dir()))
        })
        .await?
    };
    if !root_is_dir {
        return Err(Error::BadRequest(format!(
            "snapshot {} holds a single file ({}): restoring single-file bind mounts is not supported yet; `restic dump {} {}` writes it out",
            snapshot.short_id,
            spec.name,
            snapshot.short_id,
            spec.snapshot_path().display()
        )));
    }
    if dest_kind == TargetKind::Bind {
        refuse_protected_path(engine, Path::new(&dest_name)).await?;
    }
    refuse_if_running(engine, dest_kind, &dest_name).await?;
    let destination = prepare(engine, &spec, dest_kind, &dest_name).await?;
    let created = matches!(destination, Destination::Volume { created: true, .. });
    let into = TargetRestore {
        engine,
        repo,
        destination: &destination,
        name: &dest_name,
    };
    match into.restore(request, &snapshot, &spec, progress).await {
        Ok((writer, previous_content)) => Ok(RestoreReport {
            snapshot,
            kind: dest_kind,
            target: dest_name,
            created_volume: created,
            previous_content,
            writer,
            tree,
            seconds: started.elapsed().as_secs_f64(),
        }),
        Err(e) => {
            // What this restore made goes: the target is as it was. Not a
            // volume of another driver: removing one may remove storage
            // it found there, which is not this restore's.
            let undo = match &destination {
                Destination::Volume {
                    created: true,
                    volume,
                    ..
                } if volume.driver == "local" => engine.remove_volume(&dest_name).await,
                Destination::Volume {
                    created: true,
                    volume,
                    ..
                } => {
                    tracing::warn!(
                        "volume {dest_name} (driver {}), made by this restore, is left in place: removing it might remove storage its driver had before",
                        volume.driver
                    );
                    Ok(())
                }
                Destination::Directory {
                    created: Some(top), ..
                } => std::fs::remove_dir_all(top).map_err(|e| Error::io(top, e)),
                _ => Ok(()),
            };
            if let Err(undo) = undo {
                tracing::warn!("could not remove the half-restored {dest_name}: {undo}");
            }
            Err(e)
        }
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        // The repository library stops with a panic on some write errors
        // (a full disk among them).
        Error::Other(format!(
            "the restore stopped unexpectedly ({e}); is the target's disk full or read-only?"
        ))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, tags: &[&str], time: &str) -> SnapshotInfo {
        SnapshotInfo::example(id, "h", tags, time)
    }

    #[test]
    fn latest_picks_the_newest_snapshot_of_the_volume() {
        let snaps = [
            snap(
                "aaaa1111",
                &["lifeboat", "volume=db"],
                "2026-01-01T00:00:00+00:00[UTC]",
            ),
            snap(
                "bbbb2222",
                &["lifeboat", "volume=db"],
                "2026-01-02T00:00:00+00:00[UTC]",
            ),
            snap(
                "cccc3333",
                &["lifeboat", "volume=db", "pre-restore"],
                "2026-01-03T00:00:00+00:00[UTC]",
            ),
            snap(
                "dddd4444",
                &["lifeboat", "volume=web"],
                "2026-01-04T00:00:00+00:00[UTC]",
            ),
        ];
        let (s, spec) = resolve_snapshot_on(&snaps, "latest", Some("db"), "h").expect("found");
        assert_eq!(s.id, "bbbb2222");
        assert_eq!(spec.name, "db");
        assert!(resolve_snapshot_on(&snaps, "latest", None, "h").is_err());
        assert!(resolve_snapshot_on(&snaps, "latest", Some("nope"), "h").is_err());
        // On another host, `latest` is its own: none here is an error that
        // names the newest elsewhere, which an id still restores.
        let err =
            resolve_snapshot_on(&snaps, "latest", Some("db"), "new-host").expect_err("not here");
        assert!(
            err.to_string().contains("bbbb2222") && err.to_string().contains("taken on h"),
            "{err}"
        );
        let (s, _) = resolve_snapshot_on(&snaps, "bbbb", Some("db"), "new-host").expect("by id");
        assert_eq!(s.id, "bbbb2222");
    }

    #[test]
    fn a_prefix_a_damaged_snapshot_shares_is_ambiguous() {
        let listing = SnapshotListing {
            snapshots: vec![snap(
                "abcd1111",
                &["lifeboat", "volume=db"],
                "2026-01-01T00:00:00+00:00[UTC]",
            )],
            unreadable: vec![crate::repo::UnreadableSnapshot {
                id: "abcd2222".into(),
                reason: "truncated".into(),
            }],
        };
        let err = resolve_listed(&listing, "abcd", None, "r").expect_err("ambiguous");
        assert!(err.to_string().contains("abcd2222"), "{err}");
        let err = resolve_listed(&listing, "abcd2", None, "r").expect_err("damaged");
        assert!(err.to_string().contains("cannot be read"), "{err}");
        let (s, _) = resolve_listed(&listing, "abcd1", None, "r").expect("readable");
        assert_eq!(s.id, "abcd1111");
    }

    #[test]
    fn ids_must_be_unique_and_match_the_volume() {
        let snaps = [
            snap(
                "abcd1111",
                &["lifeboat", "volume=db"],
                "2026-01-01T00:00:00+00:00[UTC]",
            ),
            snap(
                "abcd2222",
                &["lifeboat", "volume=web"],
                "2026-01-02T00:00:00+00:00[UTC]",
            ),
            snap(
                "ffff0000",
                &["restic-only"],
                "2026-01-02T00:00:00+00:00[UTC]",
            ),
        ];
        assert!(resolve_snapshot_on(&snaps, "abcd", None, "h").is_err());
        let (s, _) = resolve_snapshot_on(&snaps, "abcd1", None, "h").expect("found");
        assert_eq!(s.id, "abcd1111");
        let err = resolve_snapshot_on(&snaps, "abcd1", Some("web"), "h").expect_err("mismatch");
        assert!(err.to_string().contains("--to"), "{err}");
        let err = resolve_snapshot_on(&snaps, "ffff", None, "h").expect_err("foreign");
        assert!(err.to_string().contains("restic"), "{err}");
    }
}
