//! Back up: one snapshot per volume or bind mount, each by its strategy
//! (dump, stop or live), or only the plan of it.

use std::sync::Arc;
use std::time::Instant;

use super::events::Event;
use super::session::Session;
use crate::backup::{BackupRun, ReaderChoice, StopSettings, backup_planned, select_targets};
use crate::error::{Error, Result};
use crate::inventory::{self, InventoryOptions};
use crate::plan::{self, PlannedTarget, StrategyFlags};
use crate::progress::TransferProgress;

/// What to back up, and how.
#[derive(Clone, Debug, Default)]
pub struct BackupRequest {
    /// Volumes by name, bind mounts by host path.
    pub targets: Vec<String>,
    /// Every named volume and every bind-mounted data directory.
    pub all: bool,
    /// Strategies asked for, over the labels and the configuration.
    pub strategies: StrategyFlags,
    /// How to read the files of live and stopped targets.
    pub via: ReaderChoice,
    /// With the stop strategy: stop first and copy everything while
    /// stopped, instead of copying live first and only the changes while
    /// stopped.
    pub single_pass: bool,
}

/// The strategy each target would be backed up with, and why; nothing is
/// backed up and the repository is not opened.
pub async fn plan(session: &Session, request: &BackupRequest) -> Result<Vec<PlannedTarget>> {
    let config = session.config()?;
    planned(session, request, &config).await
}

async fn planned(
    session: &Session,
    request: &BackupRequest,
    config: &crate::config::Config,
) -> Result<Vec<PlannedTarget>> {
    let engine = session.engine().await?;
    let inventory = inventory::discover(
        engine,
        InventoryOptions {
            sizes: false,
            size_deadline: None,
        },
    )
    .await?;
    let targets = select_targets(&inventory, &request.targets, request.all)?;
    Ok(plan::plan(
        &inventory,
        &targets,
        &request.strategies,
        config,
    ))
}

/// Backs up the targets one after the other. A target that fails does
/// not stop the others: its failure is in its result, and each result is
/// an event the moment it is known. With no target at all (an engine
/// without volumes), nothing is opened and the run is empty.
///
/// Stopped ([`Session::cancel`]), it publishes nothing more, starts again
/// what it stopped, and ends with [`Error::Interrupted`].
pub async fn backup(session: &Session, request: &BackupRequest) -> Result<BackupRun> {
    let started = Instant::now();
    let config = session.config()?;
    session.start_opening();
    let planned = session.reading(planned(session, request, &config)).await?;
    if planned.is_empty() {
        return Ok(BackupRun {
            targets: Vec::new(),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    session.go_on()?;
    // Not dropped on a stop: a repository half created would not open.
    let repo = session.repo_or_default().await?;
    session.go_on()?;
    if !repo.is_locked() {
        session.emit(Event::RepositoryUnlocked {
            location: &repo.location(),
        });
    }
    let engine = session.engine().await?;
    let stop = StopSettings {
        state_dir: session.state_dir().to_path_buf(),
        single_pass: request.single_pass,
    };
    let work = async {
        let mut results = Vec::with_capacity(planned.len());
        for target in &planned {
            let progress = Arc::new(TransferProgress::default());
            session.emit(Event::WorkStarted {
                what: &format!("{} {}", target.kind.as_str(), target.name),
                progress: &progress,
            });
            let result = backup_planned(engine, repo, target, request.via, &stop, progress).await;
            session.emit(Event::WorkEnded);
            session.emit(Event::TargetBackedUp(&result));
            results.push(result);
        }
        results
    };
    tokio::select! {
        biased;
        targets = work => Ok(BackupRun {
            targets,
            seconds: started.elapsed().as_secs_f64(),
        }),
        () = session.cancelled() => {
            // The work is abandoned where it stands: no snapshot is
            // published after this, and what it stopped starts again now.
            repo.cancel();
            session.emit(Event::WorkEnded);
            session.undo().await;
            Err(Error::Interrupted(
                "the backup was interrupted; containers it stopped were started again".into(),
            ))
        }
    }
}
