//! Commands run inside running containers through the exec API, as
//! streams or collected whole.

use std::pin::Pin;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::{Engine, TRANSFER_TIMEOUT};
use crate::error::{Error, Result};

/// A piece of a command's output.
#[derive(Debug)]
pub(crate) enum ExecChunk {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// A command started inside a container.
pub(crate) struct Exec {
    pub(crate) id: String,
    pub(crate) output: Pin<Box<dyn Stream<Item = Result<ExecChunk>> + Send>>,
    /// The command's standard input, when it was asked for.
    pub(crate) input: Option<Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
}

/// Everything a short command printed, and how it ended.
#[derive(Debug)]
pub(crate) struct ExecOutput {
    pub(crate) exit_code: i64,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
}

/// How much of a short command's output is kept; the rest is dropped.
const EXEC_OUTPUT_LIMIT: usize = 16 << 20;

impl Engine {
    /// Starts `cmd` inside a running container, as its default user and
    /// with its environment (which is where database credentials live:
    /// they never pass through lifeboat).
    pub(crate) async fn exec(&self, container: &str, cmd: &[String], stdin: bool) -> Result<Exec> {
        let what = || {
            format!(
                "running {} in container {container}",
                cmd.first().map_or("", |c| c)
            )
        };
        let created = self
            .docker
            .create_exec(
                container,
                ExecConfig {
                    attach_stdin: Some(stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    cmd: Some(cmd.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| Error::engine(what(), e))?;
        let started = self
            .docker
            .clone()
            .with_timeout(TRANSFER_TIMEOUT)
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| Error::engine(what(), e))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(Error::Engine {
                action: what(),
                reason: "the engine did not attach".to_string(),
            });
        };
        let output = output.filter_map(|item| async move {
            match item {
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                    Some(Ok(ExecChunk::Stdout(message)))
                }
                Ok(LogOutput::StdErr { message }) => Some(Ok(ExecChunk::Stderr(message))),
                Ok(LogOutput::StdIn { .. }) => None,
                Err(e) => Some(Err(Error::engine("reading a command's output", e))),
            }
        });
        Ok(Exec {
            id: created.id,
            output: Box::pin(output),
            input: stdin.then_some(input),
        })
    }

    /// The exit code of a finished command, waiting briefly for the engine
    /// to notice the end.
    pub(crate) async fn exec_exit_code(&self, exec_id: &str) -> Result<i64> {
        for _ in 0..200 {
            let inspected = self
                .docker
                .inspect_exec(exec_id)
                .await
                .map_err(|e| Error::engine("inspecting a command", e))?;
            if inspected.running != Some(true) {
                return Ok(inspected.exit_code.unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(Error::Engine {
            action: format!("waiting for command {exec_id}"),
            reason: "still running after its output ended".to_string(),
        })
    }

    /// Runs a short command to the end, feeding it `stdin`, and collects
    /// what it printed.
    pub(crate) async fn exec_collect(
        &self,
        container: &str,
        cmd: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput> {
        let mut exec = self.exec(container, cmd, stdin.is_some()).await?;
        if let (Some(data), Some(mut input)) = (stdin, exec.input.take()) {
            use tokio::io::AsyncWriteExt;
            input
                .write_all(data)
                .await
                .and(input.shutdown().await)
                .map_err(|e| Error::Context {
                    class: crate::error::ErrorClass::Engine,
                    message: format!("writing to a command in {container}: {e}"),
                })?;
        }
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        while let Some(chunk) = exec.output.next().await {
            let (buffer, bytes) = match chunk? {
                ExecChunk::Stdout(b) => (&mut stdout, b),
                ExecChunk::Stderr(b) => (&mut stderr, b),
            };
            let room = EXEC_OUTPUT_LIMIT.saturating_sub(buffer.len());
            buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        Ok(ExecOutput {
            exit_code: self.exec_exit_code(&exec.id).await?,
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Waits until no command given in `commands` runs in the container
    /// (started by a lifeboat that was interrupted), for at most `limit`.
    pub(crate) async fn wait_for_execs(
        &self,
        container: &str,
        commands: &[Vec<String>],
        limit: Duration,
    ) -> Result<()> {
        if commands.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        loop {
            let Some(status) = self.container_status(container).await? else {
                return Ok(());
            };
            let mut busy = false;
            for id in &status.exec_ids {
                let Ok(exec) = self.docker.inspect_exec(id).await else {
                    continue;
                };
                let command: Vec<String> = exec
                    .process_config
                    .map(|p| {
                        p.entrypoint
                            .into_iter()
                            .chain(p.arguments.unwrap_or_default())
                            .collect()
                    })
                    .unwrap_or_default();
                if exec.running == Some(true) && commands.contains(&command) {
                    busy = true;
                }
            }
            if !busy {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(Error::Engine {
                    action: format!("a command lifeboat started in container {container}"),
                    reason: format!("still running after {}s", limit.as_secs()),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
