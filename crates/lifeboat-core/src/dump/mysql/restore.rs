//! Restoring the dump: the databases, then the accounts, and the row
//! counts checked against the manifest.

use super::*;

/// Feeds the dump to the container's own client: the databases, or the
/// one asked for; then every table recorded is counted and compared; then,
/// when everything is restored, the accounts. Into a server that was in use,
/// only accounts it does not have are added; into a `fresh` server that
/// lifeboat brought up for the dump, all of them, root included, so that
/// the volume opens with the original credentials.
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
pub(super) async fn holds(
    engine: &Engine,
    container: &str,
    manifest: &DumpManifest,
) -> Result<Vec<String>> {
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
pub(super) const SERVER_ACCOUNTS: &[&str] = &["root", "mariadb.sys"];

/// Creates the dump's accounts that the server does not have, with their
/// grants. Accounts it has keep their credentials: the dump's statements
/// for them would reset passwords (`GRANT ... IDENTIFIED BY PASSWORD`),
/// locking out whoever set the server up.
pub(super) async fn restore_accounts(
    engine: &Engine,
    container: &str,
    dumps: &crate::dump::DumpFiles,
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
pub(super) fn keep_new_accounts(dump: &str, keep: impl Fn(&str, &str) -> bool) -> String {
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
pub(super) fn accounts_in(line: &str) -> Vec<(String, String)> {
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

pub(super) async fn verify(
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
    Ok(RestoredDatabase::compared(database, &counted))
}

/// A single-quoted SQL string.
pub(super) fn quote_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}
