//! Restoring a dump: the database's own tools fed the dump inside a running
//! container, or a new volume brought up by a temporary container of the
//! database's image; the row counts checked against those recorded at
//! backup, and what the container held dumped first when it is replaced.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::dump::Database;
use crate::dump::tools::{DatabaseTools, RestoreContext, ServerStart};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::inventory::{InventoryOptions, discover};
use crate::progress::TransferProgress;
use crate::repo::spec::PRE_RESTORE_TAG;
use crate::repo::{Repo, SnapshotInfo};

use super::{OnPrevious, blocking, find_snapshot};

/// Where a dump is restored.
#[derive(Clone, Debug)]
pub enum DumpDestination {
    /// A running database container.
    Container(String),
    /// A new volume, with the database brought up on it by a temporary
    /// container of this image.
    NewVolume { volume: String, image: String },
}

/// What to restore where.
#[derive(Clone, Debug)]
pub struct DumpRestoreRequest {
    /// A snapshot id (or a unique prefix), or `latest`.
    pub snapshot: String,
    /// The volume the dump was taken of.
    pub target: Option<String>,
    pub destination: DumpDestination,
    /// Where the journal of stopped containers lives (Redis restarts).
    pub state_dir: std::path::PathBuf,
    /// Only this database (for PostgreSQL and MariaDB/MySQL).
    pub database: Option<String>,
    /// Replace data the container holds, after dumping it into a
    /// `pre-restore` snapshot.
    pub force: bool,
    pub on_previous: OnPrevious,
}

/// What restoring a dump did.
#[derive(Clone, Debug, Serialize)]
pub struct DumpRestoreReport {
    pub snapshot: SnapshotInfo,
    /// The container restored into (a temporary one for a new volume).
    pub container: String,
    /// The volume made, when the dump was brought up on a new one.
    pub volume: Option<String>,
    pub database: Database,
    pub databases: Vec<crate::dump::RestoredDatabase>,
    /// The dump of what the container held before, when it was forced.
    pub previous_content: Option<SnapshotInfo>,
    pub seconds: f64,
}

impl DumpRestoreReport {
    /// Whether every restored table has the row count recorded at backup.
    pub fn verified(&self) -> bool {
        self.databases.iter().all(|d| d.mismatches.is_empty())
    }
}

/// How long a fresh database container may take to come up.
pub(super) const BRING_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// Restores a dump snapshot with the database's own tools, into a running
/// container or onto a new volume, and checks the row counts against
/// those recorded at backup.
pub async fn restore_dump(
    engine: &Engine,
    repo: &Repo,
    request: &DumpRestoreRequest,
    progress: Arc<TransferProgress>,
) -> Result<DumpRestoreReport> {
    let started = Instant::now();
    let (snapshot, spec) =
        find_snapshot(repo, &request.snapshot, request.target.as_deref()).await?;
    let database = match spec.extra("database") {
        Some(name) if let Some(database) = Database::from_dir_name(name) => database,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "restoring {other} dumps is not supported in this version"
            )));
        }
        None => {
            return Err(Error::BadRequest(format!(
                "snapshot {} holds files, not a database dump: restore it into a volume with --volume/--to",
                snapshot.short_id
            )));
        }
    };
    let tools = database.tools();
    if let Some(refusal) = tools.whole_dump_only()
        && request.database.is_some()
    {
        return Err(Error::BadRequest(refusal.into()));
    }
    let files = {
        let repo = repo.clone();
        let snapshot = snapshot.clone();
        let path = spec.snapshot_path();
        blocking(move || {
            let reader = Arc::new(repo.reader()?);
            let root = reader.root(&snapshot, &path.to_string_lossy())?;
            Ok(crate::dump::DumpFiles {
                reader,
                root,
                database,
                progress,
            })
        })
        .await?
    };
    let manifest = {
        let files = files.clone();
        blocking(move || files.manifest()).await?
    };

    let mut previous_content = None;
    let mut auto_remove = false;
    let (container, temporary, volume) = match &request.destination {
        DumpDestination::Container(name) => {
            let container = find_container(engine, name).await?;
            if !container.running {
                return Err(Error::BadRequest(format!(
                    "container {} is not running: start it, then restore into it",
                    container.name
                )));
            }
            let holding = tools.holds(engine, &container.name, &manifest).await?;
            if !holding.is_empty() {
                if !request.force {
                    return Err(Error::Refused(format!(
                        "container {} holds data the restore would replace ({}); add --force: what it holds is dumped into a snapshot first",
                        container.name,
                        holding.join(", ")
                    )));
                }
                let previous =
                    dump_current(engine, repo, &container.name, &request.state_dir).await?;
                request.on_previous.tell(&previous);
                previous_content = Some(previous);
            }
            auto_remove = container.auto_remove;
            (container.name, None, None)
        }
        DumpDestination::NewVolume { volume, image } => {
            crate::engine::check_volume_name(volume)?;
            if engine.volume(volume).await?.is_some() {
                return Err(Error::Refused(format!(
                    "volume {volume} exists: bring the dump up on a new volume, or restore into the container that uses {volume} with --into"
                )));
            }
            let asked = jiff::Timestamp::now();
            let made = engine
                .create_volume(volume, "local", &Default::default(), &spec.labels)
                .await?;
            // The engine hands back a volume of that name made meanwhile by
            // someone else: that one is not lifeboat's to remove.
            let ours = made
                .created_at
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_none_or(|t| t.as_second() + 2 >= asked.as_second());
            match bring_up(engine, tools, &manifest, volume, image).await {
                Ok(helper) => (
                    helper.id.clone(),
                    Some(helper),
                    ours.then(|| volume.clone()),
                ),
                Err(e) => {
                    if ours {
                        let _ = engine.remove_volume(volume).await;
                    }
                    return Err(e);
                }
            }
        }
    };

    let fresh = temporary.is_some();
    let mut journal = crate::journal::Journal::new(engine, &request.state_dir);
    let restored = tools
        .restore_into(RestoreContext {
            engine,
            container: &container,
            auto_remove,
            manifest: &manifest,
            files: &files,
            only: request.database.as_deref(),
            fresh,
            journal: &mut journal,
        })
        .await;
    if let Some(helper) = &temporary {
        // A clean shutdown, so the volume holds a database that starts.
        let stopped = engine.stop_container(&helper.id, Some(60)).await;
        if let Err(e) = engine.remove_helper(helper).await {
            tracing::warn!("{e}");
        }
        if let (Err(e), Ok(_)) = (&stopped, &restored) {
            tracing::warn!("{e}");
        }
    }
    let databases = match restored {
        Ok(d) => d,
        Err(e) => {
            if let Some(volume) = &volume {
                let _ = engine.remove_volume(volume).await;
            }
            return Err(match &previous_content {
                Some(previous) => e.context(|e| format!(
                    "{e}; what {container} held before is in snapshot {id}: `lifeboat restore {id} --into {container} --force` puts it back",
                    id = previous.short_id
                )),
                None => e,
            });
        }
    };
    Ok(DumpRestoreReport {
        snapshot,
        previous_content,
        container: if fresh {
            format!(
                "a temporary container of {}",
                image_of(&request.destination)
            )
        } else {
            container
        },
        volume,
        database,
        databases,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A container by its exact name, or by an id prefix long enough to be
/// unambiguous: a restore must not land in the wrong database.
pub(super) async fn find_container(
    engine: &Engine,
    wanted: &str,
) -> Result<crate::engine::EngineContainer> {
    let containers = engine.containers().await?;
    if let Some(c) = containers.iter().find(|c| c.name == wanted) {
        return Ok(c.clone());
    }
    let by_id: Vec<_> = containers
        .iter()
        .filter(|c| wanted.len() >= 12 && c.id.starts_with(wanted))
        .collect();
    match by_id.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::NotFound(format!(
            "no container named {wanted} on this engine (ids need at least 12 characters)"
        ))),
        _ => Err(Error::BadRequest(format!(
            "{wanted} matches several containers"
        ))),
    }
}

/// Dumps what a database container holds now, as a `pre-restore` snapshot
/// of its data volume.
pub(super) async fn dump_current(
    engine: &Engine,
    repo: &Repo,
    container: &str,
    state_dir: &std::path::Path,
) -> Result<SnapshotInfo> {
    let inventory = discover(
        engine,
        InventoryOptions {
            sizes: false,
            size_deadline: None,
        },
    )
    .await?;
    let targets: Vec<_> = inventory
        .targets
        .iter()
        .filter(|t| t.users.iter().any(|u| u.container == container))
        .cloned()
        .collect();
    let flags = crate::plan::StrategyFlags {
        all: Some(crate::plan::Strategy::Dump),
        ..Default::default()
    };
    let planned = crate::plan::plan(&inventory, &targets, &flags, &Default::default())
        .into_iter()
        .find(|p| p.dump.as_ref().is_some_and(|d| d.container == container))
        .ok_or_else(|| {
            Error::Refused(format!(
                "the data of container {container} is not in a volume, so it cannot be snapshotted before it is replaced; bring the dump up on a new volume with --to NAME --image IMAGE instead"
            ))
        })?;
    let result = crate::backup::backup_tagged(
        engine,
        repo,
        &planned,
        &[PRE_RESTORE_TAG.to_string()],
        state_dir,
        Arc::new(TransferProgress::default()),
    )
    .await;
    match (result.snapshot, result.error) {
        (Some(s), None) => Ok(s),
        // Nothing was changed: the class of why is the restore's.
        (_, error) => Err(Error::Context {
            class: result.failure.unwrap_or(crate::error::ErrorClass::Other),
            message: format!(
                "not replacing the data of container {container}: dumping it first failed: {}",
                error.unwrap_or_default()
            ),
        }),
    }
}

pub(super) fn image_of(destination: &DumpDestination) -> &str {
    match destination {
        DumpDestination::NewVolume { image, .. } => image,
        DumpDestination::Container(name) => name,
    }
}

/// Starts a temporary container of the database's image on a new volume
/// and waits until the real server (not the init script's temporary one)
/// accepts connections: over TCP on the container's loopback, which the
/// temporary server never listens on, or, for images whose server listens
/// on a socket only, on its socket once the server is PID 1. Its initial
/// password is a random one: the dump's roles and accounts bring back the
/// original credentials.
pub(super) async fn bring_up(
    engine: &Engine,
    tools: &dyn DatabaseTools,
    manifest: &crate::dump::DumpManifest,
    volume: &str,
    image: &str,
) -> Result<crate::engine::Helper> {
    let password = crate::random_hex(16);
    let ServerStart {
        env,
        args,
        processes,
        ready,
        ready_tcp,
    } = tools.server_start(manifest, &password);
    let helper = engine
        .start_temporary(image, volume, &manifest.data_path, &env, &args)
        .await?;
    let check = format!(
        "{{ {ready_tcp}; }} >/dev/null 2>&1 && exit 0; case \"$(cat /proc/1/comm)\" in {}) ;; *) exit 1 ;; esac; {ready}",
        processes.join("|")
    );
    let command = ["sh", "-c", check.as_str()].map(String::from);
    let started = Instant::now();
    loop {
        let out = engine.exec_collect(&helper.id, &command, None).await;
        if matches!(&out, Ok(o) if o.exit_code == 0) {
            return Ok(helper);
        }
        if !engine.is_running(&helper.id).await.unwrap_or(false)
            || started.elapsed() > BRING_UP_TIMEOUT
        {
            let _ = engine.remove_helper(&helper).await;
            return Err(Error::Other(format!(
                "a container of {image} on volume {volume} did not come up{}",
                if started.elapsed() > BRING_UP_TIMEOUT {
                    format!(" within {BRING_UP_TIMEOUT:?}")
                } else {
                    " (it stopped)".to_string()
                }
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
