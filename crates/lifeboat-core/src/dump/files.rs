//! The files of a dump snapshot, read back to feed a restore tool.

use super::*;

/// The files of one dump snapshot, for feeding them to restore tools.
#[derive(Clone)]
pub(crate) struct DumpFiles {
    pub(crate) reader: Arc<RepoReader>,
    /// The snapshot's root node (the volume's directory).
    pub(crate) root: SnapshotNode,
    pub(crate) database: Database,
    pub(crate) progress: Arc<TransferProgress>,
}

impl DumpFiles {
    /// The node of a file in the database's directory.
    pub(crate) async fn node(&self, file: &str) -> Result<SnapshotNode> {
        let files = self.clone();
        let path = format!("{}/{file}", self.database.dir_name());
        tokio::task::spawn_blocking(move || files.reader.node_below(&files.root, &path))
            .await
            .map_err(|e| Error::Other(format!("reading the snapshot stopped: {e}")))?
    }

    /// Reads the manifest.
    pub(crate) fn manifest(&self) -> Result<DumpManifest> {
        let bytes = self.reader.read_small_file(
            &self.root,
            &format!("{}/{MANIFEST}", self.database.dir_name()),
        )?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Other(format!("the dump's manifest is unreadable: {e}")))
    }

    /// The whole content of a small file (accounts, a manifest).
    pub(crate) async fn read(&self, file: &str) -> Result<Vec<u8>> {
        let files = self.clone();
        let path = format!("{}/{file}", self.database.dir_name());
        tokio::task::spawn_blocking(move || files.reader.read_small_file(&files.root, &path))
            .await
            .map_err(|e| Error::Other(format!("reading the snapshot stopped: {e}")))?
    }

    /// Streams one file into a command in the container.
    pub(crate) async fn feed(
        &self,
        engine: &Engine,
        container: &str,
        file: &str,
        command: &[String],
    ) -> Result<Fed> {
        let node = self.node(file).await?;
        feed(
            engine,
            container,
            command,
            self.reader.clone(),
            node,
            self.progress.clone(),
        )
        .await
    }
}

/// What a command that was fed a file printed, and how it ended.
pub(crate) struct Fed {
    pub(crate) exit_code: i64,
    pub(crate) stderr: String,
}

/// Streams a file of a snapshot into a command's standard input inside a
/// container, collecting what the command prints meanwhile (reading both
/// at once: a command that fills its output pipe would otherwise never
/// finish reading its input).
pub(crate) async fn feed(
    engine: &Engine,
    container: &str,
    command: &[String],
    reader: Arc<RepoReader>,
    node: SnapshotNode,
    progress: Arc<TransferProgress>,
) -> Result<Fed> {
    use tokio::io::AsyncWriteExt;
    let mut exec = engine.exec(container, command, true).await?;
    let mut input = exec.input.take().ok_or_else(|| Error::Context {
        class: crate::error::ErrorClass::Engine,
        message: "the engine gave no input to the command".into(),
    })?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(OUTPUT_CHUNKS);
    let producer = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut file = reader.content(&node)?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) => {
                    let message = e.to_string();
                    let _ = tx.blocking_send(Err(e));
                    return Err(Error::Storage(format!("reading the dump: {message}")));
                }
            };
            progress.bytes_done.fetch_add(n as u64, Ordering::Relaxed);
            if tx
                .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                .is_err()
            {
                return Ok(());
            }
        }
    });
    let write = async move {
        let mut failed = None;
        while let Some(chunk) = rx.recv().await {
            match chunk {
                Ok(chunk) => {
                    if let Err(e) = input.write_all(&chunk).await {
                        // The command stopped reading: its exit status
                        // says why.
                        tracing::debug!("the command stopped reading its input: {e}");
                        break;
                    }
                }
                Err(e) => {
                    failed = Some(Error::Storage(format!("reading the dump: {e}")));
                    break;
                }
            }
        }
        // Always: a command waiting for more input would never end.
        let _ = input.shutdown().await;
        failed.map_or(Ok(()), Err)
    };
    // Restore tools report every problem on their error output; keep a
    // good deal of it (the first megabyte) to tell harmless ones apart.
    // What they print on their standard output is not needed.
    const KEPT: usize = 1 << 20;
    let mut stderr = Vec::new();
    let read = async {
        while let Some(chunk) = exec.output.next().await {
            if let ExecChunk::Stderr(b) = chunk? {
                let room = KEPT.saturating_sub(stderr.len());
                stderr.extend_from_slice(&b[..b.len().min(room)]);
            }
        }
        Ok::<(), Error>(())
    };
    let (written, read) = tokio::join!(write, read);
    written?;
    read?;
    producer
        .await
        .map_err(|e| Error::Other(format!("reading the dump stopped: {e}")))??;
    Ok(Fed {
        exit_code: engine.exec_exit_code(&exec.id).await?,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}
