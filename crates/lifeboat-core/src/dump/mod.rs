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
//!
//! Its rooms: `tools` (the interface every database engine implements)
//! and `engines` (which implementation serves which database),
//! one directory per engine (`postgres`, `mysql` for MariaDB and MySQL,
//! `redis`), each split into taking the dump and restoring it;
//! `command` (commands whose output becomes a file) and `files` (a dump
//! snapshot's files fed back to a restore tool).

pub(crate) mod mysql;
pub(crate) mod postgres;
pub(crate) mod redis;
pub(crate) mod tools;

mod engines;

mod command;
mod files;

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

pub(crate) use command::*;
pub(crate) use files::*;

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

impl RestoredDatabase {
    /// A database's tables as `counted` after a restore, against the row
    /// counts recorded at backup: each table that differs or is missing
    /// is a mismatch.
    pub(crate) fn compared(database: &DatabaseDump, counted: &BTreeMap<String, u64>) -> Self {
        let mut mismatches = Vec::new();
        for (table, recorded) in &database.tables {
            match counted.get(table) {
                Some(n) if n == recorded => {}
                Some(n) => mismatches.push(format!("{table}: {n} rows, {recorded} recorded")),
                None => mismatches.push(format!("{table}: missing, {recorded} rows recorded")),
            }
        }
        Self {
            name: database.name.clone(),
            tables_checked: database.tables.len(),
            mismatches,
            keys: None,
        }
    }
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

    /// The database a snapshot's `database=` tag names.
    pub(crate) fn from_dir_name(name: &str) -> Option<Self> {
        [Self::Postgres, Self::Mariadb, Self::Mysql, Self::Redis]
            .into_iter()
            .find(|d| d.dir_name() == name)
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
