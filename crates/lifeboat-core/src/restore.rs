//! Restore: a snapshot back into a volume or a bind-mount directory.
//!
//! The steps: find the snapshot, check its whole tree before anything is
//! written, prepare the target (create the volume with its recorded driver,
//! options and labels, or make sure an existing one is empty), write, and
//! undo what this restore created when it fails. A non-empty target is
//! refused unless forced; forcing first snapshots what is about to be
//! overwritten, so every restore can be undone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;

use crate::backup::{Reader, ReaderChoice, backup_target};
use crate::dump::Database;
use crate::engine::{Engine, EngineVolume, HELPER_MOUNT, HelperSource, MountKind};
use crate::error::{Error, Result};
use crate::inventory::{InventoryOptions, discover};
use crate::progress::TransferProgress;
use crate::repo::{Repo, SnapshotInfo, SnapshotListing, TreeSummary};
use crate::spec::{PRE_RESTORE_TAG, TargetKind, TargetSpec};

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
const BRING_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

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
        Some("postgres") => Database::Postgres,
        Some("mariadb") => Database::Mariadb,
        Some("mysql") => Database::Mysql,
        Some("redis") => Database::Redis,
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
    if database == Database::Redis && request.database.is_some() {
        return Err(Error::BadRequest(
            "--database does not apply to Redis: the RDB holds all its databases".into(),
        ));
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
            let holding =
                crate::dump::holds_data(engine, &container.name, database, &manifest).await?;
            if !holding.is_empty() {
                if !request.force {
                    return Err(Error::BadRequest(format!(
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
                return Err(Error::BadRequest(format!(
                    "volume {volume} exists: bring the dump up on a new volume, or restore into the container that uses {volume} with --into"
                )));
            }
            let asked = rustic_core::jiff::Timestamp::now();
            let made = engine
                .create_volume(volume, "local", &Default::default(), &spec.labels)
                .await?;
            // The engine hands back a volume of that name made meanwhile by
            // someone else: that one is not lifeboat's to remove.
            let ours = made
                .created_at
                .as_deref()
                .and_then(|t| t.parse::<rustic_core::jiff::Timestamp>().ok())
                .is_none_or(|t| t.as_second() + 2 >= asked.as_second());
            match bring_up(engine, database, &manifest, volume, image).await {
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

    let only = request.database.as_deref();
    let fresh = temporary.is_some();
    let restored = match database {
        Database::Postgres => {
            crate::dump::postgres::restore_into(engine, &container, &manifest, &files, only, fresh)
                .await
        }
        Database::Mariadb | Database::Mysql => {
            crate::dump::mysql::restore_into(engine, &container, &manifest, &files, only, fresh)
                .await
        }
        Database::Redis => {
            let mut journal = crate::stop::Journal::new(engine, &request.state_dir);
            crate::dump::redis::restore_into(
                engine,
                &container,
                auto_remove,
                &manifest,
                &files,
                &mut journal,
            )
            .await
        }
    };
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
                Some(previous) => Error::Other(format!(
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
async fn find_container(engine: &Engine, wanted: &str) -> Result<crate::engine::EngineContainer> {
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
        [] => Err(Error::BadRequest(format!(
            "no container named {wanted} on this engine (ids need at least 12 characters)"
        ))),
        _ => Err(Error::BadRequest(format!(
            "{wanted} matches several containers"
        ))),
    }
}

/// Dumps what a database container holds now, as a `pre-restore` snapshot
/// of its data volume.
async fn dump_current(
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
            Error::BadRequest(format!(
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
        (_, error) => Err(Error::Other(format!(
            "not replacing the data of container {container}: dumping it first failed: {}",
            error.unwrap_or_default()
        ))),
    }
}

fn image_of(destination: &DumpDestination) -> &str {
    match destination {
        DumpDestination::NewVolume { image, .. } => image,
        DumpDestination::Container(name) => name,
    }
}

/// Starts a temporary container of the database's image on a new volume
/// and waits until the real server (not the init script's temporary one)
/// accepts connections. Its initial password is a random one: the dump's
/// roles and accounts bring back the original credentials.
async fn bring_up(
    engine: &Engine,
    database: Database,
    manifest: &crate::dump::DumpManifest,
    volume: &str,
    image: &str,
) -> Result<crate::engine::Helper> {
    let password = crate::random_hex(16);
    let setting = |key: &str| manifest.settings.get(key).cloned();
    let (env, args, server, ready): (Vec<String>, Vec<String>, &[&str], &str) = match database {
        Database::Postgres => {
            let mut env = vec![format!("POSTGRES_PASSWORD={password}")];
            for key in ["POSTGRES_USER", "POSTGRES_DB", "PGDATA"] {
                if let Some(v) = setting(key) {
                    env.push(format!("{key}={v}"));
                }
            }
            (env, Vec::new(), &["postgres"], "pg_isready -q")
        }
        Database::Mariadb | Database::Mysql => (
            vec![
                format!("MARIADB_ROOT_PASSWORD={password}"),
                format!("MYSQL_ROOT_PASSWORD={password}"),
            ],
            Vec::new(),
            &["mariadbd", "mysqld"],
            "mariadb-admin ping --silent 2>/dev/null || mysqladmin ping --silent",
        ),
        Database::Redis => {
            let args = if setting("appendonly").as_deref() == Some("yes") {
                vec!["--appendonly".to_string(), "yes".to_string()]
            } else {
                Vec::new()
            };
            (
                Vec::new(),
                args,
                &["redis-server"],
                "redis-cli ping | grep -q PONG",
            )
        }
    };
    let helper = engine
        .start_temporary(image, volume, &manifest.data_path, &env, &args)
        .await?;
    let check = format!(
        "case \"$(cat /proc/1/comm)\" in {}) ;; *) exit 1 ;; esac; {ready}",
        server.join("|")
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
        return Err(Error::BadRequest(match newest(false) {
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
            return Err(Error::BadRequest(format!(
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

/// Where the restored files go.
enum Destination {
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

/// The error of a restore that failed, or was stopped, and what was done
/// about the target: "interrupted" (130) only when the target is as it
/// was; otherwise the failure, with what was and was not undone.
fn failed(e: Error, undone: std::result::Result<String, String>, stopped: bool) -> Error {
    match (stopped, undone) {
        (true, Ok(undone)) => Error::Interrupted(format!("the restore was stopped; {undone}")),
        (true, Err(undone)) => Error::Other(format!("the restore was stopped; {undone}")),
        (false, Ok(undone) | Err(undone)) => Error::Other(format!("{e}; {undone}")),
    }
}

/// Why emptying a target failed, and whether it had changed anything by
/// then.
struct ClearFailed {
    error: Error,
    changed: bool,
}

/// A restore into one prepared target.
struct TargetRestore<'a> {
    engine: &'a Engine,
    repo: &'a Repo,
    destination: &'a Destination,
    /// The target's name (a volume's) or path, for messages.
    name: &'a str,
}

impl TargetRestore<'_> {
    /// Writes the snapshot into the target, and checks that the target
    /// holds exactly the snapshot. A target that held files is snapshotted
    /// first, emptied, and put back as it was when the restore fails or is
    /// stopped; one that was empty is emptied again. Returns the writer
    /// used and the snapshot of what was overwritten.
    async fn restore(
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
            return Err(Error::BadRequest(format!(
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
            return Err(Error::BadRequest(format!(
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
                return Err(Error::Other(format!(
                    "{error}; nothing was changed in {name}, and what it holds is in snapshot {id} too"
                )));
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
        Err(Error::BadRequest(format!(
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

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        // The repository library stops with a panic on some write errors
        // (a full disk among them).
        Error::Other(format!(
            "the restore stopped unexpectedly ({e}); is the target's disk full or read-only?"
        ))
    })?
}

/// Refuses to restore into the host's system directories or into the
/// engine's own storage (a volume is restored by its name, not its path).
async fn refuse_protected_path(engine: &Engine, path: &Path) -> Result<()> {
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if crate::inventory::is_host_system_path(&resolved) {
        return Err(Error::BadRequest(format!(
            "refusing to restore into {}: it is part of the host system; restore into a new directory",
            path.display()
        )));
    }
    if let Some(root) = engine.data_root().await?
        && resolved.starts_with(&root)
    {
        return Err(Error::BadRequest(format!(
            "refusing to restore into {}: it is inside the engine's storage ({root}); restore a volume by its name with --to NAME",
            path.display()
        )));
    }
    Ok(())
}

/// Restoring under a running container corrupts what it is doing, and what
/// it does corrupts the restore: refuse.
async fn refuse_if_running(engine: &Engine, kind: TargetKind, name: &str) -> Result<()> {
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
        Err(Error::BadRequest(format!(
            "{name} is in use by running container{} {}; stop {} before restoring into it",
            if running.len() == 1 { "" } else { "s" },
            running.join(", "),
            if running.len() == 1 { "it" } else { "them" }
        )))
    }
}

async fn prepare(
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
fn volume_host_dir(volume: &EngineVolume, here: bool) -> Option<PathBuf> {
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
fn bound_directory(volume: &EngineVolume) -> Option<PathBuf> {
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
fn refuse_tmpfs(destination: &Destination) -> Result<()> {
    let Destination::Volume { volume, .. } = destination else {
        return Ok(());
    };
    let fs = volume.options.get("type").map(String::as_str);
    if volume.driver == "local" && matches!(fs, Some("tmpfs" | "ramfs")) {
        return Err(Error::BadRequest(format!(
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
fn refuse_unclearable(destination: &Destination) -> Result<()> {
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
    Err(Error::BadRequest(format!(
        "volume {} cannot be emptied through the engine: its driver options ({}) keep its files when it is made again, and the engine can add files to a volume but not delete them; empty it yourself and restore without --force, or restore into a new volume with --to NAME",
        volume.name,
        options.join(", ")
    )))
}

fn choose_writer(destination: &Destination, choice: ReaderChoice) -> Result<Reader> {
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

fn helper_source(destination: &Destination) -> HelperSource {
    match destination {
        Destination::Volume { volume, .. } => HelperSource::Volume(volume.name.clone()),
        Destination::Directory { path, .. } => HelperSource::Bind(path.display().to_string()),
    }
}

/// The target's directory on this host, for the host-path writer.
fn host_dir(destination: &Destination) -> Result<PathBuf> {
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

async fn is_empty(engine: &Engine, destination: &Destination, writer: Reader) -> Result<bool> {
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

async fn snapshot_current(
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
        (_, error) => Err(Error::Other(format!(
            "not overwriting {name}: snapshotting its current content failed: {}",
            error.unwrap_or_default()
        ))),
    }
}

/// A directory that no container binds (restore `--to /some/dir`).
fn bare_bind_target(path: &str) -> crate::inventory::Target {
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
async fn clear(
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
        return Err(unchanged(Error::BadRequest(
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
async fn write(
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
                let stream =
                    crate::backup::stream_reader(engine, &helper, &format!("{HELPER_MOUNT}/."));
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
async fn upload(
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
            let out = crate::tarball::ChannelWriter::new(tx, progress.clone());
            let prefix = Path::new(HELPER_MOUNT.trim_start_matches('/'));
            crate::tarball::write_tree(&reader, &root, prefix, out, &progress)
        })
    };
    let stream = crate::tarball::receiver_stream(rx);
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
