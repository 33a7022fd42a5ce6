//! `lifeboat forget`: remove the snapshots the keep rules do not keep.

use clap::Args;
use lifeboat_core::config::KeepRules;
use lifeboat_core::ops::forget::{ForgetReport, ForgetRequest};
use lifeboat_core::ops::{self, Session};

use super::{Global, SecondSignal, stoppable};
use crate::output::{Table, errln, outln};

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
        let kind = format!("{:?}", target.kind).to_lowercase();
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
                let action = match (s.keep, report.dry_run) {
                    (true, _) => "keep",
                    (false, true) => "would remove",
                    (false, false) if target.error.is_some() => "not removed",
                    (false, false) => "removed",
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
        outln!("no snapshots of lifeboat's in the repository");
    } else if report.dry_run {
        outln!(
            "would remove {would} snapshot(s) of {} target(s); nothing was removed (dry run)",
            report.targets.len()
        );
    } else {
        outln!("removed {removed} snapshot(s); their data stays in the repository until a prune");
    }
    if report.foreign_snapshots > 0 {
        outln!(
            "left alone: {} snapshot(s) another program wrote",
            report.foreign_snapshots
        );
    }
    outln!("note: {}", report.drills);
}
