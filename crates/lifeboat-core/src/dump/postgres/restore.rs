//! Restoring the dumps: roles and tablespaces, then each database,
//! and the row counts checked against the manifest.

use super::*;

/// Feeds a dump snapshot to the container's own `psql` and `pg_restore`:
/// roles and tablespaces first (unless one database is asked for), then
/// each database, dropped and created again. Finally every restored table
/// is counted and compared with the counts recorded at backup.
pub(super) async fn restore_into(
    engine: &Engine,
    container: &str,
    manifest: &DumpManifest,
    dumps: &crate::dump::DumpFiles,
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
pub(super) async fn database_names(
    engine: &Engine,
    container: &str,
    condition: &str,
) -> Result<Vec<String>> {
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
pub(super) async fn holds(
    engine: &Engine,
    container: &str,
    manifest: &DumpManifest,
) -> Result<Vec<String>> {
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
pub(super) async fn restore_globals(
    engine: &Engine,
    container: &str,
    dumps: &crate::dump::DumpFiles,
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
pub(super) fn skip_existing_roles(
    globals: &str,
    existing: &std::collections::BTreeSet<String>,
) -> String {
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
pub(super) fn role_name(rest: &str) -> Option<String> {
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
pub(super) async fn verify(
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
    Ok(RestoredDatabase::compared(database, &counted))
}

/// A database name as a connection string: the client tools read a name
/// with `=` in it as connection settings (another host, say), which a
/// database's owner could choose on purpose.
pub(super) fn connect_to(database: &str) -> String {
    format!(
        "dbname='{}'",
        database.replace('\\', "\\\\").replace('\'', "\\'")
    )
}
