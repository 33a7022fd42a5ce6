//! `lifeboat prune`: remove unused volumes, never the only copy of data.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use lifeboat_core::inventory::{self, InventoryOptions};
use lifeboat_core::progress::TransferProgress;
use lifeboat_core::volume_prune::{self, Candidate, PruneOptions};

use super::{Global, Via};
use crate::output::{ProgressDisplay, Table, errln, human_bytes, outln};

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Only these volumes (default: every volume no container mounts).
    #[arg(value_name = "VOLUME")]
    volumes: Vec<String>,

    /// Remove the volumes whose data a snapshot holds (without it, only
    /// list what would happen).
    #[arg(long)]
    yes: bool,

    /// Back up volumes without a current snapshot, then remove them too.
    #[arg(long)]
    backup_first: bool,

    /// How to read volumes backed up first.
    #[arg(long, value_enum, default_value_t = Via::Auto)]
    via: Via,
}

pub(crate) async fn run(global: &Global, args: PruneArgs) -> anyhow::Result<u8> {
    let engine = super::connect().await?;
    let options = InventoryOptions {
        sizes: false,
        size_deadline: None,
    };
    let inventory = inventory::discover(&engine, options).await?;
    let settings = global.repo_settings();
    // Backing up first needs a repository; only listing, none is fine.
    let repo = if args.yes && args.backup_first {
        Some(super::open_or_create_repo(settings.clone()).await?)
    } else if settings.exists().unwrap_or(false) {
        Some(super::open_repo(settings.clone()).await?)
    } else {
        None
    };
    let snapshots = match &repo {
        Some(repo) => {
            let repo = repo.clone();
            tokio::task::spawn_blocking(move || repo.snapshots())
                .await
                .context("reading snapshots")??
        }
        None => Vec::new(),
    };
    let names = args.volumes.clone();
    let targets = inventory.targets.clone();
    let candidates =
        tokio::task::spawn_blocking(move || volume_prune::candidates(&targets, &snapshots, &names))
            .await
            .context("reading volumes")??;
    let options = PruneOptions {
        backup_first: args.backup_first,
        reader: args.via.into(),
    };

    let Some(repo) = repo.filter(|_| args.yes) else {
        if args.yes {
            // No repository: no snapshot, nothing may go.
            errln!(
                "lifeboat: no repository at {}: no volume has a backup, none was removed",
                settings.shown_location()
            );
        }
        print_candidates(global, &candidates, &options, !args.yes)?;
        return Ok(crate::exit::SUCCESS);
    };
    let progress = Arc::new(TransferProgress::default());
    let display = ProgressDisplay::start("backing up", progress.clone(), !global.json);
    let outcomes = volume_prune::prune(&engine, &repo, &candidates, &options, progress).await;
    display.finish();
    let failed = outcomes.iter().filter(|o| o.failed).count();
    if global.json {
        let value = serde_json::json!({
            "dry_run": false,
            "candidates": candidates,
            "outcomes": outcomes,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for o in &outcomes {
            match (&o.kept_snapshot, &o.reason) {
                (Some(kept), _) => outln!(
                    "removed {}: its data stays in snapshot {} (lifeboat restore --pruned {} brings it back)",
                    o.name,
                    kept.short_id,
                    o.name
                ),
                (None, Some(reason)) if o.failed => outln!("FAILED {}: {reason}", o.name),
                (None, reason) => outln!(
                    "kept {}: {}",
                    o.name,
                    reason.as_deref().unwrap_or("not removable")
                ),
            }
        }
        if outcomes.is_empty() {
            outln!("no unused volumes");
        }
    }
    Ok(if failed > 0 {
        crate::exit::PARTIAL
    } else {
        crate::exit::SUCCESS
    })
}

fn print_candidates(
    global: &Global,
    candidates: &[Candidate],
    options: &PruneOptions,
    dry_run: bool,
) -> anyhow::Result<()> {
    if global.json {
        let value = serde_json::json!({
            "dry_run": dry_run,
            "candidates": candidates,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    if candidates.is_empty() {
        outln!("no unused volumes");
        return Ok(());
    }
    let mut table = Table::new(&[
        "VOLUME",
        "SIZE",
        "CREATED",
        "LAST CHANGE",
        "LAST SNAPSHOT",
        "STATE",
        "WITH --yes",
        "LABELS",
    ]);
    for c in candidates {
        let size = match (c.bytes, c.files) {
            (Some(bytes), Some(files)) => format!("{} ({files} files)", human_bytes(bytes)),
            _ => "?".to_string(),
        };
        let action = if c.removable(options) {
            "remove"
        } else {
            "keep"
        };
        let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        table.row(vec![
            c.name.clone(),
            size,
            c.created_at.clone().unwrap_or_else(|| "?".to_string()),
            c.last_change.clone().unwrap_or_else(|| "?".to_string()),
            c.last_snapshot
                .as_ref()
                .map(|s| format!("{} {}", s.short_id, s.time))
                .unwrap_or_else(|| "-".to_string()),
            c.state.describe().to_string(),
            action.to_string(),
            if labels.is_empty() {
                "-".to_string()
            } else {
                labels.join(",")
            },
        ]);
    }
    table.print();
    if dry_run {
        outln!(
            "dry run: nothing removed. `lifeboat prune --yes` removes the volumes marked remove{}",
            if options.backup_first {
                ""
            } else {
                "; --backup-first backs up the others (not protected ones) and removes them too"
            }
        );
    }
    Ok(())
}
