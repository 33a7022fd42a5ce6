//! `lifeboat restore`: a snapshot back into a volume or directory.

use anyhow::Context;
use clap::Args;
use lifeboat_core::backup::Reader;
use lifeboat_core::ops::restore::{RestoreFrom, RestoreInto, RestoreOutcome, RestoreRequest};
use lifeboat_core::ops::{self, Session};
use lifeboat_core::restore::{DumpRestoreReport, RestoreReport};

use super::{Global, SecondSignal, Via};
use crate::output::{errln, human_bytes, outln};

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

pub(crate) async fn run(
    session: &Session,
    global: &Global,
    args: RestoreArgs,
) -> anyhow::Result<u8> {
    let from = match (args.pruned, args.snapshot) {
        (Some(volume), _) => RestoreFrom::Pruned { volume },
        (None, Some(id)) => RestoreFrom::Snapshot {
            id,
            target: args.volume,
        },
        (None, None) => anyhow::bail!("name a snapshot, or a pruned volume with --pruned NAME"),
    };
    let into = match (args.into, args.image, args.to) {
        (Some(container), _, _) => RestoreInto::Container(container),
        (None, Some(image), Some(volume)) => RestoreInto::NewVolume { volume, image },
        (None, _, to) => RestoreInto::Files {
            to,
            via: args.via.into(),
        },
    };
    let request = RestoreRequest {
        from,
        into,
        database: args.database,
        force: args.force,
    };
    let restoring = ops::restore::restore(session, &request);
    let outcome = match &request.into {
        RestoreInto::Files { .. } => super::stoppable(
            session,
            restoring,
            "stopping the restore and putting the target back as it was (signal again to leave at once)",
            SecondSignal::Leave(
                "leaving now; the target may be half written (what it held is in the pre-restore snapshot named above, if one was announced)",
            ),
        ),
        _ => super::stoppable(
            session,
            restoring,
            "undoing what this run changed",
            SecondSignal::Wait,
        ),
    }
    .await;
    let Some(outcome) = outcome else {
        return Ok(crate::exit::FAILURE);
    };
    match outcome.with_context(|| describe(&request))? {
        RestoreOutcome::Files(report) => {
            print_files(global, &report)?;
            Ok(crate::exit::SUCCESS)
        }
        RestoreOutcome::Dump(report) => {
            print_dump(global, &report)?;
            Ok(if report.verified() {
                crate::exit::SUCCESS
            } else {
                crate::exit::FAILURE
            })
        }
    }
}

/// What was being restored where, for an error's context.
fn describe(request: &RestoreRequest) -> String {
    let what = match &request.from {
        RestoreFrom::Snapshot { id, target } => format!(
            "{id}{}",
            target
                .as_deref()
                .map(|t| format!(" of {t}"))
                .unwrap_or_default()
        ),
        RestoreFrom::Pruned { volume } => format!("pruned volume {volume}"),
    };
    let into = match &request.into {
        RestoreInto::Files { to, .. } => to
            .as_deref()
            .map(|t| format!(" into {t}"))
            .unwrap_or_default(),
        RestoreInto::Container(c) => format!(" into container {c}"),
        RestoreInto::NewVolume { volume, image } => {
            format!(" into new volume {volume} with {image}")
        }
    };
    format!("restoring {what}{into}")
}

fn print_files(global: &Global, report: &RestoreReport) -> anyhow::Result<()> {
    if global.json {
        outln!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
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
            Reader::Host => "host-path",
            Reader::Engine => "engine-archive",
        }
    );
    if report.tree.sockets > 0 {
        errln!(
            "  {} socket(s) in the snapshot not restored: a socket is made by the process that listens on it",
            report.tree.sockets
        );
    }
    Ok(())
}

fn print_dump(global: &Global, report: &DumpRestoreReport) -> anyhow::Result<()> {
    if global.json {
        outln!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
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
    Ok(())
}
