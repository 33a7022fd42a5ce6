//! Hooks: commands run inside the containers that use a volume, before and
//! after its backup, set by labels on those containers:
//!
//! - `lifeboat.exec-pre`, `lifeboat.exec-post`: the commands (run with
//!   `sh -c`);
//! - `lifeboat.exec-timeout`: seconds each may take (300 by default);
//! - `lifeboat.exec-on-error`: `abort` (the default: a failed pre hook
//!   skips the backup and fails the volume) or `continue`.
//!
//! offen/docker-volume-backup's `docker-volume-backup.archive-pre` and
//! `archive-post` work the same, for people who migrate. Post hooks run
//! whenever pre hooks were attempted, even when the backup failed: a post
//! hook usually undoes its pre hook (unlocks tables, resumes a queue).
//!
//! A hook's command text is shown in plans and reports (and, like every
//! label, to anyone who can inspect the container): a secret belongs in
//! the container's environment or a file, read by the command, not in it.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;

use crate::engine::{Engine, EngineContainer, ExecChunk};
use crate::error::Error;
use crate::inventory::Target;

const PRE: [&str; 2] = ["lifeboat.exec-pre", "docker-volume-backup.archive-pre"];
const POST: [&str; 2] = ["lifeboat.exec-post", "docker-volume-backup.archive-post"];
const TIMEOUT_LABEL: &str = "lifeboat.exec-timeout";
const ON_ERROR_LABEL: &str = "lifeboat.exec-on-error";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Pre,
    Post,
}

/// A hook of one container.
#[derive(Clone, Debug, Serialize)]
pub struct Hook {
    pub container: String,
    pub phase: Phase,
    pub command: String,
    pub timeout_seconds: u64,
    /// Whether a failure of this hook stops the volume's backup.
    pub abort_on_error: bool,
    #[serde(skip)]
    running: bool,
}

/// How a hook went.
#[derive(Clone, Debug, Serialize)]
pub struct HookRun {
    pub container: String,
    pub phase: Phase,
    pub command: String,
    /// The exit status; `None` when the hook did not finish or could not
    /// run.
    pub exit_code: Option<i64>,
    pub seconds: f64,
    /// The end of what it printed, or why it did not run.
    pub output: String,
    pub ok: bool,
    /// Whether the engine started it.
    #[serde(skip)]
    started: bool,
}

/// The hooks of the containers that mount a target, in container order,
/// pre hooks then post hooks.
pub fn hooks_of(target: &Target, containers: &[EngineContainer]) -> Vec<Hook> {
    let mut hooks = Vec::new();
    for c in containers
        .iter()
        .filter(|c| target.users.iter().any(|u| u.container == c.name))
    {
        let timeout_seconds = c
            .labels
            .get(TIMEOUT_LABEL)
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(DEFAULT_TIMEOUT.as_secs());
        let abort_on_error = c.labels.get(ON_ERROR_LABEL).map(|v| v.trim()) != Some("continue");
        for (phase, labels) in [(Phase::Pre, PRE), (Phase::Post, POST)] {
            for label in labels {
                if let Some(command) = c.labels.get(label).filter(|v| !v.trim().is_empty()) {
                    hooks.push(Hook {
                        container: c.name.clone(),
                        phase,
                        command: command.clone(),
                        timeout_seconds,
                        abort_on_error,
                        running: c.running,
                    });
                }
            }
        }
    }
    hooks
}

impl Hook {
    fn command_line(&self) -> Vec<String> {
        ["sh", "-c", self.command.as_str()]
            .map(String::from)
            .to_vec()
    }
}

/// The post hooks of running containers, as commands the journal can run
/// should lifeboat be stopped before it runs them itself; each waits for
/// the pre hooks of its container that an interruption may have left
/// running.
pub(crate) fn owed_after(hooks: &[Hook]) -> Vec<crate::journal::Pending> {
    hooks
        .iter()
        .filter(|h| h.phase == Phase::Post && h.running)
        .map(|h| {
            let pre: Vec<&Hook> = hooks
                .iter()
                .filter(|p| p.phase == Phase::Pre && p.container == h.container)
                .collect();
            crate::journal::Pending {
                timeout_seconds: h.timeout_seconds,
                after: pre.iter().map(|p| p.command_line()).collect(),
                after_seconds: pre.iter().map(|p| p.timeout_seconds).sum(),
                ..crate::journal::Pending::new(
                    &h.container,
                    h.command_line(),
                    format!("post-backup hook `{}`", h.command),
                )
            }
        })
        .collect()
}

/// Runs the hooks of a phase, one after the other. Returns what each did
/// and the error that stops the backup, if one failed with `abort`. With a
/// journal, each post hook that was started is no longer owed; one whose
/// container lifeboat could not start again stays owed.
pub(crate) async fn run_phase(
    engine: &Engine,
    hooks: &[Hook],
    phase: Phase,
    mut journal: Option<&mut crate::journal::Journal>,
) -> (Vec<HookRun>, Option<Error>) {
    let owed = owed_after(hooks);
    let mut runs = Vec::new();
    let mut abort = None;
    for hook in hooks.iter().filter(|h| h.phase == phase) {
        let run = run_one(engine, hook).await;
        if let Some(journal) = journal.as_deref_mut()
            && phase == Phase::Post
            && (run.started || !journal.left_stopped(&hook.container))
            && let Some(pending) = owed
                .iter()
                .find(|p| p.container == hook.container && p.command == hook.command_line())
            && let Err(e) = journal.paid(pending)
        {
            tracing::warn!("{e}");
        }
        if !run.ok && hook.abort_on_error && abort.is_none() {
            abort = Some(Error::Other(format!(
                "{} hook `{}` in container {} failed ({}){}",
                match phase {
                    Phase::Pre => "pre-backup",
                    Phase::Post => "post-backup",
                },
                hook.command,
                hook.container,
                run.exit_code.map_or_else(
                    || "did not finish".to_string(),
                    |c| format!("exit status {c}")
                ),
                if run.output.is_empty() {
                    String::new()
                } else {
                    format!(": {}", run.output)
                }
            )));
        }
        runs.push(run);
    }
    (runs, abort)
}

async fn run_one(engine: &Engine, hook: &Hook) -> HookRun {
    let started = Instant::now();
    let mut run = HookRun {
        container: hook.container.clone(),
        phase: hook.phase,
        command: hook.command.clone(),
        exit_code: None,
        seconds: 0.0,
        output: String::new(),
        ok: false,
        started: false,
    };
    if !hook.running {
        // As offen does: hooks run in running containers only; a stopped
        // one has nothing to flush or resume.
        run.output = "skipped: the container is not running".into();
        run.ok = true;
        run.seconds = started.elapsed().as_secs_f64();
        return run;
    }
    let command = hook.command_line();
    let limit = Duration::from_secs(hook.timeout_seconds);
    let started_exec = std::sync::atomic::AtomicBool::new(false);
    let outcome = tokio::time::timeout(limit, async {
        let mut exec = engine.exec(&hook.container, &command, false).await?;
        started_exec.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut tail = crate::dump::StderrTail::default();
        while let Some(chunk) = exec.output.next().await {
            match chunk? {
                ExecChunk::Stdout(b) | ExecChunk::Stderr(b) => tail.push(&b),
            }
        }
        Ok::<_, Error>((engine.exec_exit_code(&exec.id).await?, tail.text()))
    })
    .await;
    match outcome {
        Ok(Ok((code, output))) => {
            run.exit_code = Some(code);
            run.output = output;
            run.ok = code == 0;
        }
        Ok(Err(e)) => run.output = e.to_string(),
        Err(_) => {
            // The engine has no way to stop an exec'd command: it may go
            // on; lifeboat stops waiting for it.
            run.output = format!("still running after {}s", hook.timeout_seconds);
        }
    }
    run.started = started_exec.load(std::sync::atomic::Ordering::Relaxed);
    run.seconds = started.elapsed().as_secs_f64();
    run
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ContainerMount, EngineVolume, MountKind};
    use crate::inventory::assemble;

    #[test]
    fn hooks_come_from_lifeboat_and_offen_labels() {
        let c = EngineContainer {
            id: "1".into(),
            name: "db".into(),
            image: "img".into(),
            running: true,
            state: String::new(),
            labels: [
                ("lifeboat.exec-pre", "flush"),
                ("docker-volume-backup.archive-post", "resume"),
                ("lifeboat.exec-timeout", "5"),
                ("lifeboat.exec-on-error", "continue"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            mounts: vec![ContainerMount {
                kind: MountKind::Volume,
                name: Some("v".into()),
                source: None,
                destination: "/d".into(),
                read_write: true,
                tmpfs_size: None,
            }],
            needs: Vec::new(),
            auto_remove: false,
        };
        let volume = EngineVolume {
            name: "v".into(),
            driver: "local".into(),
            ..Default::default()
        };
        let targets = assemble(&[volume], std::slice::from_ref(&c));
        let hooks = hooks_of(&targets[0], &[c]);
        assert_eq!(hooks.len(), 2);
        assert_eq!(
            (hooks[0].phase, hooks[0].command.as_str()),
            (Phase::Pre, "flush")
        );
        assert_eq!(
            (hooks[1].phase, hooks[1].command.as_str()),
            (Phase::Post, "resume")
        );
        assert_eq!(hooks[0].timeout_seconds, 5);
        assert!(!hooks[0].abort_on_error);
    }
}
