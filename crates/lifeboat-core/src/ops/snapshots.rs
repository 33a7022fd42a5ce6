//! What the repository holds.

use serde::Serialize;

use super::session::Session;
use crate::error::Result;
use crate::repo::SnapshotInfo;
use crate::repo::spec::TargetSpec;

/// A snapshot, with what lifeboat recorded of its target (`None` for a
/// snapshot another program wrote).
#[derive(Clone, Debug, Serialize)]
pub struct ListedSnapshot {
    pub snapshot: SnapshotInfo,
    pub target: Option<TargetSpec>,
}

/// The snapshots, oldest first; only those of `target` (a volume's name
/// or a bind mount's host path) when given.
pub async fn snapshots(session: &Session, target: Option<&str>) -> Result<Vec<ListedSnapshot>> {
    let wanted = target.map(|v| v.trim_end_matches('/').to_string());
    let snapshots = session.snapshots().await?;
    Ok(snapshots
        .into_iter()
        .filter_map(|snapshot| {
            let spec = TargetSpec::from_tags(&snapshot.tags);
            let keep = match (&wanted, &spec) {
                (None, _) => true,
                (Some(w), Some(spec)) => &spec.name == w,
                (Some(_), None) => false,
            };
            keep.then_some(ListedSnapshot {
                snapshot,
                target: spec,
            })
        })
        .collect())
}
