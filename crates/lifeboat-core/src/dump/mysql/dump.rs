//! Taking the dump: the databases listed, one `mariadb-dump` stream,
//! the rows counted from that stream as it passes.

use super::*;

/// Lists the user databases and describes the dump files; the manifest
/// waits for the dump to end, since its counts come from the stream.
pub(super) async fn prepare(
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
        crate::dump::MANIFEST.to_string(),
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
pub(super) type Counts = BTreeMap<(String, String), u64>;

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
pub(super) enum State {
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
pub(super) const PREFIX: usize = 1024;

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
pub(super) fn quoted(text: &str) -> Option<String> {
    let inner = text.trim().strip_prefix('`')?.strip_suffix('`')?;
    Some(inner.replace("``", "`"))
}

/// A backquoted identifier.
pub(super) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}
