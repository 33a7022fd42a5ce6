//! What every operation needs, opened once per run and only when needed:
//! the engine connection, the repository, the state directory, the
//! configuration, and the word to stop.
//!
//! A session begins by undoing what a killed lifeboat could not (the
//! journal's recovery), before any operation touches a container. The
//! repository's key is derived from its password (scrypt, tens of
//! milliseconds) on a blocking thread that an operation starts early, so
//! that it overlaps the questions asked of the engine.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use super::events::{Event, Events};
use crate::cancel::Cancel;
use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::repo::{Repo, RepoSettings, SnapshotInfo};

/// Where a session finds what it opens.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub repo: RepoSettings,
    /// Where the journal of stopped containers lives.
    pub state_dir: PathBuf,
    /// The configuration file; `None` takes the default one when it
    /// exists.
    pub config_file: Option<PathBuf>,
}

/// The repository's snapshots, or why there are none to read.
#[derive(Debug)]
pub enum RepoSnapshots {
    Listed(Vec<SnapshotInfo>),
    /// There is no repository at the location: nothing was backed up
    /// there.
    Missing {
        location: String,
    },
    /// There is one, but it cannot be read (password, lock, damage).
    Unreadable {
        location: String,
        error: Error,
    },
}

/// What the operations of one run share.
pub struct Session {
    options: SessionOptions,
    events: Arc<dyn Events>,
    engine: OnceCell<Engine>,
    repo: OnceCell<Repo>,
    /// An opening of the existing repository started ahead of need.
    opening: Mutex<Option<JoinHandle<Result<Repo>>>>,
    cancel: Cancel,
}

impl Session {
    /// Begins a session: first, what a killed lifeboat left undone is
    /// finished (containers it stopped start again, hooks it owed run).
    /// Only when a journal waits is the engine contacted.
    pub async fn begin(options: SessionOptions, events: Arc<dyn Events>) -> Self {
        let session = Self {
            options,
            events,
            engine: OnceCell::new(),
            repo: OnceCell::new(),
            opening: Mutex::new(None),
            cancel: Cancel::default(),
        };
        if crate::journal::journals_waiting(&session.options.state_dir) {
            let recovered = match session.engine().await {
                Ok(engine) => {
                    crate::journal::recover(engine, &session.options.state_dir, false).await
                }
                Err(e) => Err(e),
            };
            match recovered {
                Ok(done) if !done.is_empty() => session.emit(Event::Recovered { done: &done }),
                Ok(_) => {}
                Err(error) => session.emit(Event::RecoveryFailed { error: &error }),
            }
        }
        session
    }

    pub(crate) fn emit(&self, event: Event<'_>) {
        self.events.event(event);
    }

    pub(crate) fn events(&self) -> Arc<dyn Events> {
        self.events.clone()
    }

    pub fn state_dir(&self) -> &Path {
        &self.options.state_dir
    }

    pub fn repo_settings(&self) -> &RepoSettings {
        &self.options.repo
    }

    /// The configuration file's settings (defaults without one).
    pub fn config(&self) -> Result<Config> {
        Config::find(self.options.config_file.as_deref())
    }

    /// The engine, connected on first use; helper containers a killed
    /// lifeboat left there are removed then.
    pub async fn engine(&self) -> Result<&Engine> {
        self.engine
            .get_or_try_init(|| async {
                let engine = Engine::connect().await?;
                match engine.remove_stale_helpers().await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!("removed {n} helper container(s) left by a killed lifeboat");
                    }
                    Err(e) => tracing::warn!("could not check for leftover helper containers: {e}"),
                }
                Ok(engine)
            })
            .await
    }

    /// Starts opening the existing repository on a blocking thread, for
    /// [`Session::repo`] or [`Session::repo_or_default`] to finish.
    pub(crate) fn start_opening(&self) {
        if self.repo.initialized() {
            return;
        }
        if let Ok(mut opening) = self.opening.lock()
            && opening.is_none()
        {
            let settings = self.options.repo.clone();
            *opening = Some(tokio::task::spawn_blocking(move || Repo::open(&settings)));
        }
    }

    async fn finish_opening(&self) -> Result<Repo> {
        let started = self.opening.lock().ok().and_then(|mut o| o.take());
        let opening = match started {
            Some(opening) => opening,
            None => {
                let settings = self.options.repo.clone();
                tokio::task::spawn_blocking(move || Repo::open(&settings))
            }
        };
        opening
            .await
            .map_err(|e| Error::Other(format!("opening the repository stopped: {e}")))?
    }

    /// The repository, which must exist.
    pub async fn repo(&self) -> Result<&Repo> {
        self.repo.get_or_try_init(|| self.finish_opening()).await
    }

    /// The repository; lifeboat's default one is created on first use,
    /// and a password generated for it is announced.
    pub async fn repo_or_default(&self) -> Result<&Repo> {
        self.repo
            .get_or_try_init(|| async {
                let repo = match self.finish_opening().await {
                    Err(Error::RepositoryMissing { .. }) => {
                        let settings = self.options.repo.clone();
                        let (repo, report) = tokio::task::spawn_blocking(move || {
                            Repo::open_or_create_default(&settings)
                        })
                        .await
                        .map_err(|e| {
                            Error::Other(format!("opening the repository stopped: {e}"))
                        })??;
                        if report.created {
                            self.emit(Event::RepositoryCreated {
                                location: &repo.location(),
                            });
                        }
                        if let Some(file) = &report.generated_password_file {
                            self.emit(Event::PasswordGenerated { file });
                        }
                        repo
                    }
                    opened => opened?,
                };
                Ok(repo)
            })
            .await
    }

    /// Runs blocking repository work off the async threads.
    pub(crate) async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::Other(format!("a repository task stopped: {e}")))?
    }

    /// The snapshots of the repository, which must exist. Opened only for
    /// this (an operation that only lists), the repository is closed
    /// again at once: its lock is not held while the caller prints.
    pub async fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let repo = match self.repo.get() {
            Some(repo) => repo.clone(),
            None => self.finish_opening().await?,
        };
        Self::blocking(move || repo.snapshots()).await
    }

    /// The snapshots, or why there are none to read: what an operation
    /// that only looks at backups (the inventory, the audit) goes on with.
    pub async fn snapshots_if_any(&self) -> RepoSnapshots {
        let location = self.options.repo.shown_location();
        match self.options.repo.exists() {
            Ok(false) => RepoSnapshots::Missing { location },
            Ok(true) => match self.snapshots().await {
                Ok(list) => RepoSnapshots::Listed(list),
                Err(error) => RepoSnapshots::Unreadable { location, error },
            },
            Err(error) => RepoSnapshots::Unreadable { location, error },
        }
    }

    /// Asks the running operation to stop: it undoes what it changed
    /// before it returns ([`Error::Interrupted`]).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// What blocking work polls to see a stop asked for.
    pub(crate) fn cancellation(&self) -> Cancel {
        self.cancel.clone()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Returns once [`Session::cancel`] was called.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// Fails when a stop was asked for: checked between the steps that
    /// prepare an operation, before it changes anything.
    pub(crate) fn go_on(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(stopped_early());
        }
        Ok(())
    }

    /// Runs a step that only reads (the engine's inventory), dropped at
    /// once when a stop is asked for.
    pub(crate) async fn reading<T>(
        &self,
        step: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::select! {
            biased;
            () = self.cancelled() => Err(stopped_early()),
            done = step => done,
        }
    }

    /// After a stop: undoes what this run changed (the containers it
    /// stopped start again, the hooks it owes run) and removes its helper
    /// containers, which would keep their volumes in use.
    pub(crate) async fn undo(&self) {
        let Some(engine) = self.engine.get() else {
            return;
        };
        if let Err(error) = engine.remove_own_helpers().await {
            self.emit(Event::UndoFailed { error: &error });
        }
        match crate::journal::recover(engine, &self.options.state_dir, true).await {
            Ok(done) if !done.is_empty() => self.emit(Event::Undone { done: &done }),
            Ok(_) => {}
            Err(error) => self.emit(Event::UndoFailed { error: &error }),
        }
    }

    /// Leaving at once: the operation is dropped where it stands, and
    /// its progress ends.
    pub fn abandon(&self) {
        self.emit(Event::WorkEnded);
    }

    /// Removes the helper containers of an abandoned operation, which
    /// would keep their volumes in use.
    pub async fn remove_helpers(&self) -> Result<()> {
        if let Some(engine) = self.engine.get() {
            engine.remove_own_helpers().await?;
        }
        Ok(())
    }
}

fn stopped_early() -> Error {
    Error::Interrupted("stopped before any volume or container was touched".into())
}
