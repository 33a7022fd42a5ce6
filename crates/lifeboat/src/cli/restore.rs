//! `lifeboat restore`: a snapshot back into a volume or directory.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use lifeboat_core::engine::Engine;
use lifeboat_core::progress::TransferProgress;
use lifeboat_core::repo::Repo;
use lifeboat_core::restore::{
    DumpDestination, DumpRestoreRequest, OnPrevious, RestoreRequest, restore, restore_dump,
};

use super::{Global, Via};
use crate::output::{ProgressDisplay, errln, human_bytes, outln};

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// A snapshot id (or a unique prefix of it), or `latest`.
    #[arg(required_unless_present = "pruned")]
    snapshot: Option<String>,

    /// Bring back a volume `lifeboat prune` removed, from the snapshot it
    /// kept (into a volume of the same name, unless --to says otherwise).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["snapshot", "volume", "into", "image", "database"])]
    pruned: Option<String>,

    /// The volume (name) or bind mount (host path) the snapshot is of.
    #[arg(long, value_name = "NAME")]
    volume: Option<String>,

    /// Restore into this volume (created with the snapshot's driver,
    /// options and labels if missing) or directory instead.
    #[arg(long, value_name = "NAME")]
    to: Option<String>,

    /// Overwrite a non-empty target (with --into: a database server that
    /// already holds data). Its current content is backed up first, so the
    /// restore can be undone.
    #[arg(long)]
    force: bool,

    /// Restore a database dump into this running container, with the
    /// database's own tools; the restored row counts are checked against
    /// those recorded at backup.
    #[arg(long, value_name = "CONTAINER", conflicts_with = "to")]
    into: Option<String>,

    /// Bring a database dump up on the new volume given with --to, with a
    /// temporary container of this image (the database's image).
    #[arg(long, value_name = "IMAGE", requires = "to", conflicts_with_all = ["into", "force"])]
    image: Option<String>,

    /// With --into or --image: restore only this database.
    #[arg(long, value_name = "NAME")]
    database: Option<String>,

    /// How to write the files.
    #[arg(long, value_enum, default_value_t = Via::Auto)]
    via: Via,
}

pub(crate) async fn run(global: &Global, args: RestoreArgs) -> anyhow::Result<u8> {
    let engine = super::connect().await?;
    let repo = super::open_repo(global.repo_settings()).await?;
    let (snapshot, volume) = match (args.pruned, args.snapshot) {
        (Some(name), _) => {
            let found = {
                let repo = repo.clone();
                let name = name.clone();
                tokio::task::spawn_blocking(move || {
                    lifeboat_core::volume_prune::pruned_snapshot(&repo.snapshots()?, &name)
                })
                .await
                .context("reading snapshots")??
            };
            (found.id, Some(name))
        }
        (None, Some(snapshot)) => (snapshot, args.volume),
        (None, None) => anyhow::bail!("name a snapshot, or a pruned volume with --pruned NAME"),
    };
    let destination = match (args.into, args.image, &args.to) {
        (Some(container), _, _) => Some(DumpDestination::Container(container)),
        (None, Some(image), Some(volume)) => Some(DumpDestination::NewVolume {
            volume: volume.clone(),
            image,
        }),
        _ => None,
    };
    if let Some(destination) = destination {
        let request = DumpRestoreRequest {
            snapshot,
            target: volume,
            destination,
            database: args.database,
            force: args.force,
            state_dir: global.state_dir(),
            on_previous: announce_previous(),
        };
        return restore_dump_into(global, &engine, &repo, &request).await;
    }
    if args.database.is_some() {
        anyhow::bail!("--database applies to database dumps, restored with --into or --image");
    }
    let request = RestoreRequest {
        snapshot,
        target: volume,
        to: args.to,
        force: args.force,
        writer: args.via.into(),
        on_previous: announce_previous(),
    };
    let progress = Arc::new(TransferProgress::default());
    let display = ProgressDisplay::start("restoring", progress.clone(), !global.json);
    let restoring = restore(&engine, &repo, &request, progress.clone());
    tokio::pin!(restoring);
    let report = tokio::select! {
        report = &mut restoring => report,
        signal = super::interrupted() => {
            // The restore stops at its next file and puts the target back
            // as it was; it must finish that before lifeboat exits. A
            // second signal leaves at once, the target as it stands.
            errln!("lifeboat: {signal}: stopping the restore and putting the target back as it was (signal again to leave at once)");
            progress.stop();
            tokio::select! {
                report = &mut restoring => report,
                signal = super::interrupted() => {
                    display.finish();
                    errln!("lifeboat: {signal} again: leaving now; the target may be half written (what it held is in the pre-restore snapshot named above, if one was announced)");
                    if let Err(e) = engine.remove_own_helpers().await {
                        errln!("lifeboat: {e}");
                    }
                    return Ok(crate::exit::FAILURE);
                }
            }
        }
    };
    display.finish();
    let report = report.with_context(|| {
        format!(
            "restoring {}{}{}",
            request.snapshot,
            request
                .target
                .as_deref()
                .map(|t| format!(" of {t}"))
                .unwrap_or_default(),
            request
                .to
                .as_deref()
                .map(|t| format!(" into {t}"))
                .unwrap_or_default()
        )
    })?;
    if global.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        errln!(
            "restored snapshot {} into {}{} ({} files, {} dirs, {}, {:.1}s, {} writer)",
            report.snapshot.short_id,
            report.target,
            if report.created_volume {
                " (new volume)"
            } else {
                ""
            },
            report.tree.files,
            report.tree.dirs,
            human_bytes(report.tree.bytes),
            report.seconds,
            match report.writer {
                lifeboat_core::backup::Reader::Host => "host-path",
                lifeboat_core::backup::Reader::Engine => "engine-archive",
            }
        );
        if report.tree.sockets > 0 {
            errln!(
                "  {} socket(s) in the snapshot not restored: a socket is made by the process that listens on it",
                report.tree.sockets
            );
        }
    }
    Ok(crate::exit::SUCCESS)
}

/// Says where what a forced restore overwrites was saved, the moment it
/// is: an interrupted restore has said it too.
fn announce_previous() -> OnPrevious {
    OnPrevious::new(|previous| {
        errln!(
            "lifeboat: what the restore overwrites is saved in snapshot {} (tagged pre-restore): restoring it with --force undoes the restore",
            previous.short_id
        );
    })
}

async fn restore_dump_into(
    global: &Global,
    engine: &Engine,
    repo: &Repo,
    request: &DumpRestoreRequest,
) -> anyhow::Result<u8> {
    let progress = Arc::new(TransferProgress::default());
    let display = ProgressDisplay::start("restoring", progress.clone(), !global.json);
    let report = tokio::select! {
        report = restore_dump(engine, repo, request, progress) => report,
        signal = super::interrupted() => {
            display.finish();
            repo.cancel();
            return Ok(super::give_up(engine, global, signal).await);
        }
    };
    display.finish();
    let report = report.with_context(|| {
        format!(
            "restoring {} into {}",
            request.snapshot,
            match &request.destination {
                DumpDestination::Container(c) => format!("container {c}"),
                DumpDestination::NewVolume { volume, image } => {
                    format!("new volume {volume} with {image}")
                }
            }
        )
    })?;
    if global.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for d in &report.databases {
            if let Some(keys) = d.keys {
                errln!(
                    "{}: restored, {keys} keys{}",
                    d.name,
                    if d.mismatches.is_empty() {
                        ", as recorded at backup".to_string()
                    } else {
                        format!(" -- DIFFERS: {}", d.mismatches.join("; "))
                    }
                );
            } else if d.mismatches.is_empty() {
                errln!(
                    "database {}: restored, {} table(s) with the row counts recorded at backup",
                    d.name,
                    d.tables_checked
                );
            } else {
                errln!(
                    "database {}: restored, but {} of {} table(s) differ from the backup: {}",
                    d.name,
                    d.mismatches.len(),
                    d.tables_checked,
                    d.mismatches.join("; ")
                );
            }
        }
        match &report.volume {
            Some(volume) => errln!(
                "restored snapshot {} into new volume {volume} through {} ({:.1}s)",
                report.snapshot.short_id,
                report.container,
                report.seconds
            ),
            None => errln!(
                "restored snapshot {} into container {} ({:.1}s)",
                report.snapshot.short_id,
                report.container,
                report.seconds
            ),
        }
    }
    Ok(if report.verified() {
        crate::exit::SUCCESS
    } else {
        crate::exit::FAILURE
    })
}
