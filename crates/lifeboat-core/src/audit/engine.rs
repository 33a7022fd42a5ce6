//! The audit's engine side: a [`Stack`] of a running engine.
//!
//! It starts from what the inventory knows ([`Stack::from_inventory`]) and
//! adds what only the engine and this host can tell: how each container's
//! process runs (user, groups, environment, entrypoint, command) and what
//! its image declares (`VOLUME`s), who owns the root of each writable
//! volume and bind mount and the `PG_VERSION` of PostgreSQL data (both read
//! through the host path, when lifeboat can read it), and each volume's
//! backup state (its policy from [`crate::config::max_age`], its newest
//! restore point from the repository's snapshots).
//!
//! It never guesses: a fact it cannot read stays `None`, so the rules that
//! need it stay silent, and a line in [`Stack::warnings`] says what was
//! not checked and why. It talks to the engine only through
//! [`crate::engine`] and never to the repository: the caller passes the
//! snapshots in.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt};

use super::images::database_data;
use super::model::{BackupState, MountType, Owner, Service, Stack};
use crate::config::{Config, max_age};
use crate::engine::{ContainerProcess, Engine, ImageConfig, MountKind};
use crate::error::Result;
use crate::inventory::{Content, Inventory, Target, restore_points};
use crate::repo::SnapshotInfo;
use crate::repo::spec::TargetKind;

/// How many containers and images are inspected at once.
const PARALLEL_INSPECTIONS: usize = 8;

/// The stack of the engine the inventory was taken from.
///
/// `snapshots` are the repository's, `None` when the repository could not
/// be read (then no volume has a backup state, and the backup rule stays
/// silent); an empty list means that there is no snapshot at all (for
/// example, no repository yet). `config` gives the backup policies of the
/// configuration file.
pub async fn engine_stack(
    engine: &Engine,
    inventory: &Inventory,
    snapshots: Option<&[SnapshotInfo]>,
    config: &Config,
) -> Result<Stack> {
    let mut stack = Stack::from_inventory(inventory);
    let processes = processes(engine, inventory).await?;
    let images = image_configs(engine, processes.values().flatten()).await?;
    for service in &mut stack.services {
        match processes.get(&service.name) {
            Some(Some(process)) => {
                let image = images.get(&process.image_id).and_then(Option::as_ref);
                fill_process(service, process, image);
                if image.is_none() {
                    stack.warnings.push(format!(
                        "container {}: its image {} is gone from the engine: the image's VOLUMEs are not known",
                        service.name,
                        service.image.as_deref().unwrap_or(&process.image_id)
                    ));
                }
            }
            _ => stack.warnings.push(format!(
                "container {} was removed while the audit read it: only its mounts are checked",
                service.name
            )),
        }
    }
    stack.inspect_bind_sources();
    // Owners are judged only on an engine known to map no users.
    let remapping = engine.user_remapping().await.unwrap_or_else(|e| {
        tracing::warn!("{e}");
        Some("a user mapping not known here (the engine's information could not be read)")
    });
    read_mount_roots(&mut stack, inventory, remapping);
    attach_backups(&mut stack, inventory, snapshots, config);
    Ok(stack)
}

/// How each container's process runs, by container name; `None` for a
/// container removed since the inventory was taken.
async fn processes(
    engine: &Engine,
    inventory: &Inventory,
) -> Result<BTreeMap<String, Option<ContainerProcess>>> {
    futures_util::stream::iter(&inventory.containers)
        .map(|c| async move {
            let process = engine.container_process(&c.id).await?;
            Ok::<_, crate::Error>((c.name.clone(), process))
        })
        .buffer_unordered(PARALLEL_INSPECTIONS)
        .try_collect()
        .await
}

/// The configuration of each image the containers were made from, by id;
/// `None` for an image the engine no longer has.
async fn image_configs(
    engine: &Engine,
    processes: impl Iterator<Item = &ContainerProcess>,
) -> Result<BTreeMap<String, Option<ImageConfig>>> {
    let ids: BTreeSet<&str> = processes
        .map(|p| p.image_id.as_str())
        .filter(|id| !id.is_empty())
        .collect();
    futures_util::stream::iter(ids)
        .map(|id| async move {
            let config = engine.image_config(id).await?;
            Ok::<_, crate::Error>((id.to_string(), config))
        })
        .buffer_unordered(PARALLEL_INSPECTIONS)
        .try_collect()
        .await
}

/// Copies what the engine says of a container's process into its service.
fn fill_process(service: &mut Service, process: &ContainerProcess, image: Option<&ImageConfig>) {
    let user = Some(process.user.as_str())
        .filter(|u| !u.is_empty())
        .or_else(|| image.map(|i| i.user.as_str()).filter(|u| !u.is_empty()));
    service.user = user.map(String::from);
    service.group_add.clone_from(&process.group_add);
    service.environment = process
        .env
        .iter()
        .filter_map(|entry| entry.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    service.entrypoint.clone_from(&process.entrypoint);
    service.command.clone_from(&process.cmd);
    service.image_volumes = image.map(|i| i.volumes.clone());
}

/// Reads, through the host path, the owner of each writable volume's and
/// bind mount's root, and the `PG_VERSION` of PostgreSQL data. Where the
/// host path cannot be read and the fact would matter, a warning says so.
/// Under a `remapping` of users (rootless, `userns-remap`) the host's
/// owners are not the container's users: owners are not read.
fn read_mount_roots(stack: &mut Stack, inventory: &Inventory, remapping: Option<&str>) {
    let mut warned = BTreeSet::new();
    let mut warnings = Vec::new();
    let mut skipped_owners = false;
    for service in &mut stack.services {
        let postgres = postgres_data(service);
        let (uid, _) = service.numeric_user();
        let owner_matters = uid.is_some_and(|uid| uid != 0);
        skipped_owners |= owner_matters && remapping.is_some();
        let owner_matters = owner_matters && remapping.is_none();
        let name = service.name.clone();
        for (i, mount) in service.mounts.iter_mut().enumerate() {
            let kind = match mount.kind {
                MountType::Volume | MountType::Anonymous => MountKind::Volume,
                MountType::Bind => MountKind::Bind,
                MountType::Tmpfs | MountType::Npipe => continue,
            };
            let pg_relative = postgres
                .as_ref()
                .filter(|(index, _)| *index == i)
                .map(|(_, relative)| relative);
            let wants_owner =
                remapping.is_none() && !mount.read_only && mount.host_is_file != Some(true);
            if !wants_owner && pg_relative.is_none() {
                continue;
            }
            let Some(source) = mount.source.as_deref() else {
                continue;
            };
            let Some(root) = readable_root(inventory, kind, source) else {
                if (wants_owner && owner_matters) || pg_relative.is_some() {
                    let what = if kind == MountKind::Bind {
                        "bind mount"
                    } else {
                        "volume"
                    };
                    if warned.insert((kind, source.to_string())) {
                        warnings.push(format!(
                            "{what} {source} (mounted by {name} at {}) cannot be read from this host: its owner{} not checked",
                            mount.target,
                            if pg_relative.is_some() {
                                " and PG_VERSION are"
                            } else {
                                " is"
                            }
                        ));
                    }
                }
                continue;
            };
            if wants_owner {
                mount.owner = owner_of(&root);
            }
            if let Some(relative) = pg_relative {
                mount.pg_version =
                    read_pg_version(&root.join(relative)).or_else(|| read_pg_version(&root));
            }
        }
    }
    if let Some(remapping) = remapping.filter(|_| skipped_owners) {
        warnings.push(format!(
            "the engine runs with {remapping}: container users are not the host's, so who may write the mounts is not checked"
        ));
    }
    stack.warnings.extend(warnings);
}

/// For a PostgreSQL server: the index of the mount that holds its data
/// directory, and where the directory is below the mount's root.
fn postgres_data(service: &Service) -> Option<(usize, PathBuf)> {
    let data = database_data(service).filter(|d| d.content == Content::Postgres)?;
    let mount = data.mount?;
    let index = service.mounts.iter().position(|m| std::ptr::eq(m, mount))?;
    let relative = Path::new(&data.dir)
        .strip_prefix(mount.target_path())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    Some((index, relative))
}

/// The host path of a volume or bind mount, when lifeboat can read it here.
fn readable_root(inventory: &Inventory, kind: MountKind, source: &str) -> Option<PathBuf> {
    let target: &Target = inventory
        .targets
        .iter()
        .find(|t| t.kind == kind && t.name == source)?;
    if !target.host_readable() {
        return None;
    }
    target.host_path.as_deref().map(PathBuf::from)
}

fn owner_of(path: &Path) -> Option<Owner> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Owner {
        uid: meta.uid(),
        gid: meta.gid(),
        mode: Some(meta.mode() & 0o7777),
    })
}

/// The first line of `PG_VERSION` in `dir`, when there is one. The file
/// holds a version such as `15`: more than a few bytes is not one.
fn read_pg_version(dir: &Path) -> Option<String> {
    let file = std::fs::File::open(dir.join("PG_VERSION")).ok()?;
    let mut text = String::new();
    file.take(64).read_to_string(&mut text).ok()?;
    let version = text.lines().next().unwrap_or_default().trim();
    (!version.is_empty()).then(|| version.to_string())
}

/// Gives each volume its backup state: the policy of the label or the
/// configuration file, and the newest snapshot that can be restored.
fn attach_backups(
    stack: &mut Stack,
    inventory: &Inventory,
    snapshots: Option<&[SnapshotInfo]>,
    config: &Config,
) {
    for volume in &mut stack.volumes {
        let Some(target) = inventory
            .targets
            .iter()
            .find(|t| t.kind == MountKind::Volume && t.name == volume.name)
        else {
            continue;
        };
        let policy = match max_age(target, config) {
            Ok(policy) => policy.map(|(age, _)| age.seconds()),
            Err(e) => {
                stack
                    .warnings
                    .push(format!("{e}; the volume is audited as having no policy"));
                None
            }
        };
        let Some(snapshots) = snapshots else {
            continue;
        };
        let last_good = restore_points(snapshots, TargetKind::Volume, &volume.name)
            .iter()
            .map(|s| s.epoch_seconds())
            .max();
        volume.backup = Some(BackupState {
            max_age_seconds: policy,
            last_good,
        });
    }
    let bind_policies: Vec<&str> = config
        .bind
        .iter()
        .filter(|(_, t)| t.max_age.is_some())
        .map(|(path, _)| path.as_str())
        .collect();
    if !bind_policies.is_empty() {
        stack.warnings.push(format!(
            "max_age is set for bind mounts ({}): the audit checks the backups of volumes only",
            bind_policies.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Origin, audit};
    use crate::engine::{ContainerMount, EngineContainer, EngineVolume};
    use crate::inventory::assemble;
    use std::os::unix::fs::PermissionsExt;

    fn container(name: &str, image: &str, mounts: Vec<ContainerMount>) -> EngineContainer {
        EngineContainer {
            id: format!("id-{name}"),
            name: name.into(),
            image: image.into(),
            running: true,
            state: "running".into(),
            labels: BTreeMap::new(),
            mounts,
            needs: Vec::new(),
            auto_remove: false,
        }
    }

    fn volume_mount(name: &str, host: &Path, destination: &str, rw: bool) -> ContainerMount {
        ContainerMount {
            kind: MountKind::Volume,
            name: Some(name.into()),
            source: Some(host.to_string_lossy().into_owned()),
            destination: destination.into(),
            read_write: rw,
            tmpfs_size: None,
        }
    }

    /// A volume's name, host path and labels.
    type VolumeSpec<'a> = (&'a str, &'a Path, &'a [(&'a str, &'a str)]);

    fn inventory(volumes: &[VolumeSpec<'_>], containers: Vec<EngineContainer>) -> Inventory {
        let volumes: Vec<EngineVolume> = volumes
            .iter()
            .map(|(name, host, labels)| EngineVolume {
                name: (*name).into(),
                driver: "local".into(),
                mountpoint: host.to_string_lossy().into_owned(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect(),
                ..Default::default()
            })
            .collect();
        Inventory {
            engine: "unix:///var/run/docker.sock".into(),
            api_version: "1.41".into(),
            targets: assemble(&volumes, &containers),
            containers,
        }
    }

    /// A stack as `engine_stack` makes it, with the processes given
    /// instead of inspected.
    fn stack_of(
        inventory: &Inventory,
        processes: &[(&str, ContainerProcess)],
        snapshots: Option<&[SnapshotInfo]>,
        config: &Config,
    ) -> Stack {
        stack_remapped(inventory, processes, snapshots, config, None)
    }

    /// [`stack_of`] on an engine that maps users (`remapping`).
    fn stack_remapped(
        inventory: &Inventory,
        processes: &[(&str, ContainerProcess)],
        snapshots: Option<&[SnapshotInfo]>,
        config: &Config,
        remapping: Option<&str>,
    ) -> Stack {
        let mut stack = Stack::from_inventory(inventory);
        for (name, process) in processes {
            let service = stack
                .services
                .iter_mut()
                .find(|s| s.name == *name)
                .expect("service");
            let image = ImageConfig {
                user: String::new(),
                volumes: vec!["/var/lib/postgresql/data".into()],
            };
            fill_process(service, process, Some(&image));
        }
        stack.inspect_bind_sources();
        read_mount_roots(&mut stack, inventory, remapping);
        attach_backups(&mut stack, inventory, snapshots, config);
        stack
    }

    fn process(user: &str, env: &[&str]) -> ContainerProcess {
        ContainerProcess {
            user: user.into(),
            env: env.iter().map(|e| (*e).to_string()).collect(),
            entrypoint: vec!["docker-entrypoint.sh".into()],
            cmd: vec!["postgres".into()],
            image_id: "sha256:abc".into(),
            ..ContainerProcess::default()
        }
    }

    #[test]
    fn the_process_fills_user_environment_and_image_volumes() {
        let mut service = Service::new("db", "postgres:15");
        let image = ImageConfig {
            user: "postgres".into(),
            volumes: vec!["/var/lib/postgresql/data".into()],
        };
        let p = ContainerProcess {
            group_add: vec!["50".into()],
            ..process(
                "",
                &["PG_MAJOR=15", "PGDATA=/var/lib/postgresql/data", "ODD"],
            )
        };
        fill_process(&mut service, &p, Some(&image));
        assert_eq!(
            service.user.as_deref(),
            Some("postgres"),
            "the image's user"
        );
        assert_eq!(service.group_add, ["50"]);
        assert_eq!(service.environment.len(), 2);
        assert_eq!(service.environment["PG_MAJOR"], "15");
        assert_eq!(service.entrypoint, ["docker-entrypoint.sh"]);
        assert_eq!(service.command, ["postgres"]);
        assert_eq!(
            service.image_volumes.as_deref(),
            Some(&["/var/lib/postgresql/data".to_string()][..])
        );
        fill_process(&mut service, &process("999:999", &[]), None);
        assert_eq!(service.user.as_deref(), Some("999:999"));
        assert_eq!(service.image_volumes, None, "an unknown image says nothing");
    }

    #[test]
    fn owners_and_pg_version_are_read_from_the_host_path() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let pg = dir.path().join("pg");
        let app = dir.path().join("app");
        std::fs::create_dir_all(pg.join("pgdata"))?;
        std::fs::create_dir(&app)?;
        std::fs::write(pg.join("pgdata/PG_VERSION"), "14\n")?;
        std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o750))?;
        let me = std::fs::metadata(&app)?;
        let inv = inventory(
            &[("pg", &pg, &[]), ("app", &app, &[])],
            vec![
                container(
                    "db",
                    "postgres:15",
                    vec![volume_mount("pg", &pg, "/var/lib/postgresql/data", true)],
                ),
                container(
                    "web",
                    "example/web",
                    vec![volume_mount("app", &app, "/srv", true)],
                ),
            ],
        );
        let processes = [
            (
                "db",
                process("", &["PGDATA=/var/lib/postgresql/data/pgdata"]),
            ),
            ("web", process("4321:4321", &[])),
        ];
        let stack = stack_of(&inv, &processes, None, &Config::default());
        let db = stack.service("db").expect("db");
        assert_eq!(db.mounts[0].pg_version.as_deref(), Some("14"));
        let web = stack.service("web").expect("web");
        assert_eq!(
            web.mounts[0].owner,
            Some(Owner {
                uid: me.uid(),
                gid: me.gid(),
                mode: Some(0o750)
            })
        );
        assert!(stack.warnings.is_empty(), "{:?}", stack.warnings);
        let findings = audit(&stack, std::time::SystemTime::now());
        let rules: Vec<&str> = findings.iter().map(|f| f.rule).collect();
        assert_eq!(rules, ["LB010", "LB011"], "{findings:#?}");

        // Under user namespace remapping the host's owners say nothing
        // of the container's users: not read, and the warning says so.
        let stack = stack_remapped(
            &inv,
            &processes,
            None,
            &Config::default(),
            Some("user namespace remapping"),
        );
        let db = stack.service("db").expect("db");
        assert_eq!(db.mounts[0].pg_version.as_deref(), Some("14"));
        assert_eq!(stack.service("web").expect("web").mounts[0].owner, None);
        assert_eq!(
            stack.warnings,
            [
                "the engine runs with user namespace remapping: container users are not the host's, so who may write the mounts is not checked"
            ]
        );
        let findings = audit(&stack, std::time::SystemTime::now());
        let rules: Vec<&str> = findings.iter().map(|f| f.rule).collect();
        assert_eq!(rules, ["LB010"], "{findings:#?}");
        Ok(())
    }

    #[test]
    fn what_cannot_be_read_stays_unknown_and_is_said() {
        let gone = Path::new("/nonexistent/lifeboat-audit/pg");
        let inv = inventory(
            &[("pg", gone, &[])],
            vec![container(
                "db",
                "postgres:15",
                vec![volume_mount("pg", gone, "/var/lib/postgresql/data", true)],
            )],
        );
        let stack = stack_of(
            &inv,
            &[("db", process("999", &[]))],
            None,
            &Config::default(),
        );
        let mount = &stack.services[0].mounts[0];
        assert_eq!((mount.owner, mount.pg_version.as_deref()), (None, None));
        assert_eq!(
            stack.warnings,
            [
                "volume pg (mounted by db at /var/lib/postgresql/data) cannot be read from this host: its owner and PG_VERSION are not checked"
            ]
        );
        assert!(matches!(stack.origin, Origin::Engine { .. }));
    }

    #[test]
    fn policies_come_from_labels_and_the_configuration_file() -> crate::Result<()> {
        let nowhere = Path::new("/nonexistent/lifeboat-audit/v");
        let inv = inventory(
            &[
                ("labelled", nowhere, &[("lifeboat.max-age", "1h")]),
                ("configured", nowhere, &[]),
                ("bad", nowhere, &[("lifeboat.max-age", "often")]),
                ("plain", nowhere, &[]),
            ],
            Vec::new(),
        );
        let config: Config = toml::from_str(
            "[volume.configured]\nmax_age = \"26h\"\n[bind.\"/srv\"]\nmax_age = \"1d\"\n",
        )
        .map_err(|e| crate::Error::BadRequest(e.to_string()))?;
        let known = stack_of(&inv, &[], Some(&[]), &config);
        let state = |stack: &Stack, name: &str| stack.volume(name).and_then(|v| v.backup);
        assert_eq!(
            state(&known, "labelled"),
            Some(BackupState {
                max_age_seconds: Some(3_600),
                last_good: None
            })
        );
        assert_eq!(
            state(&known, "configured").and_then(|b| b.max_age_seconds),
            Some(26 * 3_600)
        );
        assert_eq!(state(&known, "bad"), Some(BackupState::default()));
        assert_eq!(state(&known, "plain"), Some(BackupState::default()));
        assert_eq!(known.warnings.len(), 2, "{:?}", known.warnings);
        assert!(
            known.warnings[0].starts_with("label lifeboat.max-age on volume bad:"),
            "{}",
            known.warnings[0]
        );
        assert!(
            known.warnings[1].contains("(/srv)"),
            "{}",
            known.warnings[1]
        );

        // Without the repository's snapshots, nothing is known of backups.
        let unknown = stack_of(&inv, &[], None, &config);
        assert!(unknown.volumes.iter().all(|v| v.backup.is_none()));
        Ok(())
    }
}
