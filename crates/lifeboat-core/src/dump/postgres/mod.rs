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

mod dump;
mod restore;

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

use dump::*;
use restore::*;

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
            ready_tcp: "pg_isready -q -h 127.0.0.1",
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
