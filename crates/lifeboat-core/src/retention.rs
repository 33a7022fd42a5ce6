//! Which snapshots retention keeps: the repository's snapshots grouped per
//! target and host, each group decided by its keep rules
//! ([`crate::config::keep`]), and lifeboat's safety rules on top. Pure: the
//! repository, the engine and the clock are the caller's.
//!
//! The safety rules only ever add to what the rules keep, so that the rules
//! alone decide as restic does, and each says why when it keeps a
//! snapshot the rules would drop:
//! - a target's newest snapshot (its newest restore point: not the undo
//!   copy of a restore, not the first pass of a stopped backup) is never
//!   removed, nor its newest one not in the future (a clock set wrong, or
//!   a mistyped `--time`, must not make every real backup look older);
//! - the newest snapshot whose restore drill passed is never removed;
//! - a snapshot tagged `pruned` (the last copy of a volume `lifeboat
//!   prune` removed) is kept unless the caller includes those.

use jiff::Timestamp;
use serde::Serialize;

use crate::config::keep::{KeepReason, KeepRules, TakenAt};
use crate::repo::SnapshotInfo;
use crate::repo::spec::{TargetKind, TargetSpec};
use crate::volume_prune::PRUNED_TAG;

/// The snapshots of one target taken on one host, newest first.
#[derive(Clone, Debug)]
pub struct Group {
    pub kind: TargetKind,
    /// The volume's name or the bind mount's host path.
    pub name: String,
    pub host: String,
    pub snapshots: Vec<SnapshotInfo>,
}

impl Group {
    /// The labels the volume had when its newest snapshot was taken.
    pub fn recorded_labels(&self) -> std::collections::BTreeMap<String, String> {
        self.snapshots
            .first()
            .and_then(|s| TargetSpec::from_tags(&s.tags))
            .map(|spec| spec.labels)
            .unwrap_or_default()
    }
}

/// Groups lifeboat's snapshots per target and host, each group newest
/// first (equal times by id, so that the order never depends on how the
/// repository listed them), the groups by kind, name and host. Snapshots
/// another program wrote are left out, and counted.
pub fn group(snapshots: Vec<SnapshotInfo>) -> (Vec<Group>, usize) {
    let mut groups: Vec<Group> = Vec::new();
    let mut foreign = 0;
    for snapshot in snapshots {
        let Some(spec) = TargetSpec::from_tags(&snapshot.tags) else {
            foreign += 1;
            continue;
        };
        let kind = spec.kind.unwrap_or(TargetKind::Volume);
        match groups
            .iter_mut()
            .find(|g| g.kind == kind && g.name == spec.name && g.host == snapshot.hostname)
        {
            Some(group) => group.snapshots.push(snapshot),
            None => groups.push(Group {
                kind,
                name: spec.name,
                host: snapshot.hostname.clone(),
                snapshots: vec![snapshot],
            }),
        }
    }
    for group in &mut groups {
        group.snapshots.sort_by(|a, b| {
            b.file
                .time
                .timestamp()
                .cmp(&a.file.time.timestamp())
                .then_with(|| a.id.cmp(&b.id))
        });
    }
    groups.sort_by(|a, b| (a.kind, &a.name, &a.host).cmp(&(b.kind, &b.name, &b.host)));
    (groups, foreign)
}

/// What the safety rules protect besides a target's newest snapshot.
#[derive(Clone, Debug, Default)]
pub struct Safety {
    /// The ids of the snapshots whose restore drill passed.
    pub drilled: Vec<String>,
    /// Let the rules remove snapshots tagged `pruned` too.
    pub include_pruned: bool,
}

/// Why each snapshot of `group` is kept, in its order: empty for one to
/// remove. Never empty for the group's newest restore point.
pub fn decide(
    rules: &KeepRules,
    group: &Group,
    safety: &Safety,
    now: Timestamp,
) -> Vec<Vec<KeepReason>> {
    let taken: Vec<TakenAt> = group
        .snapshots
        .iter()
        .map(|s| TakenAt::of(&s.file.time))
        .collect();
    let mut reasons = rules.apply(&taken, now);
    let restore_point = |s: &SnapshotInfo| {
        TargetSpec::from_tags(&s.tags).is_some_and(|spec| spec.is_restore_point())
    };
    let newest = group.snapshots.iter().position(restore_point).unwrap_or(0);
    let newest_past = group
        .snapshots
        .iter()
        .position(|s| restore_point(s) && s.file.time.timestamp() <= now);
    let drilled = group
        .snapshots
        .iter()
        .position(|s| safety.drilled.contains(&s.id));
    for (i, snapshot) in group.snapshots.iter().enumerate() {
        let why = &mut reasons[i];
        if !why.is_empty() {
            continue;
        }
        if i == newest || Some(i) == newest_past {
            why.push(KeepReason::Newest);
        } else if Some(i) == drilled {
            why.push(KeepReason::Drilled);
        } else if !safety.include_pruned && snapshot.tags.iter().any(|t| t == PRUNED_TAG) {
            why.push(KeepReason::Pruned);
        }
    }
    reasons
}

/// A snapshot and what retention decided for it.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub id: String,
    pub short_id: String,
    pub time: String,
    pub keep: bool,
    /// Why it is kept: the rules' reasons, as restic words them, and
    /// lifeboat's safety rules'.
    pub reasons: Vec<String>,
    /// Removed from the repository by this run.
    pub removed: bool,
}

impl Decision {
    pub(crate) fn new(snapshot: &SnapshotInfo, reasons: &[KeepReason]) -> Self {
        Self {
            id: snapshot.id.clone(),
            short_id: snapshot.short_id.clone(),
            time: snapshot.time.clone(),
            keep: !reasons.is_empty(),
            reasons: reasons.iter().map(ToString::to_string).collect(),
            removed: false,
        }
    }
}

#[cfg(test)]
mod tests;
