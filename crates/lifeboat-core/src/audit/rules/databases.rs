//! Rules about databases: data on no mount, on an anonymous volume or a
//! tmpfs, shared by writers, or from another PostgreSQL major version.

use std::collections::BTreeMap;

use crate::audit::Finding;
use crate::audit::images::*;
use crate::audit::model::{Mount, MountType, Service, Stack};
use crate::inventory::Content;

use super::{Rule, is_compose};

/// A named volume to suggest for a service's data.
pub(super) fn volume_suggestion(stack: &Stack, service: &Service, dir: &str) -> String {
    let name = format!("{}-data", service.name);
    if is_compose(stack) {
        format!(
            "mount a named volume there: `- {name}:{dir}` under the service's `volumes:` and `{name}:` under the top-level `volumes:`"
        )
    } else {
        format!(
            "copy the data out (`docker cp {}:{dir} ...` or a dump), then recreate the container with a named volume at {dir} and restore into it",
            service.name
        )
    }
}

pub(super) fn database_data_not_mounted(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
    stack
        .services
        .iter()
        .filter_map(|s| {
            if !known_layout(s) {
                return None;
            }
            let data = database_data(s)?;
            if data.mount.is_some() || image_declares(s, &data.dir) == Some(true) {
                return None;
            }
            let lives = if s.image_volumes.is_some() {
                "in the container's writable layer"
            } else {
                "in the container's writable layer (or an anonymous volume, if the image declares one)"
            };
            let message = format!(
                "{}: {} data at {} is on no mount: it lives {lives} and goes with the container",
                s.name,
                database_label(data.content),
                data.dir
            );
            Some(
                rule.finding(stack, &s.name, s.line, message, volume_suggestion(stack, s, &data.dir))
                    .with_path(&data.dir),
            )
        })
        .collect()
}

pub(super) fn database_data_on_anonymous_volume(
    rule: &Rule,
    stack: &Stack,
    _now: i64,
) -> Vec<Finding> {
    stack
        .services
        .iter()
        .filter_map(|s| {
            let data = database_data(s)?;
            let label = database_label(data.content);
            let (path, volume, line, how) = match data.mount {
                Some(m) if m.kind == MountType::Anonymous => (
                    m.target.as_str(),
                    m.source.as_deref(),
                    m.line.or(s.line),
                    "an anonymous volume",
                ),
                None if image_declares(s, &data.dir) == Some(true) => (
                    data.dir.as_str(),
                    None,
                    s.line,
                    "an anonymous volume the image declares with VOLUME",
                ),
                _ => return None,
            };
            let message = format!(
                "{}: {label} data at {path} is on {how}: `down -v` or `volume prune` deletes it",
                s.name
            );
            let fix = if is_compose(stack) {
                format!(
                    "name the volume: `- {}-data:{path}` with `{}-data:` under the top-level `volumes:`",
                    s.name, s.name
                )
            } else {
                format!(
                    "copy the volume into a named one (`lifeboat copy`), then recreate {} with the named volume at {path}",
                    s.name
                )
            };
            Some(
                rule.finding(stack, &s.name, line, message, fix)
                    .with_path(path)
                    .with_volume(volume),
            )
        })
        .collect()
}

pub(super) fn database_data_on_tmpfs(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
    stack
        .services
        .iter()
        .filter_map(|s| {
            let data = database_data(s)?;
            let m = data.mount.filter(|m| m.kind == MountType::Tmpfs)?;
            let message = format!(
                "{}: {} data at {} is on a tmpfs at {}: every stop or restart erases it",
                s.name,
                database_label(data.content),
                data.dir,
                m.target
            );
            Some(
                rule.finding(
                    stack,
                    &s.name,
                    m.line.or(s.line),
                    message,
                    volume_suggestion(stack, s, &data.dir),
                )
                .with_path(&m.target),
            )
        })
        .collect()
}

pub(super) fn database_data_shared_by_writers(
    rule: &Rule,
    stack: &Stack,
    _now: i64,
) -> Vec<Finding> {
    let mut writers: BTreeMap<(MountType, &str), Vec<(&Service, &Mount)>> = BTreeMap::new();
    for s in &stack.services {
        if s.running == Some(false) || s.replicas == 0 {
            continue;
        }
        let Some(m) = database_data(s).and_then(|d| d.mount) else {
            continue;
        };
        if m.read_only || !matches!(m.kind, MountType::Volume | MountType::Bind) {
            continue;
        }
        if let Some(source) = m.source.as_deref() {
            writers.entry((m.kind, source)).or_default().push((s, m));
        }
    }
    writers
        .into_iter()
        .filter_map(|((kind, source), users)| {
            let count: u32 = users.iter().map(|(s, _)| s.replicas).sum();
            let &(first, mount) = users.first()?;
            if count < 2 {
                return None;
            }
            let what = if kind == MountType::Bind {
                "host directory"
            } else {
                "volume"
            };
            let message = if users.len() == 1 {
                format!(
                    "{}: {count} replicas write the same {what} {source} at {}",
                    first.name, mount.target
                )
            } else {
                let names: Vec<&str> = users.iter().map(|(s, _)| s.name.as_str()).collect();
                let places: Vec<String> = users
                    .iter()
                    .map(|(s, m)| format!("{} at {}", s.name, m.target))
                    .collect();
                format!(
                    "{}: {count} database servers write the same {what} {source} ({})",
                    names.join(", "),
                    places.join(", ")
                )
            };
            let fix = "give each database server its own volume; for a second server use the database's replication, for a look at the data a read-only mount or a restored snapshot".to_string();
            let volume = (kind == MountType::Volume).then_some(source);
            Some(
                rule.finding(stack, &first.name, mount.line.or(first.line), message, fix)
                    .with_path(&mount.target)
                    .with_volume(volume),
            )
        })
        .collect()
}

pub(super) fn postgres_version_mismatch(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
    let mut findings = Vec::new();
    for s in &stack.services {
        if database(s) != Some(Content::Postgres) {
            continue;
        }
        let Some(major) = postgres_major(s) else {
            continue;
        };
        for m in &s.mounts {
            let Some(data_version) = m.pg_version.as_deref().map(str::trim) else {
                continue;
            };
            if data_version.is_empty() || data_version == major {
                continue;
            }
            let image = s.image.as_deref().unwrap_or_default();
            let message = format!(
                "{}: the data at {} was made by PostgreSQL {data_version}, but {image} runs PostgreSQL {major}: the server will not start on it",
                s.name, m.target
            );
            let fix = format!(
                "pin the image to PostgreSQL {data_version} (e.g. postgres:{data_version}), then upgrade on purpose: dump and restore, or pg_upgrade"
            );
            findings.push(
                rule.finding(stack, &s.name, m.line.or(s.line), message, fix)
                    .with_path(&m.target)
                    .with_volume(m.source.as_deref().filter(|_| m.kind != MountType::Bind)),
            );
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::rules::testing::*;
    use crate::tmpfs::TmpfsSize;

    #[test]
    fn lb001_database_without_a_mount() {
        let stack = stack_of(vec![
            service(
                "db",
                "postgres:16",
                vec![bind("/srv/init", "/docker-entrypoint-initdb.d")],
            ),
            service(
                "ok",
                "postgres:16",
                vec![volume("pg", "/var/lib/postgresql/data")],
            ),
            // A mount above the data directory covers it.
            service("parent", "mysql:8", vec![volume("lib", "/var/lib")]),
            // PGDATA below the mount is covered too.
            Service {
                environment: [(
                    "PGDATA".to_string(),
                    "/var/lib/postgresql/data/pgdata".to_string(),
                )]
                .into(),
                ..service(
                    "sub",
                    "postgres:16",
                    vec![volume("pg2", "/var/lib/postgresql/data")],
                )
            },
            // PostgreSQL 18 and its new layout, mounted at its parent.
            service(
                "pg18",
                "postgres:18",
                vec![volume("pg3", "/var/lib/postgresql")],
            ),
            // A Redis used as a cache keeps nothing.
            Service {
                command: vec!["redis-server".into(), "--save".into(), String::new()],
                ..service("cache", "redis:7", vec![])
            },
            service("web", "nginx", vec![]),
        ]);
        assert_eq!(
            messages("LB001", &stack),
            [
                "db: PostgreSQL data at /var/lib/postgresql/data is on no mount: it lives in the container's writable layer (or an anonymous volume, if the image declares one) and goes with the container"
            ]
        );
        let f = &run("LB001", &stack)[0];
        assert_eq!(f.path.as_deref(), Some("/var/lib/postgresql/data"));
        assert_eq!(
            f.location,
            Location::Engine {
                container: Some("db".into())
            }
        );
    }

    #[test]
    fn lb001_pgdata_moved_off_the_mount() {
        let stack = stack_of(vec![Service {
            environment: [("PGDATA".to_string(), "/pgdata".to_string())].into(),
            image_volumes: Some(vec!["/var/lib/postgresql/data".into()]),
            ..service(
                "db",
                "postgres:16",
                vec![volume("pg", "/var/lib/postgresql/data")],
            )
        }]);
        assert_eq!(
            messages("LB001", &stack),
            [
                "db: PostgreSQL data at /pgdata is on no mount: it lives in the container's writable layer and goes with the container"
            ]
        );
    }

    #[test]
    fn lb001_redis_with_append_only_file_is_a_database() {
        let stack = stack_of(vec![Service {
            command: vec![
                "redis-server".into(),
                "--save".into(),
                String::new(),
                "--appendonly".into(),
                "yes".into(),
            ],
            ..service("cache", "redis:7", vec![])
        }]);
        assert_eq!(run("LB001", &stack).len(), 1);
    }

    #[test]
    fn lb002_anonymous_volumes_seen_and_declared() {
        let anon = "a".repeat(64);
        let stack = stack_of(vec![
            service(
                "db",
                "mariadb:11",
                vec![mount(MountType::Anonymous, Some(&anon), "/var/lib/mysql")],
            ),
            Service {
                image_volumes: Some(vec!["/data/db".into(), "/data/configdb".into()]),
                ..service("mongo", "mongo:7", vec![])
            },
            service("ok", "mariadb:11", vec![volume("db", "/var/lib/mysql")]),
            // An anonymous volume that is not a database's data is fine.
            service(
                "app",
                "node:22",
                vec![mount(MountType::Anonymous, None, "/app/node_modules")],
            ),
        ]);
        assert_eq!(
            messages("LB002", &stack),
            [
                "db: MariaDB data at /var/lib/mysql is on an anonymous volume: `down -v` or `volume prune` deletes it",
                "mongo: MongoDB data at /data/db is on an anonymous volume the image declares with VOLUME: `down -v` or `volume prune` deletes it",
            ]
        );
        assert_eq!(
            run("LB002", &stack)[0].volume.as_deref(),
            Some(anon.as_str())
        );
        // The image's VOLUME makes it LB002's, not LB001's.
        assert!(run("LB001", &stack).is_empty());
    }

    #[test]
    fn lb003_database_on_tmpfs() {
        let stack = stack_of(vec![
            service(
                "db",
                "postgres:16",
                vec![mount(MountType::Tmpfs, None, "/var/lib/postgresql/data")],
            ),
            service(
                "ok",
                "postgres:16",
                vec![
                    volume("pg", "/var/lib/postgresql/data"),
                    Mount {
                        tmpfs_size: Some(TmpfsSize::Bytes(1 << 26)),
                        ..mount(MountType::Tmpfs, None, "/tmp")
                    },
                ],
            ),
        ]);
        assert_eq!(
            messages("LB003", &stack),
            [
                "db: PostgreSQL data at /var/lib/postgresql/data is on a tmpfs at /var/lib/postgresql/data: every stop or restart erases it"
            ]
        );
    }

    #[test]
    fn lb004_running_writers_of_one_volume() {
        let stack = stack_of(vec![
            service(
                "db",
                "postgres:16",
                vec![volume("pg", "/var/lib/postgresql/data")],
            ),
            service(
                "db-copy",
                "postgres:16",
                vec![volume("pg", "/var/lib/postgresql/data/")],
            ),
            // Stopped, read-only and non-database users do not write.
            Service {
                running: Some(false),
                ..service(
                    "db-old",
                    "postgres:16",
                    vec![volume("pg", "/var/lib/postgresql/data")],
                )
            },
            service(
                "db-ro",
                "postgres:16",
                vec![Mount {
                    read_only: true,
                    ..volume("pg", "/var/lib/postgresql/data")
                }],
            ),
            service("backup", "alpine", vec![volume("pg", "/src")]),
            service("alone", "mysql:8", vec![volume("my", "/var/lib/mysql")]),
        ]);
        let findings = run("LB004", &stack);
        assert_eq!(
            findings
                .iter()
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>(),
            [
                "db, db-copy: 2 database servers write the same volume pg (db at /var/lib/postgresql/data, db-copy at /var/lib/postgresql/data/)"
            ]
        );
        assert_eq!(findings[0].volume.as_deref(), Some("pg"));
    }

    #[test]
    fn lb004_replicas_share_binds_too() {
        let stack = stack_of(vec![Service {
            replicas: 3,
            running: None,
            ..service(
                "db",
                "mariadb:11",
                vec![bind("/srv/mysql", "/var/lib/mysql")],
            )
        }]);
        assert_eq!(
            messages("LB004", &stack),
            ["db: 3 replicas write the same host directory /srv/mysql at /var/lib/mysql"]
        );
        assert_eq!(run("LB004", &stack)[0].volume, None);
    }

    #[test]
    fn lb010_postgres_data_from_another_major() {
        let with_version = |v: &str| Mount {
            pg_version: Some(format!("{v}\n")),
            ..volume("pg", "/var/lib/postgresql/data")
        };
        let stack = stack_of(vec![
            service("db", "postgres:16-alpine", vec![with_version("15")]),
            service("same", "postgres:16.4", vec![with_version("16")]),
            Service {
                environment: [("PG_MAJOR".to_string(), "9.6".to_string())].into(),
                ..service("old", "postgres:latest", vec![with_version("9.6")])
            },
            // No major known: no finding.
            service("unknown", "postgres:latest", vec![with_version("14")]),
        ]);
        assert_eq!(
            messages("LB010", &stack),
            [
                "db: the data at /var/lib/postgresql/data was made by PostgreSQL 15, but postgres:16-alpine runs PostgreSQL 16: the server will not start on it"
            ]
        );
    }
}
