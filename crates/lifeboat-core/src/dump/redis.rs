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

/// What the backup needs to run a Redis dump.
struct Prepared {
    pub(crate) files: Vec<(String, DumpOpen)>,
    /// The hard link pinning the saved file; remove it after.
    pub(crate) pinned: String,
}

/// Saves, pins, checks and describes the RDB.
async fn prepare(
    engine: &Engine,
    from: &DumpFrom,
    log: &SharedLog,
    progress: &Arc<TransferProgress>,
    journal: &mut Journal,
) -> Result<Prepared> {
    let container = &from.container;
    let dir = config(engine, container, "dir").await?;
    let file = config(engine, container, "dbfilename").await?;
    if dir.is_empty() || file.is_empty() {
        return Err(Error::DumpFailed(format!(
            "redis in container {container} did not say where it saves (dir {dir:?}, dbfilename {file:?})"
        )));
    }
    // Read before anything is left in the data directory.
    let version = cli_output(engine, container, &["INFO", "server"]).await?;
    let appendonly = config(engine, container, "appendonly").await?;
    save(engine, container).await?;

    let pinned = format!("{dir}/.lifeboat-{}.rdb", crate::random_hex(6));
    // The link is a full copy's worth of disk once the live file is
    // replaced: whoever ends this run removes it, the journal if need be.
    journal.owe(std::slice::from_ref(&unpin(container, &pinned)))?;
    let source = format!("{dir}/{file}");
    let pin = ["ln", "-f", "--", source.as_str(), pinned.as_str()].map(String::from);
    let checked = async {
        run(engine, container, &pin, "pinning the saved RDB").await?;
        let check = ["redis-check-rdb".to_string(), pinned.clone()];
        let out = run(engine, container, &check, "redis-check-rdb").await?;
        parse_check(&String::from_utf8_lossy(&out)).ok_or_else(|| {
            Error::DumpFailed(format!(
                "redis-check-rdb in container {container} did not find the saved RDB sound"
            ))
        })
    }
    .await;
    let keys = match checked {
        Ok(keys) => keys,
        Err(e) => {
            remove_pinned(engine, container, &pinned, journal).await;
            return Err(e);
        }
    };
    let manifest = DumpManifest {
        database: Some(Database::Redis),
        container: container.clone(),
        image: from.image.clone(),
        data_path: from.data_path.clone(),
        server_version: info_field(&version, "redis_version")
            .unwrap_or_default()
            .to_string(),
        counts: "exact: keys in the saved RDB that do not expire on loading, as redis-check-rdb read them".into(),
        databases: vec![DatabaseDump {
            name: "redis".into(),
            file: RDB_FILE.into(),
            tables: BTreeMap::new(),
            keys: Some(keys),
        }],
        settings: [("appendonly".to_string(), appendonly)].into(),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Other(e.to_string()))?;
    let files = vec![
        (
            RDB_FILE.to_string(),
            DumpOpen::Command(Box::new(CommandOpen {
                engine: engine.clone(),
                handle: tokio::runtime::Handle::current(),
                container: container.clone(),
                command: vec!["cat".into(), "--".into(), pinned.clone()],
                what: "reading the saved RDB".into(),
                tap: None,
                log: log.clone(),
                progress: progress.clone(),
            })),
        ),
        (super::MANIFEST.to_string(), DumpOpen::Bytes(json)),
    ];
    Ok(Prepared { files, pinned })
}

/// Runs a background save and waits for it to end successfully.
async fn save(engine: &Engine, container: &str) -> Result<()> {
    // A save already running (an automatic one) must end first: BGSAVE
    // refuses to start a second.
    wait_for_saves(engine, container).await?;
    let before = cli_output(engine, container, &["INFO", "persistence"]).await?;
    let saves_before = info_field(&before, "rdb_saves").and_then(|n| n.parse::<u64>().ok());
    let lastsave_before: u64 = cli_output(engine, container, &["LASTSAVE"])
        .await?
        .parse()
        .unwrap_or(0);
    if saves_before.is_none() {
        // Without a save counter (before Redis 7), LASTSAVE tells a new
        // save from an old one only once the second has changed.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    // SCHEDULE waits for an append-only rewrite in progress instead of
    // failing.
    cli_output(engine, container, &["BGSAVE", "SCHEDULE"]).await?;
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let info = cli_output(engine, container, &["INFO", "persistence"]).await?;
        let in_progress = info_field(&info, "rdb_bgsave_in_progress") != Some("0");
        let scheduled = info_field(&info, "rdb_bgsave_scheduled") == Some("1")
            || info_field(&info, "aof_rewrite_in_progress") == Some("1");
        let done = match (
            saves_before,
            info_field(&info, "rdb_saves").and_then(|n| n.parse::<u64>().ok()),
        ) {
            (Some(before), Some(now)) => now > before,
            _ => {
                let last: u64 = cli_output(engine, container, &["LASTSAVE"])
                    .await?
                    .parse()
                    .unwrap_or(0);
                last > lastsave_before
            }
        };
        let status_ok = info_field(&info, "rdb_last_bgsave_status") == Some("ok");
        if !in_progress && !scheduled {
            if done && status_ok {
                return Ok(());
            }
            // A failed save does not move LASTSAVE: it would never be
            // "done"; its status says so.
            if !status_ok || started.elapsed() > Duration::from_secs(5) {
                return Err(Error::DumpFailed(format!(
                    "BGSAVE in container {container} failed (rdb_last_bgsave_status: {}); see the server's log",
                    info_field(&info, "rdb_last_bgsave_status").unwrap_or("unknown")
                )));
            }
        }
        if started.elapsed() > SAVE_TIMEOUT {
            return Err(Error::DumpFailed(format!(
                "BGSAVE in container {container} did not finish within {SAVE_TIMEOUT:?}"
            )));
        }
    }
}

/// Waits until no background save runs.
async fn wait_for_saves(engine: &Engine, container: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let info = cli_output(engine, container, &["INFO", "persistence"]).await?;
        if info_field(&info, "rdb_bgsave_in_progress") != Some("1") {
            return Ok(());
        }
        if started.elapsed() > SAVE_TIMEOUT {
            return Err(Error::DumpFailed(format!(
                "a save in container {container} did not finish within {SAVE_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The number of keys `redis-check-rdb` read that loading keeps (those
/// already expired are dropped on loading), when it found the file sound.
fn parse_check(output: &str) -> Option<u64> {
    if !output.contains("RDB looks OK") {
        return None;
    }
    let field = |suffix: &str| {
        output.lines().find_map(|l| {
            let rest = l.split("[info]").nth(1)?.trim();
            rest.strip_suffix(suffix)?.trim().parse::<u64>().ok()
        })
    };
    let read = field("keys read")?;
    Some(read.saturating_sub(field("already expired").unwrap_or(0)))
}

/// The command that removes the pinning link.
fn unpin(container: &str, pinned: &str) -> Pending {
    Pending::new(
        container,
        ["rm", "-f", "--", pinned].map(String::from).to_vec(),
        "removing the RDB pinned for a backup".to_string(),
    )
}

/// Removes the pinning link; the journal stops owing it.
async fn remove_pinned(engine: &Engine, container: &str, pinned: &str, journal: &mut Journal) {
    let command = unpin(container, pinned);
    match run(
        engine,
        container,
        &command.command,
        "removing the pinned RDB",
    )
    .await
    {
        Ok(_) => {
            if let Err(e) = journal.paid(&command) {
                tracing::warn!("{e}");
            }
        }
        Err(e) => tracing::warn!("{e}"),
    }
}

/// The keys the container holds, if any.
async fn holds(engine: &Engine, container: &str) -> Result<Vec<String>> {
    let keys = count_keys(engine, container).await?;
    Ok(if keys > 0 {
        vec![format!("{keys} keys")]
    } else {
        Vec::new()
    })
}

async fn count_keys(engine: &Engine, container: &str) -> Result<u64> {
    let keyspace = cli_output(engine, container, &["INFO", "keyspace"]).await?;
    Ok(keyspace
        .lines()
        .filter_map(|l| {
            let keys = l
                .split(':')
                .nth(1)?
                .split(',')
                .next()?
                .strip_prefix("keys=")?;
            keys.parse::<u64>().ok()
        })
        .sum())
}

/// How a running Redis persists, as far as a restore must know.
struct Persistence {
    dir: String,
    rdb: String,
    aof: bool,
    /// The append-only directory (Redis 7), empty before.
    aof_dir: String,
    aof_file: String,
    /// `uid:gid` of the data directory.
    owner: (u64, u64),
}

/// Swaps the container's data for the dump's RDB with a restart and checks
/// the key count.
///
/// The RDB is staged in the data directory first, while Redis runs. Then,
/// with saving and the append-only file off so that nothing writes over
/// the swap, the current files are moved aside and the staged ones into
/// their place, and Redis restarts on them. Until the restart begins, the
/// journal owes a rollback (files and settings back as they were), run on
/// any failure, interruption, or by the next lifeboat command after a kill;
/// once it begins, the restored files are in place and a restart of any
/// kind loads them. The files moved aside are removed only once the
/// restored key count matches the backup's.
async fn restore_into(
    engine: &Engine,
    container: &str,
    auto_remove: bool,
    manifest: &DumpManifest,
    dumps: &super::DumpFiles,
    journal: &mut Journal,
) -> Result<Vec<RestoredDatabase>> {
    if auto_remove {
        return Err(Error::Refused(format!(
            "container {container} was started with --rm: the restart a Redis restore needs would remove it; restore into a container without --rm"
        )));
    }
    // Everything that can be read is read before anything changes.
    let node = dumps.node(RDB_FILE).await?;
    let dir = config(engine, container, "dir").await?;
    let owner = {
        let out = run(
            engine,
            container,
            &["stat".into(), "-c".into(), "%u:%g".into(), dir.clone()],
            "reading the data directory's owner",
        )
        .await?;
        let text = String::from_utf8_lossy(&out);
        let (u, g) = text.trim().split_once(':').unwrap_or(("0", "0"));
        (u.parse().unwrap_or(0), g.parse().unwrap_or(0))
    };
    let p = Persistence {
        rdb: config(engine, container, "dbfilename").await?,
        aof: config(engine, container, "appendonly").await? == "yes",
        aof_dir: config(engine, container, "appenddirname")
            .await
            .unwrap_or_default(),
        aof_file: config(engine, container, "appendfilename").await?,
        dir,
        owner,
    };
    let save_setting = config(engine, container, "save").await?;
    let names: Vec<String> = [&p.rdb, &p.aof_dir, &p.aof_file]
        .into_iter()
        .filter(|n| !n.is_empty() && !n.contains(['/', '\n']))
        .cloned()
        .collect();
    let token = crate::random_hex(4);
    let staging = format!(".lifeboat-restore-{token}");
    let aside = format!("{}/.lifeboat-before-restore-{token}", p.dir);

    let staged = stage(engine, container, &p, &staging, dumps, node).await;
    let rollback = {
        let mut args = vec![
            p.dir.as_str(),
            aside.as_str(),
            staging.as_str(),
            save_setting.as_str(),
            if p.aof { "yes" } else { "no" },
        ];
        args.extend(names.iter().map(String::as_str));
        Pending::new(
            container,
            with_credentials(ROLLBACK, &args),
            "putting back the data and settings of an unfinished restore".to_string(),
        )
    };
    if let Err(e) = staged {
        let _ = run(
            engine,
            container,
            &rollback.command,
            "removing the staged RDB",
        )
        .await;
        return Err(e);
    }
    journal.owe(std::slice::from_ref(&rollback))?;
    let swapped = async {
        cli_output(engine, container, &["CONFIG", "SET", "save", ""]).await?;
        cli_output(engine, container, &["CONFIG", "SET", "appendonly", "no"]).await?;
        let mut args = vec![p.dir.as_str(), aside.as_str(), staging.as_str()];
        args.extend(names.iter().map(String::as_str));
        run(
            engine,
            container,
            &super::shell(SWAP, &args),
            "swapping in the restored files",
        )
        .await
    }
    .await;
    if let Err(e) = swapped {
        let undone = run(engine, container, &rollback.command, "rolling back").await;
        return match undone {
            Ok(_) => {
                journal.paid(&rollback)?;
                Err(e)
            }
            Err(undo) => Err(Error::Other(format!(
                "{e}; putting the data back failed too ({undo}): the next lifeboat command retries; the files are in {aside} inside the container"
            ))),
        };
    }
    // From here a restart loads the restored files, which is what was asked.
    journal.paid(&rollback)?;

    let entry = crate::stop::StopEntry {
        id: container.to_string(),
        name: container.to_string(),
        why: "restoring its data".to_string(),
        auto_remove,
    };
    let mut window = crate::stop::StopWindow::new(engine, journal);
    let stopped = window.stop(std::slice::from_ref(&entry)).await;
    // Whatever happened, the container runs again.
    let (_, failed_starts) = window.restart().await;
    let kept = |e: Error| {
        Error::Other(format!(
            "{e}; the container's previous data files are in {aside} inside it"
        ))
    };
    stopped.map_err(kept)?;
    if !failed_starts.is_empty() {
        return Err(kept(Error::Other(failed_starts.join("; "))));
    }
    let keys = wait_and_count(engine, container).await.map_err(kept)?;
    let recorded = manifest.databases.first().and_then(|d| d.keys);
    let mismatches = match recorded {
        Some(r) if r != keys => vec![format!(
            "{keys} keys, {r} recorded (the previous data files are in {aside} inside the container)"
        )],
        _ => Vec::new(),
    };
    if mismatches.is_empty() {
        let command = ["rm", "-rf", "--", aside.as_str()].map(String::from);
        if let Err(e) = run(engine, container, &command, "removing the data set aside").await {
            tracing::warn!("{e}");
        }
    }
    Ok(vec![RestoredDatabase {
        name: "redis".into(),
        tables_checked: 0,
        mismatches,
        keys: Some(keys),
    }])
}

/// Moves the current data files aside and the staged ones into their place
/// (arguments: the data directory, the aside directory, the staging
/// directory's name, then the names of the data files).
const SWAP: &str = r#"dir="$1"; aside="$2"; staging="$1/$3"; shift 3
mkdir -p -- "$aside" || exit 1
for name in "$@"; do
  if [ -e "$dir/$name" ]; then mv -- "$dir/$name" "$aside/" || exit 1; fi
done
for name in "$@"; do
  if [ -e "$staging/$name" ]; then
    printf '%s\n' "$name" >> "$aside/.moved-in" && mv -- "$staging/$name" "$dir/" || exit 1
  fi
done
rmdir -- "$staging""#;

/// Undoes what a restore changed while Redis ran: the staged files go, the
/// files set aside come back, and the settings are as they were
/// (arguments: the data directory, the aside directory, the staging
/// directory's name, the `save` setting, `appendonly`, then the names of
/// the data files).
const ROLLBACK: &str = r#"dir="$1"; aside="$2"; staging="$1/$3"; save="$4"; aof="$5"; shift 5
if [ -f "$aside/.moved-in" ]; then
  while IFS= read -r name; do rm -rf -- "$dir/$name" || exit 1; done < "$aside/.moved-in"
  rm -f -- "$aside/.moved-in"
fi
for name in "$@"; do
  if [ -e "$aside/$name" ]; then mv -- "$aside/$name" "$dir/" || exit 1; fi
done
rm -rf -- "$staging"
if [ -d "$aside" ]; then rmdir -- "$aside" || exit 1; fi
[ "$(redis-cli --raw CONFIG SET appendonly "$aof")" = OK ] || exit 1
[ "$(redis-cli --raw CONFIG SET save "$save")" = OK ] || exit 1"#;

/// A script run with the client's password set from the container's
/// environment.
fn with_credentials(script: &str, args: &[&str]) -> Vec<String> {
    let mut inner = vec!["sh", "-c", script, "lifeboat"];
    inner.extend_from_slice(args);
    shell(WITH_CREDENTIALS, &inner)
}

/// Writes the RDB (and, with the append-only file on, its base) into a
/// staging directory inside the data directory.
async fn stage(
    engine: &Engine,
    container: &str,
    p: &Persistence,
    staging: &str,
    dumps: &super::DumpFiles,
    node: crate::repo::SnapshotNode,
) -> Result<()> {
    let mut entries: Vec<(String, Option<Vec<u8>>)> = vec![(p.rdb.clone(), None)];
    if p.aof {
        if p.aof_dir.is_empty() {
            entries.push((p.aof_file.clone(), None));
        } else {
            let base = format!("{}.1.base.rdb", p.aof_file);
            entries.push((format!("{}/{base}", p.aof_dir), None));
            let manifest = format!("file {base} seq 1 type b\n");
            entries.push((
                format!("{}/{}.manifest", p.aof_dir, p.aof_file),
                Some(manifest.into_bytes()),
            ));
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(16);
    let files = dumps.clone();
    let (uid, gid) = p.owner;
    let mut dirs = vec![staging.to_string()];
    if p.aof && !p.aof_dir.is_empty() {
        dirs.push(format!("{staging}/{}", p.aof_dir));
    }
    let staging = staging.to_string();
    let producer = tokio::task::spawn_blocking(move || -> Result<()> {
        let out = crate::pipe::ChannelWriter::new(tx, files.progress.clone());
        let mut builder = tar::Builder::new(out);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = |size: u64, kind: tar::EntryType, mode: u32| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(size);
            h.set_mode(mode);
            h.set_uid(uid);
            h.set_gid(gid);
            h.set_mtime(now);
            h
        };
        let tar_error =
            |e: std::io::Error| Error::Other(format!("writing the RDB for the engine: {e}"));
        for dir in &dirs {
            builder
                .append_data(
                    &mut header(0, tar::EntryType::Directory, 0o755),
                    dir,
                    std::io::empty(),
                )
                .map_err(tar_error)?;
        }
        for (name, bytes) in &entries {
            let name = format!("{staging}/{name}");
            match bytes {
                Some(b) => builder
                    .append_data(
                        &mut header(b.len() as u64, tar::EntryType::Regular, 0o644),
                        &name,
                        b.as_slice(),
                    )
                    .map_err(tar_error)?,
                None => {
                    let content = files.reader.content(&node)?;
                    let length = content.length();
                    builder
                        .append_data(
                            &mut header(length, tar::EntryType::Regular, 0o644),
                            &name,
                            content,
                        )
                        .map_err(tar_error)?;
                }
            }
        }
        builder
            .into_inner()
            .and_then(|mut w| std::io::Write::flush(&mut w))
            .map_err(tar_error)
    });
    let uploaded = engine
        .upload_into(container, &p.dir, crate::pipe::receiver_stream(rx))
        .await;
    let produced = producer
        .await
        .map_err(|e| Error::Other(format!("writing the RDB stopped: {e}")))?;
    produced?;
    uploaded
}

/// Waits for the restarted server to finish loading, then counts its keys.
async fn wait_and_count(engine: &Engine, container: &str) -> Result<u64> {
    let started = Instant::now();
    loop {
        if let Ok(info) = cli_output(engine, container, &["INFO", "persistence"]).await
            && info_field(&info, "loading") == Some("0")
        {
            return count_keys(engine, container).await;
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(Error::DumpFailed(format!(
                "redis in container {container} did not come back within five minutes after the restore"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
