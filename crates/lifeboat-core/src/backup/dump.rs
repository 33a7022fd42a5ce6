//! The dump strategy: the database's own tools, run in its container,
//! streamed into a snapshot.

use super::*;

/// Dumps the database that keeps its data in the target.
pub(super) async fn dump(
    engine: &Engine,
    repo: &Repo,
    planned: &PlannedTarget,
    extra_tags: &[String],
    time: Option<&Zoned>,
    progress: Arc<TransferProgress>,
    journal: &mut crate::journal::Journal,
) -> Result<SnapshotInfo> {
    if let Some(problem) = &planned.problem {
        return Err(Error::Refused(problem.clone()));
    }
    let from = planned
        .dump
        .as_ref()
        .ok_or_else(|| Error::Other(format!("{}: nothing to dump from", planned.name)))?;
    let mut spec = planned
        .target
        .spec()
        .ok_or_else(|| Error::BadRequest(format!("{} cannot be dumped", planned.name)))?;
    spec.extra_tags.push(format!("strategy={}", Strategy::Dump));
    spec.extra_tags.extend(extra_tags.iter().cloned());
    spec.extra_tags
        .push(format!("database={}", from.database.dir_name()));
    let snapshot_path = spec.snapshot_path();
    let root_name: OsString = snapshot_path
        .file_name()
        .map(ToOwned::to_owned)
        .unwrap_or_else(|| OsString::from("root"));
    let log = SharedLog::default();
    let request = ArchiveRequest {
        base: PathBuf::from(crate::dump::DUMP_BASE),
        snapshot_path,
        tags: spec.to_tags(),
        description: None,
        use_parent: false,
        label: Some(crate::dump::DUMP_LABEL.to_string()),
        parent: None,
        list_ahead: false,
        streams: true,
        time: time.cloned(),
        progress: progress.clone(),
    };
    let prepared = from
        .database
        .tools()
        .prepare(DumpContext {
            engine,
            from,
            log: &log,
            progress: &progress,
            journal,
        })
        .await?;
    let source = dump_source(root_name, from.database, prepared.files);
    let archived = {
        let repo = repo.clone();
        tokio::task::spawn_blocking(move || {
            repo.archive(&source, &request, || {
                verdict(&log).map_err(Error::DumpFailed)
            })
        })
        .await
    };
    // Owed whether the archive succeeded or not.
    if let Some(after) = prepared.after {
        after.run(engine, journal).await;
    }
    archived.map_err(|e| Error::Other(format!("dump of {} stopped: {e}", planned.name)))?
}
