//! Writing a snapshot into a prepared target, and undoing it: the target
//! snapshotted and emptied first when it held files, the snapshot written
//! and checked against what landed, and what the target held put back when
//! anything fails or the restore is stopped.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::backup::{Reader, ReaderChoice, backup_target};
use crate::engine::{Engine, HELPER_MOUNT, MountKind};
use crate::error::{Error, Result};
use crate::inventory::{InventoryOptions, discover};
use crate::progress::TransferProgress;
use crate::repo::spec::{PRE_RESTORE_TAG, TargetKind, TargetSpec};
use crate::repo::{Repo, SnapshotInfo};

use super::target::{
    Destination, bound_directory, choose_writer, helper_source, host_dir, is_empty,
    refuse_if_running, refuse_protected_path, refuse_tmpfs, refuse_unclearable,
};
use super::{RestoreRequest, blocking};

/// The error of a restore that failed, or was stopped, and what was done
/// about the target: "interrupted" (130) only when the target is as it
/// was; otherwise the failure, with what was and was not undone.
pub(super) fn failed(
    e: Error,
    undone: std::result::Result<String, String>,
    stopped: bool,
) -> Error {
    match (stopped, undone) {
        (true, Ok(undone)) => Error::Interrupted(format!("the restore was stopped; {undone}")),
        (true, Err(undone)) => Error::Other(format!("the restore was stopped; {undone}")),
        (false, Ok(undone) | Err(undone)) => e.context(|e| format!("{e}; {undone}")),
    }
}

/// Why emptying a target failed, and whether it had changed anything by
/// then.
pub(super) struct ClearFailed {
    error: Error,
    changed: bool,
}

/// A restore into one prepared target.
pub(super) struct TargetRestore<'a> {
    pub(super) engine: &'a Engine,
    pub(super) repo: &'a Repo,
    pub(super) destination: &'a Destination,
    /// The target's name (a volume's) or path, for messages.
    pub(super) name: &'a str,
}

impl TargetRestore<'_> {
    /// Writes the snapshot into the target, and checks that the target
    /// holds exactly the snapshot. A target that held files is snapshotted
    /// first, emptied, and put back as it was when the restore fails or is
    /// stopped; one that was empty is emptied again. Returns the writer
    /// used and the snapshot of what was overwritten.
    pub(super) async fn restore(
        &self,
        request: &RestoreRequest,
        snapshot: &SnapshotInfo,
        spec: &TargetSpec,
        progress: Arc<TransferProgress>,
    ) -> Result<(Reader, Option<SnapshotInfo>)> {
        let name = self.name;
        refuse_tmpfs(self.destination)?;
        self.refuse_shared_storage().await?;
        let writer = choose_writer(self.destination, request.writer)?;
        if let Destination::Volume {
            host_dir: Some(dir),
            volume,
            ..
        } = self.destination
            && writer == Reader::Host
            && Path::new(&volume.mountpoint) != dir
        {
            // A volume bound to a host directory: that directory is what
            // is written and emptied.
            refuse_protected_path(self.engine, dir).await?;
            refuse_if_running(self.engine, TargetKind::Bind, &dir.display().to_string()).await?;
        }
        let stopped = || progress.stop_requested();
        // A write that ends after the stop came still counts as stopped:
        // the target is put back.
        let stop_after = |written: Result<()>| match written {
            Ok(()) if stopped() => Err(Error::Interrupted("the restore was stopped".into())),
            other => other,
        };
        if is_empty(self.engine, self.destination, writer).await? {
            let written = stop_after(self.write(snapshot, spec, writer, progress.clone()).await);
            if let Err(e) = written {
                let undone = match self.clear(writer).await {
                    Ok(()) => Ok(format!("{name} is empty again")),
                    Err(undo) => Err(format!("emptying {name} again failed too: {}", undo.error)),
                };
                return Err(failed(e, undone, stopped()));
            }
            return Ok((writer, None));
        }
        if !request.force {
            let why = if matches!(self.destination, Destination::Volume { created: true, .. }) {
                // Its driver's storage kept files of an earlier volume.
                "was made with the snapshot's driver options and holds files already"
            } else {
                "is not empty"
            };
            return Err(Error::Refused(format!(
                "{name} {why}; restore into a new volume with --to NAME, or overwrite it with --force (its current content is snapshotted first)"
            )));
        }
        if writer == Reader::Engine {
            refuse_unclearable(self.destination)?;
        }
        if writer == Reader::Host
            && let Ok(dir) = host_dir(self.destination)
            && let [mount, ..] = crate::fsmeta::mounts_below(&dir).as_slice()
        {
            return Err(Error::Refused(format!(
                "a file system is mounted at {} inside {}: lifeboat does not empty a directory across mounts; unmount it, or restore elsewhere",
                mount.display(),
                dir.display()
            )));
        }
        let kind = match self.destination {
            Destination::Volume { .. } => TargetKind::Volume,
            Destination::Directory { .. } => TargetKind::Bind,
        };
        let before_anything = || {
            Error::Interrupted(format!(
                "the restore was stopped before anything was written into {name}"
            ))
        };
        // Stopped, the snapshot ends without being published.
        let previous =
            match snapshot_current(self.engine, self.repo, kind, name, progress.clone()).await {
                Err(_) if stopped() => return Err(before_anything()),
                other => other?,
            };
        request.on_previous.tell(&previous);
        let id = &previous.short_id;
        if stopped() {
            return Err(before_anything());
        }
        progress.reset();
        let written = match self.clear(writer).await {
            Ok(()) => stop_after(self.write(snapshot, spec, writer, progress.clone()).await),
            Err(ClearFailed {
                error,
                changed: false,
            }) => {
                return Err(error.context(|error| {
                    format!(
                        "{error}; nothing was changed in {name}, and what it holds is in snapshot {id} too"
                    )
                }));
            }
            // Emptied part of the way: put back the rest too.
            Err(ClearFailed { error, .. }) => Err(error),
        };
        let Err(e) = written else {
            return Ok((writer, Some(previous)));
        };
        // Put back what was there: the target must not stay half written.
        let put_back = async {
            let previous_spec = TargetSpec::from_tags(&previous.tags)
                .ok_or_else(|| Error::Other(format!("snapshot {id} has lost its lifeboat tags")))?;
            self.clear(writer).await.map_err(|f| f.error)?;
            let progress = Arc::new(TransferProgress::default());
            self.write(&previous, &previous_spec, writer, progress)
                .await
        };
        let undone = match put_back.await {
            Ok(()) => Ok(format!(
                "{name} holds again what it held before (snapshot {id})"
            )),
            Err(undo) => Err(format!(
                "putting back what {name} held failed too ({undo}); it is in snapshot {id}: `lifeboat restore {id} --volume {name} --force` puts it back"
            )),
        };
        Err(failed(e, undone, stopped()))
    }

    /// Empties the target (see [`clear`]).
    async fn clear(&self, writer: Reader) -> std::result::Result<(), ClearFailed> {
        clear(self.engine, self.destination, writer).await
    }

    /// Refuses a volume this restore made with the snapshot's driver
    /// options when they bind it to a directory another volume is bound to
    /// already: restoring into the "new" volume would write, or with
    /// --force empty, the other volume's files.
    async fn refuse_shared_storage(&self) -> Result<()> {
        let Destination::Volume {
            volume,
            created: true,
            ..
        } = self.destination
        else {
            return Ok(());
        };
        let Some(dir) = bound_directory(volume) else {
            return Ok(());
        };
        let sharing: Vec<String> = self
            .engine
            .volumes()
            .await?
            .iter()
            .filter(|v| v.name != volume.name && bound_directory(v).as_ref() == Some(&dir))
            .map(|v| v.name.clone())
            .collect();
        if sharing.is_empty() {
            return Ok(());
        }
        Err(Error::Refused(format!(
            "volume {} would be bound to {}, as the snapshot's driver options say, which is volume {}'s directory: restore into {} itself, or into a volume without those options",
            volume.name,
            dir.display(),
            sharing.join(", "),
            sharing[0]
        )))
    }

    async fn write(
        &self,
        snapshot: &SnapshotInfo,
        spec: &TargetSpec,
        writer: Reader,
        progress: Arc<TransferProgress>,
    ) -> Result<()> {
        write(
            self.engine,
            self.repo,
            snapshot,
            spec,
            self.destination,
            writer,
            progress,
        )
        .await
    }
}

pub(super) async fn snapshot_current(
    engine: &Engine,
    repo: &Repo,
    kind: TargetKind,
    name: &str,
    progress: Arc<TransferProgress>,
) -> Result<SnapshotInfo> {
    let inventory = discover(
        engine,
        InventoryOptions {
            sizes: false,
            size_deadline: None,
        },
    )
    .await?;
    let mount_kind = match kind {
        TargetKind::Volume => MountKind::Volume,
        TargetKind::Bind => MountKind::Bind,
    };
    let target = inventory
        .targets
        .into_iter()
        .find(|t| t.kind == mount_kind && t.name == name)
        .unwrap_or_else(|| bare_bind_target(name));
    let result = backup_target(
        engine,
        repo,
        &target,
        ReaderChoice::Auto,
        &[PRE_RESTORE_TAG.to_string()],
        progress,
    )
    .await;
    match (result.snapshot, result.error) {
        (Some(s), None) => Ok(s),
        // Nothing was changed: the class of why is the restore's.
        (_, error) => Err(Error::Context {
            class: result.failure.unwrap_or(crate::error::ErrorClass::Other),
            message: format!(
                "not overwriting {name}: snapshotting its current content failed: {}",
                error.unwrap_or_default()
            ),
        }),
    }
}

/// A directory that no container binds (restore `--to /some/dir`).
pub(super) fn bare_bind_target(path: &str) -> crate::inventory::Target {
    crate::inventory::Target {
        kind: MountKind::Bind,
        name: path.to_string(),
        driver: None,
        driver_options: Default::default(),
        labels: Default::default(),
        host_path: Some(path.to_string()),
        anonymous: false,
        unused: true,
        users: Vec::new(),
        holds: crate::inventory::Content::Files,
        size: crate::inventory::Size::Pending,
        tmpfs_limit: None,
        last_snapshot: None,
        snapshot_count: 0,
        created_at: None,
    }
}

/// Empties the target. Through the engine, which can write into a volume
/// but not delete from it, the volume is removed and made again (which
/// only works while no container references it), and must then be empty.
pub(super) async fn clear(
    engine: &Engine,
    destination: &Destination,
    writer: Reader,
) -> std::result::Result<(), ClearFailed> {
    let unchanged = |error: Error| ClearFailed {
        error,
        changed: false,
    };
    let changed = |error: Error| ClearFailed {
        error,
        changed: true,
    };
    if writer == Reader::Host {
        let dir = host_dir(destination).map_err(unchanged)?;
        // A mount found below the target is refused before anything is
        // removed; anything else may come after some of it is gone.
        if !crate::fsmeta::mounts_below(&dir).is_empty() {
            return blocking(move || crate::fsmeta::clear_dir(&dir))
                .await
                .map_err(unchanged);
        }
        return blocking(move || crate::fsmeta::clear_dir(&dir))
            .await
            .map_err(changed);
    }
    let Destination::Volume { volume, .. } = destination else {
        return Err(unchanged(Error::Refused(
            "a non-empty directory can only be overwritten through a host path".to_string(),
        )));
    };
    // Removed, a volume whose name the engine would not take again (a
    // plugin's) could not be made again.
    crate::engine::check_volume_name(&volume.name).map_err(unchanged)?;
    engine.remove_volume(&volume.name).await.map_err(|e| {
        unchanged(Error::Other(format!(
            "{} cannot be emptied through the engine while containers reference it ({e}); restore into a new volume with --to NAME",
            volume.name
        )))
    })?;
    engine
        .create_volume(
            &volume.name,
            &volume.driver,
            &volume.options,
            &volume.labels,
        )
        .await
        .map_err(changed)?;
    if !is_empty(engine, destination, Reader::Engine)
        .await
        .map_err(changed)?
    {
        return Err(changed(Error::Other(format!(
            "volume {} still holds files after it was removed and made again: its driver ({}) keeps them, and the engine cannot delete them",
            volume.name, volume.driver
        ))));
    }
    Ok(())
}

/// Writes the snapshot into the empty target, then checks that the target
/// holds exactly the snapshot (see [`crate::repo::verify`]).
pub(super) async fn write(
    engine: &Engine,
    repo: &Repo,
    snapshot: &SnapshotInfo,
    spec: &TargetSpec,
    destination: &Destination,
    writer: Reader,
    progress: Arc<TransferProgress>,
) -> Result<()> {
    let path = spec.snapshot_path().to_string_lossy().to_string();
    match writer {
        Reader::Host => {
            let dir = host_dir(destination)?;
            let repo = repo.clone();
            let snapshot = snapshot.clone();
            blocking(move || {
                let reader = repo.reader()?;
                let root = reader.root(&snapshot, &path)?;
                crate::repo::restorer::restore_tree(&reader, &root, &dir, &progress)?;
                crate::repo::verify::verify_directory(&reader, &root, &dir)
            })
            .await
        }
        Reader::Engine => {
            let helper = engine
                .create_helper(&helper_source(destination), false)
                .await?;
            let written = async {
                upload(engine, repo, snapshot, &path, &helper, progress).await?;
                // Read back through the same helper.
                let stream = crate::backup::stream_reader(
                    engine,
                    &helper,
                    &format!("{HELPER_MOUNT}/."),
                    crate::cancel::Cancel::default(),
                )
                .0;
                let (repo, snapshot) = (repo.clone(), snapshot.clone());
                let target = match destination {
                    Destination::Volume { volume, .. } => format!("volume {}", volume.name),
                    Destination::Directory { path, .. } => path.display().to_string(),
                };
                blocking(move || {
                    let reader = repo.reader()?;
                    let root = reader.root(&snapshot, &path)?;
                    crate::repo::verify::verify_archive(&reader, &root, &target, stream)
                })
                .await
            }
            .await;
            if let Err(e) = engine.remove_helper(&helper).await {
                tracing::warn!("{e}");
            }
            written
        }
    }
}

/// Streams the snapshot's tree into the helper's mount through the
/// engine's archive API.
pub(super) async fn upload(
    engine: &Engine,
    repo: &Repo,
    snapshot: &SnapshotInfo,
    path: &str,
    helper: &crate::engine::Helper,
    progress: Arc<TransferProgress>,
) -> Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(16);
    let producer = {
        let repo = repo.clone();
        let snapshot = snapshot.clone();
        let path = path.to_string();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let reader = repo.reader()?;
            let root = reader.root(&snapshot, &path)?;
            let out = crate::pipe::ChannelWriter::new(tx, progress.clone());
            let prefix = Path::new(HELPER_MOUNT.trim_start_matches('/'));
            crate::repo::tarball::write_tree(&reader, &root, prefix, out, &progress)
        })
    };
    let stream = crate::pipe::receiver_stream(rx);
    let uploaded = engine.upload(helper, "/", stream).await;
    let produced = producer
        .await
        .map_err(|e| Error::Other(format!("writing the archive for the engine stopped: {e}")))?;
    // The producer's error says why first (a repository problem); the
    // upload's says what the engine saw.
    produced?;
    uploaded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_restore_is_interrupted_only_when_the_target_was_put_back() {
        let cause = || Error::Other("disk full".into());
        let put_back = || Ok("put back".to_string());
        let not_put_back = || Err("putting back failed".to_string());
        assert_eq!(
            failed(cause(), put_back(), true).class(),
            crate::ErrorClass::Interrupted
        );
        let e = failed(cause(), not_put_back(), true);
        assert_eq!(e.class(), crate::ErrorClass::Other);
        assert!(e.to_string().contains("putting back failed"), "{e}");
        let e = failed(cause(), put_back(), false);
        assert_eq!(e.class(), crate::ErrorClass::Other);
        assert!(e.to_string().contains("disk full"), "{e}");
        // A failure keeps its class, whatever was undone after it.
        let io = || Error::io("/target", std::io::Error::other("disk full"));
        let e = failed(io(), not_put_back(), false);
        assert_eq!(e.class(), crate::ErrorClass::Io);
        assert!(e.to_string().contains("putting back failed"), "{e}");
    }
}
