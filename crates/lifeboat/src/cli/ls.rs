//! `lifeboat ls`: the inventory of the engine.

use std::time::Duration;

use clap::Args;
use lifeboat_core::inventory::{InventoryOptions, Size};
use lifeboat_core::ops::inventory::InventoryReport;
use lifeboat_core::ops::{self, Session};
use lifeboat_core::tmpfs::TmpfsSize;

use super::Global;
use crate::output::{Table, errln, human_bytes, outln};

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// Wait for every size instead of showing slow ones as pending.
    #[arg(long)]
    wait: bool,

    /// How long to wait for sizes before showing them as pending.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    size_timeout: f64,

    /// Do not count sizes at all.
    #[arg(long, conflicts_with = "wait")]
    no_sizes: bool,
}

pub(crate) async fn run(session: &Session, global: &Global, args: LsArgs) -> anyhow::Result<u8> {
    let options = InventoryOptions {
        sizes: !args.no_sizes,
        size_deadline: (!args.wait).then(|| Duration::from_secs_f64(args.size_timeout.max(0.0))),
    };
    let InventoryReport {
        inventory,
        repository,
        repository_error: repo_note,
    } = ops::inventory::inventory(session, options).await?;

    if global.json {
        let value = serde_json::json!({
            "engine": inventory.engine,
            "api_version": inventory.api_version,
            "repository": repository,
            "repository_error": repo_note,
            "targets": inventory.targets,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(crate::exit::SUCCESS);
    }

    let mut table = Table::new(&[
        "KIND",
        "NAME",
        "DRIVER",
        "SIZE",
        "HOLDS",
        "MOUNTED BY",
        "LAST BACKUP",
        "NOTES",
    ]);
    for t in &inventory.targets {
        let users = if t.users.is_empty() {
            "-".to_string()
        } else {
            t.users
                .iter()
                .map(|u| {
                    let mut s = format!(
                        "{}({}{})",
                        u.container,
                        if u.read_write { "rw" } else { "ro" },
                        if u.running { "" } else { ",stopped" }
                    );
                    if let Some(service) = &u.compose_service {
                        let project = u.compose_project.as_deref().unwrap_or("?");
                        s.push_str(&format!("[{project}/{service}]"));
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let size = match &t.size {
            Size::Known { bytes, files } => format!("{} ({files} files)", human_bytes(*bytes)),
            Size::Pending => "pending".to_string(),
            Size::Unknown { .. } => match t.tmpfs_limit {
                Some(TmpfsSize::Bytes(bytes)) => format!("limit {}", human_bytes(bytes)),
                Some(TmpfsSize::Percent(percent)) => format!("limit {percent}% of memory"),
                None => "?".to_string(),
            },
        };
        let last = match (&t.last_snapshot, &repo_note, t.spec().is_some()) {
            (_, _, false) => "-".to_string(),
            (Some(time), _, _) => time.clone(),
            (None, None, _) => "never".to_string(),
            (None, Some(_), _) => "?".to_string(),
        };
        let mut notes = Vec::new();
        if t.anonymous {
            notes.push("anonymous".to_string());
        }
        if t.unused {
            notes.push("unused".to_string());
        }
        if !t.driver_options.is_empty() {
            notes.push(format!(
                "opts:{}",
                t.driver_options
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        if !t.labels.is_empty() {
            notes.push(format!("{} labels", t.labels.len()));
        }
        table.row(vec![
            format!("{:?}", t.kind).to_lowercase(),
            t.name.clone(),
            t.driver.clone().unwrap_or_else(|| "-".to_string()),
            size,
            t.holds.to_string(),
            users,
            last,
            notes.join(" "),
        ]);
    }
    table.print();
    if let Some(note) = repo_note {
        errln!("lifeboat: last backups unknown: {note}");
    }
    if inventory
        .targets
        .iter()
        .any(|t| matches!(t.size, Size::Pending))
    {
        errln!("lifeboat: some sizes are still being counted; use --wait to wait for them");
    }
    Ok(crate::exit::SUCCESS)
}
