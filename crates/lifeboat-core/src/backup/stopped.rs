//! The stop strategy: copy live, stop the writers and their dependents,
//! copy what changed, start them again.

use super::*;

/// How one stopped backup reads, and the time its snapshot records.
pub(super) struct StopRun {
    pub(super) choice: ReaderChoice,
    pub(super) single_pass: bool,
    pub(super) time: Option<Zoned>,
}

/// The stop strategy: copy live, stop the writers and their dependents,
/// copy again on top of the first copy (so that the window covers only
/// what changed meanwhile), and start the containers again, whatever
/// happened. The first copy, an inconsistent one, is deleted.
pub(super) async fn stop_and_copy(
    engine: &Engine,
    repo: &Repo,
    planned: &PlannedTarget,
    settings: &StopRun,
    journal: &mut crate::journal::Journal,
    progress: Arc<TransferProgress>,
    result: &mut TargetBackup,
) -> Result<SnapshotInfo> {
    let choice = settings.choice;
    let target = &planned.target;
    let tag = format!("strategy={}", Strategy::Stop);
    let two_pass = !settings.single_pass
        && !planned.stop.is_empty()
        && choice != ReaderChoice::Engine
        && target.host_readable();
    let prepass = if two_pass {
        let pass = FilePass {
            choice,
            tags: vec![tag.clone(), crate::repo::spec::PREPASS_TAG.to_string()],
            parent: None,
            time: settings.time.clone(),
        };
        Some(run(engine, repo, target, &pass, progress.clone(), result).await?)
    } else {
        None
    };
    progress.reset();
    let mut window = crate::stop::StopWindow::new(engine, journal);
    let copied = match window.stop(&planned.stop).await {
        Ok(()) => {
            let pass = FilePass {
                choice,
                tags: vec![tag],
                parent: prepass.as_ref().map(|p| p.id.clone()),
                time: settings.time.clone(),
            };
            run(engine, repo, target, &pass, progress, result).await
        }
        Err(e) => Err(e),
    };
    let (windows, failed_starts) = window.restart().await;
    result.stop_windows = windows;
    if let Some(prepass) = prepass {
        let repo = repo.clone();
        let deleted = tokio::task::spawn_blocking(move || repo.delete_snapshot(&prepass)).await;
        if let Ok(Err(e)) | Err(e) = deleted.map_err(|e| Error::Other(e.to_string())) {
            tracing::warn!("could not delete the first-pass snapshot: {e}");
        }
    }
    if !failed_starts.is_empty() {
        // The snapshot, if any, is good; the containers are not running.
        result.failure = Some(ErrorClass::Engine);
        result.error = Some(format!(
            "containers stopped for the backup could not be started again: {} (the next lifeboat command retries)",
            failed_starts.join("; ")
        ));
    }
    copied
}
