//! Back up: one snapshot per volume or bind mount, each by its strategy
//! (dump, stop or live), or only the plan of it.

use std::sync::Arc;
use std::time::Instant;

use jiff::Zoned;

use super::events::{Event, Events};
use super::session::Session;
use crate::backup::{
    BackupRun, ReaderChoice, RunSettings, TargetBackup, backup_planned, select_targets,
};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::inventory::{self, InventoryOptions};
use crate::plan::{self, PlannedTarget, StrategyFlags};
use crate::progress::TransferProgress;
use crate::repo::Repo;

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
    /// The time the snapshots record instead of now: see
    /// [`snapshot_time`].
    pub time: Option<Zoned>,
}

/// Reads the time `--time` gives a snapshot: a wall-clock time on this
/// host's clock (`2026-03-01 03:00:00`, restic's `--time` format), or, as
/// lifeboat also reads it, RFC 3339 with an offset
/// (`2026-03-01T03:00:00+01:00`, `...Z`) or a time zone
/// (`2026-03-01T03:00:00[Europe/Berlin]`). A time in the future is
/// refused: that snapshot would count as its target's newest for years.
pub fn snapshot_time(text: &str) -> Result<Zoned> {
    snapshot_time_at(text, jiff::Timestamp::now())
}

fn snapshot_time_at(text: &str, now: jiff::Timestamp) -> Result<Zoned> {
    let bad = |why: &str| Error::BadRequest(format!("invalid time {text:?}: {why}"));
    let format = "use 2026-03-01 03:00:00 on this host's clock, or 2026-03-01T03:00:00+01:00";
    let pieces = jiff::fmt::temporal::Pieces::parse(text.trim()).map_err(|_| bad(format))?;
    let wall = pieces
        .date()
        .to_datetime(pieces.time().ok_or_else(|| bad(format))?);
    let zone = match (pieces.to_time_zone(), pieces.to_numeric_offset()) {
        (Ok(Some(zone)), _) => zone,
        (Err(_), _) => return Err(bad("unknown time zone")),
        (Ok(None), Some(offset)) => jiff::tz::TimeZone::fixed(offset),
        (Ok(None), None) => jiff::tz::TimeZone::system(),
    };
    let time = wall.to_zoned(zone).map_err(|_| bad(format))?;
    // A minute of leeway for a time written from a clock a little ahead.
    if time.timestamp() > now + jiff::SignedDuration::from_secs(60) {
        return Err(bad(
            "it is in the future; a snapshot from the future would count as its volume's newest",
        ));
    }
    Ok(time)
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
    let stop = RunSettings {
        state_dir: session.state_dir().to_path_buf(),
        single_pass: request.single_pass,
        time: request.time.clone(),
    };
    let events = session.events();
    let work = back_up_each(engine, repo, &planned, request.via, &stop, events.as_ref());
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

/// Backs up the planned targets one after the other, each result an
/// event the moment it is known. A target that fails does not stop the
/// others: its failure, with its class, is in its result.
async fn back_up_each(
    engine: &Engine,
    repo: &Repo,
    planned: &[PlannedTarget],
    via: ReaderChoice,
    stop: &RunSettings,
    events: &dyn Events,
) -> Vec<TargetBackup> {
    let mut results = Vec::with_capacity(planned.len());
    for target in planned {
        let progress = Arc::new(TransferProgress::default());
        events.event(Event::WorkStarted {
            what: &format!("{} {}", target.kind.as_str(), target.name),
            progress: &progress,
        });
        let result = backup_planned(engine, repo, target, via, stop, progress).await;
        events.event(Event::WorkEnded);
        events.event(Event::TargetBackedUp(&result));
        results.push(result);
    }
    results
}

#[cfg(test)]
mod tests;
