//! Reclaiming space: the data no snapshot references is removed, and packs
//! mostly unused are repacked, through the repository library's prune,
//! under restic's exclusive lock.
//!
//! The library writes the new packs and index first, then removes the old
//! index files, then the packs: a prune killed at any point leaves a
//! repository whose index references only packs that exist (packs no index
//! references are what a next prune removes). It removes at once what it
//! removes (no second phase): the exclusive lock keeps every other writer
//! out, lifeboat's and restic's.

use std::time::Duration;

use rustic_core::{FileType, LimitOption, PruneOptions, ReadBackend};
use serde::Serialize;

use super::{Repo, SnapshotInfo};
use crate::error::{Error, Result};

/// What a prune did, or would do.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneSummary {
    /// Only planned: nothing was changed.
    pub dry_run: bool,
    /// Packs removed whole: nothing in them is used.
    pub packs_removed: u64,
    /// Packs partly used, whose used blobs were copied into new packs.
    pub packs_repacked: u64,
    /// Bytes of blobs no snapshot uses, removed.
    pub bytes_removed: u64,
    /// Bytes of unused blobs left in packs that stay (below the share
    /// worth repacking).
    pub bytes_unused_left: u64,
    /// The bytes of the repository's packs before and after, as its
    /// storage lists them.
    pub size_before: Option<u64>,
    pub size_after: Option<u64>,
}

impl Repo {
    /// The directory of a repository lifeboat can prune: a local one, the
    /// only kind it locks for now.
    pub(crate) fn prunable(&self) -> Result<std::path::PathBuf> {
        self.settings.local_path().ok_or_else(|| {
            Error::Refused(format!(
                "{}: lifeboat takes locks on local repositories only for now, and pruning without the exclusive lock could remove data a backup of another host is writing; prune it with restic",
                self.settings.shown_location()
            ))
        })
    }

    /// Removes the data no snapshot references, under the exclusive lock:
    /// waits up to `wait` for the locks of others (a backup, a restore) to
    /// go, telling `waiting` who holds them, and fails as locked after
    /// that, or as interrupted when `stopped` says so while it waits. With
    /// `plan_only`, says what it would do and changes nothing, counting
    /// `forgotten` (snapshots a dry run would have removed) as gone.
    pub(crate) fn prune(
        &self,
        plan_only: bool,
        forgotten: &[SnapshotInfo],
        wait: Duration,
        waiting: &dyn Fn(&str),
        stopped: &dyn Fn() -> bool,
    ) -> Result<PruneSummary> {
        // Nor while this handle archives (a daemon's other job).
        let _one_at_a_time = self
            .archiving
            .lock()
            .map_err(|_| Error::Other("an earlier archive panicked".to_string()))?;
        let dir = self.prunable()?;
        let exclusive = if plan_only {
            None
        } else {
            Some(crate::repo::lock::lock_exclusive(
                &dir,
                &self.key,
                &self.settings.shown_location(),
                self._lock.as_deref(),
                wait,
                waiting,
                stopped,
            )?)
        };
        let opened = self.opened()?;
        let options = PruneOptions::default()
            .instant_delete(true)
            .max_unused(LimitOption::Percentage(5))
            .max_repack(LimitOption::Unlimited)
            // Only a plan may count live snapshots as gone.
            .ignore_snaps(if plan_only {
                forgotten.iter().map(|s| s.file.id).collect::<Vec<_>>()
            } else {
                Vec::new()
            });
        let plan = opened.prune_plan(&options).map_err(|e| self.error(&e))?;
        let sizes = plan.stats.size_sum();
        let mut summary = PruneSummary {
            dry_run: plan_only,
            packs_removed: plan.stats.packs.unused,
            packs_repacked: plan.stats.packs.repack,
            bytes_removed: sizes.remove + sizes.repackrm,
            bytes_unused_left: sizes.unused_after_prune(),
            size_before: self.packs_size(),
            size_after: None,
        };
        if plan_only {
            return Ok(summary);
        }
        if exclusive.as_ref().is_some_and(|lock| !lock.is_held()) {
            return Err(Error::Other(format!(
                "the exclusive lock on {} could not be kept fresh; not pruning",
                self.settings.shown_location()
            )));
        }
        opened.prune(&options, plan).map_err(|e| self.error(&e))?;
        summary.size_after = self.packs_size();
        Ok(summary)
    }

    /// The bytes of the repository's packs, as its storage lists them.
    fn packs_size(&self) -> Option<u64> {
        let packs = self.gate.list_with_size(FileType::Pack).ok()?;
        Some(packs.iter().map(|(_, size)| u64::from(*size)).sum())
    }
}
