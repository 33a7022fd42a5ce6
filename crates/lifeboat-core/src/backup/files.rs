//! A target's files into a snapshot, through the host path or the
//! engine's archive stream.

use super::*;

/// How many chunks of an archive stream may wait for the parser.
pub(super) const STREAM_CHUNKS: usize = 64;

/// One pass over a target's files.
pub(super) struct FilePass {
    pub(super) choice: ReaderChoice,
    /// Tags besides those that describe the target.
    pub(super) tags: Vec<String>,
    /// The snapshot whose unchanged files may be reused, instead of the
    /// latest of the same path.
    pub(super) parent: Option<String>,
    /// The time the snapshot records instead of now.
    pub(super) time: Option<Zoned>,
}

pub(super) async fn run(
    engine: &Engine,
    repo: &Repo,
    target: &Target,
    pass: &FilePass,
    progress: Arc<TransferProgress>,
    result: &mut TargetBackup,
) -> Result<SnapshotInfo> {
    let (choice, extra_tags) = (pass.choice, &pass.tags);
    let mut spec = target.spec().ok_or_else(|| {
        Error::BadRequest(format!(
            "{} is a tmpfs mount: it lives in memory and has nothing to back up",
            target.name
        ))
    })?;
    spec.extra_tags.extend(extra_tags.iter().cloned());
    let reader = match choice {
        ReaderChoice::Host => {
            if !target.host_readable() {
                return Err(Error::BadRequest(format!(
                    "{} cannot be read from a host path here; use the engine reader",
                    target.name
                )));
            }
            Reader::Host
        }
        ReaderChoice::Engine => Reader::Engine,
        ReaderChoice::Auto if target.host_readable() => Reader::Host,
        ReaderChoice::Auto => Reader::Engine,
    };
    result.reader = Some(reader);
    let snapshot_path = spec.snapshot_path();
    let root_name: OsString = snapshot_path
        .file_name()
        .map(ToOwned::to_owned)
        .unwrap_or_else(|| OsString::from("root"));
    let log = SharedLog::default();
    let request = ArchiveRequest {
        base: PathBuf::new(),
        snapshot_path,
        tags: spec.to_tags(),
        description: None,
        label: None,
        use_parent: reader == Reader::Host,
        parent: pass.parent.clone(),
        list_ahead: reader == Reader::Host,
        streams: false,
        time: pass.time.clone(),
        progress: progress.clone(),
    };

    let snapshot = match reader {
        Reader::Host => {
            let root = PathBuf::from(target.host_path.clone().unwrap_or_default());
            let request = ArchiveRequest {
                base: root.clone(),
                ..request
            };
            let repo = repo.clone();
            let log = log.clone();
            tokio::task::spawn_blocking(move || -> Result<SnapshotInfo> {
                let source = HostSource::new(&root, root_name, log.clone(), progress)
                    .map_err(Error::ReadFailed)?;
                repo.archive(&source, &request, || {
                    verdict(&log).map_err(Error::ReadFailed)
                })
            })
            .await
            .map_err(|e| Error::Other(format!("backup task failed: {e}")))?
        }
        Reader::Engine => {
            archive_from_engine(
                engine,
                repo,
                target,
                request,
                root_name,
                log.clone(),
                progress,
            )
            .await
        }
    };
    if let Ok(log) = log.lock() {
        result.vanished = log.vanished.clone();
        result.sockets = log.sockets.clone();
    }
    snapshot
}

pub(super) fn target_size(target: &Target) -> Option<u64> {
    match target.size {
        crate::inventory::Size::Known { bytes, .. } => Some(bytes),
        _ => None,
    }
}

/// Whether a source read cleanly: the snapshot may be published.
pub(super) fn verdict(log: &SharedLog) -> std::result::Result<(), String> {
    let log = log.lock().map_err(|_| "read log poisoned".to_string())?;
    let ReadLog { fatal, .. } = &*log;
    match fatal.as_slice() {
        [] => Ok(()),
        [one] => Err(format!("not backed up: {one}")),
        [first, rest @ ..] => Err(format!(
            "not backed up: {first} (and {} more problem{})",
            rest.len(),
            if rest.len() == 1 { "" } else { "s" }
        )),
    }
}

/// Streams a helper's archive into a blocking reader.
/// Streams a helper's archive into a blocking reader. Cancelled (or its
/// abort handle used), the task that pumps it closes the engine's stream,
/// and the reader sees the stream end: the engine holds the helper while
/// the stream is open, so a backup given up must close it, or removing the
/// helper waits for the whole volume to be streamed.
pub(crate) fn stream_reader(
    engine: &Engine,
    helper: &Helper,
    path: &str,
    cancel: crate::cancel::Cancel,
) -> (ChunkReader, tokio::task::AbortHandle) {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(STREAM_CHUNKS);
    let mut stream = Box::pin(engine.download(helper, path));
    let pump = tokio::spawn(async move {
        let pumped = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()));
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        };
        tokio::select! {
            () = pumped => {}
            () = cancel.cancelled() => {}
        }
    });
    (ChunkReader::new(rx), pump.abort_handle())
}

pub(super) async fn archive_from_engine(
    engine: &Engine,
    repo: &Repo,
    target: &Target,
    request: ArchiveRequest,
    root_name: OsString,
    log: SharedLog,
    progress: Arc<TransferProgress>,
) -> Result<SnapshotInfo> {
    let source = match target.kind {
        MountKind::Bind => HelperSource::Bind(target.name.clone()),
        _ => HelperSource::Volume(target.name.clone()),
    };
    let size = target_size(target);
    // Mounting a volume that no longer exists makes the engine create it,
    // empty: a backup of that stand-in would become the latest snapshot.
    ensure_same_volume(engine, target, "").await?;
    let helper = engine.create_helper(&source, true).await?;
    if let Err(e) = ensure_same_volume(
        engine,
        target,
        " (the engine may have created an empty one for lifeboat's helper container)",
    )
    .await
    {
        if let Err(undo) = engine.remove_helper(&helper).await {
            tracing::warn!("{undo}");
        }
        return Err(e);
    }
    let base = PathBuf::from(HELPER_MOUNT);
    let (reader, pump) = stream_reader(
        engine,
        &helper,
        &format!("{HELPER_MOUNT}/."),
        repo.cancellation(),
    );
    let spool = repo.settings().cache_dir.join("spool");
    let link_helper = Arc::new(std::sync::Mutex::new(None));
    let refetch = refetcher(
        engine.clone(),
        source.clone(),
        link_helper.clone(),
        spool.clone(),
        progress.clone(),
        repo.cancellation(),
    );
    let request = ArchiveRequest {
        base: base.clone(),
        ..request
    };
    let repo = repo.clone();
    let archived = tokio::task::spawn_blocking(move || {
        let input = ArchiveInput {
            stream: Box::new(reader),
            base,
            root_name,
            spool_dir: spool,
            refetch,
            close: Some(Box::new(move || pump.abort())),
        };
        let source = ArchiveSource::start(input, log.clone(), progress, size);
        repo.archive(&source, &request, || {
            verdict(&log).map_err(Error::ReadFailed)
        })
    })
    .await
    .map_err(|e| Error::Other(format!("backup task failed: {e}")));
    let link_helper = link_helper.lock().ok().and_then(|mut h| h.take());
    for h in std::iter::once(helper).chain(link_helper) {
        if let Err(e) = engine.remove_helper(&h).await {
            tracing::warn!("{e}");
        }
    }
    archived?
}

/// Fails when a volume is gone or is no longer the one the inventory saw.
pub(super) async fn ensure_same_volume(engine: &Engine, target: &Target, note: &str) -> Result<()> {
    if target.kind != MountKind::Volume {
        return Ok(());
    }
    let now = engine.volume(&target.name).await?;
    let same = match (&now, &target.created_at) {
        (None, _) => false,
        (Some(v), Some(created)) => v.created_at.as_ref() == Some(created),
        (Some(_), None) => true,
    };
    if same {
        Ok(())
    } else {
        Err(Error::NotFound(format!(
            "volume {} was removed or replaced since the inventory was taken{note}; not backing it up",
            target.name
        )))
    }
}

/// Reads the content behind a hard link again. The engine holds a
/// container's lock for as long as one of its archive streams is open, so
/// this goes through a second helper, created on the first link met and
/// kept in `slot` for the caller to remove.
pub(super) fn refetcher(
    engine: Engine,
    source: HelperSource,
    slot: Arc<std::sync::Mutex<Option<Helper>>>,
    spool: PathBuf,
    progress: Arc<TransferProgress>,
    cancel: crate::cancel::Cancel,
) -> Refetch {
    let handle = tokio::runtime::Handle::current();
    Box::new(move |relative: &[u8]| -> std::io::Result<Payload> {
        let relative = std::str::from_utf8(relative).map_err(|_| {
            std::io::Error::other(
                "hard links to names that are not UTF-8 cannot be read through the engine",
            )
        })?;
        let mut helper = slot
            .lock()
            .map_err(|_| std::io::Error::other("link reader poisoned"))?;
        if helper.is_none() {
            let created = handle
                .block_on(engine.create_helper(&source, true))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            *helper = Some(created);
        }
        let Some(helper) = helper.as_ref() else {
            return Err(std::io::Error::other("no helper for hard links"));
        };
        let path = format!("{HELPER_MOUNT}/{relative}");
        let reader = {
            let _entered = handle.enter();
            stream_reader(&engine, helper, &path, cancel.clone()).0
        };
        let mut archive = crate::tar_reader::TarReader::new(reader);
        let entry = archive
            .next_entry()?
            .ok_or_else(|| std::io::Error::other("empty archive"))?;
        read_payload(&mut archive.content(), entry.meta.size, &spool, &progress)
    })
}
