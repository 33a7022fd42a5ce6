//! What is known about database images: which program a service runs
//! (the server, or a client or tool of the same image), where each
//! engine keeps its data, which images are official (or built on them)
//! and the `VOLUME`s they declare, and PostgreSQL's major version.

use std::path::Path;

use super::model::{Mount, MountType, Service};
use super::shell::split_words;
use crate::inventory::{self, Content};

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
pub(super) fn database(service: &Service) -> Option<Content> {
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
pub(super) const TOOL_WORDS: &[&str] = &[
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
pub(super) const CLIENT_PROGRAMS: &[&str] = &[
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
pub(super) const SHELLS: &[&str] = &["sh", "bash", "ash", "dash", "zsh"];

/// Programs that start in front of the real one and hand over to it, and
/// words a shell puts in front of a program: after them comes the
/// program. `gosu` and `su-exec` take a user first.
pub(super) const WRAPPERS: &[&str] = &[
    "docker-entrypoint.sh",
    "tini",
    "dumb-init",
    "--",
    "exec",
    "nohup",
    "env",
];
pub(super) const USER_WRAPPERS: &[&str] = &["gosu", "su-exec"];

/// The database servers' own programs.
pub(super) const SERVER_PROGRAMS: &[&str] = &[
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
pub(super) enum Runs {
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
pub(super) fn runs(service: &Service) -> Runs {
    match judge(&command_line(service)) {
        Runs::Unknown if !service.entrypoint.is_empty() => judge(&service.command),
        other => other,
    }
}

/// The entrypoint and the command, as the container runs them.
pub(super) fn command_line(service: &Service) -> Vec<String> {
    service
        .entrypoint
        .iter()
        .chain(&service.command)
        .cloned()
        .collect()
}

pub(super) fn judge(argv: &[String]) -> Runs {
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
pub(super) fn program_of(argv: &[String]) -> Option<(&str, &[String])> {
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
pub(super) fn shell_script(args: &[String]) -> Option<(&str, &[String])> {
    let flags = args.iter().take_while(|w| w.starts_with('-')).count();
    let has_c = args[..flags]
        .iter()
        .any(|w| !w.starts_with("--") && w.contains('c'));
    let script = args.get(flags).filter(|_| has_c)?;
    Some((script, &args[flags + 1..]))
}

/// A simple command of a script with `"$@"`, `"$*"` and `$1`...`$9`
/// replaced by the script's arguments (`args[0]` is `$0`).
pub(super) fn expand_args(command: &[String], args: &[String]) -> Vec<String> {
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
pub(super) fn simple_commands(script: &str) -> Vec<Vec<String>> {
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
pub(super) fn server_words(service: &Service) -> Vec<String> {
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

pub(super) fn pgdata(service: &Service) -> Option<&str> {
    service
        .environment
        .get("PGDATA")
        .map(|d| d.trim_end_matches('/'))
        .filter(|d| !d.is_empty())
}

/// The data directory of a database service: the inventory's default for
/// its database, moved by `PGDATA`, and for PostgreSQL 18 and later by
/// the major version (`/var/lib/postgresql/18/docker`).
pub(super) fn data_dir(service: &Service, content: Content) -> Option<String> {
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
pub(super) fn redis_keeps_nothing(service: &Service) -> bool {
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
pub(super) fn postgres_major(service: &Service) -> Option<String> {
    if let Some(major) = service
        .environment
        .get("PG_MAJOR")
        .filter(|m| !m.is_empty())
    {
        return Some(major.trim().to_string());
    }
    tag_major(service.image.as_deref()?)
}

pub(super) fn tag_major(image: &str) -> Option<String> {
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

pub(super) fn database_label(content: Content) -> &'static str {
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

/// Whether the image declares a `VOLUME` at or above `dir`: `None` when the
/// image's configuration is not known.
pub(super) fn image_declares(service: &Service, dir: &str) -> Option<bool> {
    service.image_volumes.as_ref().map(|volumes| {
        volumes
            .iter()
            .any(|v| Path::new(dir).starts_with(v.trim_end_matches('/')))
    })
}

/// Namespaces whose database images keep data where the official ones
/// do, being built on them.
pub(super) const BUILT_ON_OFFICIAL: &[&str] = &["postgis", "timescale", "pgvector", "valkey"];

/// Whether a service's data directory is known rather than guessed: set by
/// `PGDATA`, or the image is an official one (or built on one). Images of
/// other publishers (`bitnami/postgresql` keeps data in
/// /bitnami/postgresql, `linuxserver/mariadb` in /config) are recognised
/// as databases, but where their data lives is not known here.
pub(super) fn known_layout(service: &Service) -> bool {
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
pub(super) fn is_official(image: &str) -> bool {
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

pub(super) fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod layout_tests {
    use super::*;
    use crate::audit::rules::testing::{Origin, Stack, rule};

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
mod tests;
