//! The stack the rules look at: services, their mounts and the volumes
//! they use, filled alike from a compose file and from the engine.
//!
//! Every field that only one source can know is an `Option` (or empty):
//! `None` means "not known here", and a rule that needs it stays silent
//! rather than guess.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Finding, IGNORE_LABEL, Location};
use crate::engine::{ContainerMount, MountKind};
use crate::inventory::{Content, Inventory};
use crate::tmpfs::TmpfsSize;

/// What the rules look at.
#[derive(Clone, Debug, Serialize)]
pub struct Stack {
    pub origin: Origin,
    /// The compose project name (the prefix of its volumes' names).
    pub project: Option<String>,
    pub services: Vec<Service>,
    /// The volumes the stack declares (compose) or the engine has.
    pub volumes: Vec<VolumeDecl>,
    /// What was noticed while reading that is not a finding: a variable
    /// that is not set, a compose feature not followed.
    pub warnings: Vec<String>,
}

/// Where a stack was read from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Origin {
    /// A compose file, as the caller named it.
    Compose { file: PathBuf },
    /// A live engine, by its address.
    Engine { host: String },
}

/// A compose service or an engine container.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Service {
    /// The compose service's name, or the container's.
    pub name: String,
    /// `None` for a compose service that only has `build:`.
    pub image: Option<String>,
    /// The user the process runs as, as written: `999`, `999:999`,
    /// `postgres`. For the engine: the container's `User`, else the
    /// image's; `None` (or empty) is root.
    pub user: Option<String>,
    /// Supplementary groups (`group_add`), as written.
    pub group_add: Vec<String>,
    /// Whether the container runs: engine only.
    pub running: Option<bool>,
    /// How many containers a compose service starts (`scale`,
    /// `deploy.replicas`); 1 for an engine container.
    pub replicas: u32,
    /// The environment: compose's `environment` and `env_file`; for the
    /// engine the container's `Config.Env`, which includes the image's.
    pub environment: BTreeMap<String, String>,
    /// The entrypoint, split into words: compose's `entrypoint`, the
    /// engine's `Config.Entrypoint`.
    pub entrypoint: Vec<String>,
    /// The command, split into words: compose's `command`, the engine's
    /// `Config.Cmd`.
    pub command: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Services (or containers) this one needs.
    pub depends_on: Vec<String>,
    pub mounts: Vec<Mount>,
    /// The paths the image declares with `VOLUME`: asked of the engine;
    /// for a compose file, known only for the official database images.
    pub image_volumes: Option<Vec<String>>,
    /// The 1-based line of the service in its compose file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// What kind of storage a mount is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A named volume.
    Volume,
    /// A volume nobody named: `compose down -v` and `volume prune` delete it.
    Anonymous,
    /// A host path.
    Bind,
    /// Memory.
    Tmpfs,
    /// A Windows named pipe; no rule looks at it.
    Npipe,
}

/// One mount of a service.
#[derive(Clone, Debug, Serialize)]
pub struct Mount {
    pub kind: MountType,
    /// For volumes the engine's name of the volume (`<project>_<key>` for
    /// a compose volume without `name:`); for binds the absolute host path;
    /// `None` for tmpfs and for anonymous volumes not yet created.
    pub source: Option<String>,
    /// Where the container sees it.
    pub target: String,
    pub read_only: bool,
    /// The size limit of a tmpfs mount; `None` for no limit.
    pub tmpfs_size: Option<TmpfsSize>,
    /// For binds: whether the host path is a single file, when known.
    pub host_is_file: Option<bool>,
    /// For binds in a compose file whose source was written relative to
    /// the file (`./data`): the directory it is relative to. Where the
    /// project lives (`/usr/src/app`) is not a choice the mount makes.
    pub relative_to: Option<PathBuf>,
    /// Who owns the root of the mount: engine only.
    pub owner: Option<Owner>,
    /// The contents of `PG_VERSION` in the PostgreSQL data directory on
    /// this mount (such as `15`): engine only.
    pub pg_version: Option<String>,
    /// The 1-based line of the mount in its compose file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// The owner and mode of a mount's root directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    /// The permission bits (`0o755`), when known.
    pub mode: Option<u32>,
}

/// A volume of the stack.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VolumeDecl {
    /// The key under compose's top-level `volumes:`; the name for the engine.
    pub key: String,
    /// The engine's name of the volume.
    pub name: String,
    /// Declared `external: true`: compose neither creates nor removes it.
    pub external: bool,
    /// Whether the volume exists on the engine, when known.
    pub exists: Option<bool>,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// What it holds, when the engine side could tell (the inventory's
    /// guess from files and users).
    pub holds: Option<Content>,
    /// Its backup state, when a repository was looked at: engine only.
    pub backup: Option<BackupState>,
    /// The 1-based line of the volume in its compose file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// A volume's backup policy and newest good snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BackupState {
    /// The oldest the newest snapshot may be under the volume's policy,
    /// in seconds; `None` when no policy covers the volume.
    pub max_age_seconds: Option<u64>,
    /// When the newest snapshot that can be restored was taken, in seconds
    /// since the epoch; `None` for never.
    pub last_good: Option<i64>,
}

impl Stack {
    /// An empty stack read from `origin`.
    pub fn new(origin: Origin) -> Self {
        Self {
            origin,
            project: None,
            services: Vec::new(),
            volumes: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// What the inventory knows, as a stack: every container as a service
    /// with its mounts, every volume with its labels and guessed content.
    /// The engine side then adds what the inventory does not carry: users,
    /// environments, image `VOLUME`s, owners, `PG_VERSION` and backups.
    pub fn from_inventory(inventory: &Inventory) -> Self {
        let is_anonymous = |name: &str| {
            inventory
                .targets
                .iter()
                .any(|t| t.kind == MountKind::Volume && t.name == name && t.anonymous)
        };
        let services = inventory
            .containers
            .iter()
            .map(|c| Service {
                name: c.name.clone(),
                image: Some(c.image.clone()),
                running: Some(c.running),
                replicas: 1,
                labels: c.labels.clone(),
                depends_on: c.needs.clone(),
                mounts: c
                    .mounts
                    .iter()
                    .map(|m| engine_mount(m, m.name.as_deref().is_some_and(&is_anonymous)))
                    .collect(),
                ..Service::default()
            })
            .collect();
        let volumes = inventory
            .targets
            .iter()
            .filter(|t| t.kind == MountKind::Volume)
            .map(|t| VolumeDecl {
                key: t.name.clone(),
                name: t.name.clone(),
                exists: Some(true),
                driver: t.driver.clone(),
                driver_opts: t.driver_options.clone(),
                labels: t.labels.clone(),
                holds: Some(t.holds),
                ..VolumeDecl::default()
            })
            .collect();
        Self {
            services,
            volumes,
            ..Self::new(Origin::Engine {
                host: inventory.engine.clone(),
            })
        }
    }

    /// Looks at the host for the bind sources whose type is not known:
    /// whether each is a single file. Useful when the compose file is
    /// audited on the host it runs on; sources that do not exist stay
    /// unknown.
    pub fn inspect_bind_sources(&mut self) {
        for mount in self.services.iter_mut().flat_map(|s| &mut s.mounts) {
            if mount.kind != MountType::Bind || mount.host_is_file.is_some() {
                continue;
            }
            if let Some(source) = &mount.source {
                mount.host_is_file = std::fs::metadata(source).ok().map(|m| m.is_file());
            }
        }
    }

    /// The service of this name.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The volume of this engine name.
    pub fn volume(&self, name: &str) -> Option<&VolumeDecl> {
        self.volumes.iter().find(|v| v.name == name)
    }

    /// Where a finding about `subject` (a service, or else a volume) is,
    /// at `line` of the compose file when known.
    pub(super) fn locate(&self, subject: &str, line: Option<usize>) -> Location {
        let service = self.service(subject).map(|s| s.name.clone());
        match &self.origin {
            Origin::Compose { file } => Location::Compose {
                file: file.clone(),
                line: line.or_else(|| self.service(subject).and_then(|s| s.line)),
                service,
            },
            Origin::Engine { .. } => Location::Engine { container: service },
        }
    }

    /// Whether the finding's service or volume silences its rule.
    pub(super) fn ignores(&self, finding: &Finding) -> bool {
        let service = self.service(&finding.subject).map(|s| &s.labels);
        let volume = finding
            .volume
            .as_deref()
            .and_then(|v| self.volume(v))
            .map(|v| &v.labels);
        [service, volume]
            .into_iter()
            .flatten()
            .any(|labels| ignores_rule(labels, finding.rule))
    }
}

/// A container's mount as the engine reports it.
fn engine_mount(m: &ContainerMount, anonymous: bool) -> Mount {
    let (kind, source) = match m.kind {
        MountKind::Volume if anonymous => (MountType::Anonymous, m.name.clone()),
        MountKind::Volume => (MountType::Volume, m.name.clone()),
        MountKind::Bind => (MountType::Bind, m.source.clone()),
        MountKind::Tmpfs => (MountType::Tmpfs, None),
    };
    Mount {
        source,
        read_only: !m.read_write,
        tmpfs_size: m.tmpfs_size,
        ..Mount::new(kind, &m.destination)
    }
}

fn ignores_rule(labels: &BTreeMap<String, String>, rule: &str) -> bool {
    labels.get(IGNORE_LABEL).is_some_and(|list| {
        list.split(',')
            .any(|id| id.trim().eq_ignore_ascii_case(rule))
    })
}

impl Service {
    /// A service with nothing but a name and an image.
    pub fn new(name: &str, image: &str) -> Self {
        Self {
            name: name.into(),
            image: Some(image.into()),
            replicas: 1,
            ..Self::default()
        }
    }

    /// The numeric user and group the process runs as, where the `user`
    /// field gives them as numbers; `None` for names, which only the
    /// image's `/etc/passwd` could resolve.
    pub fn numeric_user(&self) -> (Option<u32>, Option<u32>) {
        let Some(user) = self
            .user
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        else {
            return (Some(0), Some(0));
        };
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user, None),
        };
        let number = |s: &str| {
            if s == "root" {
                Some(0)
            } else {
                s.parse::<u32>().ok()
            }
        };
        (number(uid), gid.and_then(number))
    }
}

impl Mount {
    /// A mount of `kind` at `target` with nothing else known.
    pub fn new(kind: MountType, target: &str) -> Self {
        Self {
            kind,
            source: None,
            target: target.into(),
            read_only: false,
            tmpfs_size: None,
            host_is_file: None,
            relative_to: None,
            owner: None,
            pg_version: None,
            line: None,
        }
    }

    /// The target without trailing slashes (but `/` stays `/`).
    pub(super) fn target_path(&self) -> &Path {
        Path::new(trim_slashes(&self.target))
    }

    /// The source without trailing slashes, when there is one.
    pub(super) fn source_path(&self) -> Option<&Path> {
        self.source.as_deref().map(|s| Path::new(trim_slashes(s)))
    }
}

fn trim_slashes(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() && path.starts_with('/') {
        "/"
    } else {
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineContainer;
    use crate::inventory::{MountUser, Size, Target};

    #[test]
    fn users_are_numeric_only_when_written_as_numbers() {
        let with = |user: Option<&str>| Service {
            user: user.map(String::from),
            ..Service::new("s", "img")
        };
        assert_eq!(with(None).numeric_user(), (Some(0), Some(0)));
        assert_eq!(with(Some("")).numeric_user(), (Some(0), Some(0)));
        assert_eq!(with(Some("999")).numeric_user(), (Some(999), None));
        assert_eq!(
            with(Some("1000:100")).numeric_user(),
            (Some(1000), Some(100))
        );
        assert_eq!(with(Some("root")).numeric_user(), (Some(0), None));
        assert_eq!(with(Some("postgres")).numeric_user(), (None, None));
        assert_eq!(with(Some("1000:staff")).numeric_user(), (Some(1000), None));
    }

    #[test]
    fn trailing_slashes_do_not_change_paths() {
        let mut m = Mount::new(MountType::Bind, "/var/lib/mysql/");
        m.source = Some("/".into());
        assert_eq!(m.target_path(), Path::new("/var/lib/mysql"));
        assert_eq!(m.source_path(), Some(Path::new("/")));
    }

    #[test]
    fn the_inventory_fills_services_and_volumes() {
        let anon = "f".repeat(64);
        let container = EngineContainer {
            id: "id-db".into(),
            name: "shop-db-1".into(),
            image: "postgres:16".into(),
            running: true,
            state: "running".into(),
            labels: BTreeMap::new(),
            mounts: vec![
                ContainerMount {
                    kind: MountKind::Volume,
                    name: Some(anon.clone()),
                    source: None,
                    destination: "/var/lib/postgresql/data".into(),
                    read_write: true,
                    tmpfs_size: None,
                },
                ContainerMount {
                    kind: MountKind::Bind,
                    name: None,
                    source: Some("/srv/init".into()),
                    destination: "/docker-entrypoint-initdb.d".into(),
                    read_write: false,
                    tmpfs_size: None,
                },
                ContainerMount {
                    kind: MountKind::Tmpfs,
                    name: None,
                    source: None,
                    destination: "/run".into(),
                    read_write: true,
                    tmpfs_size: Some(TmpfsSize::Percent(50)),
                },
            ],
            needs: vec!["shop-net-1".into()],
            auto_remove: false,
        };
        let volume = Target {
            kind: MountKind::Volume,
            name: anon.clone(),
            driver: Some("local".into()),
            driver_options: BTreeMap::new(),
            labels: BTreeMap::new(),
            host_path: None,
            anonymous: true,
            unused: false,
            users: vec![MountUser {
                container: "shop-db-1".into(),
                image: "postgres:16".into(),
                running: true,
                read_write: true,
                destination: "/var/lib/postgresql/data".into(),
                compose_project: None,
                compose_service: None,
            }],
            holds: Content::Postgres,
            size: Size::Pending,
            tmpfs_limit: None,
            last_snapshot: None,
            snapshot_count: 0,
            created_at: None,
        };
        let stack = Stack::from_inventory(&Inventory {
            engine: "unix:///var/run/docker.sock".into(),
            api_version: "1.41".into(),
            targets: vec![volume],
            containers: vec![container],
        });
        let db = stack.service("shop-db-1").expect("service");
        assert_eq!(db.running, Some(true));
        assert_eq!(db.depends_on, ["shop-net-1"]);
        let kinds: Vec<MountType> = db.mounts.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [MountType::Anonymous, MountType::Bind, MountType::Tmpfs]
        );
        assert_eq!(db.mounts[0].source.as_deref(), Some(anon.as_str()));
        assert!(db.mounts[1].read_only);
        assert_eq!(db.mounts[1].source.as_deref(), Some("/srv/init"));
        assert_eq!(db.mounts[2].tmpfs_size, Some(TmpfsSize::Percent(50)));
        let v = stack.volume(&anon).expect("volume");
        assert_eq!(v.holds, Some(Content::Postgres));
        assert_eq!(v.exists, Some(true));
    }

    #[test]
    fn bind_sources_are_inspected_when_they_exist() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("nginx.conf");
        std::fs::write(&file, "events {}\n")?;
        let mut stack = Stack::new(Origin::Compose {
            file: "compose.yaml".into(),
        });
        let mut service = Service::new("web", "nginx");
        for source in [
            file.clone(),
            dir.path().to_path_buf(),
            dir.path().join("missing"),
        ] {
            let mut m = Mount::new(MountType::Bind, "/x");
            m.source = Some(source.to_string_lossy().into_owned());
            service.mounts.push(m);
        }
        stack.services.push(service);
        stack.inspect_bind_sources();
        let known: Vec<Option<bool>> = stack.services[0]
            .mounts
            .iter()
            .map(|m| m.host_is_file)
            .collect();
        assert_eq!(known, [Some(true), Some(false), None]);
        Ok(())
    }
}
