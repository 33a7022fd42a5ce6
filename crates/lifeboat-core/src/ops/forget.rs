//! Retention: remove the snapshots each target's keep rules do not keep,
//! never its newest, or say which would go (a dry run). The data they hold
//! stays in the repository until a prune.

use std::time::Duration;

use serde::Serialize;

use super::session::Session;
use crate::config::KeepRules;
use crate::config::keep::keep_rules;
use crate::engine::MountKind;
use crate::error::{Error, ErrorClass, Result};
use crate::repo::spec::TargetKind;
use crate::repo::{PruneSummary, SnapshotInfo};
use crate::retention::{self, Decision, Group, Safety};

/// Which targets, by which rules, and whether to remove anything.
#[derive(Clone, Debug, Default)]
pub struct ForgetRequest {
    /// Volumes by name, bind mounts by host path; none: every target with
    /// snapshots in the repository.
    pub targets: Vec<String>,
    /// Rules for every target, over labels and the configuration file.
    pub keep: Option<KeepRules>,
    /// Only say what would be removed.
    pub dry_run: bool,
    /// Let the rules remove snapshots tagged `pruned` (the last copy of a
    /// volume `lifeboat prune` removed) too.
    pub include_pruned: bool,
    /// Then remove the data no snapshot references any more.
    pub prune: bool,
    /// Only that: remove no snapshot, need no rules (after a `restic
    /// forget`, say).
    pub prune_only: bool,
    /// How long a prune waits for others' locks (a backup running);
    /// zero: not at all. [`LOCK_WAIT`] is the command line's default.
    pub lock_wait: Duration,
}

/// How long a prune waits by default for a backup or restore to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(300);

/// What retention decided for each target, and did.
#[derive(Clone, Debug, Serialize)]
pub struct ForgetReport {
    pub dry_run: bool,
    pub targets: Vec<TargetRetention>,
    /// Snapshots another program wrote: never touched.
    pub foreign_snapshots: usize,
    /// What the drill rule protects: nothing until restore drills are
    /// recorded.
    pub drills: String,
    /// What the prune did (in a dry run: would do), when asked.
    pub prune: Option<PruneSummary>,
    /// Why the prune asked for did not happen or stopped (what it removed
    /// before that is gone; the repository stays whole).
    pub prune_error: Option<String>,
    pub prune_failure: Option<ErrorClass>,
}

/// One target's snapshots on one host, and what became of them.
#[derive(Clone, Debug, Serialize)]
pub struct TargetRetention {
    pub kind: TargetKind,
    pub name: String,
    pub host: String,
    /// The rules applied, as written, and where they were set.
    pub rules: Option<String>,
    pub rules_from: Option<String>,
    /// Newest first.
    pub snapshots: Vec<Decision>,
    /// How many were removed (in a dry run: none).
    pub removed: usize,
    /// Why nothing was decided or removed for this target.
    pub error: Option<String>,
    pub failure: Option<ErrorClass>,
}

impl TargetRetention {
    /// How many snapshots the rules let go.
    pub fn to_remove(&self) -> usize {
        self.snapshots.iter().filter(|s| !s.keep).count()
    }
}

impl ForgetReport {
    /// Targets that were refused or failed.
    pub fn failures(&self) -> usize {
        self.targets.iter().filter(|t| t.error.is_some()).count()
    }
}

/// What drills protect today.
const NO_DRILLS: &str = "no restore drill is recorded yet: the rule that keeps the newest snapshot with a passed drill protects nothing";

/// Decides, per target and host, which snapshots the keep rules keep,
/// then removes the others unless it is a dry run: nothing is removed
/// before every target is decided. A target without rules is refused (its
/// failure says how to set them) and the others go on; a target named
/// that has no snapshots, or an engine that cannot be reached for the
/// labels, fails the whole run before anything is removed. Stopped
/// ([`Session::cancel`]), it removes nothing more: the targets left say
/// so.
pub async fn forget(session: &Session, request: &ForgetRequest) -> Result<ForgetReport> {
    if let Some(rules) = request.keep
        && rules.keeps_nothing()
    {
        return Err(Error::BadRequest(
            "keep rules that keep no snapshot at all are never applied".to_string(),
        ));
    }
    let config = session.config()?;
    let repo = session.repo().await?.clone();
    // A prune that cannot happen is refused before anything is removed.
    if (request.prune || request.prune_only) && !request.dry_run {
        repo.prunable()?;
    }
    let listed = {
        let repo = repo.clone();
        Session::blocking(move || repo.snapshots()).await?
    };
    let (mut groups, foreign) = retention::group(listed);
    if request.prune_only {
        groups.clear();
    } else if !request.targets.is_empty() {
        let wanted: Vec<&str> = request
            .targets
            .iter()
            .map(|t| match t.trim_end_matches('/') {
                "" => "/",
                name => name,
            })
            .collect();
        if let Some(missing) = wanted
            .iter()
            .find(|w| !groups.iter().any(|g| g.name == **w))
        {
            return Err(Error::NotFound(format!(
                "no snapshot of {missing:?} in the repository (see `lifeboat snapshots`)"
            )));
        }
        groups.retain(|g| wanted.contains(&g.name.as_str()));
    }
    let safety = Safety {
        drilled: Vec::new(),
        include_pruned: request.include_pruned,
    };
    let now = jiff::Timestamp::now();
    let this_host = crate::host::hostname();
    let mut targets = Vec::with_capacity(groups.len());
    let mut doomed = Vec::with_capacity(groups.len());
    for group in &groups {
        session.go_on()?;
        let mut target = TargetRetention {
            kind: group.kind,
            name: group.name.clone(),
            host: group.host.clone(),
            rules: None,
            rules_from: None,
            snapshots: Vec::new(),
            removed: 0,
            error: None,
            failure: None,
        };
        let rules = match request.keep {
            Some(rules) => Ok(Some((rules, "--keep".to_string()))),
            None => rules_of(session, group, &this_host, &config).await,
        };
        let rules = match rules {
            Ok(Some(rules)) => rules,
            Ok(None) => {
                target.fail(&no_rules(group));
                targets.push(target);
                doomed.push(Vec::new());
                continue;
            }
            Err(e) if e.class() == ErrorClass::EngineUnreachable => return Err(e),
            Err(e) => {
                target.fail(&e);
                targets.push(target);
                doomed.push(Vec::new());
                continue;
            }
        };
        target.rules = Some(rules.0.to_string());
        target.rules_from = Some(rules.1);
        let reasons = retention::decide(&rules.0, group, &safety, now);
        target.snapshots = group
            .snapshots
            .iter()
            .zip(&reasons)
            .map(|(snapshot, why)| Decision::new(snapshot, why))
            .collect();
        let to_remove: Vec<SnapshotInfo> = group
            .snapshots
            .iter()
            .zip(&reasons)
            .filter(|(_, why)| why.is_empty())
            .map(|(snapshot, _)| snapshot.clone())
            .collect();
        // Never all of a target: the safety rules keep its newest, so this
        // cannot happen; it is checked again where it would cost data.
        if to_remove.len() == group.snapshots.len() {
            target.fail(&Error::Other(format!(
                "retention would remove every snapshot of {}; nothing removed",
                group.name
            )));
            doomed.push(Vec::new());
        } else {
            doomed.push(to_remove);
        }
        targets.push(target);
    }
    // Removing snapshot files under the shared lock is safe: it removes
    // no data (a prune, under the exclusive lock, does that), and a
    // backup running meanwhile does not rely on other snapshots' files.
    let mut would_go = Vec::new();
    if request.dry_run {
        would_go = doomed;
    } else {
        for (target, doomed) in targets.iter_mut().zip(doomed) {
            if doomed.is_empty() || target.error.is_some() {
                continue;
            }
            if session.is_cancelled() {
                target.fail(&Error::Interrupted(
                    "stopped on request before its snapshots were removed".to_string(),
                ));
                continue;
            }
            // One at a time, so that a failure half-way still says
            // exactly which are gone.
            for snapshot in doomed {
                let repo = repo.clone();
                let id = snapshot.id.clone();
                match Session::blocking(move || repo.forget_snapshots(&[&snapshot])).await {
                    Ok(()) => {
                        target.removed += 1;
                        if let Some(decision) = target.snapshots.iter_mut().find(|d| d.id == id) {
                            decision.removed = true;
                        }
                    }
                    Err(e) => {
                        target.fail(&e);
                        break;
                    }
                }
            }
        }
    }
    let mut report = ForgetReport {
        dry_run: request.dry_run,
        targets,
        foreign_snapshots: foreign,
        drills: NO_DRILLS.to_string(),
        prune: None,
        prune_error: None,
        prune_failure: None,
    };
    if (request.prune || request.prune_only) && session.is_cancelled() {
        report.prune_failure = Some(ErrorClass::Interrupted);
        report.prune_error = Some("stopped on request before the prune".to_string());
    } else if request.prune || request.prune_only {
        let events = session.events();
        let cancel = session.cancellation();
        let (plan_only, wait) = (request.dry_run, request.lock_wait);
        // A dry run plans as if what it would remove were gone.
        let forgotten: Vec<SnapshotInfo> = if plan_only {
            would_go.into_iter().flatten().collect()
        } else {
            Vec::new()
        };
        let pruned = Session::blocking(move || {
            repo.prune(
                plan_only,
                &forgotten,
                wait,
                &|why| events.event(super::Event::Waiting { why }),
                &|| cancel.is_cancelled(),
            )
        })
        .await;
        match pruned {
            Ok(summary) => report.prune = Some(summary),
            Err(e) => {
                report.prune_error = Some(e.to_string());
                report.prune_failure = Some(e.class());
            }
        }
    }
    Ok(report)
}

impl TargetRetention {
    fn fail(&mut self, e: &Error) {
        self.error = Some(e.to_string());
        self.failure = Some(e.class());
    }
}

/// The rules of a group's target. A volume's label is read from this
/// engine when the snapshots were taken on this host; otherwise, or when
/// the volume is gone, as its newest snapshot recorded it.
async fn rules_of(
    session: &Session,
    group: &Group,
    this_host: &str,
    config: &crate::config::Config,
) -> Result<Option<(KeepRules, String)>> {
    let kind = match group.kind {
        TargetKind::Volume => MountKind::Volume,
        TargetKind::Bind => MountKind::Bind,
    };
    let recorded = || {
        (
            group.recorded_labels(),
            format!(" (as its newest snapshot on {} recorded it)", group.host),
        )
    };
    let (labels, from) = match group.kind {
        TargetKind::Bind => (Default::default(), String::new()),
        TargetKind::Volume if group.host != this_host => recorded(),
        TargetKind::Volume => match session.engine().await?.volume(&group.name).await? {
            Some(volume) => (volume.labels, String::new()),
            None => recorded(),
        },
    };
    keep_rules(kind, &group.name, &labels, &from, config)
}

fn no_rules(group: &Group) -> Error {
    let (what, section) = match group.kind {
        TargetKind::Volume => ("volume", "volume"),
        TargetKind::Bind => ("bind mount", "bind"),
    };
    let label = match group.kind {
        TargetKind::Volume => format!(", the label {} on the volume", crate::config::KEEP_LABEL),
        TargetKind::Bind => String::new(),
    };
    Error::BadRequest(format!(
        "no keep rules for {what} {name}: nothing removed; set them with --keep{label}, or `keep = \"daily=7,weekly=4\"` in [{section}.\"{name}\"] or [defaults] of the configuration file",
        name = group.name
    ))
}
