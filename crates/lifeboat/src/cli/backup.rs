//! `lifeboat backup`: one snapshot per volume or bind mount.

use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use lifeboat_core::backup::{BackupRun, backup_target, select_targets};
use lifeboat_core::inventory::{self, InventoryOptions};
use lifeboat_core::progress::TransferProgress;

use super::{Global, Via};
use crate::output::{ProgressDisplay, Table, human_bytes};

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

    /// How to read the files.
    #[arg(long, value_enum, default_value_t = Via::Auto)]
    via: Via,
}

pub(crate) async fn run(global: &Global, args: BackupArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
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
    if targets.is_empty() {
        eprintln!("lifeboat: nothing to back up: the engine has no volumes");
        return Ok(crate::exit::SUCCESS);
    }
    let repo = super::open_or_create_repo(global.repo_settings()).await?;
    if !repo.is_locked() && !global.json {
        eprintln!(
            "lifeboat: note: {} is not on this host's file system and is not locked; do not prune it with restic while lifeboat writes to it",
            repo.location()
        );
    }

    let mut results = Vec::with_capacity(targets.len());
    for target in &targets {
        let progress = Arc::new(TransferProgress::default());
        let display = ProgressDisplay::start(
            &format!("{} {}", kind_word(target.kind), target.name),
            progress.clone(),
            !global.json,
        );
        let result = backup_target(&engine, &repo, target, args.via.into(), &[], progress).await;
        display.finish();
        if !global.json {
            match (&result.snapshot, &result.error) {
                (Some(s), None) => eprintln!(
                    "{} {}: snapshot {} ({} files, {}, {} new, {:.1}s, {} reader)",
                    kind_word(result.kind),
                    result.name,
                    s.short_id,
                    result.files,
                    human_bytes(result.bytes),
                    human_bytes(result.bytes_added),
                    result.seconds,
                    reader_word(result.reader),
                ),
                (_, error) => eprintln!(
                    "{} {}: FAILED: {}",
                    kind_word(result.kind),
                    result.name,
                    error.as_deref().unwrap_or("no snapshot written")
                ),
            }
            if !result.vanished.is_empty() {
                eprintln!(
                    "  {} file(s) disappeared while reading (not in the snapshot), first: {}",
                    result.vanished.len(),
                    result.vanished[0]
                );
            }
        }
        results.push(result);
    }
    let run = BackupRun {
        targets: results,
        seconds: started.elapsed().as_secs_f64(),
    };

    if global.json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    } else {
        let mut table = Table::new(&["KIND", "NAME", "RESULT", "FILES", "SIZE", "ADDED", "TIME"]);
        for r in &run.targets {
            table.row(vec![
                kind_word(r.kind).to_string(),
                r.name.clone(),
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
        println!();
        table.print();
    }
    let failures = run.failures();
    Ok(if failures == 0 {
        crate::exit::SUCCESS
    } else if failures < run.targets.len() {
        crate::exit::PARTIAL
    } else {
        crate::exit::FAILURE
    })
}

fn kind_word(kind: lifeboat_core::engine::MountKind) -> &'static str {
    match kind {
        lifeboat_core::engine::MountKind::Volume => "volume",
        lifeboat_core::engine::MountKind::Bind => "bind",
        lifeboat_core::engine::MountKind::Tmpfs => "tmpfs",
    }
}

fn reader_word(reader: Option<lifeboat_core::backup::Reader>) -> &'static str {
    match reader {
        Some(lifeboat_core::backup::Reader::Host) => "host-path",
        Some(lifeboat_core::backup::Reader::Engine) => "engine-archive",
        None => "no",
    }
}
