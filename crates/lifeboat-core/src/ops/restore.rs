//! Restore: a snapshot back into a volume or directory, or a database
//! dump into a running container or onto a new volume.

use std::sync::Arc;

use serde::Serialize;

use super::events::Event;
use super::session::Session;
use crate::backup::ReaderChoice;
use crate::error::{Error, Result};
use crate::progress::TransferProgress;
use crate::restore::{
    DumpDestination, DumpRestoreReport, DumpRestoreRequest, OnPrevious, RestoreReport,
};

/// Which snapshot to restore.
#[derive(Clone, Debug)]
pub enum RestoreFrom {
    /// A snapshot id (or a unique prefix of it), or `latest`; of this
    /// volume (name) or bind mount (host path), when given.
    Snapshot { id: String, target: Option<String> },
    /// The snapshot `lifeboat prune` kept of a volume it removed.
    Pruned { volume: String },
}

/// Where to restore it.
#[derive(Clone, Debug)]
pub enum RestoreInto {
    /// Files into the volume or bind mount the snapshot is of, or into
    /// this volume or directory (created with the snapshot's driver,
    /// options and labels when missing).
    Files {
        to: Option<String>,
        via: ReaderChoice,
    },
    /// A dump, with the database's own tools, into this running
    /// container.
    Container(String),
    /// A dump, brought up on this new volume by a temporary container of
    /// the database's image.
    NewVolume { volume: String, image: String },
}

/// What to restore where.
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    pub from: RestoreFrom,
    pub into: RestoreInto,
    /// Only this database of a dump.
    pub database: Option<String>,
    /// Overwrite a target that holds data; what it holds is saved in a
    /// `pre-restore` snapshot first, so the restore can be undone.
    pub force: bool,
}

/// What a restore did.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum RestoreOutcome {
    Files(RestoreReport),
    Dump(DumpRestoreReport),
}

/// Restores a snapshot.
///
/// Stopped ([`Session::cancel`]), a files restore stops at its next file
/// and puts the target back as it was; a dump restore publishes nothing
/// more and starts again what it stopped. Either then ends with
/// [`Error::Interrupted`].
pub async fn restore(session: &Session, request: &RestoreRequest) -> Result<RestoreOutcome> {
    let engine = session.engine().await?;
    let repo = session.repo().await?;
    session.go_on()?;
    let (snapshot, target) = match &request.from {
        RestoreFrom::Pruned { volume } => {
            let snapshots = session.snapshots().await?;
            let kept = crate::volume_prune::pruned_snapshot(&snapshots, volume)?;
            (kept.id, Some(volume.clone()))
        }
        RestoreFrom::Snapshot { id, target } => (id.clone(), target.clone()),
    };
    let on_previous = {
        let events = session.events();
        OnPrevious::new(move |previous| events.event(Event::PreviousSaved(previous)))
    };
    let progress = Arc::new(TransferProgress::default());
    let destination = match &request.into {
        RestoreInto::Files { to, via } => {
            if request.database.is_some() {
                return Err(Error::BadRequest(
                    "--database applies to database dumps, restored with --into or --image".into(),
                ));
            }
            let files = crate::restore::RestoreRequest {
                snapshot,
                target,
                to: to.clone(),
                force: request.force,
                writer: *via,
                on_previous,
            };
            session.emit(Event::WorkStarted {
                what: "restoring",
                progress: &progress,
            });
            let restoring = crate::restore::restore(engine, repo, &files, progress.clone());
            tokio::pin!(restoring);
            let report = tokio::select! {
                biased;
                () = session.cancelled() => {
                    // The restore stops at its next file and puts the
                    // target back as it was; it must finish that.
                    progress.stop();
                    restoring.await
                }
                report = &mut restoring => report,
            };
            session.emit(Event::WorkEnded);
            return report.map(RestoreOutcome::Files);
        }
        RestoreInto::Container(container) => DumpDestination::Container(container.clone()),
        RestoreInto::NewVolume { volume, image } => DumpDestination::NewVolume {
            volume: volume.clone(),
            image: image.clone(),
        },
    };
    let dump = DumpRestoreRequest {
        snapshot,
        target,
        destination,
        database: request.database.clone(),
        force: request.force,
        state_dir: session.state_dir().to_path_buf(),
        on_previous,
    };
    session.emit(Event::WorkStarted {
        what: "restoring",
        progress: &progress,
    });
    let report = tokio::select! {
        report = crate::restore::restore_dump(engine, repo, &dump, progress.clone()) => report,
        () = session.cancelled() => {
            repo.cancel();
            session.emit(Event::WorkEnded);
            session.undo().await;
            return Err(Error::Interrupted("the restore was interrupted".into()));
        }
    };
    session.emit(Event::WorkEnded);
    report.map(RestoreOutcome::Dump)
}
