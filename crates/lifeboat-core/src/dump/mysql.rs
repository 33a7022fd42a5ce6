//! MariaDB and MySQL: every user database with `mariadb-dump` (or
//! `mysqldump`) `--single-transaction --routines --events --triggers`, and
//! on MariaDB the accounts and grants with `--system=users`.
//!
//! The rows are counted from the dump stream itself as it passes on its way
//! into the repository: a count taken separately would see another moment
//! than the dump's own consistent snapshot. The counts therefore describe
//! exactly what the dump holds, however busy the server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::tools::{self, DatabaseTools, DumpContext, RestoreContext, ServerStart};
use super::{
    CommandOpen, DatabaseDump, DumpManifest, DumpOpen, RestoredDatabase, Slot, Tap, run, shell,
};
use super::{Database, DumpFrom};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::progress::TransferProgress;
use crate::repo::source::SharedLog;

/// Runs the dump tool (`dump`) or the client (`client`) as root with the
/// root password from the container's own environment, preferring the
/// MariaDB names of the tools.
const WITH_CREDENTIALS: &str = r#"pw="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"
if [ -z "$pw" ]; then
  f="${MARIADB_ROOT_PASSWORD_FILE:-${MYSQL_ROOT_PASSWORD_FILE:-}}"
  if [ -n "$f" ] && [ -r "$f" ]; then pw="$(cat "$f")"; fi
fi
if [ -n "$pw" ]; then export MYSQL_PWD="$pw"; fi
tool="$1"; shift
case "$tool" in
  dump) names="mariadb-dump mysqldump" ;;
  *) names="mariadb mysql" ;;
esac
for name in $names; do
  if command -v "$name" >/dev/null 2>&1; then exec "$name" --user=root "$@"; fi
done
echo "neither of $names is in the container" >&2
exit 127"#;

/// Databases that belong to the server, not to its users.
const SYSTEM_DATABASES: &[&str] = &["information_schema", "performance_schema", "sys", "mysql"];

/// The file that holds the user databases.
pub(crate) const DATABASES_FILE: &str = "databases.sql";

/// The file that holds accounts and grants (MariaDB only).
pub(crate) const USERS_FILE: &str = "users.sql";

fn client(args: &[&str]) -> Vec<String> {
    let mut all = vec!["client", "--batch", "--skip-column-names"];
    all.extend_from_slice(args);
    shell(WITH_CREDENTIALS, &all)
}

/// Lists the user databases and describes the dump files; the manifest
/// waits for the dump to end, since its counts come from the stream.
async fn prepare(
    engine: &Engine,
    from: &DumpFrom,
    log: &SharedLog,
    progress: &Arc<TransferProgress>,
) -> Result<Vec<(String, DumpOpen)>> {
    let container = &from.container;
    let version = run(
        engine,
        container,
        &client(&["-e", "SELECT VERSION()"]),
        "the database client",
    )
    .await?;
    let version = String::from_utf8_lossy(&version).trim().to_string();
    let listed = run(
        engine,
        container,
        &client(&["-e", "SHOW DATABASES"]),
        "listing databases",
    )
    .await?;
    let databases: Vec<String> = String::from_utf8_lossy(&listed)
        .lines()
        .map(str::to_string)
        .filter(|d| !d.is_empty() && !SYSTEM_DATABASES.contains(&d.as_str()))
        .collect();
    let mariadb = version.to_ascii_lowercase().contains("mariadb");

    let handle = tokio::runtime::Handle::current();
    let command = |args: Vec<&str>, what: &str, tap: Option<Box<dyn Tap>>| {
        DumpOpen::Command(Box::new(CommandOpen {
            engine: engine.clone(),
            handle: handle.clone(),
            container: container.clone(),
            command: shell(WITH_CREDENTIALS, &args),
            what: what.to_string(),
            tap,
            log: log.clone(),
            progress: progress.clone(),
        }))
    };
    let mut files = Vec::new();
    if mariadb {
        files.push((
            USERS_FILE.to_string(),
            command(
                vec!["dump", "--system=users"],
                "mariadb-dump --system=users",
                None,
            ),
        ));
    }
    let manifest = DumpManifest {
        database: Some(from.database),
        container: container.clone(),
        image: from.image.clone(),
        data_path: from.data_path.clone(),
        server_version: version,
        counts: "exact: the rows in the dump, counted as it was taken".into(),
        databases: Vec::new(),
        settings: BTreeMap::new(),
    };
    let counted = Slot::new();
    if !databases.is_empty() {
        let mut args = vec![
            "dump",
            "--single-transaction",
            "--routines",
            "--events",
            "--triggers",
            "--hex-blob",
            "--default-character-set=utf8mb4",
            "--databases",
        ];
        args.extend(databases.iter().map(String::as_str));
        let tap = RowCounter::new(counted.clone());
        files.push((
            DATABASES_FILE.to_string(),
            command(args, "the database dump", Some(Box::new(tap))),
        ));
    } else {
        counted.fill(BTreeMap::new());
    }
    files.push((
        super::MANIFEST.to_string(),
        DumpOpen::After {
            log: log.clone(),
            make: Box::new(move || {
                let counts = counted.wait()?;
                let mut manifest = manifest;
                manifest.databases = databases
                    .iter()
                    .map(|name| DatabaseDump {
                        name: name.clone(),
                        file: DATABASES_FILE.to_string(),
                        tables: counts
                            .iter()
                            .filter(|((database, _), _)| database == name)
                            .map(|((_, table), n)| (table.clone(), *n))
                            .collect(),
                        keys: None,
                    })
                    .collect();
                serde_json::to_vec_pretty(&manifest).ok()
            }),
        },
    ));
    Ok(files)
}

/// Rows per (database, table).
type Counts = BTreeMap<(String, String), u64>;

/// Counts the rows of a dump as it streams past: tables from `CREATE
/// TABLE` lines, rows as the top-level tuples of `INSERT INTO ... VALUES`
/// statements, quotes and escapes respected, and nothing inside the
/// `DELIMITER` sections that hold routine and trigger bodies.
pub(crate) struct RowCounter {
    slot: Arc<Slot<Counts>>,
    counts: Counts,
    database: String,
    line: Vec<u8>,
    state: State,
    in_routines: bool,
    /// The table whose rows the current insert holds.
    current: Option<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// At or in the first bytes of a line, looking for a statement.
    LineStart,
    /// In a line of no interest.
    SkipLine,
    /// In the values of an insert into the table counted.
    Values {
        depth: u32,
        in_string: bool,
        escaped: bool,
    },
}

/// How much of a line is looked at for a statement's start.
const PREFIX: usize = 1024;

impl RowCounter {
    pub(crate) fn new(slot: Arc<Slot<Counts>>) -> Self {
        Self {
            slot,
            counts: Counts::new(),
            database: String::new(),
            line: Vec::new(),
            state: State::LineStart,
            in_routines: false,
            current: None,
        }
    }

    fn table_key(&self, table: String) -> (String, String) {
        (self.database.clone(), table)
    }

    /// A complete short line: `USE`, `CREATE TABLE`, `DELIMITER`.
    fn line_ended(&mut self) {
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if let Some(rest) = line.strip_prefix("DELIMITER ") {
            self.in_routines = rest.trim() != ";";
        } else if self.in_routines {
        } else if let Some(name) = line
            .strip_prefix("USE ")
            .and_then(|r| quoted(r.trim_end_matches(';')))
        {
            self.database = name;
        } else if let Some(name) = line
            .strip_prefix("CREATE TABLE ")
            .and_then(|r| quoted(r.trim_end_matches(" (")))
        {
            let key = self.table_key(name);
            self.counts.entry(key).or_insert(0);
        }
    }

    fn byte(&mut self, b: u8) {
        match self.state {
            State::LineStart => {
                if b == b'\n' {
                    self.line_ended();
                    return;
                }
                self.line.push(b);
                if !self.in_routines
                    && self.line.ends_with(b" VALUES")
                    && self.line.starts_with(b"INSERT INTO `")
                {
                    let head = String::from_utf8_lossy(&self.line).into_owned();
                    let table = head
                        .strip_prefix("INSERT INTO ")
                        .and_then(|r| quoted(r.trim_end_matches(" VALUES")));
                    self.line.clear();
                    match table {
                        Some(table) => {
                            let key = self.table_key(table);
                            self.counts.entry(key.clone()).or_insert(0);
                            self.current = Some(key);
                            self.state = State::Values {
                                depth: 0,
                                in_string: false,
                                escaped: false,
                            };
                        }
                        None => self.state = State::SkipLine,
                    }
                } else if self.line.len() > PREFIX {
                    self.line.clear();
                    self.state = State::SkipLine;
                }
            }
            State::SkipLine => {
                if b == b'\n' {
                    self.state = State::LineStart;
                }
            }
            State::Values {
                mut depth,
                mut in_string,
                mut escaped,
            } => {
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'\'' {
                        in_string = false;
                    }
                } else {
                    match b {
                        b'\'' => in_string = true,
                        b'(' => {
                            if depth == 0
                                && let Some(key) = &self.current
                                && let Some(n) = self.counts.get_mut(key)
                            {
                                *n += 1;
                            }
                            depth += 1;
                        }
                        b')' => depth = depth.saturating_sub(1),
                        b';' if depth == 0 => {
                            self.state = State::SkipLine;
                            return;
                        }
                        _ => {}
                    }
                }
                self.state = State::Values {
                    depth,
                    in_string,
                    escaped,
                };
            }
        }
    }
}

impl Tap for RowCounter {
    fn bytes(&mut self, data: &[u8]) {
        for &b in data {
            self.byte(b);
        }
    }

    fn finish(&mut self) {
        self.slot.fill(std::mem::take(&mut self.counts));
    }

    fn abandon(&mut self) {
        self.slot.fail();
    }
}

/// The name in a backquoted identifier, with doubled backquotes undone.
fn quoted(text: &str) -> Option<String> {
    let inner = text.trim().strip_prefix('`')?.strip_suffix('`')?;
    Some(inner.replace("``", "`"))
}

/// A backquoted identifier.
fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Feeds the dump to the container's own client: the databases, or the
/// one asked for; then every table recorded is counted and compared; then,
/// when everything is restored, the accounts. Into a server that was in use,
/// only accounts it does not have are added; into a `fresh` server that
/// lifeboat brought up for the dump, all of them, root included, so that
/// the volume opens with the original credentials.
async fn restore_into(
    engine: &Engine,
    container: &str,
    manifest: &DumpManifest,
    dumps: &super::DumpFiles,
    only: Option<&str>,
    fresh: bool,
) -> Result<Vec<RestoredDatabase>> {
    let selected: Vec<&DatabaseDump> = manifest
        .databases
        .iter()
        .filter(|d| only.is_none_or(|o| o == d.name))
        .collect();
    if selected.is_empty() && only.is_some() {
        return Err(Error::NotFound(format!(
            "the dump holds no database {:?}; it holds {}",
            only.unwrap_or_default(),
            manifest
                .databases
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if !selected.is_empty() {
        let mut args = vec![];
        let create;
        if let Some(one) = only {
            // The client keeps only one database's statements of a dump
            // of several; the database must exist to be named.
            create = format!("CREATE DATABASE IF NOT EXISTS {}", quote(one));
            run(
                engine,
                container,
                &client(&["-e", &create]),
                "creating the database",
            )
            .await?;
            args.extend(["--one-database", one]);
        }
        let fed = dumps
            .feed(engine, container, DATABASES_FILE, &client(&args))
            .await?;
        if fed.exit_code != 0 {
            return Err(Error::DumpFailed(format!(
                "restoring the databases in container {container} failed (exit status {}): {}",
                fed.exit_code,
                fed.stderr.trim().replace('\n', " | ")
            )));
        }
    }
    let mut restored = Vec::new();
    for database in selected {
        restored.push(verify(engine, container, database).await?);
    }
    // Last: on a fresh server they change root's password. A fresh server
    // needs them whatever is restored.
    if (only.is_none() || fresh) && manifest.database == Some(Database::Mariadb) {
        restore_accounts(engine, container, dumps, fresh).await?;
    }
    Ok(restored)
}

/// The dump's databases that exist in the container with tables in them.
async fn holds(engine: &Engine, container: &str, manifest: &DumpManifest) -> Result<Vec<String>> {
    if manifest.databases.is_empty() {
        return Ok(Vec::new());
    }
    let names = manifest
        .databases
        .iter()
        .map(|d| quote_string(&d.name))
        .collect::<Vec<_>>()
        .join(", ");
    let query = format!(
        "SELECT DISTINCT table_schema FROM information_schema.tables WHERE table_schema IN ({names})"
    );
    let out = run(
        engine,
        container,
        &client(&["-e", &query]),
        "looking into the databases",
    )
    .await?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|d| format!("database {d}"))
        .collect())
}

/// Accounts the server manages itself: never restored over.
const SERVER_ACCOUNTS: &[&str] = &["root", "mariadb.sys"];

/// Creates the dump's accounts that the server does not have, with their
/// grants. Accounts it has keep their credentials: the dump's statements
/// for them would reset passwords (`GRANT ... IDENTIFIED BY PASSWORD`),
/// locking out whoever set the server up.
async fn restore_accounts(
    engine: &Engine,
    container: &str,
    dumps: &super::DumpFiles,
    fresh: bool,
) -> Result<()> {
    let listed = run(
        engine,
        container,
        &client(&["-e", "SELECT user, host FROM mysql.user"]),
        "listing accounts",
    )
    .await?;
    let existing: BTreeSet<(String, String)> = String::from_utf8_lossy(&listed)
        .lines()
        .filter_map(|l| {
            let (user, host) = l.split_once('\t')?;
            Some((user.to_string(), host.to_string()))
        })
        .collect();
    let accounts = dumps.read(USERS_FILE).await?;
    let accounts = String::from_utf8_lossy(&accounts);
    if fresh {
        // Every account, over the ones the fresh server made: CREATE USER
        // fails for those (1396, carried on past with --force) and the
        // GRANTs that follow set their credentials.
        let out = engine
            .exec_collect(container, &client(&["--force"]), Some(accounts.as_bytes()))
            .await?;
        let errors: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("ERROR") && !l.contains("ERROR 1396"))
            .collect();
        return match errors.first() {
            None => Ok(()),
            Some(first) => Err(Error::DumpFailed(format!(
                "restoring accounts in container {container} failed: {first}"
            ))),
        };
    }
    let wanted = keep_new_accounts(&accounts, |user, host| {
        !SERVER_ACCOUNTS.contains(&user)
            && !existing.contains(&(user.to_string(), host.to_string()))
    });
    let out = engine
        .exec_collect(container, &client(&[]), Some(wanted.as_bytes()))
        .await?;
    if out.exit_code != 0 {
        return Err(Error::DumpFailed(format!(
            "restoring accounts in container {container} failed (exit status {}): {}",
            out.exit_code,
            out.stderr.trim().replace('\n', " | ")
        )));
    }
    Ok(())
}

/// The lines of an account dump that name no account, or only accounts
/// `keep` agrees to. Accounts appear as `` `user`@`host` `` or
/// `'user'@'host'`, one statement per line.
fn keep_new_accounts(dump: &str, keep: impl Fn(&str, &str) -> bool) -> String {
    let mut out = String::new();
    for line in dump.lines() {
        if accounts_in(line).iter().all(|(u, h)| keep(u, h)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The `user@host` accounts a line names.
fn accounts_in(line: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for quote_char in ['`', '\''] {
        let sep = format!("{quote_char}@{quote_char}");
        let mut rest = line;
        while let Some(at) = rest.find(&sep) {
            let before = &rest[..at];
            let after = &rest[at + sep.len()..];
            let user_start = before.rfind(quote_char).map(|i| i + 1);
            let host_end = after.find(quote_char);
            if let (Some(us), Some(he)) = (user_start, host_end) {
                found.push((before[us..].to_string(), after[..he].to_string()));
            }
            rest = &rest[at + sep.len()..];
        }
    }
    found
}

async fn verify(
    engine: &Engine,
    container: &str,
    database: &DatabaseDump,
) -> Result<RestoredDatabase> {
    // A table the restore did not bring back would fail a count of all of
    // them: the tables there are listed first, and only those counted.
    let listed = run(
        engine,
        container,
        &client(&[
            "-e",
            &format!(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_TYPE = 'BASE TABLE'",
                quote_string(&database.name)
            ),
        ]),
        "listing restored tables",
    )
    .await?;
    let listed = String::from_utf8_lossy(&listed);
    let present: BTreeSet<&str> = listed.lines().collect();
    let counting: Vec<&String> = database
        .tables
        .keys()
        .filter(|t| present.contains(t.as_str()))
        .collect();
    let mut counted = BTreeMap::new();
    if !counting.is_empty() {
        let query = counting
            .iter()
            .map(|t| {
                format!(
                    "SELECT {}, COUNT(*) FROM {}.{}",
                    quote_string(t),
                    quote(&database.name),
                    quote(t)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let out = run(
            engine,
            container,
            &client(&["-e", &query]),
            "counting restored rows",
        )
        .await?;
        counted = String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| {
                let (t, n) = l.rsplit_once('\t')?;
                Some((t.to_string(), n.trim().parse::<u64>().ok()?))
            })
            .collect();
    }
    let mut mismatches = Vec::new();
    for (table, recorded) in &database.tables {
        match counted.get(table) {
            Some(n) if n == recorded => {}
            Some(n) => mismatches.push(format!("{table}: {n} rows, {recorded} recorded")),
            None => mismatches.push(format!("{table}: missing, {recorded} rows recorded")),
        }
    }
    Ok(RestoredDatabase {
        name: database.name.clone(),
        tables_checked: database.tables.len(),
        mismatches,
        keys: None,
    })
}

/// A single-quoted SQL string.
fn quote_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// MariaDB's and MySQL's tools.
pub(crate) struct Mysql;

impl DatabaseTools for Mysql {
    fn prepare<'a>(&'a self, dump: DumpContext<'a>) -> BoxFuture<'a, Result<tools::Prepared>> {
        Box::pin(async move {
            let files = prepare(dump.engine, dump.from, dump.log, dump.progress).await?;
            Ok(tools::Prepared { files, after: None })
        })
    }

    fn holds<'a>(
        &'a self,
        engine: &'a Engine,
        container: &'a str,
        manifest: &'a DumpManifest,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(holds(engine, container, manifest))
    }

    fn restore_into<'a>(
        &'a self,
        r: RestoreContext<'a>,
    ) -> BoxFuture<'a, Result<Vec<RestoredDatabase>>> {
        Box::pin(restore_into(
            r.engine,
            r.container,
            r.manifest,
            r.files,
            r.only,
            r.fresh,
        ))
    }

    fn server_start(&self, _: &DumpManifest, password: &str) -> ServerStart {
        ServerStart {
            env: vec![
                format!("MARIADB_ROOT_PASSWORD={password}"),
                format!("MYSQL_ROOT_PASSWORD={password}"),
            ],
            args: Vec::new(),
            processes: &["mariadbd", "mysqld"],
            ready: "mariadb-admin ping --silent 2>/dev/null || mysqladmin ping --silent",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "-- MariaDB dump\n\
-- Current Database: `app`\n\
CREATE DATABASE /*!32312 IF NOT EXISTS*/ `app`;\n\
USE `app`;\n\
CREATE TABLE `empty_t` (\n  `x` int(11) DEFAULT NULL\n);\n\
CREATE TABLE `odd``name` (\n  `x` int(11) DEFAULT NULL\n);\n\
INSERT INTO `odd``name` VALUES\n(1),\n(2);\n\
CREATE TABLE `t` (\n  `id` int(11) NOT NULL\n);\n\
INSERT INTO `t` VALUES\n(1,'it\\'s (a) \\\"quote\\\" ), x;',0x00FF28),\n(2,'line\\nbreak \\\\ (',NULL),\n(3,')),((',0x29);\n\
INSERT INTO `t` VALUES (4,'old style'),(5,'same line');\n\
DELIMITER ;;\n\
CREATE PROCEDURE `p`()\nBEGIN\nINSERT INTO `t` VALUES (99,'not a row');\nEND ;;\n\
DELIMITER ;\n\
USE `other`;\n\
INSERT INTO `t` VALUES (1);\n";

    fn count(dump: &str, piece: usize) -> Counts {
        let slot = Slot::new();
        let mut counter = RowCounter::new(slot.clone());
        for chunk in dump.as_bytes().chunks(piece) {
            counter.bytes(chunk);
        }
        counter.finish();
        slot.wait().expect("counts")
    }

    #[test]
    fn rows_are_counted_from_the_dump_stream() {
        for piece in [1, 3, 7, 64, 4096] {
            let counts = count(DUMP, piece);
            let get = |db: &str, t: &str| counts.get(&(db.to_string(), t.to_string())).copied();
            assert_eq!(get("app", "empty_t"), Some(0), "piece {piece}");
            assert_eq!(get("app", "odd`name"), Some(2), "piece {piece}");
            assert_eq!(get("app", "t"), Some(5), "piece {piece}");
            assert_eq!(get("other", "t"), Some(1), "piece {piece}");
            assert_eq!(counts.len(), 4, "piece {piece}: {counts:?}");
        }
    }

    #[test]
    fn an_abandoned_dump_has_no_counts() {
        let slot = Slot::new();
        let mut counter = RowCounter::new(slot.clone());
        counter.bytes(DUMP.as_bytes());
        counter.abandon();
        assert!(slot.wait().is_none());
    }

    #[test]
    fn only_new_accounts_are_restored() {
        let dump = "CREATE USER `root`@`localhost` IDENTIFIED BY PASSWORD '*79';\n\
CREATE USER `appuser`@`%` IDENTIFIED BY PASSWORD '*85';\n\
GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` IDENTIFIED BY PASSWORD '*79' WITH GRANT OPTION;\n\
GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION;\n\
GRANT ALL PRIVILEGES ON `app`.* TO `appuser`@`%`;\n\
/*M!100005 SET DEFAULT ROLE NONE FOR 'appuser'@'%' */;\n\
SET ROLE NONE;\n";
        let kept = keep_new_accounts(dump, |user, _| user != "root");
        assert!(!kept.contains("root"), "{kept}");
        assert!(kept.contains("CREATE USER `appuser`@`%`"));
        assert!(kept.contains("GRANT ALL PRIVILEGES ON `app`.* TO `appuser`@`%`"));
        assert!(kept.contains("SET DEFAULT ROLE NONE FOR 'appuser'@'%'"));
        assert!(kept.contains("SET ROLE NONE;"));
    }

    #[test]
    fn identifiers_round_trip() {
        assert_eq!(quoted(&quote("odd`name")), Some("odd`name".to_string()));
        assert_eq!(quote_string("it's \\"), "'it\\'s \\\\'");
    }
}
