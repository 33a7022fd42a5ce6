//! Redis: a point-in-time RDB. `BGSAVE`, wait for it to finish, pin the
//! file it wrote with a hard link (a later save replaces the name, not the
//! pinned file), check it and count its keys with `redis-check-rdb`, and
//! stream it into the repository.
//!
//! Restoring swaps the RDB with a restart. When the append-only file is on,
//! Redis loads that file and not the RDB at start, so the restore writes the
//! RDB as the append-only file's base as well (Redis 7 keeps an RDB base in
//! its append-only directory; older versions read an append-only file that
//! is an RDB).

mod dump;
mod restore;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::tools::{self, AfterDump, DatabaseTools, DumpContext, RestoreContext, ServerStart};
use super::{CommandOpen, DatabaseDump, DumpManifest, DumpOpen, RestoredDatabase, run, shell};
use super::{Database, DumpFrom};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::journal::{Journal, Pending};
use crate::progress::TransferProgress;
use crate::repo::source::SharedLog;

use dump::*;
use restore::*;

/// Sets the client's password from the container's environment (the
/// variables the common images use), then runs the command.
const WITH_CREDENTIALS: &str = r#"pw="${REDIS_PASSWORD:-}"
if [ -z "$pw" ] && [ -n "${REDIS_PASSWORD_FILE:-}" ] && [ -r "$REDIS_PASSWORD_FILE" ]; then
  pw="$(cat "$REDIS_PASSWORD_FILE")"
fi
if [ -n "$pw" ]; then export REDISCLI_AUTH="$pw"; fi
exec "$@""#;

/// The dump's file name in the snapshot.
pub(crate) const RDB_FILE: &str = "dump.rdb";

/// How long a background save may take.
const SAVE_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

fn cli(args: &[&str]) -> Vec<String> {
    let mut all = vec!["redis-cli", "--raw"];
    all.extend_from_slice(args);
    shell(WITH_CREDENTIALS, &all)
}

async fn cli_output(engine: &Engine, container: &str, args: &[&str]) -> Result<String> {
    let out = run(engine, container, &cli(args), "redis-cli").await?;
    let text = String::from_utf8_lossy(&out).trim().to_string();
    // redis-cli reports server errors on its standard output.
    if text.starts_with("ERR") || text.starts_with("NOAUTH") || text.starts_with("WRONGPASS") {
        return Err(Error::DumpFailed(format!(
            "redis-cli {} in container {container}: {text}",
            args.join(" ")
        )));
    }
    Ok(text)
}

/// The value of a configuration parameter.
async fn config(engine: &Engine, container: &str, name: &str) -> Result<String> {
    let text = cli_output(engine, container, &["CONFIG", "GET", name]).await?;
    Ok(text.lines().nth(1).unwrap_or_default().to_string())
}

/// A field of `INFO persistence`.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(field)?.strip_prefix(':'))
}

/// Redis's tools.
pub(crate) struct Redis;

/// Removes the link that pinned the saved RDB.
struct Unpin {
    container: String,
    pinned: String,
}

impl AfterDump for Unpin {
    fn run<'a>(self: Box<Self>, engine: &'a Engine, journal: &'a mut Journal) -> BoxFuture<'a, ()> {
        Box::pin(async move { remove_pinned(engine, &self.container, &self.pinned, journal).await })
    }
}

impl DatabaseTools for Redis {
    fn whole_dump_only(&self) -> Option<&'static str> {
        Some("--database does not apply to Redis: the RDB holds all its databases")
    }

    fn prepare<'a>(&'a self, dump: DumpContext<'a>) -> BoxFuture<'a, Result<tools::Prepared>> {
        Box::pin(async move {
            let prepared = prepare(
                dump.engine,
                dump.from,
                dump.log,
                dump.progress,
                dump.journal,
            )
            .await?;
            let after: Box<dyn AfterDump> = Box::new(Unpin {
                container: dump.from.container.clone(),
                pinned: prepared.pinned,
            });
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
        _: &'a DumpManifest,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(holds(engine, container))
    }

    fn restore_into<'a>(
        &'a self,
        r: RestoreContext<'a>,
    ) -> BoxFuture<'a, Result<Vec<RestoredDatabase>>> {
        Box::pin(restore_into(
            r.engine,
            r.container,
            r.auto_remove,
            r.manifest,
            r.files,
            r.journal,
        ))
    }

    fn server_start(&self, manifest: &DumpManifest, _: &str) -> ServerStart {
        let args = if manifest.settings.get("appendonly").map(String::as_str) == Some("yes") {
            vec!["--appendonly".to_string(), "yes".to_string()]
        } else {
            Vec::new()
        };
        ServerStart {
            env: Vec::new(),
            args,
            processes: &["redis-server"],
            ready: "redis-cli ping | grep -q PONG",
            ready_tcp: "redis-cli -h 127.0.0.1 ping | grep -q PONG",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_output_gives_the_key_count() {
        let ok = "[offset 0] Checking RDB file dump.rdb\n[offset 5393] \\o/ RDB looks OK! \\o/\n[info] 501 keys read\n[info] 0 expires\n";
        assert_eq!(parse_check(ok), Some(501));
        assert_eq!(
            parse_check("[info] 5 keys read\n--- RDB ERROR DETECTED ---"),
            None
        );
    }

    #[test]
    fn info_fields_are_read() {
        let info = "# Persistence\r\nloading:0\r\nrdb_saves:3\r\nrdb_last_bgsave_status:ok\r\n";
        assert_eq!(info_field(info, "rdb_saves"), Some("3"));
        assert_eq!(info_field(info, "loading"), Some("0"));
        assert_eq!(info_field(info, "aof_enabled"), None);
    }
}
