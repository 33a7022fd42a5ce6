//! `lifeboat snapshots`: what the repository holds.

use clap::Args;
use lifeboat_core::repo::spec::TargetSpec;

use super::Global;
use crate::output::{Table, errln, human_bytes, outln};

#[derive(Debug, Args)]
pub(crate) struct SnapshotsArgs {
    /// Only snapshots of this volume (name) or bind mount (host path).
    volume: Option<String>,
}

pub(crate) async fn run(global: &Global, args: SnapshotsArgs) -> anyhow::Result<u8> {
    let repo = super::open_repo(global.repo_settings()).await?;
    let snapshots = tokio::task::spawn_blocking(move || repo.snapshots()).await??;
    let wanted = args
        .volume
        .as_deref()
        .map(|v| v.trim_end_matches('/').to_string());
    let selected: Vec<_> = snapshots
        .iter()
        .filter_map(|s| {
            let spec = TargetSpec::from_tags(&s.tags);
            let keep = match (&wanted, &spec) {
                (None, _) => true,
                (Some(w), Some(spec)) => &spec.name == w,
                (Some(_), None) => false,
            };
            keep.then_some((s, spec))
        })
        .collect();

    if global.json {
        let list: Vec<_> = selected
            .iter()
            .map(|(s, spec)| serde_json::json!({ "snapshot": s, "target": spec }))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(crate::exit::SUCCESS);
    }
    let mut table = Table::new(&["ID", "TIME", "KIND", "NAME", "FILES", "SIZE", "NOTES"]);
    for (s, spec) in &selected {
        let (kind, name, notes) = match spec {
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
            match &wanted {
                Some(w) => format!(" of {w}"),
                None => String::new(),
            }
        );
    }
    Ok(crate::exit::SUCCESS)
}
