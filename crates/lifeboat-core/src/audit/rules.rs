//! The rules: one function per mistake, each over the whole [`Stack`].
//!
//! Ids are stable: a rule may be reworded or refined, never renumbered,
//! and an id is never reused. A rule that needs a fact the source cannot
//! give (an owner, a `PG_VERSION`, a backup) stays silent when the fact is
//! `None`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::model::{Mount, MountType, Origin, Owner, Service, Stack, VolumeDecl};
use super::shell::split_words;
use super::{Finding, Severity};
use crate::inventory::{self, Content};
use crate::tmpfs::TmpfsSize;

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

/// What a database keeps its data in.
pub(super) struct DatabaseData<'a> {
    pub(super) content: Content,
    /// The data directory inside the container.
    pub(super) dir: String,
    /// The mount that holds it, if any.
    pub(super) mount: Option<&'a Mount>,
}

/// The database a service runs as a server: its image as the inventory
/// recognises it, unless the image is a tool around the database or the
/// service runs the image's client instead of its server.
fn database(service: &Service) -> Option<Content> {
    let image = service.image.as_deref()?;
    let content = inventory::image_database(image)?;
    let tool = inventory::image_base(image)
        .split(['-', '_', '.'])
        .any(|word| TOOL_WORDS.contains(&word));
    (!tool && runs(service) != Runs::Client).then_some(content)
}

/// Words in an image's name that make it a tool around a database rather
/// than the server (`postgres-exporter`, `mongo-express`,
/// `redis-commander`): the inventory goes by the database's name alone.
const TOOL_WORDS: &[&str] = &[
    "exporter",
    "express",
    "commander",
    "insight",
    "redisinsight",
    "admin",
    "ui",
    "backup",
    "dump",
    "proxy",
    "router",
    "sentinel",
    "operator",
    "toolkit",
    "cli",
    "client",
    "migrate",
    "postgrest",
];

/// Programs that use a database image for its client, or for a script:
/// `command: pg_dump ...` in a backup job is no server.
const CLIENT_PROGRAMS: &[&str] = &[
    "psql",
    "pg_dump",
    "pg_dumpall",
    "pg_restore",
    "pg_basebackup",
    "pg_isready",
    "mysql",
    "mysqldump",
    "mysqladmin",
    "mariadb",
    "mariadb-dump",
    "mariadb-admin",
    "redis-cli",
    "valkey-cli",
    "mongosh",
    "mongo",
    "mongodump",
    "mongorestore",
    "sleep",
];

/// Shells: run bare they are a client (`docker run -it postgres bash`);
/// with `-c SCRIPT`, the script says what runs.
const SHELLS: &[&str] = &["sh", "bash", "ash", "dash", "zsh"];

/// Programs that start in front of the real one and hand over to it, and
/// words a shell puts in front of a program: after them comes the
/// program. `gosu` and `su-exec` take a user first.
const WRAPPERS: &[&str] = &[
    "docker-entrypoint.sh",
    "tini",
    "dumb-init",
    "--",
    "exec",
    "nohup",
    "env",
];
const USER_WRAPPERS: &[&str] = &["gosu", "su-exec"];

/// The database servers' own programs.
const SERVER_PROGRAMS: &[&str] = &[
    "postgres",
    "postmaster",
    "pg_ctl",
    "pg_ctlcluster",
    "mysqld",
    "mysqld_safe",
    "mariadbd",
    "mariadbd-safe",
    "redis-server",
    "valkey-server",
    "mongod",
];

/// What a command line runs, as far as the audit can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runs {
    /// A database server's program, or a script that starts one.
    Server,
    /// A client, a bare shell, or a script that starts no server.
    Client,
    /// Something else: an image's own start script, say.
    Unknown,
}

/// What a service runs. The entrypoint and command together decide,
/// unless they say nothing: then the command alone, which an image's
/// own entrypoint script usually runs when it is not the server (a
/// backup job's `pg_dump` under bitnami's entrypoint).
fn runs(service: &Service) -> Runs {
    match judge(&command_line(service)) {
        Runs::Unknown if !service.entrypoint.is_empty() => judge(&service.command),
        other => other,
    }
}

/// The entrypoint and the command, as the container runs them.
fn command_line(service: &Service) -> Vec<String> {
    service
        .entrypoint
        .iter()
        .chain(&service.command)
        .cloned()
        .collect()
}

fn judge(argv: &[String]) -> Runs {
    let Some((program, rest)) = program_of(argv) else {
        return Runs::Unknown;
    };
    let name = file_name(Path::new(program));
    if SHELLS.contains(&name) {
        return match shell_script(rest) {
            Some((script, args)) => {
                let server = simple_commands(script)
                    .iter()
                    .any(|c| judge(&expand_args(c, args)) == Runs::Server);
                if server { Runs::Server } else { Runs::Client }
            }
            None => Runs::Client,
        };
    }
    if SERVER_PROGRAMS.contains(&name) {
        Runs::Server
    } else if CLIENT_PROGRAMS.contains(&name) {
        Runs::Client
    } else {
        Runs::Unknown
    }
}

/// The program a command line runs, past the wrappers in front of it and
/// variable assignments (`PGUSER=x psql`), with its arguments.
fn program_of(argv: &[String]) -> Option<(&str, &[String])> {
    let mut i = 0;
    while let Some(word) = argv.get(i) {
        let name = file_name(Path::new(word));
        if USER_WRAPPERS.contains(&name) {
            i += 2;
        } else if WRAPPERS.contains(&name)
            || (word.contains('=') && !word.starts_with('-'))
            || (i > 0 && file_name(Path::new(&argv[i - 1])) == "env" && word.starts_with('-'))
        {
            i += 1;
        } else {
            return Some((word, &argv[i + 1..]));
        }
    }
    None
}

/// A shell's `-c SCRIPT [ARG0 ARGS...]` (`-c`, `-ec`, `-xc`): the script
/// and the words after it, which it sees as `$0`, `$1`, ...
fn shell_script(args: &[String]) -> Option<(&str, &[String])> {
    let flags = args.iter().take_while(|w| w.starts_with('-')).count();
    let has_c = args[..flags]
        .iter()
        .any(|w| !w.starts_with("--") && w.contains('c'));
    let script = args.get(flags).filter(|_| has_c)?;
    Some((script, &args[flags + 1..]))
}

/// A simple command of a script with `"$@"`, `"$*"` and `$1`...`$9`
/// replaced by the script's arguments (`args[0]` is `$0`).
fn expand_args(command: &[String], args: &[String]) -> Vec<String> {
    command
        .iter()
        .flat_map(|word| match word.as_str() {
            "$@" | "$*" => args.iter().skip(1).cloned().collect(),
            positional => match positional
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
            {
                Some(n) => args.get(n).cloned().into_iter().collect(),
                None => vec![word.clone()],
            },
        })
        .collect()
}

/// A shell script as its simple commands, split at `;`, `&`, `|`,
/// parentheses and new lines (a quoted one splits too, which only cuts a
/// word that names no program); quoted empty words (`--save ''`) stay.
fn simple_commands(script: &str) -> Vec<Vec<String>> {
    let separator = |c: char| matches!(c, ';' | '&' | '|' | '(' | ')');
    let mut commands = vec![Vec::new()];
    let words = script
        .lines()
        .flat_map(|line| std::iter::once(";".to_string()).chain(split_words(line)));
    for word in words {
        if !word.contains(separator) {
            if let Some(current) = commands.last_mut() {
                current.push(word);
            }
            continue;
        }
        let mut parts = word.split(separator).peekable();
        while let Some(part) = parts.next() {
            if !part.is_empty()
                && let Some(current) = commands.last_mut()
            {
                current.push(part.to_string());
            }
            if parts.peek().is_some() {
                commands.push(Vec::new());
            }
        }
    }
    commands.retain(|c| !c.is_empty());
    commands
}

/// The words that start the server: the simple command of a script that
/// runs it, or the whole command line.
fn server_words(service: &Service) -> Vec<String> {
    let whole = command_line(service);
    let script = program_of(&whole)
        .filter(|(program, _)| SHELLS.contains(&file_name(Path::new(program))))
        .and_then(|(_, rest)| shell_script(rest));
    match script {
        Some((script, args)) => simple_commands(script)
            .iter()
            .map(|c| expand_args(c, args))
            .find(|c| judge(c) == Runs::Server)
            .unwrap_or_default(),
        None => whole,
    }
}

/// Where a database service keeps data that matters, and on what. `None`
/// for services that are no database, and for a Redis that keeps nothing
/// on disk (`--save ""` without an append-only file): a cache.
pub(super) fn database_data(service: &Service) -> Option<DatabaseData<'_>> {
    let content = database(service)?;
    if content == Content::Redis && redis_keeps_nothing(service) {
        return None;
    }
    let custom_dir = pgdata(service).is_some();
    let dir = data_dir(service, content)?;
    let covering = service
        .mounts
        .iter()
        .filter(|m| m.kind != MountType::Npipe && Path::new(&dir).starts_with(m.target_path()))
        .max_by_key(|m| m.target_path().components().count());
    // The inventory also knows data directories the defaults miss, such as
    // /var/lib/postgresql/18/docker under `postgres:latest`, whose version
    // the tag does not tell; that knowledge does not hold when PGDATA
    // moved the data.
    let recognised = || {
        service.mounts.iter().find(|m| {
            !custom_dir
                && m.kind != MountType::Npipe
                && inventory::is_data_mount(content, &m.target)
        })
    };
    Some(DatabaseData {
        content,
        mount: covering.or_else(recognised),
        dir,
    })
}

fn pgdata(service: &Service) -> Option<&str> {
    service
        .environment
        .get("PGDATA")
        .map(|d| d.trim_end_matches('/'))
        .filter(|d| !d.is_empty())
}

/// The data directory of a database service: the inventory's default for
/// its database, moved by `PGDATA`, and for PostgreSQL 18 and later by
/// the major version (`/var/lib/postgresql/18/docker`).
fn data_dir(service: &Service, content: Content) -> Option<String> {
    if content == Content::Postgres {
        match (pgdata(service), postgres_major(service)) {
            (Some(dir), _) => return Some(dir.to_string()),
            (None, Some(major)) if major.parse::<u32>().is_ok_and(|m| m >= 18) => {
                return Some(format!("/var/lib/postgresql/{major}/docker"));
            }
            (None, _) => {}
        }
    }
    inventory::data_dir(content).map(String::from)
}

/// Whether a Redis runs with snapshots off (`--save ""`) and no
/// append-only file: it keeps nothing on disk.
fn redis_keeps_nothing(service: &Service) -> bool {
    let words = &server_words(service);
    let saves_off = words
        .windows(2)
        .any(|w| w[0] == "--save" && (w[1].is_empty() || w[1] == "''" || w[1] == "\"\""));
    let appends = words
        .windows(2)
        .any(|w| w[0] == "--appendonly" && w[1].eq_ignore_ascii_case("yes"));
    saves_off && !appends
}

/// The PostgreSQL major version an image runs: the official images'
/// `PG_MAJOR`, else the image's tag (`16-alpine` → `16`, `9.6.24` → `9.6`).
fn postgres_major(service: &Service) -> Option<String> {
    if let Some(major) = service
        .environment
        .get("PG_MAJOR")
        .filter(|m| !m.is_empty())
    {
        return Some(major.trim().to_string());
    }
    tag_major(service.image.as_deref()?)
}

fn tag_major(image: &str) -> Option<String> {
    let no_digest = image.split('@').next()?;
    let last = no_digest.rsplit('/').next()?;
    let (_, tag) = last.split_once(':')?;
    let version = tag
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?;
    let mut parts = version.split('.');
    let first: u32 = parts.next()?.parse().ok()?;
    if first >= 10 {
        Some(first.to_string())
    } else {
        // Before 10, the major version had two parts.
        let second: u32 = parts.next()?.parse().ok()?;
        Some(format!("{first}.{second}"))
    }
}

fn database_label(content: Content) -> &'static str {
    match content {
        Content::Postgres => "PostgreSQL",
        Content::Mariadb => "MariaDB",
        Content::Mysql => "MySQL",
        Content::Redis => "Redis",
        Content::Mongo => "MongoDB",
        Content::Cache => "cache",
        Content::Files => "file",
    }
}

fn is_compose(stack: &Stack) -> bool {
    matches!(stack.origin, Origin::Compose { .. })
}

/// Whether the image declares a `VOLUME` at or above `dir`: `None` when the
/// image's configuration is not known.
fn image_declares(service: &Service, dir: &str) -> Option<bool> {
    service.image_volumes.as_ref().map(|volumes| {
        volumes
            .iter()
            .any(|v| Path::new(dir).starts_with(v.trim_end_matches('/')))
    })
}

/// A named volume to suggest for a service's data.
fn volume_suggestion(stack: &Stack, service: &Service, dir: &str) -> String {
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

/// Namespaces whose database images keep data where the official ones
/// do, being built on them.
const BUILT_ON_OFFICIAL: &[&str] = &["postgis", "timescale", "pgvector", "valkey"];

/// Whether a service's data directory is known rather than guessed: set by
/// `PGDATA`, or the image is an official one (or built on one). Images of
/// other publishers (`bitnami/postgresql` keeps data in
/// /bitnami/postgresql, `linuxserver/mariadb` in /config) are recognised
/// as databases, but where their data lives is not known here.
fn known_layout(service: &Service) -> bool {
    pgdata(service).is_some() || service.image.as_deref().is_some_and(is_official)
}

/// The `VOLUME`s an official database image (or one built on it)
/// declares, for a compose file, where no image is at hand to ask. `None`
/// for every other image: not known.
pub(super) fn official_volumes(service: &Service) -> Option<Vec<String>> {
    let image = service.image.as_deref().filter(|i| is_official(i))?;
    let volumes: &[&str] = match inventory::image_database(image)? {
        // From 18 on, the image declares the directory above the
        // versioned data directories; `latest` is 18 or later.
        Content::Postgres => {
            let major = postgres_major(service)
                .and_then(|m| m.split('.').next().and_then(|m| m.parse::<u32>().ok()));
            if major.is_some_and(|m| m < 18) {
                &["/var/lib/postgresql/data"]
            } else {
                &["/var/lib/postgresql"]
            }
        }
        Content::Mariadb | Content::Mysql => &["/var/lib/mysql"],
        Content::Redis => &["/data"],
        Content::Mongo => &["/data/db", "/data/configdb"],
        Content::Cache | Content::Files => return None,
    };
    Some(volumes.iter().map(|v| (*v).to_string()).collect())
}

/// Whether an image is an official one (`postgres`, `library/redis`, on
/// any registry) or from a namespace that builds on them.
fn is_official(image: &str) -> bool {
    let name = image.split('@').next().unwrap_or(image);
    let name = name
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map_or(name, |(name, _)| name);
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
    {
        parts.remove(0);
    }
    match parts.as_slice() {
        [_] | ["library", _] => true,
        [namespace, _] => BUILT_ON_OFFICIAL.contains(namespace),
        _ => false,
    }
}

fn database_data_not_mounted(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
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

fn database_data_on_anonymous_volume(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
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

fn database_data_on_tmpfs(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
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

fn database_data_shared_by_writers(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
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

fn tmpfs_without_size(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
    let mut findings = Vec::new();
    for s in &stack.services {
        for m in &s.mounts {
            if m.kind != MountType::Tmpfs {
                continue;
            }
            let message = match m.tmpfs_size {
                None => format!(
                    "{}: tmpfs at {} has no size limit: what is written there takes the host's memory",
                    s.name, m.target
                ),
                // Half the memory is the kernel's default: no limit at all.
                Some(TmpfsSize::Percent(percent)) if percent >= 50 => format!(
                    "{}: tmpfs at {} may take {percent}% of the host's memory, no less than with no size limit",
                    s.name, m.target
                ),
                Some(_) => continue,
            };
            let fix = if is_compose(stack) {
                format!(
                    "set a size: `- \"{}:size=64m\"` under `tmpfs:`, or `tmpfs: {{size: 64m}}` in the long syntax",
                    m.target
                )
            } else {
                format!(
                    "recreate {} with `--tmpfs {}:size=64m` (or a size that fits)",
                    s.name, m.target
                )
            };
            findings.push(
                rule.finding(stack, &s.name, m.line.or(s.line), message, fix)
                    .with_path(&m.target),
            );
        }
    }
    findings
}

/// Host paths that hold the host's own configuration, programs or kernel
/// interfaces: writable from a container, they make it the host's owner.
const SYSTEM_DIRS: &[&str] = &[
    "/etc",
    "/usr",
    "/boot",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/proc",
    "/sys",
    "/var/lib/docker",
];

/// Credential directories in a home directory.
const CREDENTIAL_DIRS: &[&str] = &[".ssh", ".gnupg", ".docker", ".aws", ".kube"];

const ENGINE_SOCKETS: &[&str] = &["docker.sock", "podman.sock", "containerd.sock"];

fn is_engine_socket(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| ENGINE_SOCKETS.contains(&n))
}

/// Why a bind of `m`'s source is sensitive, if it is.
fn bind_sensitivity(m: &Mount) -> Option<&'static str> {
    let source = m.source_path()?;
    // A project kept below a system directory (/usr/src/app,
    // /etc/stacks/web) makes its own files no part of the system. One
    // kept in a system directory itself (a compose file in /etc) does
    // not, nor does a source that leaves the project (`../../etc`).
    let own_file_of_a_project_below_the_system = m.relative_to.as_deref().is_some_and(|dir| {
        source.starts_with(dir)
            && SYSTEM_DIRS
                .iter()
                .any(|d| dir.starts_with(d) && dir != Path::new(d))
    });
    if own_file_of_a_project_below_the_system && !is_engine_socket(source) {
        return None;
    }
    sensitivity(source, m.read_only)
}

/// Why a bind of `path` is sensitive, if it is. The engine's socket is
/// sensitive read-only too; the rest only when writable.
fn sensitivity(path: &Path, read_only: bool) -> Option<&'static str> {
    if is_engine_socket(path) {
        return Some(if read_only {
            "the engine's socket: `:ro` does not limit what is asked through it"
        } else {
            "the engine's socket, which controls every container and volume"
        });
    }
    if read_only {
        return None;
    }
    if path == Path::new("/") {
        return Some("the host's whole file system");
    }
    if let Some(dir) = SYSTEM_DIRS.iter().find(|d| path.starts_with(d)) {
        return Some(if *dir == "/var/lib/docker" {
            "the engine's own data, every container's included"
        } else {
            "a part of the host system"
        });
    }
    if path == Path::new("/run") || path == Path::new("/var/run") {
        return Some("the host's runtime directory, which holds the engine's socket");
    }
    let home = if path.starts_with("/root") {
        Some(Path::new("/root"))
    } else if path.starts_with("/home") {
        path.ancestors()
            .find(|a| a.parent() == Some(Path::new("/home")))
    } else {
        None
    };
    match home {
        _ if path == Path::new("/home") => Some("every user's home directory"),
        Some(home) if path == home => Some("a home directory, credentials included"),
        Some(home) => {
            let below = path.strip_prefix(home).ok()?;
            let first = below.components().next()?.as_os_str().to_str()?;
            CREDENTIAL_DIRS
                .contains(&first)
                .then_some("a user's credentials")
        }
        None => None,
    }
}

fn sensitive_host_path(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
    let mut findings = Vec::new();
    for s in &stack.services {
        for m in &s.mounts {
            if m.kind != MountType::Bind {
                continue;
            }
            let (Some(source), Some(why)) = (m.source_path(), bind_sensitivity(m)) else {
                continue;
            };
            let access = if m.read_only {
                "read-only"
            } else {
                "read-write"
            };
            let message = format!(
                "{}: bind mount of {} ({why}) at {}, {access}",
                s.name,
                source.display(),
                m.target
            );
            let socket = is_engine_socket(source);
            let fix = if socket {
                "drop the socket, or put a socket proxy in front of it that allows only the calls needed".to_string()
            } else {
                format!(
                    "mount only what {} needs, read-only (`:ro`) where it only reads",
                    s.name
                )
            };
            let finding = rule
                .finding(stack, &s.name, m.line.or(s.line), message, fix)
                .with_path(&source.to_string_lossy());
            findings.push(if socket && m.read_only {
                finding.with_severity(Severity::Low)
            } else {
                finding
            });
        }
    }
    findings
}

/// Extensions of configuration files.
const CONFIG_EXTENSIONS: &[&str] = &[
    "conf",
    "cnf",
    "cfg",
    "ini",
    "toml",
    "yml",
    "yaml",
    "json",
    "env",
    "xml",
    "properties",
    "pem",
    "crt",
    "key",
];

/// Files that applications write themselves: data, logs, sockets, and
/// Traefik's certificate store (a `.json` it must write).
const WRITTEN_EXTENSIONS: &[&str] = &[
    "db", "sqlite", "sqlite3", "db3", "log", "sock", "lock", "pid",
];
const WRITTEN_FILES: &[&str] = &["acme.json"];

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

fn extension(name: &str) -> Option<String> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() || name.starts_with('.')).then(|| ext.to_ascii_lowercase())
}

fn is_written_file(name: &str) -> bool {
    WRITTEN_FILES.contains(&name)
        || extension(name).is_some_and(|e| WRITTEN_EXTENSIONS.contains(&e.as_str()))
}

fn has_config_extension(name: &str) -> bool {
    extension(name).is_some_and(|e| CONFIG_EXTENSIONS.contains(&e.as_str()))
}

/// Directories under `/etc` that applications write their own state to:
/// issued certificates, generated host keys and peers, settings changed
/// from a web page.
const WRITTEN_ETC_DIRS: &[&str] = &[
    "letsencrypt",
    "acme.sh",
    "ssh",
    "wireguard",
    "openvpn",
    "gitlab",
    "pihole",
    "dnsmasq.d",
];

/// Whether a container path is in one of [`WRITTEN_ETC_DIRS`].
fn in_written_etc_dir(target: &Path) -> bool {
    target
        .strip_prefix("/etc")
        .ok()
        .and_then(|below| below.components().next())
        .and_then(|first| first.as_os_str().to_str())
        .is_some_and(|first| WRITTEN_ETC_DIRS.contains(&first))
}

/// Whether a bind mount looks like configuration: a single file that is
/// not data, or a directory under `/etc` but where applications keep
/// their own state.
fn looks_like_config(m: &Mount) -> bool {
    let source = m.source_path().map(file_name).unwrap_or_default();
    let target = file_name(m.target_path());
    if is_written_file(source) || is_written_file(target) {
        return false;
    }
    let single_file = match m.host_is_file {
        Some(is_file) => is_file,
        None => has_config_extension(source) || has_config_extension(target),
    };
    single_file || (m.target_path().starts_with("/etc") && !in_written_etc_dir(m.target_path()))
}

fn config_mount_writable(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
    let mut findings = Vec::new();
    for s in &stack.services {
        for m in &s.mounts {
            if m.kind != MountType::Bind || m.read_only {
                continue;
            }
            let Some(source) = m.source_path() else {
                continue;
            };
            // Sensitive paths are the business of LB006, which says more.
            if bind_sensitivity(m).is_some() || !looks_like_config(m) {
                continue;
            }
            let message = format!(
                "{}: configuration {} is mounted read-write at {}",
                s.name,
                source.display(),
                m.target
            );
            let fix = if is_compose(stack) {
                format!(
                    "mount it read-only: append `:ro` to the entry for {}, or set `read_only: true`",
                    m.target
                )
            } else {
                format!(
                    "recreate {} with {} mounted read-only (`:ro`)",
                    s.name, m.target
                )
            };
            findings.push(
                rule.finding(stack, &s.name, m.line.or(s.line), message, fix)
                    .with_path(&m.target),
            );
        }
    }
    findings
}

/// Directories that package managers fill.
const DEPENDENCY_DIRS: &[&str] = &["node_modules", "vendor", ".venv", "bower_components"];

fn dependencies_on_bind_mount(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
    let mut findings = Vec::new();
    for s in &stack.services {
        for m in &s.mounts {
            if m.kind != MountType::Bind {
                continue;
            }
            let source = m.source_path().map(file_name).unwrap_or_default();
            let target = file_name(m.target_path());
            if !DEPENDENCY_DIRS.contains(&target) && !DEPENDENCY_DIRS.contains(&source) {
                continue;
            }
            let message = format!(
                "{}: dependency directory {} is a bind mount of {}: the host's packages replace the image's",
                s.name,
                m.target,
                m.source.as_deref().unwrap_or_default()
            );
            let fix = format!(
                "install dependencies in the image; drop this bind mount, and if the source directory is bind-mounted, add `- {}` (an anonymous volume) after it",
                m.target
            );
            findings.push(
                rule.finding(stack, &s.name, m.line.or(s.line), message, fix)
                    .with_path(&m.target),
            );
        }
    }
    findings
}

/// The services mounting a volume, with their mounts.
fn users_of<'a>(stack: &'a Stack, volume: &VolumeDecl) -> Vec<(&'a Service, &'a Mount)> {
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
fn database_in(stack: &Stack, volume: &VolumeDecl) -> Option<Content> {
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
fn written_data(volume: &VolumeDecl, users: &[(&Service, &Mount)]) -> bool {
    volume.holds != Some(Content::Cache)
        && users
            .iter()
            .any(|(_, m)| m.kind == MountType::Volume && !m.read_only)
}

/// `3d 4h`, `5h 10m`, `12m`: an age for people.
fn human_duration(seconds: u64) -> String {
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

fn backup_missing_or_stale(rule: &Rule, stack: &Stack, now: i64) -> Vec<Finding> {
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

fn postgres_version_mismatch(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
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

/// Whether a process of `uid` with the primary group `gid` (when known)
/// and the supplementary `groups` can write a directory owned by `owner`.
/// An unknown mode counts as the usual one for the owner (it can write)
/// and as undecidable for the group.
fn can_write(uid: u32, gid: Option<u32>, groups: &[u32], owner: Owner) -> bool {
    let bit = |mask: u32| owner.mode.is_none_or(|mode| mode & mask != 0);
    if uid == owner.uid {
        return bit(0o200);
    }
    if owner.mode.is_some_and(|mode| mode & 0o002 != 0) {
        return true;
    }
    if gid == Some(owner.gid) || groups.contains(&owner.gid) {
        return bit(0o020);
    }
    // The primary group comes from the image's /etc/passwd when not given:
    // it might be the owner's group, so only a mode without group write
    // decides.
    gid.is_none() && bit(0o020)
}

fn data_mount_not_writable(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
    let mut findings = Vec::new();
    for s in &stack.services {
        let (Some(uid), gid) = s.numeric_user() else {
            continue;
        };
        if uid == 0 {
            continue;
        }
        let groups: Vec<u32> = s.group_add.iter().filter_map(|g| g.parse().ok()).collect();
        let database_mount = database_data(s).and_then(|d| d.mount);
        for m in &s.mounts {
            let Some(owner) = m.owner else { continue };
            let data_mount = match m.kind {
                MountType::Volume | MountType::Anonymous => true,
                MountType::Bind => database_mount.is_some_and(|d| std::ptr::eq(d, m)),
                MountType::Tmpfs | MountType::Npipe => false,
            };
            if m.read_only || !data_mount || m.host_is_file == Some(true) {
                continue;
            }
            if can_write(uid, gid, &groups, owner) {
                continue;
            }
            let user = match gid {
                Some(g) => format!("{uid}:{g}"),
                None => uid.to_string(),
            };
            let mode = owner
                .mode
                .map(|m| format!(", mode {m:o}"))
                .unwrap_or_default();
            let message = format!(
                "{}: runs as {user} but {} belongs to {}:{}{mode}: it cannot write there",
                s.name, m.target, owner.uid, owner.gid
            );
            let fix = format!(
                "give {} to {user} (`lifeboat chown`, or chown on the host), or run {} as {}:{}",
                m.target, s.name, owner.uid, owner.gid
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

fn external_volume_missing(rule: &Rule, stack: &Stack, _now: i64) -> Vec<Finding> {
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
mod layout_tests {
    use super::*;

    fn service(image: &str) -> Service {
        Service::new("db", image)
    }

    #[test]
    fn only_official_layouts_count_as_known() {
        for image in [
            "postgres:16",
            "docker.io/library/postgres:16-alpine",
            "localhost:5000/mariadb",
            "postgis/postgis:16-3.4",
            "redis@sha256:0123",
        ] {
            assert!(known_layout(&service(image)), "{image}");
        }
        for image in [
            "bitnami/postgresql:15",
            "docker.io/bitnami/redis:7",
            "lscr.io/linuxserver/mariadb",
            "ghcr.io/org/team/postgres:15",
        ] {
            assert!(!known_layout(&service(image)), "{image}");
        }
        let mut moved = service("bitnami/postgresql:15");
        moved
            .environment
            .insert("PGDATA".into(), "/bitnami/postgresql/data".into());
        assert!(known_layout(&moved));
    }

    #[test]
    fn a_bitnami_database_on_its_own_volume_is_not_in_the_writable_layer() {
        let mut stack = Stack::new(Origin::Engine {
            host: "unix:///var/run/docker.sock".into(),
        });
        let mut db = service("bitnami/postgresql:15");
        db.mounts.push({
            let mut m = Mount::new(MountType::Volume, "/bitnami/postgresql");
            m.source = Some("pg".into());
            m
        });
        stack.services.push(db);
        let rule = rule("LB001").expect("LB001");
        assert!(rule.check(&stack, 0).is_empty());
        stack.services[0].image = Some("postgres:15".into());
        stack.services[0].mounts.clear();
        assert_eq!(
            rule.check(&stack, 0).len(),
            1,
            "the official image is still judged"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{BackupState, Location};

    const NOW: i64 = 1_750_000_000;
    const DAY: u64 = 86_400;

    fn engine() -> Stack {
        Stack::new(Origin::Engine {
            host: "unix:///var/run/docker.sock".into(),
        })
    }

    fn mount(kind: MountType, source: Option<&str>, target: &str) -> Mount {
        Mount {
            source: source.map(String::from),
            ..Mount::new(kind, target)
        }
    }

    fn volume(source: &str, target: &str) -> Mount {
        mount(MountType::Volume, Some(source), target)
    }

    fn bind(source: &str, target: &str) -> Mount {
        mount(MountType::Bind, Some(source), target)
    }

    fn service(name: &str, image: &str, mounts: Vec<Mount>) -> Service {
        Service {
            running: Some(true),
            mounts,
            ..Service::new(name, image)
        }
    }

    fn stack_of(services: Vec<Service>) -> Stack {
        Stack {
            services,
            ..engine()
        }
    }

    /// The findings of one rule.
    fn run(id: &str, stack: &Stack) -> Vec<Finding> {
        rule(id).map(|r| r.check(stack, NOW)).unwrap_or_default()
    }

    fn messages(id: &str, stack: &Stack) -> Vec<String> {
        run(id, stack).into_iter().map(|f| f.message).collect()
    }

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

    #[test]
    fn databases_are_recognised_by_the_inventorys_images() {
        for (image, want) in [
            ("postgres:16-alpine", Some(Content::Postgres)),
            ("docker.io/bitnami/postgresql:15", Some(Content::Postgres)),
            ("timescale/timescaledb:latest-pg16", Some(Content::Postgres)),
            ("mariadb:11", Some(Content::Mariadb)),
            ("mysql:8.4", Some(Content::Mysql)),
            ("redis:7", Some(Content::Redis)),
            ("valkey/valkey:8", Some(Content::Redis)),
            ("mongo:7", Some(Content::Mongo)),
            ("redis/redis-stack-server:7.4.0-v0", Some(Content::Redis)),
            ("nginx:1.27", None),
            // Tools named after their database are no servers.
            ("prometheuscommunity/postgres-exporter:v0.15.0", None),
            ("oliver006/redis_exporter:v1.62.0", None),
            ("prom/mysqld-exporter", None),
            ("mongo-express:1", None),
            ("rediscommander/redis-commander", None),
            ("redis/redisinsight:2", None),
            ("postgrest/postgrest:v12", None),
            ("prodrigestivill/postgres-backup-local:16", None),
        ] {
            assert_eq!(database(&Service::new("s", image)), want, "{image}");
        }
    }

    #[test]
    fn database_images_running_their_clients_are_no_servers() {
        let with = |entrypoint: &[&str], command: &[&str]| Service {
            entrypoint: entrypoint.iter().map(|w| (*w).to_string()).collect(),
            command: command.iter().map(|w| (*w).to_string()).collect(),
            ..Service::new("s", "postgres:16")
        };
        assert_eq!(database(&with(&[], &["pg_dump", "-h", "db"])), None);
        assert_eq!(
            database(&with(&["/bin/sh", "-c"], &["pg_dumpall > /b/all.sql"])),
            None
        );
        assert_eq!(database(&with(&["docker-entrypoint.sh"], &["psql"])), None);
        assert_eq!(database(&with(&[], &["bash"])), None);
        // Regression: a script that only names the server's user or host
        // is still a client's.
        assert_eq!(
            database(&with(
                &[],
                &[
                    "sh",
                    "-c",
                    "pg_dump -U postgres -h postgres shop > /b/shop.sql"
                ]
            )),
            None
        );
        assert_eq!(
            database(&with(
                &[],
                &["env", "-i", "PGPASSWORD=x", "psql", "-h", "db"]
            )),
            None
        );
        // An image's own entrypoint runs the command it is given.
        let bitnami_dump = Service {
            image: Some("bitnami/postgresql:16".into()),
            ..with(
                &["/opt/bitnami/scripts/postgresql/entrypoint.sh"],
                &["pg_dump", "-h", "db"],
            )
        };
        assert_eq!(database(&bitnami_dump), None);
        assert_eq!(
            database(&with(
                &[],
                &[
                    "bash",
                    "-ec",
                    "set -e; pg_dump -h db shop | gzip > /b/shop.gz"
                ]
            )),
            None
        );
        let servers = [
            with(&[], &[]),
            with(&[], &["sh", "-c", "exec postgres -c fsync=on"]),
            with(&["/bin/sh", "-c"], &["sleep 5 && postgres"]),
            with(&["tini", "--", "docker-entrypoint.sh"], &["postgres"]),
            with(
                &["docker-entrypoint.sh"],
                &[
                    "sh",
                    "-c",
                    "exec docker-entrypoint.sh \"$@\"",
                    "--",
                    "postgres",
                ],
            ),
            with(&["gosu", "postgres"], &["postgres"]),
            with(&[], &["postgres", "-c", "max_connections=200"]),
            with(&[], &["-c", "fsync=on"]),
            with(&["docker-entrypoint.sh"], &["postgres"]),
            with(
                &["/opt/bitnami/scripts/postgresql/entrypoint.sh"],
                &["/opt/bitnami/scripts/postgresql/run.sh"],
            ),
        ];
        for s in servers {
            assert_eq!(
                database(&s),
                Some(Content::Postgres),
                "{:?} {:?}",
                s.entrypoint,
                s.command
            );
        }
    }

    #[test]
    fn a_redis_started_by_a_shell_is_judged_by_its_script() {
        let redis = |command: &[&str]| Service {
            entrypoint: vec!["docker-entrypoint.sh".into()],
            command: command.iter().map(|w| (*w).to_string()).collect(),
            ..Service::new("cache", "redis:7")
        };
        let keeps = redis(&["sh", "-c", "redis-server --appendonly yes"]);
        assert_eq!(database(&keeps), Some(Content::Redis));
        assert!(database_data(&keeps).is_some());
        let cache = redis(&[
            "sh",
            "-c",
            "redis-server --save '' --appendonly no --requirepass \"$$PASS\"",
        ]);
        assert_eq!(database(&cache), Some(Content::Redis));
        assert!(database_data(&cache).is_none(), "a cache keeps nothing");
        assert_eq!(
            simple_commands("a x;b && c|d ''\n e"),
            [
                vec!["a", "x"],
                vec!["b"],
                vec!["c"],
                vec!["d", ""],
                vec!["e"]
            ]
        );
    }

    #[test]
    fn postgres_majors_come_from_pg_major_or_the_tag() {
        assert_eq!(tag_major("postgres:16-alpine").as_deref(), Some("16"));
        assert_eq!(tag_major("postgres:16.4-bookworm").as_deref(), Some("16"));
        assert_eq!(
            tag_major("registry:5000/lib/postgres:9.6.24").as_deref(),
            Some("9.6")
        );
        assert_eq!(tag_major("postgres:9").as_deref(), None);
        assert_eq!(tag_major("postgres:latest").as_deref(), None);
        assert_eq!(tag_major("postgres").as_deref(), None);
        assert_eq!(tag_major("postgres:17@sha256:abc").as_deref(), Some("17"));
        let mut s = Service::new("db", "postgres:latest");
        s.environment.insert("PG_MAJOR".into(), "17".into());
        assert_eq!(postgres_major(&s).as_deref(), Some("17"));
    }

    #[test]
    fn data_directories_follow_pgdata_and_postgres_18() {
        let mut s = Service::new("db", "postgres:16");
        assert_eq!(
            data_dir(&s, Content::Postgres).as_deref(),
            Some("/var/lib/postgresql/data")
        );
        s.image = Some("postgres:18".into());
        assert_eq!(
            data_dir(&s, Content::Postgres).as_deref(),
            Some("/var/lib/postgresql/18/docker")
        );
        s.environment.insert("PGDATA".into(), "/pgdata/".into());
        assert_eq!(data_dir(&s, Content::Postgres).as_deref(), Some("/pgdata"));
    }

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
    fn lb005_tmpfs_without_size() {
        let stack = stack_of(vec![service(
            "web",
            "nginx",
            vec![
                mount(MountType::Tmpfs, None, "/run"),
                Mount {
                    tmpfs_size: Some(TmpfsSize::Percent(10)),
                    ..mount(MountType::Tmpfs, None, "/tmp")
                },
                Mount {
                    tmpfs_size: Some(TmpfsSize::Percent(50)),
                    ..mount(MountType::Tmpfs, None, "/var/cache")
                },
            ],
        )]);
        assert_eq!(
            messages("LB005", &stack),
            [
                "web: tmpfs at /run has no size limit: what is written there takes the host's memory",
                "web: tmpfs at /var/cache may take 50% of the host's memory, no less than with no size limit",
            ]
        );
        assert!(run("LB005", &stack)[0].fix.contains("--tmpfs /run:size="));
    }

    #[test]
    fn lb006_sensitive_paths() {
        let flagged = [
            ("/", false),
            ("/etc", false),
            ("/etc/nginx", false),
            ("/var/lib/docker/volumes", false),
            ("/root", false),
            ("/home", false),
            ("/home/ada", false),
            ("/home/ada/.ssh", false),
            ("/root/.aws/credentials", false),
            ("/run", false),
            ("/var/run/docker.sock", true),
            ("/run/user/1000/docker.sock", true),
            ("/run/podman/podman.sock", false),
        ];
        let fine = [
            ("/", true),
            ("/etc/localtime", true),
            ("/var/lib/docker", true),
            ("/home/ada/projects/shop", false),
            ("/srv/etc", false),
            ("/etcetera", false),
            ("/run/secrets", false),
            ("/rootfs", false),
        ];
        for (path, ro) in flagged {
            assert!(sensitivity(Path::new(path), ro).is_some(), "{path} ro={ro}");
        }
        for (path, ro) in fine {
            assert_eq!(sensitivity(Path::new(path), ro), None, "{path} ro={ro}");
        }
        let stack = stack_of(vec![service(
            "proxy",
            "traefik:3",
            vec![
                Mount {
                    read_only: true,
                    ..bind("/var/run/docker.sock", "/var/run/docker.sock")
                },
                bind("/etc", "/host/etc"),
                Mount {
                    read_only: true,
                    ..bind("/etc/ssl/certs", "/etc/ssl/certs")
                },
                bind("/run/podman/podman.sock", "/podman.sock"),
            ],
        )]);
        let found: Vec<(Severity, String)> = run("LB006", &stack)
            .into_iter()
            .map(|f| (f.severity, f.message))
            .collect();
        assert_eq!(
            found,
            [
                (
                    Severity::Low,
                    "proxy: bind mount of /var/run/docker.sock (the engine's socket: `:ro` does not limit what is asked through it) at /var/run/docker.sock, read-only".to_string()
                ),
                (
                    Severity::High,
                    "proxy: bind mount of /etc (a part of the host system) at /host/etc, read-write".to_string()
                ),
                (
                    Severity::High,
                    "proxy: bind mount of /run/podman/podman.sock (the engine's socket, which controls every container and volume) at /podman.sock, read-write".to_string()
                ),
            ]
        );
    }

    #[test]
    fn lb007_config_mounted_writable() {
        let stack = stack_of(vec![service(
            "web",
            "nginx",
            vec![
                bind("/srv/web/nginx.conf", "/etc/nginx/nginx.conf"),
                bind("/srv/web/conf.d", "/etc/nginx/conf.d"),
                bind("/srv/app/settings.toml", "/app/settings.toml"),
                Mount {
                    host_is_file: Some(true),
                    ..bind("/srv/app/Caddyfile", "/srv/Caddyfile")
                },
                // Read-only, data, written files, directories elsewhere.
                Mount {
                    read_only: true,
                    ..bind("/srv/web/site.conf", "/etc/nginx/site.conf")
                },
                Mount {
                    host_is_file: Some(true),
                    ..bind("/srv/app/app.sqlite", "/data/app.sqlite")
                },
                bind("/srv/traefik/acme.json", "/acme.json"),
                bind("/srv/www", "/usr/share/nginx/html"),
                Mount {
                    host_is_file: Some(false),
                    ..bind("/srv/weird.conf", "/data/weird.conf")
                },
                // The host's /etc is LB006's.
                bind("/etc/timezone", "/etc/timezone"),
                // Directories under /etc that applications write.
                bind("/srv/certbot/conf", "/etc/letsencrypt"),
                bind("/srv/wg", "/etc/wireguard"),
                bind("/srv/pihole/dnsmasq", "/etc/dnsmasq.d/"),
                // But a single file there is configuration.
                Mount {
                    host_is_file: Some(true),
                    ..bind("/srv/ssh/sshd_config", "/etc/ssh/sshd_config")
                },
            ],
        )]);
        let paths: Vec<Option<String>> = run("LB007", &stack).into_iter().map(|f| f.path).collect();
        assert_eq!(
            paths,
            [
                Some("/etc/nginx/nginx.conf".into()),
                Some("/etc/nginx/conf.d".into()),
                Some("/app/settings.toml".into()),
                Some("/srv/Caddyfile".into()),
                Some("/etc/ssh/sshd_config".into()),
            ]
        );
        assert_eq!(
            messages("LB007", &stack)[0],
            "web: configuration /srv/web/nginx.conf is mounted read-write at /etc/nginx/nginx.conf"
        );
    }

    #[test]
    fn lb008_dependency_directories() {
        let stack = stack_of(vec![service(
            "app",
            "node:22",
            vec![
                bind("/srv/app", "/app"),
                bind("/srv/app/node_modules", "/app/node_modules"),
                bind("/srv/php/vendor", "/var/www/lib"),
                mount(MountType::Anonymous, None, "/app/vendor"),
                volume("venv", "/app/.venv"),
            ],
        )]);
        assert_eq!(
            messages("LB008", &stack),
            [
                "app: dependency directory /app/node_modules is a bind mount of /srv/app/node_modules: the host's packages replace the image's",
                "app: dependency directory /var/www/lib is a bind mount of /srv/php/vendor: the host's packages replace the image's",
            ]
        );
    }

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

    #[test]
    fn lb011_users_that_cannot_write() {
        let owned = |uid, gid, mode| Mount {
            owner: Some(Owner { uid, gid, mode }),
            ..volume("data", "/data")
        };
        let as_user = |name: &str, user: &str, m: Mount| Service {
            user: Some(user.into()),
            ..service(name, "example/app", vec![m])
        };
        let stack = stack_of(vec![
            as_user("mismatch", "1000:1000", owned(0, 0, Some(0o755))),
            as_user("unknown-mode", "1000:1000", owned(999, 999, None)),
            as_user("no-group-write", "1000", owned(0, 0, Some(0o755))),
            // Owner, group with write, everyone, root, names: fine.
            as_user("owner", "999", owned(999, 999, Some(0o700))),
            as_user("group", "1000:50", owned(0, 50, Some(0o775))),
            Service {
                group_add: vec!["50".into()],
                ..as_user("added", "1000:1000", owned(0, 50, Some(0o770)))
            },
            as_user("world", "1000:1000", owned(0, 0, Some(0o777))),
            as_user("root", "0", owned(999, 999, Some(0o700))),
            as_user("named", "postgres", owned(0, 0, Some(0o700))),
            as_user("primary-unknown", "1000", owned(0, 50, Some(0o775))),
            as_user(
                "read-only",
                "1000:1000",
                Mount {
                    read_only: true,
                    ..owned(0, 0, Some(0o755))
                },
            ),
            // A bind mount of source code is no data mount...
            as_user(
                "code",
                "1000:1000",
                Mount {
                    owner: Some(Owner {
                        uid: 0,
                        gid: 0,
                        mode: Some(0o755),
                    }),
                    ..bind("/srv/app", "/app")
                },
            ),
            // ...but a database's data directory is, bound or not.
            Service {
                user: Some("999:999".into()),
                ..service(
                    "pg",
                    "postgres:16",
                    vec![Mount {
                        owner: Some(Owner {
                            uid: 0,
                            gid: 0,
                            mode: Some(0o755),
                        }),
                        ..bind("/srv/pg", "/var/lib/postgresql/data")
                    }],
                )
            },
        ]);
        assert_eq!(
            messages("LB011", &stack),
            [
                "mismatch: runs as 1000:1000 but /data belongs to 0:0, mode 755: it cannot write there",
                "unknown-mode: runs as 1000:1000 but /data belongs to 999:999: it cannot write there",
                "no-group-write: runs as 1000 but /data belongs to 0:0, mode 755: it cannot write there",
                "pg: runs as 999:999 but /var/lib/postgresql/data belongs to 0:0, mode 755: it cannot write there",
            ]
        );
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
