//! `lifeboat snapshots`: what the repository holds.

use clap::Args;
use lifeboat_core::ops::snapshots::ListedSnapshot;
use lifeboat_core::ops::{self, Session};

use super::Global;
use crate::output::{Table, errln, human_bytes, outln};

#[derive(Debug, Args)]
pub(crate) struct SnapshotsArgs {
    /// Only snapshots of this volume (name) or bind mount (host path).
    volume: Option<String>,
}

pub(crate) async fn run(
    session: &Session,
    global: &Global,
    args: SnapshotsArgs,
) -> anyhow::Result<u8> {
    let selected = ops::snapshots::snapshots(session, args.volume.as_deref()).await?;
    if global.json {
        // Through a Value: every object's keys in name order, as this
        // output has always had them.
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(&selected)?)?
        );
        return Ok(crate::exit::SUCCESS);
    }
    let mut table = Table::new(&["ID", "TIME", "KIND", "NAME", "FILES", "SIZE", "NOTES"]);
    for ListedSnapshot {
        snapshot: s,
        target,
    } in &selected
    {
        let (kind, name, notes) = match target {
            Some(spec) => (
                spec.kind
                    .map(|k| format!("{k:?}").to_lowercase())
                    .unwrap_or_default(),
                spec.name.clone(),
                spec.extra_tags.join(" "),
            ),
            None => (
                "-".to_string(),
                s.paths.join(" "),
                format!("not lifeboat's; tags: {}", s.tags.join(",")),
            ),
        };
        table.row(vec![
            s.short_id.clone(),
            s.time.clone(),
            kind,
            name,
            s.files.map_or_else(|| "?".into(), |f| f.to_string()),
            s.bytes.map_or_else(|| "?".into(), human_bytes),
            notes,
        ]);
    }
    table.print();
    if selected.is_empty() {
        errln!(
            "lifeboat: no snapshots{}",
            match &args.volume {
                Some(w) => format!(" of {}", w.trim_end_matches('/')),
                None => String::new(),
            }
        );
    }
    Ok(crate::exit::SUCCESS)
}
