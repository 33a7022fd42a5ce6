//! `lifeboat backup`: one snapshot per volume or bind mount, each by its
//! strategy (dump, stop or live).

use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use lifeboat_core::backup::{BackupRun, Reader, StopSettings, backup_planned, select_targets};
use lifeboat_core::config::Config;
use lifeboat_core::engine::MountKind;
use lifeboat_core::inventory::{self, InventoryOptions};
use lifeboat_core::plan::{self, PlannedTarget, Strategy, StrategyFlags};
use lifeboat_core::progress::TransferProgress;

use super::{Global, Via};
use crate::output::{ProgressDisplay, Table, errln, human_bytes, outln};

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
}

pub(crate) async fn run(global: &Global, args: BackupArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let flags = strategy_flags(&args.strategy)?;
    let config = Config::find(global.config.as_deref())?;
    let opening = (!args.plan).then(|| super::start_opening(global.repo_settings()));
    let engine = super::connect().await?;
    let inventory = inventory::discover(
        &engine,
        InventoryOptions {
            sizes: false,
            size_deadline: None,
        },
    )
    .await?;
    let targets = select_targets(&inventory, &args.volumes, args.all)?;
    let planned = plan::plan(&inventory, &targets, &flags, &config);
    // Only a plan did not start opening the repository.
    let Some(opening) = opening else {
        print_plan(global, &planned)?;
        return Ok(crate::exit::SUCCESS);
    };
    if planned.is_empty() {
        errln!("lifeboat: nothing to back up: the engine has no volumes");
        return Ok(crate::exit::SUCCESS);
    }
    let repo = super::finish_opening(opening, global.repo_settings()).await?;
    if !repo.is_locked() && !global.json {
        errln!(
            "lifeboat: note: {} is not on this host's file system and is not locked; do not prune it with restic while lifeboat writes to it",
            repo.location()
        );
    }

    let stop = StopSettings {
        state_dir: global.state_dir(),
        single_pass: args.single_pass,
    };
    let work = back_up_all(global, &engine, &repo, &planned, args.via, &stop);
    let results = tokio::select! {
        results = work => results,
        signal = super::interrupted() => {
            // The work is abandoned where it stands: no snapshot is
            // published after this, and what it stopped starts again
            // before lifeboat exits.
            repo.cancel();
            return Ok(super::give_up(&engine, global, signal).await);
        }
    };
    let run = BackupRun {
        targets: results,
        seconds: started.elapsed().as_secs_f64(),
    };
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

async fn back_up_all(
    global: &Global,
    engine: &lifeboat_core::engine::Engine,
    repo: &lifeboat_core::repo::Repo,
    planned: &[PlannedTarget],
    via: Via,
    stop: &StopSettings,
) -> Vec<lifeboat_core::backup::TargetBackup> {
    let mut results = Vec::with_capacity(planned.len());
    for target in planned {
        let progress = Arc::new(TransferProgress::default());
        let display = ProgressDisplay::start(
            &format!("{} {}", kind_word(target.kind), target.name),
            progress.clone(),
            !global.json,
        );
        let result = backup_planned(engine, repo, target, via.into(), stop, progress).await;
        display.finish();
        if !global.json {
            let how = match (result.strategy, result.reader) {
                (Some(Strategy::Dump), _) => "dump".to_string(),
                (strategy, reader) => format!(
                    "{}{}",
                    strategy.map(|s| format!("{s}, ")).unwrap_or_default(),
                    reader_word(reader)
                ),
            };
            match (&result.snapshot, &result.error) {
                (Some(s), None) => errln!(
                    "{} {}: snapshot {} ({} files, {}, {} new, {:.1}s, {how})",
                    kind_word(result.kind),
                    result.name,
                    s.short_id,
                    result.files,
                    human_bytes(result.bytes),
                    human_bytes(result.bytes_added),
                    result.seconds,
                ),
                (_, error) => errln!(
                    "{} {}: FAILED: {}",
                    kind_word(result.kind),
                    result.name,
                    error.as_deref().unwrap_or("no snapshot written")
                ),
            }
            if !result.vanished.is_empty() {
                errln!(
                    "  {} file(s) disappeared while reading (not in the snapshot), first: {}",
                    result.vanished.len(),
                    result.vanished[0]
                );
            }
            if !result.sockets.is_empty() {
                errln!(
                    "  {} socket(s) left out (a socket is made by the process that listens on it), first: {}",
                    result.sockets.len(),
                    result.sockets[0]
                );
            }
            for w in &result.stop_windows {
                errln!("  {} was stopped for {:.2}s", w.container, w.seconds);
            }
            for h in &result.hooks {
                errln!(
                    "  {:?} hook in {}: `{}` {} ({:.1}s){}",
                    h.phase,
                    h.container,
                    h.command,
                    if h.ok { "ok" } else { "FAILED" },
                    h.seconds,
                    if h.ok || h.output.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", h.output)
                    }
                );
            }
        }
        results.push(result);
    }
    results
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
                kind_word(r.kind).to_string(),
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
            kind_word(p.kind).to_string(),
            p.name.clone(),
            p.strategy.to_string(),
            why,
        ]);
    }
    table.print();
    Ok(())
}

fn kind_word(kind: MountKind) -> &'static str {
    match kind {
        MountKind::Volume => "volume",
        MountKind::Bind => "bind",
        MountKind::Tmpfs => "tmpfs",
    }
}

fn reader_word(reader: Option<Reader>) -> &'static str {
    match reader {
        Some(Reader::Host) => "host-path reader",
        Some(Reader::Engine) => "engine-archive reader",
        None => "not read",
    }
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
