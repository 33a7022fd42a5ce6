//! Commands run in a database's container for a dump: started when the
//! archiver opens their file, their output streamed into it, their exit
//! status deciding whether the file is whole.

use super::*;

/// The end of a command's error output, for messages.
#[derive(Default)]
pub(crate) struct StderrTail(Vec<u8>);

impl StderrTail {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        if self.0.len() > STDERR_KEPT {
            let cut = self.0.len() - STDERR_KEPT;
            self.0.drain(..cut);
        }
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).trim().replace('\n', " | ")
    }
}

/// A value that one side produces and another waits for: the row counts
/// the manifest needs, taken from a dump's stream or by a database
/// session beside the dumps.
pub(crate) struct Slot<T> {
    state: Mutex<SlotState<T>>,
    ready: Condvar,
}

pub(super) enum SlotState<T> {
    Waiting,
    Ready(T),
    Failed,
}

impl<T: Clone> Slot<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(SlotState::Waiting),
            ready: Condvar::new(),
        })
    }

    /// Gives the value, unless it was already said never to come.
    pub(crate) fn fill(&self, value: T) {
        if let Ok(mut s) = self.state.lock()
            && matches!(*s, SlotState::Waiting)
        {
            *s = SlotState::Ready(value);
        }
        self.ready.notify_all();
    }

    /// Marks the value as never coming, unless it came.
    pub(crate) fn fail(&self) {
        if let Ok(mut s) = self.state.lock()
            && matches!(*s, SlotState::Waiting)
        {
            *s = SlotState::Failed;
        }
        self.ready.notify_all();
    }

    pub(crate) fn wait(&self) -> Option<T> {
        let mut s = self.state.lock().ok()?;
        loop {
            match &*s {
                SlotState::Ready(v) => return Some(v.clone()),
                SlotState::Failed => return None,
                SlotState::Waiting => s = self.ready.wait(s).ok()?,
            }
        }
    }
}

/// Watches a dump's bytes as they pass (to count rows), and says when the
/// dump ended cleanly.
pub(crate) trait Tap: Send {
    fn bytes(&mut self, data: &[u8]);
    /// The dump ended with success: publish what was counted.
    fn finish(&mut self);
    /// The dump failed or was abandoned.
    fn abandon(&mut self);
}

/// How a file of a dump snapshot gets its content.
pub(crate) enum DumpOpen {
    /// The output of a command in the container.
    Command(Box<CommandOpen>),
    /// Bytes known in advance.
    Bytes(Vec<u8>),
    /// Bytes made once what they record is in (the manifest, once the
    /// rows are counted); `None` when that failed, the cause recorded.
    After {
        make: Box<dyn FnOnce() -> Option<Vec<u8>> + Send>,
        log: SharedLog,
    },
}

/// Runs a command in a container when its file is read.
pub(crate) struct CommandOpen {
    pub(crate) engine: Engine,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) container: String,
    pub(crate) command: Vec<String>,
    /// What the command is, for messages (`pg_dump of shop`).
    pub(crate) what: String,
    pub(crate) tap: Option<Box<dyn Tap>>,
    pub(crate) log: SharedLog,
    pub(crate) progress: Arc<TransferProgress>,
}

impl Drop for CommandOpen {
    fn drop(&mut self) {
        // Never opened: whoever waits for its counts must not wait forever.
        if let Some(tap) = self.tap.as_mut() {
            tap.abandon();
        }
    }
}

/// Reads a dump file.
pub(crate) enum DumpReader {
    Command(CommandReader),
    Bytes(std::io::Cursor<Vec<u8>>),
}

impl Read for DumpReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Command(r) => r.read(buf),
            Self::Bytes(r) => r.read(buf),
        }
    }
}

impl Open for DumpOpen {
    type Reader = DumpReader;

    fn open(self) -> std::io::Result<DumpReader> {
        match self {
            Self::Bytes(b) => Ok(DumpReader::Bytes(std::io::Cursor::new(b))),
            Self::After { make, log } => make()
                .map(|b| DumpReader::Bytes(std::io::Cursor::new(b)))
                .ok_or_else(|| {
                    let message =
                        "no manifest: the row counts it records were not taken".to_string();
                    record_fatal(&log, message.clone());
                    std::io::Error::other(message)
                }),
            Self::Command(open) => (*open).start().map(DumpReader::Command),
        }
    }
}

impl CommandOpen {
    fn start(mut self) -> std::io::Result<CommandReader> {
        self.progress.files_done.fetch_add(1, Ordering::Relaxed);
        let fail = |log: &SharedLog, message: String| {
            record_fatal(log, message.clone());
            std::io::Error::other(message)
        };
        let exec =
            match self
                .handle
                .block_on(self.engine.exec(&self.container, &self.command, false))
            {
                Ok(exec) => exec,
                Err(e) => return Err(fail(&self.log, format!("{}: {e}", self.what))),
            };
        let (tx, rx) = tokio::sync::mpsc::channel(OUTPUT_CHUNKS);
        let engine = self.engine.clone();
        let what = format!("{} in container {}", self.what, self.container);
        let log = self.log.clone();
        self.handle.spawn(async move {
            let mut stderr = StderrTail::default();
            let mut output = exec.output;
            while let Some(chunk) = output.next().await {
                match chunk {
                    Ok(ExecChunk::Stdout(b)) => {
                        if tx.send(Ok(Piece::Data(b))).await.is_err() {
                            // The repository stopped reading.
                            return;
                        }
                    }
                    Ok(ExecChunk::Stderr(b)) => stderr.push(&b),
                    Err(e) => {
                        let message = format!("{what}: {e}");
                        record_fatal(&log, message.clone());
                        let _ = tx.send(Err(std::io::Error::other(message))).await;
                        return;
                    }
                }
            }
            let failure = match engine.exec_exit_code(&exec.id).await {
                Ok(0) => None,
                Ok(code) => Some(format!(
                    "{what} failed (exit status {code}): {}",
                    stderr.text()
                )),
                Err(e) => Some(format!("{what}: {e}")),
            };
            match failure {
                // Only this says the output is whole: a channel that just
                // closes (this task cancelled) does not.
                None => {
                    let _ = tx.send(Ok(Piece::End)).await;
                }
                Some(message) => {
                    record_fatal(&log, message.clone());
                    let _ = tx.send(Err(std::io::Error::other(message))).await;
                }
            }
        });
        Ok(CommandReader {
            rx,
            current: Bytes::new(),
            tap: self.tap.take(),
            progress: self.progress.clone(),
            log: self.log.clone(),
            what: format!("{} in container {}", self.what, self.container),
        })
    }
}

/// What the output pump sends.
pub(crate) enum Piece {
    Data(Bytes),
    /// The command ended with success: the output is whole.
    End,
}

/// A command's standard output, as a blocking reader. It ends with an
/// error when the command failed, or when the output stopped without the
/// command's success being known.
pub(crate) struct CommandReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Piece>>,
    current: Bytes,
    tap: Option<Box<dyn Tap>>,
    progress: Arc<TransferProgress>,
    log: SharedLog,
    what: String,
}

impl Read for CommandReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(Piece::Data(chunk))) => self.current = chunk,
                Some(Ok(Piece::End)) => {
                    if let Some(mut tap) = self.tap.take() {
                        tap.finish();
                    }
                    return Ok(0);
                }
                Some(Err(e)) => {
                    if let Some(tap) = self.tap.as_mut() {
                        tap.abandon();
                    }
                    return Err(e);
                }
                None => {
                    if let Some(tap) = self.tap.as_mut() {
                        tap.abandon();
                    }
                    let message =
                        format!("{}: the output stopped before the command's end", self.what);
                    record_fatal(&self.log, message.clone());
                    return Err(std::io::Error::other(message));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        if let Some(tap) = self.tap.as_mut() {
            tap.bytes(&buf[..n]);
        }
        self.progress
            .bytes_read
            .fetch_add(n as u64, Ordering::Relaxed);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

impl Drop for CommandReader {
    fn drop(&mut self) {
        if let Some(tap) = self.tap.as_mut() {
            tap.abandon();
        }
    }
}

/// Runs a short command in the container and returns its output, failing
/// with its error output when it fails.
pub(crate) async fn run(
    engine: &Engine,
    container: &str,
    command: &[String],
    what: &str,
) -> Result<Vec<u8>> {
    let out = engine.exec_collect(container, command, None).await?;
    if out.exit_code != 0 {
        return Err(Error::DumpFailed(format!(
            "{what} in container {container} failed (exit status {}): {}",
            out.exit_code,
            out.stderr.trim().replace('\n', " | ")
        )));
    }
    Ok(out.stdout)
}
