//! `lifeboat forget`: remove the snapshots the keep rules do not keep.

use clap::Args;
use lifeboat_core::config::KeepRules;
use lifeboat_core::ops::forget::{ForgetReport, ForgetRequest};
use lifeboat_core::ops::{self, Session};

use super::{Global, SecondSignal, stoppable};
use crate::output::{Table, errln, human_bytes, outln};

#[derive(Debug, Args)]
pub(crate) struct ForgetArgs {
    /// Only these volumes (names) and bind mounts (host paths); default:
    /// every target with snapshots in the repository.
    #[arg(value_name = "TARGET")]
    targets: Vec<String>,

    /// Keep rules for every target, over labels and the configuration
    /// file: last=N,hourly=N,daily=N,weekly=N,monthly=N,yearly=N,within=DURATION
    /// (any of them; DURATION such as 30d, 2w, 1y6m).
    #[arg(long, value_name = "RULES")]
    keep: Option<KeepRules>,

    /// Only print what would be removed.
    #[arg(long, short = 'n')]
    dry_run: bool,

    /// Let the rules remove snapshots tagged pruned (the last copy of a
    /// volume `lifeboat prune` removed) too.
    #[arg(long)]
    include_pruned: bool,

    /// Then remove the data no snapshot references any more, under the
    /// repository's exclusive lock (with --dry-run: say how much).
    #[arg(long)]
    prune: bool,

    /// Only remove the data no snapshot references (after a `restic
    /// forget`, say): no snapshot is removed and no rules are needed.
    #[arg(long, conflicts_with_all = ["targets", "keep", "include_pruned"])]
    prune_only: bool,

    /// How long a prune waits for a backup or restore that holds the
    /// repository (seconds) before it gives up with exit 7.
    #[arg(long, value_name = "SECONDS", default_value_t = ops::forget::LOCK_WAIT.as_secs())]
    lock_wait: u64,
}

pub(crate) async fn run(
    session: &Session,
    global: &Global,
    args: ForgetArgs,
) -> anyhow::Result<u8> {
    let request = ForgetRequest {
        targets: args.targets,
        keep: args.keep,
        dry_run: args.dry_run,
        include_pruned: args.include_pruned,
        prune: args.prune,
        prune_only: args.prune_only,
        lock_wait: std::time::Duration::from_secs(args.lock_wait),
    };
    let Some(report) = stoppable(
        session,
        ops::forget::forget(session, &request),
        "removing no more snapshots",
        SecondSignal::Leave("leaving now"),
    )
    .await
    else {
        return Ok(crate::exit::FAILURE);
    };
    let report = report?;
    if global.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    let failures = report.failures();
    let interrupted = report
        .targets
        .iter()
        .any(|t| t.failure == Some(lifeboat_core::ErrorClass::Interrupted));
    Ok(if interrupted {
        crate::exit::INTERRUPTED
    } else if let Some(class) = report.prune_failure {
        crate::exit_code_of_class(Some(class))
    } else if failures == 0 {
        crate::exit::SUCCESS
    } else if failures < report.targets.len() {
        crate::exit::PARTIAL
    } else if report
        .targets
        .iter()
        .all(|t| t.failure == Some(lifeboat_core::ErrorClass::BadRequest))
    {
        crate::exit::USAGE
    } else {
        crate::exit::FAILURE
    })
}

fn print(report: &ForgetReport) {
    for target in &report.targets {
        let kind = target.kind.as_str();
        match (&target.rules, &target.rules_from) {
            (Some(rules), Some(from)) => outln!(
                "{kind} {} on {}: keep {rules} ({from})",
                target.name,
                target.host
            ),
            _ => outln!("{kind} {} on {}:", target.name, target.host),
        }
        if !target.snapshots.is_empty() {
            let mut table = Table::new(&["", "ID", "TIME", "REASONS"]);
            for s in &target.snapshots {
                let action = match (s.keep, report.dry_run, s.removed) {
                    (true, _, _) => "keep",
                    (false, true, _) => "would remove",
                    (false, false, true) => "removed",
                    (false, false, false) => "not removed",
                };
                table.row(vec![
                    action.to_string(),
                    s.short_id.clone(),
                    s.time.clone(),
                    s.reasons.join(", "),
                ]);
            }
            table.print();
        }
        if let Some(error) = &target.error {
            errln!("lifeboat: {error}");
        }
    }
    let removed: usize = report.targets.iter().map(|t| t.removed).sum();
    let would: usize = report
        .targets
        .iter()
        .filter(|t| t.error.is_none())
        .map(|t| t.to_remove())
        .sum();
    if report.targets.is_empty() {
        if report.prune.is_none() && report.prune_error.is_none() {
            outln!("no snapshots of lifeboat's in the repository");
        }
    } else if report.dry_run {
        outln!(
            "would remove {would} snapshot(s) of {} target(s); nothing was removed (dry run)",
            report.targets.len()
        );
    } else {
        outln!(
            "removed {removed} snapshot(s){}",
            if report.prune.is_some() {
                ""
            } else {
                "; their data stays in the repository until a prune (--prune)"
            }
        );
    }
    if report.foreign_snapshots > 0 {
        outln!(
            "left alone: {} snapshot(s) another program wrote",
            report.foreign_snapshots
        );
    }
    if let Some(prune) = &report.prune {
        let size = match (prune.size_before, prune.size_after) {
            (Some(before), Some(after)) => format!(
                "; the repository's data went from {} to {}",
                human_bytes(before),
                human_bytes(after)
            ),
            _ => String::new(),
        };
        outln!(
            "{} {} unused pack(s), repack{} {} partly used one(s): {} of data no snapshot uses{size}; {} unused left in packs that stay",
            if prune.dry_run {
                "would remove"
            } else {
                "removed"
            },
            prune.packs_removed,
            if prune.dry_run { "" } else { "ed" },
            prune.packs_repacked,
            human_bytes(prune.bytes_removed),
            human_bytes(prune.bytes_unused_left)
        );
    }
    if let Some(error) = &report.prune_error {
        errln!("lifeboat: not pruned: {error}");
    }
    if !report.targets.is_empty() {
        outln!("note: {}", report.drills);
    }
}
