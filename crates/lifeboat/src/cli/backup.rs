//! `lifeboat backup`: one snapshot per volume or bind mount, each by its
//! strategy (dump, stop or live).

use clap::Args;
use lifeboat_core::backup::BackupRun;
use lifeboat_core::ops::{self, Session, backup::BackupRequest};
use lifeboat_core::plan::{PlannedTarget, StrategyFlags};

use super::{Global, SecondSignal, Via};
use crate::output::{Table, errln, human_bytes, outln};

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// Volumes (by name) and bind mounts (by host path) to back up.
    #[arg(
        value_name = "VOLUME",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    volumes: Vec<String>,

    /// Every named volume and every bind-mounted data directory.
    #[arg(long)]
    all: bool,

    /// Override the strategy: `dump`, `stop` or `live` for every target,
    /// or `TARGET=STRATEGY` for one (repeatable).
    #[arg(long, value_name = "STRATEGY")]
    strategy: Vec<String>,

    /// Print the strategy of each target and why, and do nothing else.
    #[arg(long)]
    plan: bool,

    /// How to read the files of live and stopped targets.
    #[arg(long, value_enum, default_value_t = Via::Auto)]
    via: Via,

    /// With the stop strategy: stop first and copy everything while
    /// stopped, instead of copying live first and only the changes while
    /// stopped (which keeps the containers' stop short).
    #[arg(long)]
    single_pass: bool,

    /// The time the snapshots record instead of now, as restic's --time:
    /// 2026-03-01T03:00:00+01:00, or 2026-03-01 03:00:00 on this host's
    /// clock (for importing history).
    #[arg(long, value_name = "TIME")]
    time: Option<String>,
}

pub(crate) async fn run(
    session: &Session,
    global: &Global,
    args: BackupArgs,
) -> anyhow::Result<u8> {
    let request = BackupRequest {
        targets: args.volumes,
        all: args.all,
        strategies: strategy_flags(&args.strategy)?,
        via: args.via.into(),
        single_pass: args.single_pass,
        time: args
            .time
            .as_deref()
            .map(ops::backup::snapshot_time)
            .transpose()?,
    };
    if args.plan {
        print_plan(global, &ops::backup::plan(session, &request).await?)?;
        return Ok(crate::exit::SUCCESS);
    }
    let backup = ops::backup::backup(session, &request);
    let Some(run) = super::stoppable(
        session,
        backup,
        "undoing what this run changed",
        SecondSignal::Wait,
    )
    .await
    else {
        return Ok(crate::exit::FAILURE);
    };
    let run = run?;
    if run.targets.is_empty() {
        errln!("lifeboat: nothing to back up: the engine has no volumes");
        return Ok(crate::exit::SUCCESS);
    }
    report(global, &run)?;
    let failures = run.failures();
    Ok(if failures == 0 {
        crate::exit::SUCCESS
    } else if failures < run.targets.len() {
        crate::exit::PARTIAL
    } else {
        crate::exit::FAILURE
    })
}

fn report(global: &Global, run: &BackupRun) -> anyhow::Result<()> {
    if global.json {
        outln!("{}", serde_json::to_string_pretty(&run)?);
    } else {
        let mut table = Table::new(&[
            "KIND", "NAME", "STRATEGY", "RESULT", "FILES", "SIZE", "ADDED", "TIME",
        ]);
        for r in &run.targets {
            table.row(vec![
                r.kind.as_str().to_string(),
                r.name.clone(),
                r.strategy.map(|s| s.to_string()).unwrap_or_default(),
                match &r.snapshot {
                    Some(s) if r.error.is_none() => format!("snapshot {}", s.short_id),
                    _ => "FAILED".to_string(),
                },
                r.files.to_string(),
                human_bytes(r.bytes),
                human_bytes(r.bytes_added),
                format!("{:.1}s", r.seconds),
            ]);
        }
        outln!();
        table.print();
    }
    Ok(())
}

fn print_plan(global: &Global, planned: &[PlannedTarget]) -> anyhow::Result<()> {
    if global.json {
        outln!("{}", serde_json::to_string_pretty(planned)?);
        return Ok(());
    }
    let mut table = Table::new(&["KIND", "NAME", "STRATEGY", "WHY"]);
    for p in planned {
        let mut why = p.reason.clone();
        if !p.stop.is_empty() {
            let stops: Vec<String> = p
                .stop
                .iter()
                .map(|s| format!("{} ({})", s.name, s.why))
                .collect();
            why.push_str(&format!("; stops, in order: {}", stops.join(", ")));
        }
        if let Some(problem) = &p.problem {
            why.push_str(&format!(" -- PROBLEM: {problem}"));
        }
        table.row(vec![
            p.kind.as_str().to_string(),
            p.name.clone(),
            p.strategy.to_string(),
            why,
        ]);
    }
    table.print();
    Ok(())
}

/// The `--strategy` values: `STRATEGY` for every target, or
/// `TARGET=STRATEGY` for one (a volume's name or a bind mount's path).
fn strategy_flags(values: &[String]) -> anyhow::Result<StrategyFlags> {
    let mut flags = StrategyFlags::default();
    for value in values {
        match value.rsplit_once('=') {
            Some((target, strategy)) => {
                flags
                    .by_target
                    .insert(target.trim_end_matches('/').to_string(), strategy.parse()?);
            }
            None => flags.all = Some(value.parse()?),
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use lifeboat_core::plan::Strategy;

    use super::*;

    #[test]
    fn strategies_are_given_for_all_targets_or_one() {
        let flags = strategy_flags(&["live".into(), "/srv/data/=stop".into(), "db=dump".into()])
            .expect("flags");
        assert_eq!(flags.all, Some(Strategy::Live));
        assert_eq!(flags.by_target["/srv/data"], Strategy::Stop);
        assert_eq!(flags.by_target["db"], Strategy::Dump);
        assert!(strategy_flags(&["snapshot".into()]).is_err());
        assert!(strategy_flags(&["db=copy".into()]).is_err());
    }
}
