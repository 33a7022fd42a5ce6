//! Removing unused volumes, never the only copy of their data: what may
//! go and why (a dry run), or removing it.

use std::sync::Arc;

use serde::Serialize;

use super::events::Event;
use super::session::Session;
use crate::backup::ReaderChoice;
use crate::error::Result;
use crate::inventory::{self, InventoryOptions};
use crate::progress::TransferProgress;
use crate::volume_prune::{self, Candidate, Outcome, PruneOptions};

/// Which volumes, and whether to remove them.
#[derive(Clone, Debug, Default)]
pub struct VolumePruneRequest {
    /// Only these volumes (default: every volume no container mounts).
    pub volumes: Vec<String>,
    /// Remove those whose data a snapshot holds; without it, only say
    /// what would happen.
    pub remove: bool,
    /// Back up volumes without a current snapshot, then remove them too.
    pub backup_first: bool,
    /// How to read volumes backed up first.
    pub via: ReaderChoice,
}

/// The unused volumes, and what became of them.
#[derive(Clone, Debug, Serialize)]
pub struct VolumePruneReport {
    pub candidates: Vec<Candidate>,
    pub dry_run: bool,
    /// What happened to each, when removing (`None` in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<Vec<Outcome>>,
    /// Removing was asked for but there is no repository: no volume has
    /// a backup, and none was removed.
    #[serde(skip)]
    pub no_repository: Option<String>,
    #[serde(skip)]
    pub options: PruneOptions,
}

impl VolumePruneReport {
    /// How many volumes that were to go did not.
    pub fn failures(&self) -> usize {
        self.outcomes.iter().flatten().filter(|o| o.failed).count()
    }
}

/// Lists the unused volumes with their backup state and, when asked,
/// removes those that may go.
pub async fn volume_prune(
    session: &Session,
    request: &VolumePruneRequest,
) -> Result<VolumePruneReport> {
    let engine = session.engine().await?;
    let options = InventoryOptions {
        sizes: false,
        size_deadline: None,
    };
    let inventory = inventory::discover(engine, options).await?;
    let settings = session.repo_settings();
    // Backing up first needs a repository; only listing, none is fine.
    let repo = if request.remove && request.backup_first {
        Some(session.repo_or_default().await?)
    } else if settings.exists().unwrap_or(false) {
        Some(session.repo().await?)
    } else {
        None
    };
    let snapshots = match repo {
        Some(_) => session.snapshots().await?,
        None => Vec::new(),
    };
    let names = request.volumes.clone();
    let targets = inventory.targets.clone();
    let candidates =
        Session::blocking(move || volume_prune::candidates(&targets, &snapshots, &names)).await?;
    let options = PruneOptions {
        backup_first: request.backup_first,
        reader: request.via,
    };
    let mut report = VolumePruneReport {
        candidates,
        dry_run: !request.remove,
        outcomes: None,
        no_repository: None,
        options,
    };
    if !request.remove {
        return Ok(report);
    }
    let Some(repo) = repo else {
        report.no_repository = Some(settings.shown_location());
        return Ok(report);
    };
    let progress = Arc::new(TransferProgress::default());
    session.emit(Event::WorkStarted {
        what: "backing up",
        progress: &progress,
    });
    let outcomes =
        volume_prune::prune(engine, repo, &report.candidates, &report.options, progress).await;
    session.emit(Event::WorkEnded);
    report.outcomes = Some(outcomes);
    Ok(report)
}
