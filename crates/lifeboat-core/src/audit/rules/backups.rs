//! Rules about backups and volumes that must exist: data never backed up
//! or not lately, and external volumes that are missing.

use crate::audit::images::*;
use crate::audit::model::{Mount, MountType, Service, Stack, VolumeDecl};
use crate::audit::{Finding, Severity};
use crate::inventory::Content;

use super::Rule;

/// The services mounting a volume, with their mounts.
pub(super) fn users_of<'a>(stack: &'a Stack, volume: &VolumeDecl) -> Vec<(&'a Service, &'a Mount)> {
    stack
        .services
        .iter()
        .flat_map(|s| s.mounts.iter().map(move |m| (s, m)))
        .filter(|(_, m)| {
            matches!(m.kind, MountType::Volume | MountType::Anonymous)
                && m.source.as_deref() == Some(volume.name.as_str())
        })
        .collect()
}

/// The database whose data a volume holds: the engine's guess from the
/// volume, or a database service keeping its data there.
pub(super) fn database_in(stack: &Stack, volume: &VolumeDecl) -> Option<Content> {
    let guessed = volume
        .holds
        .filter(|c| !matches!(c, Content::Cache | Content::Files));
    guessed.or_else(|| {
        stack.services.iter().find_map(|s| {
            let data = database_data(s)?;
            let m = data.mount?;
            (m.source.as_deref() == Some(volume.name.as_str())).then_some(data.content)
        })
    })
}

/// Whether a volume holds data a container writes: a named volume (an
/// anonymous one is LB002's when it matters), mounted read-write by a
/// container, and not known to be a cache.
pub(super) fn written_data(volume: &VolumeDecl, users: &[(&Service, &Mount)]) -> bool {
    volume.holds != Some(Content::Cache)
        && users
            .iter()
            .any(|(_, m)| m.kind == MountType::Volume && !m.read_only)
}

/// `3d 4h`, `5h 10m`, `12m`: an age for people.
pub(super) fn human_duration(seconds: u64) -> String {
    let (d, h, m) = (
        seconds / 86_400,
        seconds % 86_400 / 3_600,
        seconds % 3_600 / 60,
    );
    match (d, h, m) {
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

pub(super) fn backup_missing_or_stale(rule: &Rule, stack: &Stack, now: i64) -> Vec<Finding> {
    stack
        .volumes
        .iter()
        .filter_map(|v| {
            let backup = v.backup?;
            let mut users = users_of(stack, v);
            // A writer first: the finding is about the data it writes.
            users.sort_by_key(|(_, m)| m.read_only);
            let (subject, path, line) = match users.first() {
                Some((s, m)) => (s.name.as_str(), Some(m.target.as_str()), m.line.or(s.line)),
                None => (v.name.as_str(), None, v.line),
            };
            let place = path.map(|p| format!(" at {p}")).unwrap_or_default();
            let mut severity = rule.severity;
            let problem = match (backup.max_age_seconds, backup.last_good) {
                (Some(max), None) => format!(
                    "has never been backed up, though its policy wants a snapshot every {}",
                    human_duration(max)
                ),
                (Some(max), Some(taken)) => {
                    let age = u64::try_from(now.saturating_sub(taken)).unwrap_or(0);
                    if age <= max {
                        return None;
                    }
                    format!(
                        "has its newest good snapshot from {} ago; its policy allows {}",
                        human_duration(age),
                        human_duration(max)
                    )
                }
                (None, None) => match database_in(stack, v) {
                    Some(content) => format!(
                        "holds {} data and has no backup policy and no snapshot",
                        database_label(content)
                    ),
                    None if written_data(v, &users) => {
                        severity = Severity::Medium;
                        "is written by its containers but has no backup policy and no snapshot"
                            .to_string()
                    }
                    None => return None,
                },
                (None, Some(_)) => return None,
            };
            let message = if users.is_empty() {
                format!("volume {} {problem}", v.name)
            } else {
                format!("{subject}: volume {}{place} {problem}", v.name)
            };
            let fix = format!(
                "run `lifeboat backup {}` now, then see why its schedule does not (or give it a policy)",
                v.name
            );
            let finding = rule
                .finding(stack, subject, line, message, fix)
                .with_volume(Some(&v.name))
                .with_severity(severity);
            Some(match path {
                Some(p) => finding.with_path(p),
                None => finding,
            })
        })
        .collect()
}

pub(super) fn external_volume_missing(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
    stack
        .volumes
        .iter()
        .filter(|v| v.external && v.exists == Some(false))
        .filter_map(|v| {
            let users = users_of(stack, v);
            let &(first, mount) = users.first()?;
            let places: Vec<String> = users
                .iter()
                .map(|(s, m)| format!("{} at {}", s.name, m.target))
                .collect();
            let message = format!(
                "{}: external volume {} does not exist (mounted by {})",
                first.name,
                v.name,
                places.join(", ")
            );
            let fix = format!(
                "find the data before creating anything: check the name and host, restore it with `lifeboat restore`, or create {} empty only if empty is meant",
                v.name
            );
            Some(
                rule.finding(stack, &first.name, mount.line.or(first.line), message, fix)
                    .with_path(&mount.target)
                    .with_volume(Some(&v.name)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::rules::testing::*;

    #[test]
    fn lb009_backups_missing_or_stale() {
        let mut stack = stack_of(vec![
            service(
                "db",
                "postgres:16",
                vec![volume("pg", "/var/lib/postgresql/data")],
            ),
            service(
                "app",
                "example/app",
                vec![
                    volume("uploads", "/uploads"),
                    volume("cache", "/cache"),
                    volume("notes", "/notes"),
                    Mount {
                        read_only: true,
                        ..volume("assets", "/assets")
                    },
                    volume("tmp", "/tmp/app"),
                ],
            ),
        ]);
        let decl = |name: &str, backup: Option<BackupState>| VolumeDecl {
            key: name.into(),
            name: name.into(),
            backup,
            ..VolumeDecl::default()
        };
        stack.volumes = vec![
            // Database data with nothing at all.
            decl("pg", Some(BackupState::default())),
            // A policy of a day, last snapshot three days and two hours old.
            decl(
                "uploads",
                Some(BackupState {
                    max_age_seconds: Some(DAY),
                    last_good: Some(NOW - 3 * 86_400 - 7_200),
                }),
            ),
            // A policy and never a snapshot, on an unused volume.
            decl(
                "orphan",
                Some(BackupState {
                    max_age_seconds: Some(7 * DAY),
                    last_good: None,
                }),
            ),
            // Fresh enough; plain files without policy; not looked at.
            decl(
                "cache",
                Some(BackupState {
                    max_age_seconds: Some(DAY),
                    last_good: Some(NOW - 3_600),
                }),
            ),
            decl("files", Some(BackupState::default())),
            decl("unknown", None),
            // Written files with nothing: a lesser finding. Read-only,
            // or a cache: none.
            decl("notes", Some(BackupState::default())),
            decl("assets", Some(BackupState::default())),
            VolumeDecl {
                holds: Some(Content::Cache),
                ..decl("tmp", Some(BackupState::default()))
            },
        ];
        let found: Vec<(Severity, String)> = run("LB009", &stack)
            .into_iter()
            .map(|f| (f.severity, f.message))
            .collect();
        assert_eq!(
            found,
            [
                (Severity::High, "db: volume pg at /var/lib/postgresql/data holds PostgreSQL data and has no backup policy and no snapshot".to_string()),
                (Severity::High, "app: volume uploads at /uploads has its newest good snapshot from 3d 2h ago; its policy allows 1d".to_string()),
                (Severity::High, "volume orphan has never been backed up, though its policy wants a snapshot every 7d".to_string()),
                (Severity::Medium, "app: volume notes at /notes is written by its containers but has no backup policy and no snapshot".to_string()),
            ]
        );
        // The engine's own guess of the content counts too.
        stack.volumes = vec![VolumeDecl {
            holds: Some(Content::Redis),
            ..decl("files", Some(BackupState::default()))
        }];
        assert_eq!(run("LB009", &stack).len(), 1);
    }

    #[test]
    fn lb012_missing_external_volumes() {
        let mut stack = stack_of(vec![
            service(
                "db",
                "postgres:16",
                vec![volume("legacy-pg", "/var/lib/postgresql/data")],
            ),
            service("app", "example/app", vec![volume("shared", "/shared")]),
        ]);
        let external = |name: &str, exists| VolumeDecl {
            key: name.into(),
            name: name.into(),
            external: true,
            exists,
            ..VolumeDecl::default()
        };
        stack.volumes = vec![
            external("legacy-pg", Some(false)),
            external("shared", None),
            external("unused", Some(false)),
            VolumeDecl {
                external: false,
                ..external("made-by-compose", Some(false))
            },
        ];
        assert_eq!(
            messages("LB012", &stack),
            [
                "db: external volume legacy-pg does not exist (mounted by db at /var/lib/postgresql/data)"
            ]
        );
    }

    #[test]
    fn durations_read_for_people() {
        assert_eq!(human_duration(59), "0m");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(7_200), "2h");
        assert_eq!(human_duration(7_260), "2h 1m");
        assert_eq!(human_duration(86_400), "1d");
        assert_eq!(human_duration(3 * 86_400 + 7_200 + 60), "3d 2h");
    }
}
