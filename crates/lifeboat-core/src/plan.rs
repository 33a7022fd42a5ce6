//! The plan: which strategy each target gets, and why.
//!
//! `dump` runs a database's own dump tool inside its running container;
//! `stop` stops the target's writers for a short second pass; `live` copies
//! the files as they are. The choice is automatic (a running database
//! container whose data directory is the target is dumped; everything else
//! is copied live) and can be overridden, most specific first, by a flag,
//! by the label `lifeboat.strategy` on the volume or on a container that
//! mounts it, by the configuration file, or by offen's
//! `docker-volume-backup.stop-during-backup` label, honoured for people who
//! migrate. The plan only decides; it never touches the engine.

use serde::Serialize;

use crate::config::Config;
pub use crate::config::Strategy;
pub use crate::config::strategy::StrategyFlags;
use crate::dump::{Database, DumpFrom};
use crate::engine::{EngineContainer, MountKind};
use crate::inventory::{Content, Inventory, Target, database_mount};

/// One target with its strategy.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedTarget {
    pub kind: MountKind,
    pub name: String,
    pub strategy: Strategy,
    /// Why this strategy, in words.
    pub reason: String,
    pub dump: Option<DumpFrom>,
    /// Why the strategy cannot be carried out, when it cannot.
    pub problem: Option<String>,
    /// With the stop strategy: the containers to stop, in order.
    pub stop: Vec<crate::stop::StopEntry>,
    /// Commands to run in the target's containers before and after.
    pub hooks: Vec<crate::hooks::Hook>,
    #[serde(skip)]
    pub target: Target,
}

impl PlannedTarget {
    /// Why the stop strategy must not stop this target's containers: one
    /// started with `--rm` would be removed, not stopped.
    pub fn stop_refusal(&self) -> Option<String> {
        let removed: Vec<&str> = self
            .stop
            .iter()
            .filter(|s| s.auto_remove)
            .map(|s| s.name.as_str())
            .collect();
        (!removed.is_empty()).then(|| {
            format!(
                "{}: container {} was started with --rm, so stopping it would remove it; back it up with --strategy live or dump",
                self.name,
                removed.join(", ")
            )
        })
    }
}

/// Plans the backup of `targets`.
pub fn plan(
    inventory: &Inventory,
    targets: &[Target],
    flags: &StrategyFlags,
    config: &Config,
) -> Vec<PlannedTarget> {
    targets
        .iter()
        .map(|t| plan_one(t, &inventory.containers, flags, config))
        .collect()
}

fn plan_one(
    target: &Target,
    containers: &[EngineContainer],
    flags: &StrategyFlags,
    config: &Config,
) -> PlannedTarget {
    let dumpable = running_database(target);
    let users: Vec<&EngineContainer> = containers
        .iter()
        .filter(|c| target.users.iter().any(|u| u.container == c.name))
        .collect();

    let chosen = crate::config::strategy::asked(target, &users, flags, config);

    let (strategy, reason) = chosen.unwrap_or_else(|| automatic(target, dumpable.as_ref()));
    let problem = match (strategy, &dumpable) {
        (Strategy::Dump, None) => Some(format!(
            "cannot dump {}: no running PostgreSQL, MariaDB, MySQL or Redis container has it as its data directory",
            target.name
        )),
        _ => None,
    };
    let stop = if strategy == Strategy::Stop {
        crate::stop::stop_order(target, containers)
    } else {
        Vec::new()
    };
    PlannedTarget {
        kind: target.kind,
        name: target.name.clone(),
        strategy,
        stop,
        hooks: crate::hooks::hooks_of(target, containers),
        reason,
        dump: if strategy == Strategy::Dump {
            dumpable
        } else {
            None
        },
        problem,
        target: target.clone(),
    }
}

/// The database that keeps its data in a target holding `content`.
fn database_of(content: Content) -> Option<Database> {
    match content {
        Content::Postgres => Some(Database::Postgres),
        Content::Mariadb => Some(Database::Mariadb),
        Content::Mysql => Some(Database::Mysql),
        Content::Redis => Some(Database::Redis),
        Content::Mongo | Content::Cache | Content::Files => None,
    }
}

fn running_database(target: &Target) -> Option<DumpFrom> {
    target.users.iter().find_map(|u| {
        let (content, data_dir) = database_mount(u)?;
        let database = database_of(content)?;
        (u.running && u.read_write && data_dir).then(|| DumpFrom {
            database,
            container: u.container.clone(),
            image: u.image.clone(),
            data_path: u.destination.clone(),
        })
    })
}

fn automatic(target: &Target, dumpable: Option<&DumpFrom>) -> (Strategy, String) {
    if let Some(d) = dumpable {
        return (
            Strategy::Dump,
            format!(
                "{} data directory of running container {} ({}): dumped with its own tools",
                d.database.dir_name(),
                d.container,
                d.image
            ),
        );
    }
    let reason = match target.holds {
        Content::Mongo => "MongoDB: dumps are not supported yet, files copied live".to_string(),
        Content::Postgres | Content::Mariadb | Content::Mysql | Content::Redis
            if target.users.iter().all(|u| !u.running) =>
        {
            format!(
                "{} data with no running container: the files are at rest",
                target.holds
            )
        }
        Content::Postgres | Content::Mariadb | Content::Mysql | Content::Redis => format!(
            "{} data, but no running database container has it as its data directory: files copied live",
            target.holds
        ),
        Content::Cache | Content::Files => "files copied live".to_string(),
    };
    (Strategy::Live, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::strategy::{OFFEN_STOP_LABEL, STRATEGY_LABEL};
    use crate::engine::{ContainerMount, EngineVolume};
    use crate::inventory::assemble;

    fn container(
        name: &str,
        image: &str,
        running: bool,
        labels: &[(&str, &str)],
        dest: &str,
    ) -> EngineContainer {
        EngineContainer {
            id: format!("id-{name}"),
            name: name.into(),
            image: image.into(),
            running,
            state: String::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mounts: vec![ContainerMount {
                kind: MountKind::Volume,
                name: Some("v".into()),
                source: Some("/nonexistent/v".into()),
                destination: dest.into(),
                read_write: true,
                tmpfs_size: None,
            }],
            needs: Vec::new(),
            auto_remove: false,
        }
    }

    fn planned(
        volume_labels: &[(&str, &str)],
        containers: Vec<EngineContainer>,
        flags: &StrategyFlags,
        config: &Config,
    ) -> PlannedTarget {
        let volume = EngineVolume {
            name: "v".into(),
            driver: "local".into(),
            mountpoint: "/nonexistent/v".into(),
            labels: volume_labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let targets = assemble(&[volume], &containers);
        let inventory = Inventory {
            engine: String::new(),
            api_version: String::new(),
            targets: targets.clone(),
            containers,
        };
        plan(&inventory, &targets, flags, config).remove(0)
    }

    #[test]
    fn running_databases_are_dumped_and_the_rest_copied_live() {
        let none = StrategyFlags::default();
        let config = Config::default();
        let p = planned(
            &[],
            vec![container(
                "db",
                "postgres:15",
                true,
                &[],
                "/var/lib/postgresql/data",
            )],
            &none,
            &config,
        );
        assert_eq!(p.strategy, Strategy::Dump);
        assert_eq!(
            p.dump.as_ref().map(|d| d.database),
            Some(Database::Postgres)
        );
        assert!(p.reason.contains("running container db"), "{}", p.reason);

        let p = planned(
            &[],
            vec![container(
                "db",
                "postgres:15",
                false,
                &[],
                "/var/lib/postgresql/data",
            )],
            &none,
            &config,
        );
        assert_eq!(p.strategy, Strategy::Live);
        assert!(p.reason.contains("at rest"), "{}", p.reason);

        let p = planned(
            &[],
            vec![container(
                "web",
                "nginx",
                true,
                &[],
                "/usr/share/nginx/html",
            )],
            &none,
            &config,
        );
        assert_eq!(p.strategy, Strategy::Live);
    }

    #[test]
    fn overrides_apply_most_specific_first() {
        let config: Config = toml::from_str("[volume.v]\nstrategy = \"live\"\n").expect("config");
        let db = || {
            container(
                "db",
                "mariadb:11",
                true,
                &[(STRATEGY_LABEL, "stop")],
                "/var/lib/mysql",
            )
        };

        let p = planned(&[], vec![db()], &StrategyFlags::default(), &config);
        assert_eq!(p.strategy, Strategy::Stop, "container label over config");
        assert!(p.reason.contains("container db"), "{}", p.reason);

        let p = planned(
            &[(STRATEGY_LABEL, "dump")],
            vec![db()],
            &StrategyFlags::default(),
            &config,
        );
        assert_eq!(
            p.strategy,
            Strategy::Dump,
            "volume label over container label"
        );

        let flags = StrategyFlags {
            all: Some(Strategy::Live),
            by_target: [("v".to_string(), Strategy::Stop)].into(),
        };
        let p = planned(&[(STRATEGY_LABEL, "dump")], vec![db()], &flags, &config);
        assert_eq!(
            p.strategy,
            Strategy::Stop,
            "per-target flag over everything"
        );

        let p = planned(
            &[],
            vec![container("app", "myapp", true, &[], "/data")],
            &StrategyFlags::default(),
            &config,
        );
        assert_eq!(p.strategy, Strategy::Live);
        assert!(p.reason.contains("configuration file"), "{}", p.reason);
    }

    #[test]
    fn offen_labels_are_honoured() {
        let app = container("app", "myapp", true, &[(OFFEN_STOP_LABEL, "true")], "/data");
        let p = planned(
            &[],
            vec![app],
            &StrategyFlags::default(),
            &Config::default(),
        );
        assert_eq!(p.strategy, Strategy::Stop);
        assert!(p.reason.contains(OFFEN_STOP_LABEL), "{}", p.reason);
    }

    #[test]
    fn a_forced_dump_without_a_database_is_a_problem() {
        let flags = StrategyFlags {
            all: Some(Strategy::Dump),
            ..Default::default()
        };
        let p = planned(
            &[],
            vec![container("app", "myapp", true, &[], "/data")],
            &flags,
            &Config::default(),
        );
        assert_eq!(p.strategy, Strategy::Dump);
        assert!(
            p.problem
                .as_deref()
                .unwrap_or_default()
                .contains("cannot dump")
        );
    }
}
