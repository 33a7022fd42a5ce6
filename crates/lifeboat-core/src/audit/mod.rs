//! The audit: persistence mistakes in a compose file or on a running engine,
//! found before they cost data.
//!
//! Both sources are first turned into one plain description, a [`Stack`]
//! of services, their mounts and the volumes they use: [`compose`] reads a
//! compose file without any engine, and [`engine_stack`] fills the same
//! model from the inventory ([`Stack::from_inventory`]) plus what only the
//! engine knows (image configuration, owners of mount roots, `PG_VERSION`,
//! backup state). The rules ([`mod@rules`]) then look at the stack alone, so
//! every rule is tested on hand-built stacks and compose fixtures.
//!
//! Apart from [`engine_stack`], which asks the engine through
//! [`crate::engine`], this module never talks to the engine; it never
//! prints, never opens the repository (the caller passes its snapshots)
//! and never reads the clock: the caller passes the time in. It returns [`Finding`]s and
//! renders them as SARIF ([`sarif`]); tables and exit codes are the
//! binary's job, with [`by_severity`] and [`fail_on`] to help.

pub mod compose;
mod engine;
#[cfg(test)]
mod fixture_tests;
mod images;
mod lines;
mod model;
pub mod rules;
pub mod sarif;
mod shell;
pub mod variables;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::SystemTime;

use serde::Serialize;

use crate::error::{Error, Result};

pub use engine::engine_stack;
pub use model::{BackupState, Mount, MountType, Origin, Owner, Service, Stack, VolumeDecl};
pub use rules::{Rule, rule, rules};

/// The label (on a compose service, a container or a volume) that silences
/// rules for it: a comma-separated list of rule ids, such as `LB007,LB005`.
pub const IGNORE_LABEL: &str = "lifeboat.audit.ignore";

/// How bad a finding is. Ordered from [`Severity::Low`] to
/// [`Severity::Critical`], so that `finding.severity >= threshold` reads as
/// it should.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Works today, but is fragile or wasteful.
    Low,
    /// Can take the host or the service down, or corrupt data in a corner.
    Medium,
    /// Loses or exposes data on an ordinary operation.
    High,
    /// Loses data on the next routine command (`down`, `rm`, a restart).
    Critical,
}

impl Severity {
    /// All severities, lowest first.
    pub const ALL: [Severity; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    /// The word used in flags, tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// The SARIF `level` of this severity: code-scanning tools know only
    /// `error`, `warning` and `note`.
    pub fn sarif_level(self) -> &'static str {
        match self {
            Self::Critical | Self::High => "error",
            Self::Medium => "warning",
            Self::Low => "note",
        }
    }
}

impl FromStr for Severity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            "critical" => Ok(Self::Critical),
            other => Err(Error::BadRequest(format!(
                "unknown severity {other:?}: use low, medium, high or critical"
            ))),
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a finding was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Location {
    /// In a compose file: the file as the caller named it, the service and
    /// the 1-based line of the service, mount or volume when it was found.
    Compose {
        file: PathBuf,
        #[serde(skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        line: Option<usize>,
    },
    /// On the engine, in a container (or, for a volume, none).
    Engine {
        #[serde(skip_serializing_if = "Option::is_none")]
        container: Option<String>,
    },
}

/// One mistake found by one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule's stable id, such as `LB001`.
    pub rule: &'static str,
    pub severity: Severity,
    /// The compose service or container the finding is about; the volume's
    /// name when no service is involved.
    pub subject: String,
    /// The volume involved, by its engine name, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// The path involved: a mount's destination in the container, or a
    /// host path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// One line naming the service and the path.
    pub message: String,
    /// One line saying what to change.
    pub fix: String,
    pub location: Location,
}

/// Runs every rule over the stack. `now` ages the backups. Findings that a
/// service or volume silences with [`IGNORE_LABEL`] are left out; the rest
/// come most severe first, then by rule, subject and path.
pub fn audit(stack: &Stack, now: SystemTime) -> Vec<Finding> {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut findings: Vec<Finding> = rules()
        .iter()
        .flat_map(|rule| rule.check(stack, now))
        .filter(|f| !stack.ignores(f))
        .collect();
    sort(&mut findings);
    findings
}

/// Sorts findings most severe first, then by rule, subject and path.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.rule.cmp(b.rule))
            .then_with(|| a.subject.cmp(&b.subject))
            .then_with(|| a.path.cmp(&b.path))
    });
}

/// The findings grouped by severity, most severe group first; severities
/// with no finding are left out. Within a group the order is kept.
pub fn by_severity(findings: &[Finding]) -> Vec<(Severity, Vec<&Finding>)> {
    Severity::ALL
        .iter()
        .rev()
        .filter_map(|&severity| {
            let group: Vec<&Finding> = findings.iter().filter(|f| f.severity == severity).collect();
            (!group.is_empty()).then_some((severity, group))
        })
        .collect()
}

/// Whether any finding is at least as severe as `threshold`: the answer to
/// `--fail-on`.
pub fn fail_on(findings: &[Finding], threshold: Severity) -> bool {
    findings.iter().any(|f| f.severity >= threshold)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(rule: &'static str, severity: Severity, subject: &str) -> Finding {
        Finding {
            rule,
            severity,
            subject: subject.into(),
            volume: None,
            path: None,
            message: format!("{subject}: something"),
            fix: "fix it".into(),
            location: Location::Engine { container: None },
        }
    }

    #[test]
    fn severities_order_and_parse() -> Result<()> {
        assert!(Severity::Low < Severity::Medium);
        assert!(Severity::Medium < Severity::High);
        assert!(Severity::High < Severity::Critical);
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>()?, s);
        }
        assert_eq!(" HIGH ".parse::<Severity>()?, Severity::High);
        let err = "severe".parse::<Severity>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("unknown severity \"severe\": use low, medium, high or critical")
        );
        Ok(())
    }

    #[test]
    fn fail_on_counts_findings_at_or_above_the_threshold() {
        let findings = [finding("LB005", Severity::Medium, "web")];
        assert!(fail_on(&findings, Severity::Low));
        assert!(fail_on(&findings, Severity::Medium));
        assert!(!fail_on(&findings, Severity::High));
        assert!(!fail_on(&[], Severity::Low));
    }

    #[test]
    fn grouping_puts_the_worst_first_and_skips_empty_groups() {
        let mut findings = vec![
            finding("LB007", Severity::Low, "web"),
            finding("LB001", Severity::Critical, "db"),
            finding("LB005", Severity::Medium, "cache"),
            finding("LB003", Severity::Critical, "b"),
            finding("LB003", Severity::Critical, "a"),
        ];
        sort(&mut findings);
        let order: Vec<(&str, &str)> = findings
            .iter()
            .map(|f| (f.rule, f.subject.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("LB001", "db"),
                ("LB003", "a"),
                ("LB003", "b"),
                ("LB005", "cache"),
                ("LB007", "web")
            ]
        );
        let groups = by_severity(&findings);
        let shape: Vec<(Severity, usize)> = groups.iter().map(|(s, g)| (*s, g.len())).collect();
        assert_eq!(
            shape,
            [
                (Severity::Critical, 3),
                (Severity::Medium, 1),
                (Severity::Low, 1)
            ]
        );
    }

    #[test]
    fn findings_serialize_with_their_location() -> serde_json::Result<()> {
        let mut f = finding("LB001", Severity::Critical, "db");
        f.path = Some("/var/lib/postgresql/data".into());
        f.location = Location::Compose {
            file: "compose.yaml".into(),
            service: Some("db".into()),
            line: Some(4),
        };
        let json = serde_json::to_value(&f)?;
        assert_eq!(json["rule"], "LB001");
        assert_eq!(json["severity"], "critical");
        assert_eq!(json["location"]["source"], "compose");
        assert_eq!(json["location"]["line"], 4);
        assert!(json.get("volume").is_none());
        let engine = serde_json::to_value(finding("LB009", Severity::High, "v"))?;
        assert_eq!(engine["location"], serde_json::json!({"source": "engine"}));
        Ok(())
    }
}
