//! Backup: one snapshot per volume or bind mount.
//!
//! For each target: choose the reader (`host` when lifeboat can read the
//! files itself, `engine` otherwise or on request), stream the files into the
//! repository, and publish the snapshot only when every file was read. A
//! failure of one target never stops the others; each gets its own result.
//!
//! Its rooms: `files` (the live pass, through either reader), `stopped`
//! (the stop strategy around it), `dump` (the dump strategy).

mod dump;
mod files;
mod stopped;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use jiff::Zoned;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;

use crate::dump::dump_source;
use crate::dump::tools::DumpContext;
use crate::engine::{Engine, HELPER_MOUNT, Helper, HelperSource, MountKind};
use crate::error::{Error, ErrorClass, Result};
use crate::hooks::Phase;
use crate::inventory::{Inventory, Target};
use crate::pipe::ChunkReader;
use crate::plan::{PlannedTarget, Strategy};
use crate::progress::TransferProgress;
use crate::repo::source::{
    ArchiveInput, ArchiveSource, HostSource, Payload, ReadLog, Refetch, SharedLog, read_payload,
};
use crate::repo::{ArchiveRequest, Repo, SnapshotInfo};
use dump::*;
pub(crate) use files::stream_reader;
use files::*;
use stopped::*;

/// How a target's files are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reader {
    /// Straight from the host path: fastest, and incremental through the
    /// previous snapshot.
    Host,
    /// Through the engine's archive endpoint, from a never-started helper
    /// container that mounts the target read-only.
    Engine,
}

/// Which reader to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReaderChoice {
    /// The host path when it is readable, the engine otherwise.
    #[default]
    Auto,
    Host,
    Engine,
}

/// The outcome of one target's backup.
#[derive(Clone, Debug, Serialize)]
pub struct TargetBackup {
    pub kind: MountKind,
    pub name: String,
    /// How the target was backed up, when it went through a plan.
    pub strategy: Option<Strategy>,
    pub reader: Option<Reader>,
    /// The snapshot written, when the backup succeeded.
    pub snapshot: Option<SnapshotInfo>,
    pub files: u64,
    pub bytes: u64,
    /// Bytes newly added to the repository (after deduplication and
    /// compression).
    pub bytes_added: u64,
    pub seconds: f64,
    /// Files that disappeared while the volume was read live.
    pub vanished: Vec<String>,
    /// Sockets left out (a socket is made by the process that listens on
    /// it; the engine's archive leaves them out too, unreported).
    pub sockets: Vec<String>,
    /// How long each stopped container was stopped (stop strategy).
    pub stop_windows: Vec<crate::stop::StopWindowReport>,
    /// The hooks that ran, before and after.
    pub hooks: Vec<crate::hooks::HookRun>,
    pub error: Option<String>,
    /// What kind of failure the error is.
    pub failure: Option<ErrorClass>,
}

impl TargetBackup {
    /// Whether the backup produced a snapshot.
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.snapshot.is_some()
    }
}

/// Picks the targets a backup request names. `names` are volume names or
/// bind-mount host paths; `all` takes every volume and every bind-mounted
/// data directory.
pub fn select_targets(inventory: &Inventory, names: &[String], all: bool) -> Result<Vec<Target>> {
    if all {
        return Ok(inventory
            .targets
            .iter()
            .filter(|t| t.in_backup_all())
            .cloned()
            .collect());
    }
    names
        .iter()
        .map(|name| {
            let kind = if name.starts_with('/') {
                MountKind::Bind
            } else {
                MountKind::Volume
            };
            let wanted = if kind == MountKind::Bind {
                name.trim_end_matches('/').to_string()
            } else {
                name.clone()
            };
            inventory
                .targets
                .iter()
                .find(|t| t.kind == kind && t.name == wanted)
                .cloned()
                .ok_or_else(|| Error::UnknownTarget(name.clone()))
        })
        .collect()
}

/// Backs up one target. Never fails as a whole: the error, if any, is in
/// the result.
pub async fn backup_target(
    engine: &Engine,
    repo: &Repo,
    target: &Target,
    choice: ReaderChoice,
    extra_tags: &[String],
    progress: Arc<TransferProgress>,
) -> TargetBackup {
    let started = Instant::now();
    let mut result = TargetBackup::new(target);
    let pass = FilePass {
        choice,
        tags: extra_tags.to_vec(),
        parent: None,
        time: None,
    };
    let outcome = run(engine, repo, target, &pass, progress, &mut result).await;
    result.complete(outcome, started)
}

/// Backs up one target by its plan: its database's dump, or its files.
/// Never fails as a whole: the error, if any, is in the result.
pub async fn backup_planned(
    engine: &Engine,
    repo: &Repo,
    planned: &PlannedTarget,
    choice: ReaderChoice,
    settings: &RunSettings,
    progress: Arc<TransferProgress>,
) -> TargetBackup {
    let started = Instant::now();
    let mut result = TargetBackup::new(&planned.target);
    result.strategy = Some(planned.strategy);
    let tag = format!("strategy={}", planned.strategy);
    if planned.strategy == Strategy::Stop
        && let Some(refusal) = planned.stop_refusal()
    {
        return result.complete(Err(Error::Refused(refusal)), started);
    }
    let mut journal = crate::journal::Journal::new(engine, &settings.state_dir);
    // Post hooks are owed from the moment pre hooks may have run: an
    // interrupted or killed lifeboat leaves them to the journal. Without a
    // journal, no hook runs.
    if let Err(e) = journal.owe(&crate::hooks::owed_after(&planned.hooks)) {
        return result.complete(Err(e), started);
    }
    let (pre, abort) = crate::hooks::run_phase(engine, &planned.hooks, Phase::Pre, None).await;
    result.hooks.extend(pre);
    let outcome = match (abort, planned.strategy) {
        (Some(e), _) => Err(e),
        (None, Strategy::Live) => {
            let pass = FilePass {
                choice,
                tags: vec![tag],
                parent: None,
                time: settings.time.clone(),
            };
            run(engine, repo, &planned.target, &pass, progress, &mut result).await
        }
        (None, Strategy::Dump) => {
            let time = settings.time.as_ref();
            dump(engine, repo, planned, &[], time, progress, &mut journal).await
        }
        (None, Strategy::Stop) => {
            let stop = StopRun {
                choice,
                single_pass: settings.single_pass,
                time: settings.time.clone(),
            };
            stop_and_copy(
                engine,
                repo,
                planned,
                &stop,
                &mut journal,
                progress,
                &mut result,
            )
            .await
        }
    };
    let (post, failed) =
        crate::hooks::run_phase(engine, &planned.hooks, Phase::Post, Some(&mut journal)).await;
    result.hooks.extend(post);
    if let Some(e) = failed {
        // The snapshot, if any, is good; what the hook should have undone
        // is not.
        result.failure = Some(e.class());
        result.error = Some(e.to_string());
    }
    result.complete(outcome, started)
}

/// Backs up a planned dump target with extra tags and without hooks: the
/// snapshot of what a restore into its container is about to replace.
pub(crate) async fn backup_tagged(
    engine: &Engine,
    repo: &Repo,
    planned: &PlannedTarget,
    extra_tags: &[String],
    state_dir: &std::path::Path,
    progress: Arc<TransferProgress>,
) -> TargetBackup {
    let started = Instant::now();
    let mut result = TargetBackup::new(&planned.target);
    result.strategy = Some(planned.strategy);
    let mut journal = crate::journal::Journal::new(engine, state_dir);
    let outcome = dump(
        engine,
        repo,
        planned,
        extra_tags,
        None,
        progress,
        &mut journal,
    )
    .await;
    result.complete(outcome, started)
}

impl TargetBackup {
    fn new(target: &Target) -> Self {
        Self {
            kind: target.kind,
            name: target.name.clone(),
            strategy: None,
            reader: None,
            snapshot: None,
            files: 0,
            bytes: 0,
            bytes_added: 0,
            seconds: 0.0,
            vanished: Vec::new(),
            sockets: Vec::new(),
            stop_windows: Vec::new(),
            hooks: Vec::new(),
            error: None,
            failure: None,
        }
    }

    fn complete(mut self, outcome: Result<SnapshotInfo>, started: Instant) -> Self {
        match outcome {
            Ok(snapshot) => {
                if let (Some(files), Some(bytes), Some(added)) =
                    (snapshot.files, snapshot.bytes, snapshot.bytes_added())
                {
                    self.files = files;
                    self.bytes = bytes;
                    self.bytes_added = added;
                }
                self.snapshot = Some(snapshot);
            }
            Err(e) => {
                // A failed restart said its part already; say the cause too.
                self.failure = Some(e.class());
                let cause = e.to_string();
                self.error = Some(match self.error.take() {
                    Some(earlier) => format!("{cause}; {earlier}"),
                    None => cause,
                });
            }
        }
        self.seconds = started.elapsed().as_secs_f64();
        self
    }
}

/// How a backup run goes, whatever each target's strategy.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// Where the journal of stopped containers and owed hooks lives.
    pub state_dir: PathBuf,
    /// With the stop strategy: stop first and copy everything while
    /// stopped, instead of copying live first and only the changes while
    /// stopped.
    pub single_pass: bool,
    /// The time the snapshots record instead of now (`--time`: history
    /// imported, or built for a test of retention).
    pub time: Option<Zoned>,
}

/// A summary of a whole backup run.
#[derive(Clone, Debug, Serialize)]
pub struct BackupRun {
    pub targets: Vec<TargetBackup>,
    pub seconds: f64,
}

impl BackupRun {
    /// How many targets failed.
    pub fn failures(&self) -> usize {
        self.targets.iter().filter(|t| !t.succeeded()).count()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read};

    use super::*;
    use crate::repo::source::{CheckedOpen, ListedSource, Open};
    use crate::repo::testing::{repo_in, request};

    /// Gives some bytes, then fails: a disk error in the middle of a file.
    struct FailsMidway(Cursor<Vec<u8>>);

    impl Read for FailsMidway {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(std::io::Error::other("input/output error")),
                n => Ok(n),
            }
        }
    }

    impl Open for FailsMidway {
        type Reader = Self;

        fn open(self) -> std::io::Result<Self> {
            Ok(self)
        }
    }

    /// A source whose one file fails half-way through.
    fn one_bad_file(log: &SharedLog) -> ListedSource<CheckedOpen<FailsMidway>> {
        let open = CheckedOpen::new(
            FailsMidway(Cursor::new(vec![7u8; 100_000])),
            PathBuf::from("/b/data"),
            log.clone(),
            Arc::new(TransferProgress::default()),
        );
        ListedSource::new(
            PathBuf::from("/b"),
            OsString::from("v"),
            "d",
            vec![("data".to_string(), open)],
        )
    }

    #[test]
    fn a_read_error_midway_leaves_no_snapshot() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let repo = repo_in(dir.path());
        let log = SharedLog::default();
        let result = repo.archive(&one_bad_file(&log), &request(), || {
            verdict(&log).map_err(Error::ReadFailed)
        });
        let err = result.expect_err("a snapshot was published");
        assert_eq!(err.class(), ErrorClass::Io, "{err}");
        assert!(err.to_string().contains("/b/data"), "{err}");
        assert!(err.to_string().contains("input/output error"), "{err}");
        assert!(repo.snapshots()?.is_empty());
        Ok(())
    }
}
