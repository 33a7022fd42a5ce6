//! The inventory: every named volume, bind mount and tmpfs mount on the
//! engine, who mounts it, what it probably holds, how big it is and when it
//! was last backed up.
//!
//! Sizes are computed in parallel on the host paths that lifeboat can read;
//! a size that is not ready by the deadline is reported as pending rather
//! than holding up the rest.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::engine::{Engine, EngineContainer, EngineVolume, MountKind};
use crate::error::Result;
use crate::repo::SnapshotInfo;
use crate::repo::spec::{TargetKind, TargetSpec};
use crate::tmpfs::TmpfsSize;

/// Bind-mount sources that are parts of the host, not data of containers:
/// `backup --all` leaves them out.
const HOST_SYSTEM_PATHS: &[&str] = &[
    "/",
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/boot",
    "/usr",
    "/lib",
    "/bin",
    "/sbin",
    "/etc",
];

/// Everything the inventory found.
#[derive(Clone, Debug, Serialize)]
pub struct Inventory {
    pub engine: String,
    pub api_version: String,
    pub targets: Vec<Target>,
    /// The containers the targets' users were found in, with their labels.
    #[serde(skip)]
    pub containers: Vec<EngineContainer>,
}

/// A volume, bind mount or tmpfs mount.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub kind: MountKind,
    /// The volume's name, the bind mount's host path, or for tmpfs
    /// `CONTAINER:PATH`.
    pub name: String,
    pub driver: Option<String>,
    pub driver_options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Where the data is on the host, when the engine says.
    pub host_path: Option<String>,
    /// A volume the engine named itself (a 64-hex-digit id): `docker
    /// volume prune` and `compose down -v` delete those without asking.
    pub anonymous: bool,
    /// No container, running or not, mounts it.
    pub unused: bool,
    pub users: Vec<MountUser>,
    pub holds: Content,
    pub size: Size,
    /// The size limit of a tmpfs mount.
    pub tmpfs_limit: Option<TmpfsSize>,
    /// The time of the newest snapshot of this target, `None` for never.
    pub last_snapshot: Option<String>,
    pub snapshot_count: usize,
    pub created_at: Option<String>,
}

/// A container that mounts a target.
#[derive(Clone, Debug, Serialize)]
pub struct MountUser {
    pub container: String,
    pub image: String,
    pub running: bool,
    pub read_write: bool,
    pub destination: String,
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
}

/// What a target probably holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    Postgres,
    Mariadb,
    Mysql,
    Redis,
    Mongo,
    Cache,
    Files,
}

impl std::fmt::Display for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Self::Postgres => "postgres",
            Self::Mariadb => "mariadb",
            Self::Mysql => "mysql",
            Self::Redis => "redis",
            Self::Mongo => "mongo",
            Self::Cache => "cache",
            Self::Files => "files",
        };
        f.write_str(s)
    }
}

/// The size of a target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Size {
    /// Counted: apparent bytes of its files (hard links once) and the
    /// number of entries that are not directories.
    Known { bytes: u64, files: u64 },
    /// Still being counted when the deadline passed.
    Pending,
    /// Cannot be counted from here, and why.
    Unknown { reason: String },
}

/// How the inventory is taken.
#[derive(Clone, Copy, Debug)]
pub struct InventoryOptions {
    /// How long to wait for sizes; `None` waits for all of them.
    pub size_deadline: Option<Duration>,
    /// Whether to count sizes at all.
    pub sizes: bool,
}

impl Default for InventoryOptions {
    fn default() -> Self {
        Self {
            size_deadline: Some(Duration::from_secs(3)),
            sizes: true,
        }
    }
}

impl Target {
    /// The snapshot spec of a volume or bind mount (not of tmpfs).
    pub fn spec(&self) -> Option<TargetSpec> {
        let kind = match self.kind {
            MountKind::Volume => TargetKind::Volume,
            MountKind::Bind => TargetKind::Bind,
            MountKind::Tmpfs => return None,
        };
        let mut containers: Vec<String> = self.users.iter().map(|u| u.container.clone()).collect();
        containers.sort();
        containers.dedup();
        let mut images: Vec<String> = self.users.iter().map(|u| u.image.clone()).collect();
        images.sort();
        images.dedup();
        let compose_project = self
            .labels
            .get("com.docker.compose.project")
            .cloned()
            .or_else(|| self.users.iter().find_map(|u| u.compose_project.clone()));
        Some(TargetSpec {
            kind: Some(kind),
            name: self.name.clone(),
            driver: self.driver.clone(),
            driver_options: self.driver_options.clone(),
            labels: self.labels.clone(),
            containers,
            images,
            compose_project,
            extra_tags: Vec::new(),
        })
    }

    /// Whether `backup --all` takes this target: every named volume, and
    /// bind-mounted directories that are container data rather than parts
    /// of the host system.
    pub fn in_backup_all(&self) -> bool {
        match self.kind {
            MountKind::Volume => true,
            MountKind::Tmpfs => false,
            MountKind::Bind => {
                let path = Path::new(&self.name);
                !is_host_system_path(path) && path.is_dir()
            }
        }
    }

    /// Whether lifeboat can read the target's files directly on this host.
    /// Volumes with driver options (NFS, CIFS, a block device) are mounted
    /// only while a container uses them, so their host path is not
    /// trustworthy: the engine reader serves them.
    pub fn host_readable(&self) -> bool {
        let Some(path) = &self.host_path else {
            return false;
        };
        if self.kind == MountKind::Volume
            && (self.driver.as_deref() != Some("local") || !self.driver_options.is_empty())
        {
            return false;
        }
        std::fs::read_dir(path).is_ok()
            || (self.kind == MountKind::Bind && std::fs::metadata(path).is_ok_and(|m| m.is_file()))
    }
}

pub(crate) fn is_host_system_path(path: &Path) -> bool {
    HOST_SYSTEM_PATHS.iter().any(|p| path == Path::new(p))
        || ["/proc", "/sys", "/dev"]
            .iter()
            .any(|p| path.starts_with(p))
        || path.ends_with("docker.sock")
}

/// Takes the inventory of the engine.
pub async fn discover(engine: &Engine, options: InventoryOptions) -> Result<Inventory> {
    let (volumes, containers) = tokio::try_join!(engine.volumes(), engine.containers())?;
    let mut targets = assemble(&volumes, &containers);
    if !engine.runs_here().await {
        // Its paths are another host's: whatever is here under the same
        // names is not its data.
        for t in &mut targets {
            t.host_path = None;
        }
    }
    if options.sizes {
        measure_sizes(&mut targets, options.size_deadline).await;
    } else {
        for t in &mut targets {
            t.size = Size::Unknown {
                reason: "not counted".to_string(),
            };
        }
    }
    Ok(Inventory {
        engine: engine.host().to_string(),
        api_version: engine.api_version(),
        targets,
        containers,
    })
}

/// Joins volumes and container mounts into targets.
pub(crate) fn assemble(volumes: &[EngineVolume], containers: &[EngineContainer]) -> Vec<Target> {
    let mut targets: Vec<Target> = volumes
        .iter()
        .map(|v| Target {
            kind: MountKind::Volume,
            name: v.name.clone(),
            driver: Some(v.driver.clone()),
            driver_options: v.options.clone(),
            labels: v.labels.clone(),
            host_path: Some(v.mountpoint.clone()).filter(|m| !m.is_empty()),
            anonymous: is_anonymous(v),
            unused: true,
            users: Vec::new(),
            holds: Content::Files,
            size: Size::Pending,
            tmpfs_limit: None,
            last_snapshot: None,
            snapshot_count: 0,
            created_at: v.created_at.clone(),
        })
        .collect();

    for c in containers {
        for m in &c.mounts {
            let user = MountUser {
                container: c.name.clone(),
                image: c.image.clone(),
                running: c.running,
                read_write: m.read_write,
                destination: m.destination.clone(),
                compose_project: c.labels.get("com.docker.compose.project").cloned(),
                compose_service: c.labels.get("com.docker.compose.service").cloned(),
            };
            let key = match m.kind {
                MountKind::Volume => m.name.clone().unwrap_or_default(),
                MountKind::Bind => m.source.clone().unwrap_or_default(),
                MountKind::Tmpfs => format!("{}:{}", c.name, m.destination),
            };
            if let Some(t) = targets
                .iter_mut()
                .find(|t| t.kind == m.kind && t.name == key)
            {
                t.users.push(user);
                continue;
            }
            targets.push(Target {
                kind: m.kind,
                name: key,
                driver: None,
                driver_options: BTreeMap::new(),
                labels: BTreeMap::new(),
                host_path: m.source.clone().filter(|_| m.kind == MountKind::Bind),
                anonymous: false,
                unused: false,
                users: vec![user],
                holds: Content::Files,
                size: if m.kind == MountKind::Tmpfs {
                    Size::Unknown {
                        reason: "tmpfs lives in the container's memory".to_string(),
                    }
                } else {
                    Size::Pending
                },
                tmpfs_limit: m.tmpfs_size,
                last_snapshot: None,
                snapshot_count: 0,
                created_at: None,
            });
        }
    }
    for t in &mut targets {
        t.unused = t.users.is_empty();
        t.holds = guess_content(t);
    }
    targets.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    targets
}

fn is_anonymous(v: &EngineVolume) -> bool {
    v.labels.contains_key("com.docker.volume.anonymous")
        || (v.name.len() == 64 && v.name.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The name of an image without registry, path, tag or digest:
/// `registry.example/lib/postgres:15@sha256:...` → `postgres`.
pub(crate) fn image_base(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last).to_ascii_lowercase()
}

/// The database an image runs, recognised by its name alone
/// (`bitnami/postgresql:15`, `mariadb:11`, `valkey/valkey:8`).
pub(crate) fn image_database(image: &str) -> Option<Content> {
    let image = image_base(image);
    if ["postgres", "postgis", "timescaledb", "pgvector"]
        .iter()
        .any(|n| image.contains(n))
    {
        Some(Content::Postgres)
    } else if image.contains("mariadb") {
        Some(Content::Mariadb)
    } else if image.contains("mysql") || image.contains("percona") {
        Some(Content::Mysql)
    } else if ["redis", "valkey", "keydb"]
        .iter()
        .any(|n| image.contains(n))
    {
        Some(Content::Redis)
    } else if image.contains("mongo") {
        Some(Content::Mongo)
    } else {
        None
    }
}

/// The data directory of a database in its official image, by default.
/// PostgreSQL's moves with `PGDATA` and, from version 18, with the
/// version; callers that know the container say so.
pub(crate) fn data_dir(content: Content) -> Option<&'static str> {
    match content {
        Content::Postgres => Some("/var/lib/postgresql/data"),
        Content::Mariadb | Content::Mysql => Some("/var/lib/mysql"),
        Content::Redis => Some("/data"),
        Content::Mongo => Some("/data/db"),
        Content::Cache | Content::Files => None,
    }
}

/// Whether a mount at `destination` holds a database's data: its data
/// directory, or for PostgreSQL anything under `/var/lib/postgresql` (the
/// versioned layout of 18 and later included), for MongoDB its
/// configuration database too.
pub(crate) fn is_data_mount(content: Content, destination: &str) -> bool {
    let dest = destination.trim_end_matches('/');
    match content {
        Content::Postgres => dest.starts_with("/var/lib/postgresql"),
        Content::Mongo => dest == "/data/db" || dest == "/data/configdb",
        other => data_dir(other) == Some(dest),
    }
}

/// What a database container mounts: which database, and whether the
/// mount is that database's data directory.
pub(crate) fn database_mount(user: &MountUser) -> Option<(Content, bool)> {
    let content = image_database(&user.image)?;
    Some((content, is_data_mount(content, &user.destination)))
}

/// Guesses what a target holds from its files (when readable), the images
/// that mount it and where they mount it.
pub(crate) fn guess_content(t: &Target) -> Content {
    if t.kind != MountKind::Tmpfs
        && t.host_readable()
        && let Some(c) = t.host_path.as_deref().and_then(|p| sniff(Path::new(p)))
    {
        return c;
    }
    let mut cache_hint = t.name.contains("cache");
    for u in &t.users {
        let dest = u.destination.trim_end_matches('/');
        match database_mount(u) {
            Some((content, true)) => return content,
            Some((_, false)) => {}
            None => {
                if dest.starts_with("/var/lib/postgresql") {
                    return Content::Postgres;
                }
                if dest == "/var/lib/mysql" {
                    return Content::Mysql;
                }
            }
        }
        if dest.contains("cache") || dest == "/tmp" || dest.ends_with("/tmp") {
            cache_hint = true;
        }
    }
    if cache_hint {
        Content::Cache
    } else {
        Content::Files
    }
}

/// Recognises a database's data directory by its files.
fn sniff(root: &Path) -> Option<Content> {
    let has = |name: &str| root.join(name).exists();
    if has("PG_VERSION") {
        Some(Content::Postgres)
    } else if has("aria_log_control") {
        Some(Content::Mariadb)
    } else if has("ibdata1") || has("mysql.ibd") {
        Some(Content::Mysql)
    } else if has("dump.rdb") || has("appendonlydir") || has("appendonly.aof") {
        Some(Content::Redis)
    } else if has("WiredTiger") {
        Some(Content::Mongo)
    } else {
        None
    }
}

/// Counts sizes of all readable targets in parallel, until the deadline.
async fn measure_sizes(targets: &mut [Target], deadline: Option<Duration>) {
    let start = Instant::now();
    let mut jobs = Vec::new();
    for (i, t) in targets.iter_mut().enumerate() {
        if t.kind == MountKind::Tmpfs {
            continue;
        }
        if !t.host_readable() {
            t.size = Size::Unknown {
                reason: "not readable from this host (remote engine or driver options)".to_string(),
            };
            continue;
        }
        let Some(path) = t.host_path.clone() else {
            continue;
        };
        jobs.push((
            i,
            tokio::task::spawn_blocking(move || count(Path::new(&path))),
        ));
    }
    for (i, job) in jobs {
        let remaining = deadline.map(|d| d.saturating_sub(start.elapsed()));
        let result = match remaining {
            Some(left) => tokio::time::timeout(left, job).await.ok(),
            None => Some(job.await),
        };
        targets[i].size = match result {
            None => Size::Pending,
            Some(Ok(Ok((bytes, files)))) => Size::Known { bytes, files },
            Some(Ok(Err(e))) => Size::Unknown {
                reason: e.to_string(),
            },
            Some(Err(e)) => Size::Unknown {
                reason: e.to_string(),
            },
        };
    }
}

/// Apparent bytes and non-directory entries below `root`, hard links
/// counted once for bytes, symbolic links not followed.
pub(crate) fn count(root: &Path) -> std::io::Result<(u64, u64)> {
    let meta = std::fs::symlink_metadata(root)?;
    if !meta.is_dir() {
        return Ok((meta.len(), 1));
    }
    let mut bytes = 0u64;
    let mut files = 0u64;
    let mut seen = HashSet::new();
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // A directory removed while counting is not an error of ours.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Ok(m) = entry.metadata() else { continue };
            if m.is_dir() {
                stack.push(entry.path());
                continue;
            }
            files += 1;
            if m.is_file() && (m.nlink() == 1 || seen.insert((m.dev(), m.ino()))) {
                bytes += m.len();
            }
        }
    }
    Ok((bytes, files))
}

/// Fills in each target's newest snapshot from the repository's list.
pub fn attach_snapshots(inventory: &mut Inventory, snapshots: &[SnapshotInfo]) {
    for t in &mut inventory.targets {
        let Some(kind) = (match t.kind {
            MountKind::Volume => Some(TargetKind::Volume),
            MountKind::Bind => Some(TargetKind::Bind),
            MountKind::Tmpfs => None,
        }) else {
            continue;
        };
        let mine = restore_points(snapshots, kind, &t.name);
        t.snapshot_count = mine.len();
        t.last_snapshot = mine
            .iter()
            .max_by_key(|s| s.epoch_seconds())
            .map(|s| s.time.clone());
    }
}

/// The snapshots of one volume or bind mount that can be restored, taken
/// on this host: not the undo copies of restores, not the first passes of
/// stopped backups, and not a volume of the same name on another host,
/// backed up into a shared repository, which holds other data.
pub(crate) fn restore_points<'a>(
    snapshots: &'a [SnapshotInfo],
    kind: TargetKind,
    name: &str,
) -> Vec<&'a SnapshotInfo> {
    restore_points_of(snapshots, kind, name, &crate::host::hostname())
}

/// [`restore_points`] of the host named `host`.
fn restore_points_of<'a>(
    snapshots: &'a [SnapshotInfo],
    kind: TargetKind,
    name: &str,
    host: &str,
) -> Vec<&'a SnapshotInfo> {
    snapshots
        .iter()
        .filter(|s| {
            s.hostname == host
                && TargetSpec::from_tags(&s.tags).is_some_and(|spec| {
                    spec.kind == Some(kind) && spec.name == name && spec.is_restore_point()
                })
        })
        .collect()
}

#[cfg(test)]
mod tests;
