//! Dumps: a database's own tools, run inside its running container through
//! the engine's exec API, streamed straight into the repository as files of
//! the volume's snapshot (`postgres/shop.dump`, ...), next to a manifest
//! with what a restore and a restore drill need: the databases, their row
//! counts, the server version.
//!
//! The client always matches the server because it is the server's own.
//! Credentials stay where they are: the commands read them from the
//! container's environment, so they never pass through lifeboat, a host
//! command line or a log. A command's exit status decides: one that fails,
//! or dies half-way, records a read failure and the snapshot is not
//! published. No temporary file is written; memory stays bounded by the
//! channel between the command's output and the repository.

pub(crate) mod mysql;
pub(crate) mod postgres;
pub(crate) mod redis;
pub(crate) mod tools;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, ExecChunk};
use crate::error::{Error, Result};
use crate::progress::TransferProgress;
use crate::repo::source::{ListedSource, Open, SharedLog, record_fatal};
use crate::repo::{RepoReader, SnapshotNode};

/// The manifest's file name, in the database's directory of the snapshot.
pub const MANIFEST: &str = "lifeboat-manifest.json";

/// How many chunks of a command's output may wait for the repository.
const OUTPUT_CHUNKS: usize = 32;

/// How much of a failing command's error output is kept for its message.
const STDERR_KEPT: usize = 4096;

/// What a dump snapshot holds, written next to the dump files.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DumpManifest {
    pub database: Option<Database>,
    /// The container the dump was taken in, and its image.
    pub container: String,
    pub image: String,
    /// Where the container mounts its data.
    pub data_path: String,
    pub server_version: String,
    /// How the counts were taken.
    pub counts: String,
    pub databases: Vec<DatabaseDump>,
    /// Settings of the container that are not secrets (user and database
    /// names), for bringing a fresh container up from the dump.
    pub settings: BTreeMap<String, String>,
}

/// What restoring one database found.
#[derive(Clone, Debug, Serialize)]
pub struct RestoredDatabase {
    pub name: String,
    /// Tables whose row count was compared with the one recorded at backup.
    pub tables_checked: usize,
    /// Tables whose count differs, as `table: N rows, M recorded`.
    pub mismatches: Vec<String>,
    /// For key-value stores: the keys found after the restore.
    pub keys: Option<u64>,
}

/// One database of a dump.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DatabaseDump {
    pub name: String,
    /// The dump file, relative to the database's directory.
    pub file: String,
    /// Rows per table (`schema.table` or `database.table`).
    #[serde(default)]
    pub tables: BTreeMap<String, u64>,
    /// Keys, for key-value stores.
    #[serde(default)]
    pub keys: Option<u64>,
}

/// A file name for a database name: anything but letters, digits, `-`,
/// `_` and `.` is percent-encoded, so that no name can leave its directory
/// or collide with the manifest.
pub(crate) fn file_stem(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() { "%".to_string() } else { out }
}

/// `sh -c SCRIPT lifeboat ARGS...`: the script sets up credentials from
/// the container's environment and ends with `exec "$@"`.
pub(crate) fn shell(script: &str, args: &[&str]) -> Vec<String> {
    let mut cmd = vec![
        "sh".to_string(),
        "-c".to_string(),
        script.to_string(),
        "lifeboat".to_string(),
    ];
    cmd.extend(args.iter().map(|a| (*a).to_string()));
    cmd
}

/// A database lifeboat can dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Database {
    Postgres,
    Mariadb,
    Mysql,
    Redis,
}

impl Database {
    /// The directory of the dump files in a snapshot.
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mariadb => "mariadb",
            Self::Mysql => "mysql",
            Self::Redis => "redis",
        }
    }
}

/// The running container whose database a dump is taken from.
#[derive(Clone, Debug, Serialize)]
pub struct DumpFrom {
    pub database: Database,
    pub container: String,
    pub image: String,
    /// Where the container mounts the target (its data directory).
    pub data_path: String,
}

/// The end of a command's error output, for messages.
#[derive(Default)]
pub(crate) struct StderrTail(Vec<u8>);

impl StderrTail {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        if self.0.len() > STDERR_KEPT {
            let cut = self.0.len() - STDERR_KEPT;
            self.0.drain(..cut);
        }
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).trim().replace('\n', " | ")
    }
}

/// A value that one side produces and another waits for: the row counts
/// the manifest needs, taken from a dump's stream or by a database
/// session beside the dumps.
pub(crate) struct Slot<T> {
    state: Mutex<SlotState<T>>,
    ready: Condvar,
}

enum SlotState<T> {
    Waiting,
    Ready(T),
    Failed,
}

impl<T: Clone> Slot<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(SlotState::Waiting),
            ready: Condvar::new(),
        })
    }

    /// Gives the value, unless it was already said never to come.
    pub(crate) fn fill(&self, value: T) {
        if let Ok(mut s) = self.state.lock()
            && matches!(*s, SlotState::Waiting)
        {
            *s = SlotState::Ready(value);
        }
        self.ready.notify_all();
    }

    /// Marks the value as never coming, unless it came.
    pub(crate) fn fail(&self) {
        if let Ok(mut s) = self.state.lock()
            && matches!(*s, SlotState::Waiting)
        {
            *s = SlotState::Failed;
        }
        self.ready.notify_all();
    }

    fn wait(&self) -> Option<T> {
        let mut s = self.state.lock().ok()?;
        loop {
            match &*s {
                SlotState::Ready(v) => return Some(v.clone()),
                SlotState::Failed => return None,
                SlotState::Waiting => s = self.ready.wait(s).ok()?,
            }
        }
    }
}

/// Watches a dump's bytes as they pass (to count rows), and says when the
/// dump ended cleanly.
pub(crate) trait Tap: Send {
    fn bytes(&mut self, data: &[u8]);
    /// The dump ended with success: publish what was counted.
    fn finish(&mut self);
    /// The dump failed or was abandoned.
    fn abandon(&mut self);
}

/// How a file of a dump snapshot gets its content.
pub(crate) enum DumpOpen {
    /// The output of a command in the container.
    Command(Box<CommandOpen>),
    /// Bytes known in advance.
    Bytes(Vec<u8>),
    /// Bytes made once what they record is in (the manifest, once the
    /// rows are counted); `None` when that failed, the cause recorded.
    After {
        make: Box<dyn FnOnce() -> Option<Vec<u8>> + Send>,
        log: SharedLog,
    },
}

/// Runs a command in a container when its file is read.
pub(crate) struct CommandOpen {
    pub(crate) engine: Engine,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) container: String,
    pub(crate) command: Vec<String>,
    /// What the command is, for messages (`pg_dump of shop`).
    pub(crate) what: String,
    pub(crate) tap: Option<Box<dyn Tap>>,
    pub(crate) log: SharedLog,
    pub(crate) progress: Arc<TransferProgress>,
}

impl Drop for CommandOpen {
    fn drop(&mut self) {
        // Never opened: whoever waits for its counts must not wait forever.
        if let Some(tap) = self.tap.as_mut() {
            tap.abandon();
        }
    }
}

/// Reads a dump file.
pub(crate) enum DumpReader {
    Command(CommandReader),
    Bytes(std::io::Cursor<Vec<u8>>),
}

impl Read for DumpReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Command(r) => r.read(buf),
            Self::Bytes(r) => r.read(buf),
        }
    }
}

impl Open for DumpOpen {
    type Reader = DumpReader;

    fn open(self) -> std::io::Result<DumpReader> {
        match self {
            Self::Bytes(b) => Ok(DumpReader::Bytes(std::io::Cursor::new(b))),
            Self::After { make, log } => make()
                .map(|b| DumpReader::Bytes(std::io::Cursor::new(b)))
                .ok_or_else(|| {
                    let message =
                        "no manifest: the row counts it records were not taken".to_string();
                    record_fatal(&log, message.clone());
                    std::io::Error::other(message)
                }),
            Self::Command(open) => (*open).start().map(DumpReader::Command),
        }
    }
}

impl CommandOpen {
    fn start(mut self) -> std::io::Result<CommandReader> {
        self.progress.files_done.fetch_add(1, Ordering::Relaxed);
        let fail = |log: &SharedLog, message: String| {
            record_fatal(log, message.clone());
            std::io::Error::other(message)
        };
        let exec =
            match self
                .handle
                .block_on(self.engine.exec(&self.container, &self.command, false))
            {
                Ok(exec) => exec,
                Err(e) => return Err(fail(&self.log, format!("{}: {e}", self.what))),
            };
        let (tx, rx) = tokio::sync::mpsc::channel(OUTPUT_CHUNKS);
        let engine = self.engine.clone();
        let what = format!("{} in container {}", self.what, self.container);
        let log = self.log.clone();
        self.handle.spawn(async move {
            let mut stderr = StderrTail::default();
            let mut output = exec.output;
            while let Some(chunk) = output.next().await {
                match chunk {
                    Ok(ExecChunk::Stdout(b)) => {
                        if tx.send(Ok(Piece::Data(b))).await.is_err() {
                            // The repository stopped reading.
                            return;
                        }
                    }
                    Ok(ExecChunk::Stderr(b)) => stderr.push(&b),
                    Err(e) => {
                        let message = format!("{what}: {e}");
                        record_fatal(&log, message.clone());
                        let _ = tx.send(Err(std::io::Error::other(message))).await;
                        return;
                    }
                }
            }
            let failure = match engine.exec_exit_code(&exec.id).await {
                Ok(0) => None,
                Ok(code) => Some(format!(
                    "{what} failed (exit status {code}): {}",
                    stderr.text()
                )),
                Err(e) => Some(format!("{what}: {e}")),
            };
            match failure {
                // Only this says the output is whole: a channel that just
                // closes (this task cancelled) does not.
                None => {
                    let _ = tx.send(Ok(Piece::End)).await;
                }
                Some(message) => {
                    record_fatal(&log, message.clone());
                    let _ = tx.send(Err(std::io::Error::other(message))).await;
                }
            }
        });
        Ok(CommandReader {
            rx,
            current: Bytes::new(),
            tap: self.tap.take(),
            progress: self.progress.clone(),
            log: self.log.clone(),
            what: format!("{} in container {}", self.what, self.container),
        })
    }
}

/// What the output pump sends.
pub(crate) enum Piece {
    Data(Bytes),
    /// The command ended with success: the output is whole.
    End,
}

/// A command's standard output, as a blocking reader. It ends with an
/// error when the command failed, or when the output stopped without the
/// command's success being known.
pub(crate) struct CommandReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Piece>>,
    current: Bytes,
    tap: Option<Box<dyn Tap>>,
    progress: Arc<TransferProgress>,
    log: SharedLog,
    what: String,
}

impl Read for CommandReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(Piece::Data(chunk))) => self.current = chunk,
                Some(Ok(Piece::End)) => {
                    if let Some(mut tap) = self.tap.take() {
                        tap.finish();
                    }
                    return Ok(0);
                }
                Some(Err(e)) => {
                    if let Some(tap) = self.tap.as_mut() {
                        tap.abandon();
                    }
                    return Err(e);
                }
                None => {
                    if let Some(tap) = self.tap.as_mut() {
                        tap.abandon();
                    }
                    let message =
                        format!("{}: the output stopped before the command's end", self.what);
                    record_fatal(&self.log, message.clone());
                    return Err(std::io::Error::other(message));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        if let Some(tap) = self.tap.as_mut() {
            tap.bytes(&buf[..n]);
        }
        self.progress
            .bytes_read
            .fetch_add(n as u64, Ordering::Relaxed);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

impl Drop for CommandReader {
    fn drop(&mut self) {
        if let Some(tap) = self.tap.as_mut() {
            tap.abandon();
        }
    }
}

/// The label of dump snapshots (see `ArchiveRequest::label`).
pub(crate) const DUMP_LABEL: &str = "dump";

/// The path dump entries are named below.
pub(crate) const DUMP_BASE: &str = "/lifeboat-dump";

/// The files of a dump snapshot: the volume's root, the database's
/// directory, and the files in it, each with how it gets its content.
pub(crate) fn dump_source(
    root_name: OsString,
    database: Database,
    files: Vec<(String, DumpOpen)>,
) -> ListedSource<DumpOpen> {
    ListedSource::new(
        PathBuf::from(DUMP_BASE),
        root_name,
        database.dir_name(),
        files,
    )
}

/// Runs a short command in the container and returns its output, failing
/// with its error output when it fails.
pub(crate) async fn run(
    engine: &Engine,
    container: &str,
    command: &[String],
    what: &str,
) -> Result<Vec<u8>> {
    let out = engine.exec_collect(container, command, None).await?;
    if out.exit_code != 0 {
        return Err(Error::DumpFailed(format!(
            "{what} in container {container} failed (exit status {}): {}",
            out.exit_code,
            out.stderr.trim().replace('\n', " | ")
        )));
    }
    Ok(out.stdout)
}

/// The files of one dump snapshot, for feeding them to restore tools.
#[derive(Clone)]
pub(crate) struct DumpFiles {
    pub(crate) reader: Arc<RepoReader>,
    /// The snapshot's root node (the volume's directory).
    pub(crate) root: SnapshotNode,
    pub(crate) database: Database,
    pub(crate) progress: Arc<TransferProgress>,
}

impl DumpFiles {
    /// The node of a file in the database's directory.
    pub(crate) async fn node(&self, file: &str) -> Result<SnapshotNode> {
        let files = self.clone();
        let path = format!("{}/{file}", self.database.dir_name());
        tokio::task::spawn_blocking(move || files.reader.node_below(&files.root, &path))
            .await
            .map_err(|e| Error::Other(format!("reading the snapshot stopped: {e}")))?
    }

    /// Reads the manifest.
    pub(crate) fn manifest(&self) -> Result<DumpManifest> {
        let bytes = self.reader.read_small_file(
            &self.root,
            &format!("{}/{MANIFEST}", self.database.dir_name()),
        )?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Other(format!("the dump's manifest is unreadable: {e}")))
    }

    /// The whole content of a small file (accounts, a manifest).
    pub(crate) async fn read(&self, file: &str) -> Result<Vec<u8>> {
        let files = self.clone();
        let path = format!("{}/{file}", self.database.dir_name());
        tokio::task::spawn_blocking(move || files.reader.read_small_file(&files.root, &path))
            .await
            .map_err(|e| Error::Other(format!("reading the snapshot stopped: {e}")))?
    }

    /// Streams one file into a command in the container.
    pub(crate) async fn feed(
        &self,
        engine: &Engine,
        container: &str,
        file: &str,
        command: &[String],
    ) -> Result<Fed> {
        let node = self.node(file).await?;
        feed(
            engine,
            container,
            command,
            self.reader.clone(),
            node,
            self.progress.clone(),
        )
        .await
    }
}

/// What a command that was fed a file printed, and how it ended.
pub(crate) struct Fed {
    pub(crate) exit_code: i64,
    pub(crate) stderr: String,
}

/// Streams a file of a snapshot into a command's standard input inside a
/// container, collecting what the command prints meanwhile (reading both
/// at once: a command that fills its output pipe would otherwise never
/// finish reading its input).
pub(crate) async fn feed(
    engine: &Engine,
    container: &str,
    command: &[String],
    reader: Arc<RepoReader>,
    node: SnapshotNode,
    progress: Arc<TransferProgress>,
) -> Result<Fed> {
    use tokio::io::AsyncWriteExt;
    let mut exec = engine.exec(container, command, true).await?;
    let mut input = exec
        .input
        .take()
        .ok_or_else(|| Error::Other("the engine gave no input to the command".into()))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(OUTPUT_CHUNKS);
    let producer = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut file = reader.content(&node)?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) => {
                    let message = e.to_string();
                    let _ = tx.blocking_send(Err(e));
                    return Err(Error::Other(message));
                }
            };
            progress.bytes_done.fetch_add(n as u64, Ordering::Relaxed);
            if tx
                .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                .is_err()
            {
                return Ok(());
            }
        }
    });
    let write = async move {
        let mut failed = None;
        while let Some(chunk) = rx.recv().await {
            match chunk {
                Ok(chunk) => {
                    if let Err(e) = input.write_all(&chunk).await {
                        // The command stopped reading: its exit status
                        // says why.
                        tracing::debug!("the command stopped reading its input: {e}");
                        break;
                    }
                }
                Err(e) => {
                    failed = Some(Error::Other(format!("reading the dump: {e}")));
                    break;
                }
            }
        }
        // Always: a command waiting for more input would never end.
        let _ = input.shutdown().await;
        failed.map_or(Ok(()), Err)
    };
    // Restore tools report every problem on their error output; keep a
    // good deal of it (the first megabyte) to tell harmless ones apart.
    // What they print on their standard output is not needed.
    const KEPT: usize = 1 << 20;
    let mut stderr = Vec::new();
    let read = async {
        while let Some(chunk) = exec.output.next().await {
            if let ExecChunk::Stderr(b) = chunk? {
                let room = KEPT.saturating_sub(stderr.len());
                stderr.extend_from_slice(&b[..b.len().min(room)]);
            }
        }
        Ok::<(), Error>(())
    };
    let (written, read) = tokio::join!(write, read);
    written?;
    read?;
    producer
        .await
        .map_err(|e| Error::Other(format!("reading the dump stopped: {e}")))??;
    Ok(Fed {
        exit_code: engine.exec_exit_code(&exec.id).await?,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_become_safe_file_names() {
        assert_eq!(file_stem("shop"), "shop");
        assert_eq!(file_stem("my db/../x"), "my%20db%2F..%2Fx");
        assert_eq!(file_stem(".hidden"), "%2Ehidden");
        assert_eq!(file_stem(""), "%");
        assert_eq!(
            file_stem("lifeboat-manifest.json"),
            "lifeboat-manifest.json"
        );
    }

    #[test]
    fn a_slot_hands_over_a_value_or_its_absence() {
        let slot = Slot::<u32>::new();
        let waiter = {
            let slot = slot.clone();
            std::thread::spawn(move || slot.wait())
        };
        slot.fill(7);
        assert_eq!(waiter.join().expect("join"), Some(7));
        let slot = Slot::<u32>::new();
        slot.fail();
        slot.fill(1);
        assert_eq!(slot.wait(), None, "a failure is final");
        let slot = Slot::<u32>::new();
        slot.fail();
        assert_eq!(slot.wait(), None);
    }

    #[test]
    fn stderr_keeps_its_end() {
        let mut tail = StderrTail::default();
        tail.push(&vec![b'a'; 5000]);
        tail.push(b"\nFATAL: the end");
        assert!(tail.text().ends_with("| FATAL: the end"));
        assert!(tail.text().len() <= STDERR_KEPT + 3);
    }
}
