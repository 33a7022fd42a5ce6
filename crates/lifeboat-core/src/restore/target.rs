//! The target of a file restore: made ready (a volume made with the
//! snapshot's driver, options and labels, or a directory), judged (system
//! paths, running containers, tmpfs and driver-option volumes refused),
//! and told apart by how it is written: a host path, or the engine.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;

use crate::backup::{Reader, ReaderChoice};
use crate::engine::{Engine, EngineVolume, HELPER_MOUNT, HelperSource, MountKind};
use crate::error::{Error, Result};
use crate::repo::spec::{TargetKind, TargetSpec};

/// Where the restored files go.
pub(super) enum Destination {
    Volume {
        volume: EngineVolume,
        created: bool,
        /// Where its files are on this host, when lifeboat can reach them
        /// there (see [`volume_host_dir`]).
        host_dir: Option<PathBuf>,
    },
    Directory {
        path: PathBuf,
        /// The outermost directory this restore created for it, if any.
        created: Option<PathBuf>,
    },
}

/// Refuses to restore into the host's system directories or into the
/// engine's own storage (a volume is restored by its name, not its path).
pub(super) async fn refuse_protected_path(engine: &Engine, path: &Path) -> Result<()> {
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if crate::inventory::is_host_system_path(&resolved) {
        return Err(Error::Refused(format!(
            "refusing to restore into {}: it is part of the host system; restore into a new directory",
            path.display()
        )));
    }
    if let Some(root) = engine.data_root().await?
        && resolved.starts_with(&root)
    {
        return Err(Error::Refused(format!(
            "refusing to restore into {}: it is inside the engine's storage ({root}); restore a volume by its name with --to NAME",
            path.display()
        )));
    }
    Ok(())
}

/// Restoring under a running container corrupts what it is doing, and what
/// it does corrupts the restore: refuse.
pub(super) async fn refuse_if_running(engine: &Engine, kind: TargetKind, name: &str) -> Result<()> {
    let mount_kind = match kind {
        TargetKind::Volume => MountKind::Volume,
        TargetKind::Bind => MountKind::Bind,
    };
    // A directory is in use when any running container's mount, of any
    // kind, is it, holds it or lies inside it; a volume's mount is where
    // the engine mounts it, and, for a volume bound to a directory, that
    // directory.
    let resolved = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let target = resolved(Path::new(name));
    let overlaps = |source: &Path| {
        let source = resolved(source);
        source.starts_with(&target) || target.starts_with(&source)
    };
    let bound: std::collections::HashMap<String, PathBuf> = match kind {
        TargetKind::Bind => engine
            .volumes()
            .await?
            .iter()
            .filter_map(|v| Some((v.name.clone(), bound_directory(v)?)))
            .collect(),
        TargetKind::Volume => Default::default(),
    };
    let running: Vec<String> = engine
        .containers()
        .await?
        .into_iter()
        .filter(|c| {
            c.running
                && c.mounts.iter().any(|m| match kind {
                    TargetKind::Volume => m.kind == mount_kind && m.name.as_deref() == Some(name),
                    TargetKind::Bind => {
                        m.source.as_deref().is_some_and(|s| overlaps(Path::new(s)))
                            || m.name
                                .as_ref()
                                .and_then(|n| bound.get(n))
                                .is_some_and(|d| overlaps(d))
                    }
                })
        })
        .map(|c| c.name)
        .collect();
    if running.is_empty() {
        Ok(())
    } else {
        Err(Error::Refused(format!(
            "{name} is in use by running container{} {}; stop {} before restoring into it",
            if running.len() == 1 { "" } else { "s" },
            running.join(", "),
            if running.len() == 1 { "it" } else { "them" }
        )))
    }
}

pub(super) async fn prepare(
    engine: &Engine,
    spec: &TargetSpec,
    kind: TargetKind,
    name: &str,
) -> Result<Destination> {
    match kind {
        TargetKind::Volume => {
            let here = engine.runs_here().await;
            if let Some(volume) = engine.volume(name).await? {
                return Ok(Destination::Volume {
                    host_dir: volume_host_dir(&volume, here),
                    volume,
                    created: false,
                });
            }
            let driver = spec.driver.as_deref().unwrap_or("local");
            let volume = engine
                .create_volume(name, driver, &spec.driver_options, &spec.labels)
                .await?;
            Ok(Destination::Volume {
                host_dir: volume_host_dir(&volume, here),
                volume,
                created: true,
            })
        }
        TargetKind::Bind => {
            let path = PathBuf::from(name);
            let created = path
                .ancestors()
                .take_while(|a| !a.exists())
                .last()
                .map(Path::to_path_buf);
            std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
            Ok(Destination::Directory { path, created })
        }
    }
}

/// Where a volume's files are on this host, when lifeboat can write them
/// there: a `local` volume's own directory, or the host directory a
/// `local` volume is bound to (`type=none,o=bind,device=DIR`), whose files
/// stay when the volume is removed, so that only there can they be
/// emptied. Other driver options (NFS, CIFS, a block device) are mounted
/// only while a container uses them: `None`, the engine writes those, as
/// it does every volume of an engine that does not run `here`.
pub(super) fn volume_host_dir(volume: &EngineVolume, here: bool) -> Option<PathBuf> {
    if volume.driver != "local" || !here {
        return None;
    }
    let mountpoint = Path::new(&volume.mountpoint);
    if volume.options.is_empty() {
        return mountpoint.is_dir().then(|| mountpoint.to_path_buf());
    }
    bound_directory(volume)
}

/// The directory a `local` volume is bound to (`type=none,o=bind,
/// device=DIR`), resolved, when it exists here.
pub(super) fn bound_directory(volume: &EngineVolume) -> Option<PathBuf> {
    let option = |key: &str| volume.options.get(key).map(String::as_str);
    let bound = volume.driver == "local"
        && option("type") == Some("none")
        && option("o").is_some_and(|o| o.split(',').any(|o| o == "bind" || o == "rbind"));
    let device = Path::new(option("device")?);
    if !bound || !device.is_absolute() {
        return None;
    }
    std::fs::canonicalize(device).ok().filter(|d| d.is_dir())
}

/// Refuses a volume that keeps its files only while it is mounted (a
/// tmpfs): lifeboat's helper is never started, so what it writes would
/// vanish when the engine unmounts the volume after the write, and a
/// restore would report files that no container ever sees.
pub(super) fn refuse_tmpfs(destination: &Destination) -> Result<()> {
    let Destination::Volume { volume, .. } = destination else {
        return Ok(());
    };
    let fs = volume.options.get("type").map(String::as_str);
    if volume.driver == "local" && matches!(fs, Some("tmpfs" | "ramfs")) {
        return Err(Error::Refused(format!(
            "volume {} is a {} volume: it holds files only while a container mounts it, so what lifeboat restores into it would be gone once written; restore into a directory (--to /PATH) and copy from there into the running container",
            volume.name,
            fs.unwrap_or_default()
        )));
    }
    Ok(())
}

/// Refuses, before anything is snapshotted or removed, to overwrite a
/// volume through the engine that the engine cannot empty: a `local`
/// volume with driver options keeps its files (on the bound directory,
/// the NFS share, the device) when it is removed and made again, and the
/// engine's archive API can add files but not delete them.
pub(super) fn refuse_unclearable(destination: &Destination) -> Result<()> {
    let Destination::Volume { volume, .. } = destination else {
        return Ok(());
    };
    if volume.driver != "local" || volume.options.is_empty() {
        return Ok(());
    }
    let options: Vec<String> = volume
        .options
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Err(Error::Refused(format!(
        "volume {} cannot be emptied through the engine: its driver options ({}) keep its files when it is made again, and the engine can add files to a volume but not delete them; empty it yourself and restore without --force, or restore into a new volume with --to NAME",
        volume.name,
        options.join(", ")
    )))
}

pub(super) fn choose_writer(destination: &Destination, choice: ReaderChoice) -> Result<Reader> {
    let host_path_ok = match destination {
        Destination::Directory { .. } => true,
        Destination::Volume { host_dir, .. } => host_dir.is_some(),
    };
    match (choice, host_path_ok) {
        (ReaderChoice::Engine, _) => Ok(Reader::Engine),
        (ReaderChoice::Host | ReaderChoice::Auto, true) => Ok(Reader::Host),
        (ReaderChoice::Auto, false) => Ok(Reader::Engine),
        (ReaderChoice::Host, false) => Err(Error::BadRequest(
            "the target cannot be written through a host path here; use the engine".to_string(),
        )),
    }
}

pub(super) fn helper_source(destination: &Destination) -> HelperSource {
    match destination {
        Destination::Volume { volume, .. } => HelperSource::Volume(volume.name.clone()),
        Destination::Directory { path, .. } => HelperSource::Bind(path.display().to_string()),
    }
}

/// The target's directory on this host, for the host-path writer.
pub(super) fn host_dir(destination: &Destination) -> Result<PathBuf> {
    match destination {
        Destination::Volume {
            host_dir: Some(dir),
            ..
        } => Ok(dir.clone()),
        Destination::Volume { volume, .. } => Err(Error::Other(format!(
            "volume {} has no directory on this host",
            volume.name
        ))),
        Destination::Directory { path, .. } => Ok(path.clone()),
    }
}

pub(super) async fn is_empty(
    engine: &Engine,
    destination: &Destination,
    writer: Reader,
) -> Result<bool> {
    if writer == Reader::Host {
        return crate::fsmeta::is_empty_dir(&host_dir(destination)?);
    }
    // Through the engine: the archive of an empty directory holds only the
    // directory itself.
    let helper = engine
        .create_helper(&helper_source(destination), true)
        .await?;
    let result = async {
        // The archive of an empty directory is a few kilobytes; anything
        // bigger holds files, and anything unreadable counts as not empty.
        const EMPTY_AT_MOST: usize = 64 << 10;
        let mut stream = Box::pin(engine.download(&helper, &format!("{HELPER_MOUNT}/.")));
        let mut archive_bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            archive_bytes.extend_from_slice(&chunk?);
            if archive_bytes.len() > EMPTY_AT_MOST {
                return Ok(false);
            }
        }
        let mut archive = tar::Archive::new(archive_bytes.as_slice());
        let Ok(entries) = archive.entries() else {
            return Ok(false);
        };
        let mut count = 0;
        for entry in entries {
            if entry.is_err() {
                return Ok(false);
            }
            count += 1;
        }
        Ok(count <= 1)
    }
    .await;
    if let Err(e) = engine.remove_helper(&helper).await {
        tracing::warn!("{e}");
    }
    result
}
