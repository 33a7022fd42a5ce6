//! Taking the dumps: the server described, one transaction per database
//! holding the snapshot its dump runs in, the rows counted there.

use super::*;

/// Locks every counted table against changes the snapshot would not see
/// (`TRUNCATE`, table rewrites): the counts run while the dumps do, and
/// must describe the rows the dump holds.
pub(super) fn lock_tables() -> String {
    format!(
        "SET LOCAL lock_timeout = '{LOCK_WAIT}';\nSELECT format('LOCK TABLE %I.%I IN ACCESS SHARE MODE', n.nspname, c.relname) {TABLES}\n\\gexec\n"
    )
}

/// Exact row counts of every table, one `schema.table<US>count` per line.
pub(super) fn count_rows() -> String {
    format!(
        "SELECT format('%I.%I', n.nspname, c.relname) || chr(31) ||
  (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text
{TABLES}
ORDER BY 1;"
    )
}

pub(super) const SNAPSHOT_ID: &str = "__lifeboat_snapshot__=";
pub(super) const SNAPSHOT_DONE: &str = "__lifeboat_snapshot_exported__";
pub(super) const COUNTS_DONE: &str = "__lifeboat_rows_counted__";

/// What the backup needs to run a PostgreSQL dump.
pub(super) struct Prepared {
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

/// Lists the databases, exports a snapshot of each, and describes the
/// dump files. The rows are counted in those snapshots while the dumps
/// run, one database at a time.
pub(super) async fn prepare(
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
        crate::dump::MANIFEST.to_string(),
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
pub(super) struct Server {
    pub(super) version: String,
    /// The databases to dump, by name.
    pub(super) databases: Vec<String>,
    /// The container's settings that are not secrets ([`SETTINGS`]).
    pub(super) settings: BTreeMap<String, String>,
}

/// Asks the container for its settings, the server for its version and
/// databases: one exec, since each costs the engine a process start.
pub(super) async fn describe(engine: &Engine, container: &str) -> Result<Server> {
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
pub(super) async fn open_session(
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
pub(super) struct Driven {
    pub(super) what: String,
    pub(super) input: Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    pub(super) output: Pin<Box<dyn futures_util::Stream<Item = Result<ExecChunk>> + Send>>,
    pub(super) lines: Lines,
    pub(super) stderr: StderrTail,
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
pub(super) type Counts = BTreeMap<String, u64>;

/// A byte stream cut into lines.
#[derive(Default)]
pub(super) struct Lines {
    pub(super) partial: Vec<u8>,
    pub(super) complete: std::collections::VecDeque<String>,
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
pub(super) async fn close(engine: &Engine, sessions: Vec<Session>) {
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
