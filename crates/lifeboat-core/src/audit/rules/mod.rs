//! The rules: one function per mistake, each over the whole [`Stack`],
//! in a file per topic (`databases`, `mounts`, `backups`); this file holds
//! their table, texts included.
//!
//! Ids are stable: a rule may be reworded or refined, never renumbered,
//! and an id is never reused. A rule that needs a fact the source cannot
//! give (an owner, a `PG_VERSION`, a backup) stays silent when the fact is
//! `None`.

mod backups;
mod databases;
mod mounts;

use serde::Serialize;

use super::model::{Origin, Stack};
use super::{Finding, Severity};
use backups::{backup_missing_or_stale, external_volume_missing};
use databases::{
    database_data_not_mounted, database_data_on_anonymous_volume, database_data_on_tmpfs,
    database_data_shared_by_writers, postgres_version_mismatch,
};
use mounts::{
    config_mount_writable, data_mount_not_writable, dependencies_on_bind_mount,
    sensitive_host_path, tmpfs_without_size,
};

/// A rule of the audit.
#[derive(Clone, Debug, Serialize)]
pub struct Rule {
    /// Stable id, `LB` and three digits.
    pub id: &'static str,
    /// Short name in kebab case, for people and SARIF.
    pub name: &'static str,
    pub severity: Severity,
    /// One line: what the rule finds.
    pub summary: &'static str,
    /// Why it matters and how to fix it: what `audit --explain` prints.
    pub explanation: &'static str,
    #[serde(skip)]
    check: fn(&Rule, &Stack, i64) -> Vec<Finding>,
}

impl Rule {
    /// The rule's findings in `stack`, before [`super::IGNORE_LABEL`] is
    /// applied (that is [`super::audit`]'s job); `now` is seconds since the
    /// epoch.
    pub fn check(&self, stack: &Stack, now: i64) -> Vec<Finding> {
        (self.check)(self, stack, now)
    }

    fn finding(
        &self,
        stack: &Stack,
        subject: &str,
        line: Option<usize>,
        message: String,
        fix: String,
    ) -> Finding {
        Finding {
            rule: self.id,
            severity: self.severity,
            subject: subject.to_string(),
            volume: None,
            path: None,
            message,
            fix,
            location: stack.locate(subject, line),
        }
    }
}

impl Finding {
    fn with_path(mut self, path: &str) -> Self {
        self.path = Some(path.to_string());
        self
    }

    fn with_volume(mut self, volume: Option<&str>) -> Self {
        self.volume = volume.map(String::from);
        self
    }

    /// A finding less (or more) severe than its rule usually is.
    fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }
}

/// Every rule, in id order.
pub fn rules() -> &'static [Rule] {
    &RULES
}

/// The rule with this id (`LB003`, any case) or name.
pub fn rule(id_or_name: &str) -> Option<&'static Rule> {
    let wanted = id_or_name.trim();
    RULES
        .iter()
        .find(|r| r.id.eq_ignore_ascii_case(wanted) || r.name.eq_ignore_ascii_case(wanted))
}

static RULES: [Rule; 12] = [
    Rule {
        id: "LB001",
        name: "database-data-not-mounted",
        severity: Severity::Critical,
        summary: "A database's data directory is on no mount: the data lives in the container's writable layer.",
        explanation: "\
A database image keeps its data in a known directory (/var/lib/postgresql/data,
/var/lib/mysql, /data for Redis, /data/db for MongoDB). When no volume or bind
mount covers that directory, the data is written into the container's own
writable layer, or into an anonymous volume if the image declares a VOLUME
there. Either way it belongs to this one container: `docker rm`, `docker compose
down`, or recreating the container for a new image or a changed setting
starts the database empty, and `lifeboat backup` has no volume to take.

Fix: mount a named volume at the data directory. In compose:

    services:
      db:
        volumes:
          - db-data:/var/lib/postgresql/data
    volumes:
      db-data:

On a running container, copy the data out first (`docker cp`, or a dump with
the database's own client), then recreate the container with the volume and
restore into it.",
        check: database_data_not_mounted,
    },
    Rule {
        id: "LB002",
        name: "database-data-on-anonymous-volume",
        severity: Severity::High,
        summary: "A database's data directory is an anonymous volume, which `down -v` and `volume prune` delete.",
        explanation: "\
An anonymous volume has a random 64-digit name and no owner that says it
matters. `docker compose down -v`, `docker volume prune`, `docker rm -v` and
`docker run --rm` delete it without asking, and nothing ties it to the next
container of the same service: data kept there is one cleanup away from gone.
Images such as postgres and mysql declare their data directory as a VOLUME,
so a database started without a mount there gets one silently.

Fix: give the data a named volume (`db-data:/var/lib/postgresql/data`, with
`db-data:` under the top-level `volumes:`). To keep existing data, copy the
anonymous volume into the named one (`lifeboat copy`, or a helper container
that mounts both) before switching.",
        check: database_data_on_anonymous_volume,
    },
    Rule {
        id: "LB003",
        name: "database-data-on-tmpfs",
        severity: Severity::Critical,
        summary: "A database's data directory is a tmpfs: every stop or restart erases it.",
        explanation: "\
A tmpfs mount lives in memory. A database whose data directory is a tmpfs
loses everything on each stop, restart, host reboot or crash, and its data
also counts against the host's memory. This is sometimes done on purpose
for throw-away test databases; in any other stack it is data loss waiting
for the next restart.

Fix: mount a named volume at the data directory instead of the tmpfs. If the
database really is disposable, silence the rule for the service with the
label `lifeboat.audit.ignore=LB003`.",
        check: database_data_on_tmpfs,
    },
    Rule {
        id: "LB004",
        name: "database-data-shared-by-writers",
        severity: Severity::Critical,
        summary: "Two database containers mount the same data read-write.",
        explanation: "\
A database server assumes it is the only process writing its data directory.
Two servers on the same files (two services on one volume, a service scaled
to several replicas, or a second container started for a quick look) corrupt
each other's pages, write-ahead logs and locks; some refuse to start, others
start and corrupt silently. On the engine only running containers count;
in a compose file every service (times its replicas) does.

Fix: give each database server its own volume. For a replica, use the
database's own replication; for a one-off look, mount the volume read-only
into a stopped copy, or restore a snapshot into a scratch volume.",
        check: database_data_shared_by_writers,
    },
    Rule {
        id: "LB005",
        name: "tmpfs-without-size",
        severity: Severity::Medium,
        summary: "A tmpfs mount has no size limit.",
        explanation: "\
Whatever is written to a tmpfs takes the host's memory. Without a size limit,
a runaway log, cache or upload fills it until the kernel's default (half of
the host's memory per mount) is reached, pushing other containers into swap
or the OOM killer, which may pick a database.

Fix: give every tmpfs a size: `tmpfs: [\"/run:size=64m\"]`, or in the long
syntax `type: tmpfs` with `tmpfs: {size: 64m}`; on the command line
`--tmpfs /run:size=64m` or `--mount type=tmpfs,destination=/run,tmpfs-size=67108864`.",
        check: tmpfs_without_size,
    },
    Rule {
        id: "LB006",
        name: "sensitive-host-path",
        severity: Severity::High,
        summary: "A sensitive host path (/, /etc, home directories, the engine's data or socket) is bind-mounted writable (the socket even read-only, as a low finding).",
        explanation: "\
A container that can write the host's root, /etc, /usr, /boot, /root,
/home (or a user's home or its .ssh, .gnupg, .docker, .aws, .kube),
/var/lib/docker, /run or /proc and /sys can change the host's users, keys,
services and other containers' data: one compromised or buggy container
becomes the whole host, and a stray `rm -rf` in it erases data outside it.
The engine's socket (docker.sock, podman.sock, containerd.sock) is worse:
whoever can talk to it can remove every volume or start a privileged
container. Mounted read-only it is still reported, as a low finding rather
than a high one, because `:ro` does not restrict what is asked through a
socket; reverse proxies and dashboards (Traefik, Portainer) need it, and a
gate on `--fail-on high` lets them pass.
Paths below home directories other than credentials (a project directory in
/home/ada) are not flagged: that is where bind-mounted code usually lives.

Fix: mount only the file or directory the container needs, read-only (`:ro`)
where it only reads. For the socket, use a socket proxy that allows only the
API calls needed, or silence the rule for a trusted service with the label
`lifeboat.audit.ignore=LB006`.",
        check: sensitive_host_path,
    },
    Rule {
        id: "LB007",
        name: "config-mount-writable",
        severity: Severity::Low,
        summary: "A configuration file or directory is bind-mounted writable where read-only would do.",
        explanation: "\
Configuration is read by the container, not written. Mounted read-write, a
bug, an upgrade script or an intruder can rewrite the host's copy, which is
often the one under version control, and the change survives the container.
A bind mount counts as configuration when it is a single file (when the host
path is known to be a file, or by its extension: .conf, .cnf, .cfg, .ini,
.toml, .yml, .yaml, .json, .env, .xml, .properties, .pem, .crt, .key) or
when it is mounted under /etc in the container. Files that applications
write themselves (databases such as .db and .sqlite, logs, Traefik's
acme.json) are not configuration, nor are the directories under /etc that
applications keep their own state in: certificates (/etc/letsencrypt,
/etc/acme.sh), generated keys and peers (/etc/ssh, /etc/wireguard,
/etc/openvpn), GitLab's /etc/gitlab, Pi-hole's /etc/pihole and
/etc/dnsmasq.d.

Fix: append `:ro` to the mount (`./nginx.conf:/etc/nginx/nginx.conf:ro`) or
set `read_only: true` in the long syntax. If the application really writes
somewhere else under /etc, silence the rule for the service with the label
`lifeboat.audit.ignore=LB007`.",
        check: config_mount_writable,
    },
    Rule {
        id: "LB008",
        name: "dependencies-on-bind-mount",
        severity: Severity::Low,
        summary: "A dependency directory (node_modules, vendor, .venv) is a bind mount.",
        explanation: "\
Dependencies installed on the host and bind-mounted into a container replace
the ones built into the image: native modules compiled for the host's system
crash or misbehave in the container, versions drift from the lock file the
image was built with, and file watching over thousands of small files is
slow on Docker Desktop. The directory is also state the image should own.

Fix: install dependencies in the image and keep them out of the bind mount
of the source: after `- .:/app`, add an anonymous volume for the directory
(`- /app/node_modules`), so the image's copy shows through.",
        check: dependencies_on_bind_mount,
    },
    Rule {
        id: "LB009",
        name: "backup-missing-or-stale",
        severity: Severity::High,
        summary: "A volume's newest snapshot is missing or older than its policy allows, or a volume in use has no backup at all.",
        explanation: "\
A backup policy promises a recent snapshot; when the newest good snapshot is
older than the policy's maximum age (or there is none), the promise is
broken and the next loss is bigger than planned, usually because a schedule
stopped running or a dump has been failing. A volume that holds a
database's data and has neither a policy nor a single snapshot is one
mistake away from being gone (high); so is any other named volume a
container writes, if less surely worth keeping (medium). Only snapshots
taken on this host that can be restored count.

Fix: run `lifeboat backup` for the volume now, then find why the schedule
stopped (`lifeboat daemon` status, the dump's errors). Give the volumes a
policy (the label `lifeboat.max-age=26h`, or `max_age` in the configuration
file) so that the daemon keeps them fresh. A volume that holds nothing worth
keeping (a cache, scratch space) can say so with the label
`lifeboat.audit.ignore=LB009`.",
        check: backup_missing_or_stale,
    },
    Rule {
        id: "LB010",
        name: "postgres-version-mismatch",
        severity: Severity::High,
        summary: "A PostgreSQL data directory was made by another major version than the image runs.",
        explanation: "\
PostgreSQL's data files are tied to the major version that created them
(the PG_VERSION file says which). After the image is bumped across a major
version (postgres:15 to postgres:16, or `latest` moving on), the server
refuses to start on the old data directory: the service is down until the
data is upgraded or the old image comes back.

Fix: pin the image to the data's major version (`postgres:15-alpine`), then
upgrade on purpose: dump with the old version and restore into a new volume
with the new one, or run pg_upgrade. Keep a snapshot of the old volume until
the new server has run for a while.",
        check: postgres_version_mismatch,
    },
    Rule {
        id: "LB011",
        name: "data-mount-not-writable",
        severity: Severity::High,
        summary: "The container's user cannot write its data mount (uid/gid mismatch).",
        explanation: "\
A container that runs as a fixed non-root user (`user: \"1000:1000\"`, or the
image's USER) can only write a mount whose root it owns, whose group it is
in with group write permission, or that is writable by everyone. Otherwise
the service fails on its first write, or, worse, falls back to writing
somewhere inside its writable layer, which is lost with the container. This
is common after restoring or copying data with other ownership, or with
bind mounts created by root. Data mounts are the volumes a container writes
and the directory a database keeps its data in, bind-mounted or not; other
bind mounts (source code, a host directory it only reads) are not judged.
Users given by name cannot be resolved without the image and are not
checked, nor is anything on an engine that maps users to others on the host
(rootless, `userns-remap`).

Fix: give the mount to the container's user (`lifeboat chown`, or `chown -R
UID:GID` on the host path), or run the container as the owner of the data.",
        check: data_mount_not_writable,
    },
    Rule {
        id: "LB012",
        name: "external-volume-missing",
        severity: Severity::High,
        summary: "An external volume is referenced but does not exist.",
        explanation: "\
A volume declared `external: true` is one that compose neither creates nor
removes: it is expected to hold data made elsewhere. When it does not exist,
`docker compose up` fails, and the usual quick fix, `docker volume create`,
starts the service on an empty volume, hiding that the data is missing (a
wrong name, another host, a volume that was pruned).

Fix: find the data before creating anything: check the name (`name:` under
the volume), the host and `lifeboat ls`; restore it from a snapshot with
`lifeboat restore`. Create it empty only when empty is really meant.",
        check: external_volume_missing,
    },
];

/// Whether the stack was read from a compose file (fixes are then given
/// in its terms).
pub(super) fn is_compose(stack: &Stack) -> bool {
    matches!(stack.origin, Origin::Compose { .. })
}

/// What the rules' tests share.
#[cfg(test)]
pub(in crate::audit) mod testing {
    pub(in crate::audit) use super::rule;
    pub(in crate::audit) use crate::audit::model::{Mount, MountType, Origin, Service, Stack};
    pub(in crate::audit) use crate::audit::{BackupState, Finding, Location};

    pub(in crate::audit) const NOW: i64 = 1_750_000_000;
    pub(in crate::audit) const DAY: u64 = 86_400;

    pub(in crate::audit) fn engine() -> Stack {
        Stack::new(Origin::Engine {
            host: "unix:///var/run/docker.sock".into(),
        })
    }

    pub(in crate::audit) fn mount(kind: MountType, source: Option<&str>, target: &str) -> Mount {
        Mount {
            source: source.map(String::from),
            ..Mount::new(kind, target)
        }
    }

    pub(in crate::audit) fn volume(source: &str, target: &str) -> Mount {
        mount(MountType::Volume, Some(source), target)
    }

    pub(in crate::audit) fn bind(source: &str, target: &str) -> Mount {
        mount(MountType::Bind, Some(source), target)
    }

    pub(in crate::audit) fn service(name: &str, image: &str, mounts: Vec<Mount>) -> Service {
        Service {
            running: Some(true),
            mounts,
            ..Service::new(name, image)
        }
    }

    pub(in crate::audit) fn stack_of(services: Vec<Service>) -> Stack {
        Stack {
            services,
            ..engine()
        }
    }

    /// The findings of one rule.
    pub(in crate::audit) fn run(id: &str, stack: &Stack) -> Vec<Finding> {
        rule(id).map(|r| r.check(stack, NOW)).unwrap_or_default()
    }

    pub(in crate::audit) fn messages(id: &str, stack: &Stack) -> Vec<String> {
        run(id, stack).into_iter().map(|f| f.message).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn rules_have_unique_ids_and_full_texts() {
        let mut ids: Vec<&str> = rules().iter().map(|r| r.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), rules().len());
        for (i, r) in rules().iter().enumerate() {
            assert_eq!(r.id, format!("LB{:03}", i + 1));
            assert!(
                r.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                r.name
            );
            assert!(
                r.summary.ends_with('.') && !r.summary.contains('\n'),
                "{}",
                r.id
            );
            assert!(
                r.explanation.contains("\n\nFix: "),
                "{} explains no fix",
                r.id
            );
        }
        assert_eq!(
            rule("lb003").map(|r| r.name),
            Some("database-data-on-tmpfs")
        );
        assert_eq!(rule("tmpfs-without-size").map(|r| r.id), Some("LB005"));
        assert!(rule("LB999").is_none());
    }
}
