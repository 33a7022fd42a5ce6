//! PostgreSQL: roles and tablespaces with `pg_dumpall --globals-only`, then
//! one `pg_dump -Fc` per database, so that one database can be restored
//! alone.
//!
//! Each database's dump runs in a snapshot exported by a transaction that
//! lifeboat holds open for the whole backup, and the row counts are taken
//! in that same transaction while the dumps run: however busy the server,
//! the counts describe exactly the rows in the dump (the session locks the
//! tables first), and counting adds no time before the dump starts.
//!
//! The dumps are compressed by `pg_dump` itself, at zlib's fastest level
//! (`-Z1`), inside the container: everything a dump writes crosses the
//! engine's exec stream, which cost the engine about 16 ns a byte (3.2
//! CPU seconds for the 197 MiB uncompressed dump of a `pgbench -i -s 20`
//! database, on two cores that the database and lifeboat need too),
//! against 7 MiB compressed. Uncompressed dumps were meant to deduplicate
//! from one night to the next, but rows move as they are updated: after
//! 1% of that database's accounts changed (`pgbench -t 4000 -c 2`), each
//! night's uncompressed dump added 3.4 to 3.8 MiB to the repository, the
//! compressed one 2.3 to 3.0 MiB. Tables that do not change dump to the
//! same bytes either way, and so to the same chunks.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::io::AsyncWriteExt;

use super::tools::{self, AfterDump, DatabaseTools, DumpContext, RestoreContext, ServerStart};
use super::{
    CommandOpen, DatabaseDump, DumpManifest, DumpOpen, RestoredDatabase, Slot, StderrTail,
    file_stem, run, shell,
};
use super::{Database, DumpFrom};
use crate::engine::{Engine, Exec, ExecChunk};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::progress::TransferProgress;
use crate::repo::source::{SharedLog, record_fatal};

/// Sets the client's user and password from the container's own
/// environment, as the official image defines it, then runs the command.
const WITH_CREDENTIALS: &str = r#"export PGUSER="${PGUSER:-${POSTGRES_USER:-postgres}}"
export PGDATABASE="${PGDATABASE:-postgres}"
if [ -z "${PGPASSWORD:-}" ]; then
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    export PGPASSWORD="$POSTGRES_PASSWORD"
  elif [ -n "${POSTGRES_PASSWORD_FILE:-}" ] && [ -r "$POSTGRES_PASSWORD_FILE" ]; then
    PGPASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")"
    export PGPASSWORD
  fi
fi
exec "$@""#;

/// Prints the settings a fresh container needs that are not secrets.
const SETTINGS: &str = r#"printf 'POSTGRES_USER=%s\0POSTGRES_DB=%s\0PGDATA=%s\0' \
  "${POSTGRES_USER:-postgres}" "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" "${PGDATA:-}""#;

/// The tables whose rows are counted: ordinary and partitioned tables
/// outside the system schemas.
const TABLES: &str = "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%'";

/// How long the session waits for a table's lock, and `pg_dump` for its
/// own, before giving up: a schema change queued behind the backup's
/// locks blocks every query on its table until the backup lets go.
const LOCK_WAIT: &str = "1min";

/// Locks every counted table against changes the snapshot would not see
/// (`TRUNCATE`, table rewrites): the counts run while the dumps do, and
/// must describe the rows the dump holds.
fn lock_tables() -> String {
    format!(
        "SET LOCAL lock_timeout = '{LOCK_WAIT}';\nSELECT format('LOCK TABLE %I.%I IN ACCESS SHARE MODE', n.nspname, c.relname) {TABLES}\n\\gexec\n"
    )
}

/// Exact row counts of every table, one `schema.table<US>count` per line.
fn count_rows() -> String {
    format!(
        "SELECT format('%I.%I', n.nspname, c.relname) || chr(31) ||
  (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text
{TABLES}
ORDER BY 1;"
    )
}

const SNAPSHOT_ID: &str = "__lifeboat_snapshot__=";
const SNAPSHOT_DONE: &str = "__lifeboat_snapshot_exported__";
const COUNTS_DONE: &str = "__lifeboat_rows_counted__";

/// What the backup needs to run a PostgreSQL dump.
struct Prepared {
    pub(crate) files: Vec<(String, DumpOpen)>,
    /// The transactions holding the dumps' snapshots: [`close`] them
    /// after the dumps. Dropped, they roll back.
    pub(crate) sessions: Vec<Session>,
}

/// A `psql` holding a transaction open, driven by a task of its own: it
/// counts the rows, publishes the counts, then waits to be told to commit.
pub(crate) struct Session {
    id: String,
    database: String,
    end: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // Not closed (the backup failed or was interrupted): the task
        // drops the connection, psql ends and the transaction with it,
        // releasing its locks; its counts are marked as never coming.
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// psql as lifeboat runs it: no startup file, no password prompt, bare
/// rows, stopping at the first error.
const PSQL: [&str; 8] = [
    "psql",
    "-X",
    "-w",
    "-A",
    "-t",
    "-q",
    "-v",
    "ON_ERROR_STOP=1",
];

fn psql(args: &[&str]) -> Vec<String> {
    let mut all = PSQL.to_vec();
    all.extend_from_slice(args);
    shell(WITH_CREDENTIALS, &all)
}

/// Lists the databases, exports a snapshot of each, and describes the
/// dump files. The rows are counted in those snapshots while the dumps
/// run, one database at a time.
async fn prepare(
    engine: &Engine,
    from: &DumpFrom,
    log: &SharedLog,
    progress: &std::sync::Arc<TransferProgress>,
) -> Result<Prepared> {
    let container = &from.container;
    let Server {
        version,
        databases,
        settings,
    } = describe(engine, container).await?;
    // Every database's snapshot is exported before any dump starts.
    let turn = Arc::new(tokio::sync::Semaphore::new(1));
    let opened = futures_util::future::try_join_all(
        databases
            .iter()
            .map(|database| open_session(engine, container, database, log, &turn)),
    )
    .await?;

    let manifest = DumpManifest {
        database: Some(Database::Postgres),
        container: container.clone(),
        image: from.image.clone(),
        data_path: from.data_path.clone(),
        server_version: version,
        counts: "exact: count(*) of every table in the snapshot the dump was taken from".into(),
        databases: Vec::new(),
        settings,
    };
    let handle = tokio::runtime::Handle::current();
    let command = |args: &[&str], what: String| {
        DumpOpen::Command(Box::new(CommandOpen {
            engine: engine.clone(),
            handle: handle.clone(),
            container: container.clone(),
            command: shell(WITH_CREDENTIALS, args),
            what,
            tap: None,
            log: log.clone(),
            progress: progress.clone(),
        }))
    };
    let mut files = vec![(
        "globals.sql".to_string(),
        command(
            &["pg_dumpall", "--globals-only", "--no-password"],
            "pg_dumpall --globals-only".into(),
        ),
    )];
    let mut sessions = Vec::new();
    let mut counted = Vec::new();
    for (database, (session, snapshot, counts)) in databases.into_iter().zip(opened) {
        sessions.push(session);
        let file = format!("{}.dump", file_stem(&database));
        files.push((
            file.clone(),
            command(
                &[
                    "pg_dump",
                    "--format=custom",
                    "--compress=1",
                    "--no-password",
                    &format!("--lock-wait-timeout={LOCK_WAIT}"),
                    &format!("--snapshot={snapshot}"),
                    &format!("--dbname={}", connect_to(&database)),
                ],
                format!("pg_dump of database {database}"),
            ),
        ));
        counted.push((database, file, counts));
    }
    // The manifest's worker waits for the counts.
    files.push((
        super::MANIFEST.to_string(),
        DumpOpen::After {
            log: log.clone(),
            make: Box::new(move || {
                let mut manifest = manifest;
                for (name, file, counts) in counted {
                    manifest.databases.push(DatabaseDump {
                        name,
                        file,
                        tables: counts.wait()?,
                        keys: None,
                    });
                }
                serde_json::to_vec_pretty(&manifest).ok()
            }),
        },
    ));
    Ok(Prepared { files, sessions })
}

/// What a dump starts from.
struct Server {
    version: String,
    /// The databases to dump, by name.
    databases: Vec<String>,
    /// The container's settings that are not secrets ([`SETTINGS`]).
    settings: BTreeMap<String, String>,
}

/// Asks the container for its settings, the server for its version and
/// databases: one exec, since each costs the engine a process start.
async fn describe(engine: &Engine, container: &str) -> Result<Server> {
    let mut args = PSQL.to_vec();
    args.extend_from_slice(&[
        "-0",
        "-d",
        "postgres",
        "-c",
        "SHOW server_version",
        "-c",
        "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
    ]);
    let command = shell(&format!("{SETTINGS}\n{WITH_CREDENTIALS}"), &args);
    let out = run(engine, container, &command, "asking psql for the databases").await?;
    // The three settings, the version, the databases: each ends with a
    // zero byte.
    let mut fields = out.split(|b| *b == 0).map(|f| {
        String::from_utf8_lossy(f)
            .trim_end_matches('\n')
            .to_string()
    });
    let settings = fields
        .by_ref()
        .take(3)
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (!v.is_empty()).then(|| (k.to_string(), v.to_string()))
        })
        .collect();
    let version = fields
        .next()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Error::DumpFailed(format!("psql in container {container} gave no version"))
        })?;
    Ok(Server {
        version,
        databases: fields.filter(|n| !n.is_empty()).collect(),
        settings,
    })
}

/// Starts a transaction in `database`, exports its snapshot and locks
/// the tables to be counted. Then a task counts their rows in that
/// transaction once `turn` lets it; the counts arrive in the returned
/// slot, or the slot fails and the reason is recorded in `log`.
async fn open_session(
    engine: &Engine,
    container: &str,
    database: &str,
    log: &SharedLog,
    turn: &Arc<tokio::sync::Semaphore>,
) -> Result<(Session, String, Arc<Slot<Counts>>)> {
    let exec = engine
        .exec(
            container,
            &psql(&["-F", "\u{1f}", "-d", &connect_to(database)]),
            true,
        )
        .await?;
    let Exec {
        id,
        mut output,
        input,
    } = exec;
    let what = format!("psql in container {container}, database {database}");
    let failed = |e: String| Error::DumpFailed(format!("{what}: {e}"));
    let mut input = input.ok_or_else(|| failed("no input".to_string()))?;
    let script = format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\nSELECT '{SNAPSHOT_ID}' || pg_export_snapshot();\n{}\\echo {SNAPSHOT_DONE}\n",
        lock_tables()
    );
    input
        .write_all(script.as_bytes())
        .await
        .and(input.flush().await)
        .map_err(|e| failed(e.to_string()))?;

    let mut lines = Lines::default();
    let mut stderr = StderrTail::default();
    let mut exported = Vec::new();
    let mut marked = false;
    'read: while let Some(chunk) = output.next().await {
        match chunk? {
            ExecChunk::Stderr(b) => stderr.push(&b),
            ExecChunk::Stdout(b) => {
                lines.push(&b);
                while let Some(line) = lines.next_line() {
                    if line == SNAPSHOT_DONE {
                        marked = true;
                        break 'read;
                    }
                    exported.push(line);
                }
            }
        }
    }
    if !marked {
        return Err(failed(format!(
            "could not export a snapshot and lock the tables: {}",
            stderr.text()
        )));
    }
    let snapshot = exported
        .iter()
        .find_map(|line| line.strip_prefix(SNAPSHOT_ID))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| failed("no snapshot id".to_string()))?;

    let counts = Slot::new();
    let (end, ended) = tokio::sync::oneshot::channel();
    let mut driven = Driven {
        what,
        input,
        output,
        lines,
        stderr,
    };
    let slot = counts.clone();
    let turn = turn.clone();
    let log = log.clone();
    let task = tokio::spawn(async move {
        /// Marks the counts as never coming when the task ends without
        /// them, aborted included; after they came, it does nothing.
        struct Unfilled(Arc<Slot<Counts>>);
        impl Drop for Unfilled {
            fn drop(&mut self) {
                self.0.fail();
            }
        }
        let _unfilled = Unfilled(slot.clone());
        match driven.count(&turn).await {
            Ok(tables) => slot.fill(tables),
            // The cause first: whoever waits for the counts records its
            // own failure once woken.
            Err(e) => record_fatal(&log, format!("{}: {e}", driven.what)),
        }
        drop(_unfilled);
        // Told to end by `close` (a session dropped instead aborts this
        // task, and psql rolls back when its connection goes).
        let _ = ended.await;
        driven.commit().await;
    });
    Ok((
        Session {
            id,
            database: database.to_string(),
            end: Some(end),
            task: Some(task),
        },
        snapshot,
        counts,
    ))
}

/// A session's psql, as its task drives it.
struct Driven {
    what: String,
    input: Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    output: Pin<Box<dyn futures_util::Stream<Item = Result<ExecChunk>> + Send>>,
    lines: Lines,
    stderr: StderrTail,
}

impl Driven {
    /// Counts every table's rows once `turn` allows: one database at a
    /// time, beside the dumps, and without parallel workers, keeps the
    /// load on the server to one scan more than the dumps'. (With them, a
    /// count of the bench's 2-million-row table ran in three processes
    /// and took the cores from the dump it ran beside.)
    async fn count(
        &mut self,
        turn: &tokio::sync::Semaphore,
    ) -> std::result::Result<Counts, String> {
        let _turn = turn.acquire().await.map_err(|e| e.to_string())?;
        let script = format!(
            "SET LOCAL max_parallel_workers_per_gather = 0;\n{}\n\\echo {COUNTS_DONE}\n",
            count_rows()
        );
        self.input
            .write_all(script.as_bytes())
            .await
            .and(self.input.flush().await)
            .map_err(|e| e.to_string())?;
        let mut tables = BTreeMap::new();
        loop {
            while let Some(line) = self.lines.next_line() {
                if line == COUNTS_DONE {
                    return Ok(tables);
                }
                let (table, count) = line
                    .split_once('\u{1f}')
                    .ok_or_else(|| format!("unexpected count line {line:?}"))?;
                let count = count
                    .trim()
                    .parse()
                    .map_err(|_| format!("unexpected count {count:?} for {table}"))?;
                tables.insert(table.to_string(), count);
            }
            match self.output.next().await {
                Some(Ok(ExecChunk::Stdout(b))) => self.lines.push(&b),
                Some(Ok(ExecChunk::Stderr(b))) => self.stderr.push(&b),
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err(format!("could not count rows: {}", self.stderr.text())),
            }
        }
    }

    /// Ends the transaction and psql, and reads what is left of its
    /// output.
    async fn commit(&mut self) {
        let _ = self.input.write_all(b"COMMIT;\n\\q\n").await;
        let _ = self.input.shutdown().await;
        while self.output.next().await.is_some() {}
    }
}

/// Rows per `schema.table`.
type Counts = BTreeMap<String, u64>;

/// A byte stream cut into lines.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
    complete: std::collections::VecDeque<String>,
}

impl Lines {
    fn push(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|c| *c == b'\n') {
            let line = String::from_utf8_lossy(&self.partial[..end]).into_owned();
            self.partial.drain(..=end);
            self.complete.push_back(line);
        }
    }

    fn next_line(&mut self) -> Option<String> {
        self.complete.pop_front()
    }
}

/// Ends the transactions that held the dumps' snapshots, once their rows
/// are counted.
async fn close(engine: &Engine, sessions: Vec<Session>) {
    for mut session in sessions {
        if let Some(end) = session.end.take() {
            let _ = end.send(());
        }
        if let Some(task) = session.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!("the psql session of database {}: {e}", session.database);
        }
        match engine.exec_exit_code(&session.id).await {
            Ok(0) => {}
            Ok(code) => tracing::warn!(
                "the psql session of database {} ended with status {code}",
                session.database
            ),
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

/// Feeds a dump snapshot to the container's own `psql` and `pg_restore`:
/// roles and tablespaces first (unless one database is asked for), then
/// each database, dropped and created again. Finally every restored table
/// is counted and compared with the counts recorded at backup.
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
    if selected.is_empty() {
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
    // A fresh server needs every role whatever is restored: databases
    // belong to them.
    if only.is_none() || fresh {
        restore_globals(engine, container, dumps, fresh).await?;
    }
    let mut restored = Vec::new();
    for database in selected {
        let fed = dumps
            .feed(
                engine,
                container,
                &database.file,
                &shell(
                    WITH_CREDENTIALS,
                    &[
                        "pg_restore",
                        "--no-password",
                        "--exit-on-error",
                        "--clean",
                        "--if-exists",
                        "--create",
                        "--dbname=template1",
                    ],
                ),
            )
            .await?;
        if fed.exit_code != 0 {
            return Err(Error::DumpFailed(format!(
                "pg_restore of database {} in container {container} failed (exit status {}): {}",
                database.name,
                fed.exit_code,
                fed.stderr.trim().replace('\n', " | ")
            )));
        }
        restored.push(verify(engine, container, database).await?);
    }
    Ok(restored)
}

/// The names of the databases in `pg_database`, filtered by `condition`
/// (an SQL `WHERE` clause, or nothing).
async fn database_names(engine: &Engine, container: &str, condition: &str) -> Result<Vec<String>> {
    let listed = run(
        engine,
        container,
        &psql(&[
            "-0",
            "-d",
            "postgres",
            "-c",
            &format!("SELECT datname FROM pg_database {condition} ORDER BY 1"),
        ]),
        "listing databases with psql",
    )
    .await?;
    Ok(listed
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| {
            String::from_utf8_lossy(n)
                .trim_end_matches('\n')
                .to_string()
        })
        .collect())
}

/// The dump's databases that exist in the container with tables in them.
async fn holds(engine: &Engine, container: &str, manifest: &DumpManifest) -> Result<Vec<String>> {
    let existing = database_names(engine, container, "").await?;
    let mut holding = Vec::new();
    for database in manifest
        .databases
        .iter()
        .filter(|d| existing.contains(&d.name))
    {
        let tables = run(
            engine,
            container,
            &psql(&[
                "-d",
                &connect_to(&database.name),
                "-c",
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND n.nspname NOT LIKE 'pg\\_toast%'",
            ]),
            "looking into a database",
        )
        .await?;
        if String::from_utf8_lossy(&tables).trim() != "0" {
            holding.push(format!("database {}", database.name));
        }
    }
    Ok(holding)
}

/// Restores roles and tablespaces. Into a server that was in use, roles it
/// has keep their attributes and password (the dump's `ALTER ROLE ...
/// PASSWORD` would lock out whoever uses them); into a fresh server
/// lifeboat brought up, they are taken from the dump.
async fn restore_globals(
    engine: &Engine,
    container: &str,
    dumps: &super::DumpFiles,
    fresh: bool,
) -> Result<()> {
    let globals = dumps.read("globals.sql").await?;
    let globals = String::from_utf8_lossy(&globals).into_owned();
    let globals = if fresh {
        globals
    } else {
        let listed = run(
            engine,
            container,
            &psql(&["-d", "postgres", "-c", "SELECT rolname FROM pg_roles"]),
            "listing roles",
        )
        .await?;
        let existing: std::collections::BTreeSet<String> = String::from_utf8_lossy(&listed)
            .lines()
            .map(str::to_string)
            .collect();
        skip_existing_roles(&globals, &existing)
    };
    let out = engine
        .exec_collect(
            container,
            &shell(
                WITH_CREDENTIALS,
                &["psql", "-X", "-q", "-w", "-d", "postgres"],
            ),
            Some(globals.as_bytes()),
        )
        .await?;
    // A role that exists already (the fresh server's own user) is fine;
    // anything else is not.
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("ERROR:") && !l.contains("already exists"))
        .collect();
    if out.exit_code != 0 || !errors.is_empty() {
        return Err(Error::DumpFailed(format!(
            "restoring roles and tablespaces with psql in container {container} failed: {}",
            errors.first().copied().unwrap_or(out.stderr.trim())
        )));
    }
    Ok(())
}

/// The globals dump without the `CREATE ROLE` and `ALTER ROLE` statements
/// of roles that exist (one statement per line, as pg_dumpall writes them).
fn skip_existing_roles(globals: &str, existing: &std::collections::BTreeSet<String>) -> String {
    let mut out = String::new();
    for line in globals.lines() {
        let role = line
            .strip_prefix("CREATE ROLE ")
            .or_else(|| line.strip_prefix("ALTER ROLE "))
            .and_then(role_name);
        if role.is_some_and(|r| existing.contains(&r)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The role name a statement starts with: a plain identifier, or a quoted
/// one with doubled quotes inside.
fn role_name(rest: &str) -> Option<String> {
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    name.push('"');
                } else {
                    return Some(name);
                }
            } else {
                name.push(c);
            }
        }
        None
    } else {
        let end = rest.find([' ', ';']).unwrap_or(rest.len());
        Some(rest[..end].to_string())
    }
}

/// Counts the rows of a restored database and compares them with the
/// counts recorded at backup.
async fn verify(
    engine: &Engine,
    container: &str,
    database: &DatabaseDump,
) -> Result<RestoredDatabase> {
    let out = run(
        engine,
        container,
        &psql(&[
            "-F",
            "\u{1f}",
            "-d",
            &connect_to(&database.name),
            "-c",
            &count_rows(),
        ]),
        "counting restored rows with psql",
    )
    .await?;
    let counted: BTreeMap<String, u64> = String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| {
            let (t, c) = l.split_once('\u{1f}')?;
            Some((t.to_string(), c.trim().parse().ok()?))
        })
        .collect();
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

/// A database name as a connection string: the client tools read a name
/// with `=` in it as connection settings (another host, say), which a
/// database's owner could choose on purpose.
fn connect_to(database: &str) -> String {
    format!(
        "dbname='{}'",
        database.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

/// PostgreSQL's tools.
pub(crate) struct Postgres;

/// Ends the transactions that held the dumps' snapshots.
struct CloseSessions(Vec<Session>);

impl AfterDump for CloseSessions {
    fn run<'a>(self: Box<Self>, engine: &'a Engine, _: &'a mut Journal) -> BoxFuture<'a, ()> {
        Box::pin(close(engine, self.0))
    }
}

impl DatabaseTools for Postgres {
    fn prepare<'a>(&'a self, dump: DumpContext<'a>) -> BoxFuture<'a, Result<tools::Prepared>> {
        Box::pin(async move {
            let prepared = prepare(dump.engine, dump.from, dump.log, dump.progress).await?;
            let after: Box<dyn AfterDump> = Box::new(CloseSessions(prepared.sessions));
            Ok(tools::Prepared {
                files: prepared.files,
                after: Some(after),
            })
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

    fn server_start(&self, manifest: &DumpManifest, password: &str) -> ServerStart {
        let mut env = vec![format!("POSTGRES_PASSWORD={password}")];
        for key in ["POSTGRES_USER", "POSTGRES_DB", "PGDATA"] {
            if let Some(v) = manifest.settings.get(key) {
                env.push(format!("{key}={v}"));
            }
        }
        ServerStart {
            env,
            args: Vec::new(),
            processes: &["postgres"],
            ready: "pg_isready -q",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_never_read_as_connection_settings() {
        assert_eq!(connect_to("shop"), "dbname='shop'");
        assert_eq!(
            connect_to("host=evil dbname=x"),
            "dbname='host=evil dbname=x'"
        );
        assert_eq!(connect_to(r"it's\"), r"dbname='it\'s\\'");
    }

    #[test]
    fn existing_roles_keep_their_passwords() {
        let globals = "CREATE ROLE shop;\n\
ALTER ROLE shop WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$old';\n\
CREATE ROLE \"odd \"\"name\";\n\
ALTER ROLE \"odd \"\"name\" WITH LOGIN;\n\
CREATE ROLE reporting;\n\
ALTER ROLE reporting WITH LOGIN PASSWORD 'SCRAM-SHA-256$r';\n\
GRANT reporting TO shop;\n";
        let existing = ["shop".to_string(), "odd \"name".to_string()].into();
        let kept = skip_existing_roles(globals, &existing);
        assert!(!kept.contains("ROLE shop"), "{kept}");
        assert!(!kept.contains("odd"), "{kept}");
        assert!(kept.contains("CREATE ROLE reporting;"));
        assert!(kept.contains("ALTER ROLE reporting WITH LOGIN PASSWORD"));
        assert!(kept.contains("GRANT reporting TO shop;"));
    }
}
