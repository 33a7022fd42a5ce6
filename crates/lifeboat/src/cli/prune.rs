//! `lifeboat prune`: remove unused volumes, never the only copy of data.

use clap::Args;
use lifeboat_core::ops::volume_prune::{VolumePruneReport, VolumePruneRequest};
use lifeboat_core::ops::{self, Session};

use super::{Global, Via};
use crate::output::{Table, errln, human_bytes, outln};

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

pub(crate) async fn run(session: &Session, global: &Global, args: PruneArgs) -> anyhow::Result<u8> {
    let request = VolumePruneRequest {
        volumes: args.volumes,
        remove: args.yes,
        backup_first: args.backup_first,
        via: args.via.into(),
    };
    let report = ops::volume_prune::volume_prune(session, &request).await?;
    let Some(outcomes) = &report.outcomes else {
        if let Some(location) = &report.no_repository {
            // No repository: no snapshot, nothing may go.
            errln!(
                "lifeboat: no repository at {location}: no volume has a backup, none was removed"
            );
        }
        print_candidates(global, &report)?;
        return Ok(crate::exit::SUCCESS);
    };
    if global.json {
        // Through a Value: every object's keys in name order, as this
        // output has always had them.
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(&report)?)?
        );
    } else {
        for o in outcomes {
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
    Ok(if report.failures() > 0 {
        crate::exit::PARTIAL
    } else {
        crate::exit::SUCCESS
    })
}

fn print_candidates(global: &Global, report: &VolumePruneReport) -> anyhow::Result<()> {
    if global.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(report)?)?
        );
        return Ok(());
    }
    let (candidates, options, dry_run) = (&report.candidates, &report.options, report.dry_run);
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
