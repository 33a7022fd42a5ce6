//! Configuration and policies: the TOML file (`/etc/lifeboat/lifeboat.toml`
//! as root, or `--config`), and what it and labels set for each target:
//! its strategy, and its backup policy, how old its newest good snapshot
//! may be ([`MaxAge`]), from the label `lifeboat.max-age` on the volume or
//! `max_age` in the target's section of the file. A target with neither
//! has no policy; `lifeboat audit` checks it. Keep rules ([`keep`]) come
//! from the label `lifeboat.keep` or `keep` in the target's section or in
//! `[defaults]`. Schedules go here next.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::engine::MountKind;
use crate::error::{Error, Result};
use crate::inventory::Target;

pub mod keep;
pub mod strategy;

pub use keep::{KEEP_LABEL, KeepRules};

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
    /// `[defaults]`: what holds for every target without its own.
    #[serde(default)]
    pub defaults: Defaults,
}

/// The `[defaults]` section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Keep rules of targets without their own: `keep = "daily=7"`.
    pub keep: Option<KeepRules>,
}

/// Settings of one target in the configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub strategy: Option<Strategy>,
    /// How old the newest good snapshot may be: `max_age = "26h"`.
    pub max_age: Option<MaxAge>,
    /// Which snapshots retention keeps: `keep = "daily=7,weekly=4"`.
    pub keep: Option<KeepRules>,
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
    let Some((section, table)) = config.section(target.kind) else {
        return Ok(None);
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

    /// The sections of a kind of target, and their name: `[volume.NAME]`
    /// or `[bind."/path"]`; tmpfs mounts have none.
    fn section(&self, kind: MountKind) -> Option<(&'static str, &BTreeMap<String, TargetConfig>)> {
        match kind {
            MountKind::Volume => Some(("volume", &self.volume)),
            MountKind::Bind => Some(("bind", &self.bind)),
            MountKind::Tmpfs => None,
        }
    }

    pub(crate) fn strategy_of(&self, target: &Target) -> Option<(Strategy, String)> {
        let (section, table) = self.section(target.kind)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineVolume;
    use crate::inventory::assemble;

    #[test]
    fn bad_configuration_is_refused() {
        assert!(Config::load(std::path::Path::new("/nonexistent/lifeboat.toml")).is_err());
        assert!(toml::from_str::<Config>("[volume.v]\nstrategy = \"copy\"\n").is_err());
        assert!("snapshot".parse::<Strategy>().is_err());
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
