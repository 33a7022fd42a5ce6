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
//!
//! The backup policy is kept here too: how old a target's newest good
//! snapshot may be ([`MaxAge`]), from the label `lifeboat.max-age` on the
//! volume or `max_age` in the target's section of the configuration file.
//! A target with neither has no policy. `lifeboat audit` checks it.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::dump::{Database, DumpFrom};
use crate::engine::{EngineContainer, MountKind};
use crate::error::{Error, Result};
use crate::inventory::{Content, Inventory, Target, database_mount};

/// The label that picks a strategy, on a volume or a container.
pub const STRATEGY_LABEL: &str = "lifeboat.strategy";

/// offen/docker-volume-backup's label for containers to stop.
pub const OFFEN_STOP_LABEL: &str = "docker-volume-backup.stop-during-backup";

/// The label, on a volume, that sets its [`MaxAge`].
pub const MAX_AGE_LABEL: &str = "lifeboat.max-age";

/// How a target is backed up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The database's own dump, taken inside its running container.
    Dump,
    /// The files, with the containers that write them stopped.
    Stop,
    /// The files as they are.
    Live,
}

impl FromStr for Strategy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dump" => Ok(Self::Dump),
            "stop" => Ok(Self::Stop),
            "live" => Ok(Self::Live),
            other => Err(Error::BadRequest(format!(
                "unknown strategy {other:?}: use dump, stop or live"
            ))),
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Dump => "dump",
            Self::Stop => "stop",
            Self::Live => "live",
        })
    }
}

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

/// Strategies given on the command line.
#[derive(Clone, Debug, Default)]
pub struct StrategyFlags {
    /// For every target of the run.
    pub all: Option<Strategy>,
    /// For single targets, by volume name or bind-mount path.
    pub by_target: BTreeMap<String, Strategy>,
}

impl StrategyFlags {
    /// Parses `--strategy` values: `STRATEGY` or `TARGET=STRATEGY`.
    pub fn parse(values: &[String]) -> Result<Self> {
        let mut flags = Self::default();
        for value in values {
            match value.rsplit_once('=') {
                Some((target, strategy)) => {
                    flags
                        .by_target
                        .insert(target.trim_end_matches('/').to_string(), strategy.parse()?);
                }
                None => flags.all = Some(value.parse()?),
            }
        }
        Ok(flags)
    }
}

/// The configuration file's per-target settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[volume.NAME]` sections.
    #[serde(default)]
    pub volume: BTreeMap<String, TargetConfig>,
    /// `[bind."/host/path"]` sections.
    #[serde(default)]
    pub bind: BTreeMap<String, TargetConfig>,
}

/// Settings of one target in the configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub strategy: Option<Strategy>,
    /// How old the newest good snapshot may be: `max_age = "26h"`.
    pub max_age: Option<MaxAge>,
}

/// The backup policy of a target: the oldest its newest good snapshot may
/// be. Written as a number and a unit, `s`, `m`, `h`, `d` or `w`, several
/// of them adding up: `30m`, `26h`, `7d`, `1d12h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MaxAge {
    seconds: u64,
}

impl MaxAge {
    /// The age in seconds.
    pub fn seconds(self) -> u64 {
        self.seconds
    }
}

impl FromStr for MaxAge {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::BadRequest(format!(
                "invalid maximum age {s:?}: use a number and a unit (s, m, h, d, w), such as 30m, 26h or 7d"
            ))
        };
        let mut rest = s.trim();
        let mut seconds: u64 = 0;
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            let mut chars = rest[digits..].chars();
            let unit = match chars.next().map(|c| c.to_ascii_lowercase()) {
                Some('s') => 1,
                Some('m') => 60,
                Some('h') => 3_600,
                Some('d') => 86_400,
                Some('w') => 7 * 86_400,
                _ => return Err(bad()),
            };
            seconds = n
                .checked_mul(unit)
                .and_then(|add| seconds.checked_add(add))
                .ok_or_else(bad)?;
            rest = chars.as_str().trim_start();
        }
        if seconds == 0 {
            return Err(bad());
        }
        Ok(Self { seconds })
    }
}

impl TryFrom<String> for MaxAge {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<MaxAge> for String {
    fn from(age: MaxAge) -> Self {
        age.to_string()
    }
}

impl std::fmt::Display for MaxAge {
    /// The largest unit that divides the age: `26h`, `7d`, `90m`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let units = [(7 * 86_400, "w"), (86_400, "d"), (3_600, "h"), (60, "m")];
        let (size, unit) = units
            .into_iter()
            .find(|(size, _)| self.seconds.is_multiple_of(*size))
            .unwrap_or((1, "s"));
        write!(f, "{}{unit}", self.seconds / size)
    }
}

/// The backup policy of a volume or bind mount, and where it was set: the
/// label [`MAX_AGE_LABEL`] on the volume wins over the configuration file,
/// as labels do for strategies. `Ok(None)`: no policy. A label that does
/// not parse is an error naming the volume (a bad configuration file is
/// refused when it is loaded).
pub fn max_age(target: &Target, config: &Config) -> Result<Option<(MaxAge, String)>> {
    if let Some(value) = target.labels.get(MAX_AGE_LABEL) {
        let age = value.parse::<MaxAge>().map_err(|e| {
            Error::BadRequest(format!(
                "label {MAX_AGE_LABEL} on volume {}: {e}",
                target.name
            ))
        })?;
        return Ok(Some((
            age,
            format!("label {MAX_AGE_LABEL}={value} on volume {}", target.name),
        )));
    }
    let (section, table) = match target.kind {
        MountKind::Volume => ("volume", &config.volume),
        MountKind::Bind => ("bind", &config.bind),
        MountKind::Tmpfs => return Ok(None),
    };
    Ok(table.get(&target.name).and_then(|t| t.max_age).map(|age| {
        (
            age,
            format!(
                "configuration file: [{section}.\"{}\"] max_age = \"{age}\"",
                target.name
            ),
        )
    }))
}

impl Config {
    /// The configuration: the file given, or lifeboat's default file
    /// (`/etc/lifeboat/lifeboat.toml` as root) when it exists, or none.
    pub fn find(explicit: Option<&std::path::Path>) -> Result<Self> {
        if let Some(path) = explicit {
            return Self::load(path);
        }
        let default = crate::paths::Dirs::for_current_user()
            .config
            .join("lifeboat.toml");
        if default.exists() {
            Self::load(&default)
        } else {
            Ok(Self::default())
        }
    }

    /// Reads a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::BadRequest(format!("{}: {e}", path.display())))
    }

    fn strategy_of(&self, target: &Target) -> Option<(Strategy, String)> {
        let (section, table) = match target.kind {
            MountKind::Volume => ("volume", &self.volume),
            MountKind::Bind => ("bind", &self.bind),
            MountKind::Tmpfs => return None,
        };
        let strategy = table.get(&target.name)?.strategy?;
        Some((
            strategy,
            format!(
                "configuration file: [{section}.\"{}\"] strategy = \"{strategy}\"",
                target.name
            ),
        ))
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

    let chosen = flags
        .by_target
        .get(&target.name)
        .map(|s| (*s, format!("flag --strategy {}={s}", target.name)))
        .or_else(|| flags.all.map(|s| (s, format!("flag --strategy {s}"))))
        .or_else(|| label_strategy(&target.labels, &format!("volume {}", target.name)))
        .or_else(|| {
            users
                .iter()
                .find_map(|c| label_strategy(&c.labels, &format!("container {}", c.name)))
        })
        .or_else(|| config.strategy_of(target))
        .or_else(|| {
            users.iter().find_map(|c| {
                (c.labels.get(OFFEN_STOP_LABEL).map(String::as_str) == Some("true")).then(|| {
                    (
                        Strategy::Stop,
                        format!("label {OFFEN_STOP_LABEL}=true on container {}", c.name),
                    )
                })
            })
        });

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

fn label_strategy(labels: &BTreeMap<String, String>, on: &str) -> Option<(Strategy, String)> {
    let value = labels.get(STRATEGY_LABEL)?;
    match value.parse::<Strategy>() {
        Ok(s) => Some((s, format!("label {STRATEGY_LABEL}={s} on {on}"))),
        Err(_) => {
            tracing::warn!("ignoring {STRATEGY_LABEL}={value:?} on {on}: use dump, stop or live");
            None
        }
    }
}

/// The running container whose database lives in the target.
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

        let flags = StrategyFlags::parse(&["live".into(), "v=stop".into()]).expect("flags");
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
        let flags = StrategyFlags::parse(&["dump".into()]).expect("flags");
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

    #[test]
    fn bad_strategies_are_refused() {
        assert!(StrategyFlags::parse(&["snapshot".into()]).is_err());
        assert!(Config::load(std::path::Path::new("/nonexistent/lifeboat.toml")).is_err());
        assert!(toml::from_str::<Config>("[volume.v]\nstrategy = \"copy\"\n").is_err());
    }

    #[test]
    fn maximum_ages_parse_with_units() -> Result<()> {
        for (text, seconds) in [
            ("30m", 1_800),
            ("26h", 93_600),
            ("7d", 604_800),
            ("2w", 1_209_600),
            ("90s", 90),
            ("1d12h", 129_600),
            (" 1h 30m ", 5_400),
            ("8H", 28_800),
        ] {
            assert_eq!(text.parse::<MaxAge>()?.seconds(), seconds, "{text}");
        }
        for bad in [
            "",
            "26",
            "h",
            "5x",
            "0d",
            "-1d",
            "1.5h",
            "99999999999999999999d",
        ] {
            let err = bad.parse::<MaxAge>().err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("such as 30m, 26h or 7d")),
                "{bad:?}: {err:?}"
            );
        }
        assert_eq!("26h".parse::<MaxAge>()?.to_string(), "26h");
        assert_eq!("1d12h".parse::<MaxAge>()?.to_string(), "36h");
        assert_eq!("14d".parse::<MaxAge>()?.to_string(), "2w");
        assert_eq!("90s".parse::<MaxAge>()?.to_string(), "90s");
        Ok(())
    }

    #[test]
    fn the_volume_label_sets_the_policy_over_the_configuration_file() -> Result<()> {
        let config: Config =
            toml::from_str("[volume.v]\nmax_age = \"26h\"\n[volume.other]\nstrategy = \"live\"\n")
                .map_err(|e| Error::BadRequest(e.to_string()))?;
        let target = |name: &str, labels: &[(&str, &str)]| Target {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..assemble(
                &[EngineVolume {
                    name: name.into(),
                    driver: "local".into(),
                    ..Default::default()
                }],
                &[],
            )
            .remove(0)
        };
        let (age, from) = max_age(&target("v", &[]), &config)?.expect("a policy");
        assert_eq!(age.seconds(), 26 * 3_600);
        assert_eq!(from, "configuration file: [volume.\"v\"] max_age = \"26h\"");
        let (age, from) =
            max_age(&target("v", &[(MAX_AGE_LABEL, "1h")]), &config)?.expect("a policy");
        assert_eq!(age.seconds(), 3_600);
        assert!(from.starts_with("label lifeboat.max-age=1h"), "{from}");
        assert!(max_age(&target("other", &[]), &config)?.is_none());
        assert!(max_age(&target("none", &[]), &Config::default())?.is_none());
        let err = max_age(&target("v", &[(MAX_AGE_LABEL, "soon")]), &config)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("label lifeboat.max-age on volume v: invalid maximum age \"soon\""),
            "{err}"
        );
        let bad = toml::from_str::<Config>("[volume.v]\nmax_age = \"a while\"\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(bad.contains("invalid maximum age \"a while\""), "{bad}");
        Ok(())
    }
}
