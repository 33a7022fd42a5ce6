//! The command line: global options and one module per command. Each
//! command's `run` turns its flags into a plain request, hands it to one
//! operation of the library in the run's session, and prints the report;
//! it never prints errors (main does that once).

mod audit;
mod backup;
mod check;
mod forget;
mod init;
mod ls;
mod prune;
mod restore;
mod snapshots;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use lifeboat_core::backup::ReaderChoice;
use lifeboat_core::ops::{Session, SessionOptions};
use lifeboat_core::repo::RepoSettings;

use crate::events::Reporter;
use crate::output::errln;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure
  2  usage error: bad flags, unknown volume, target not empty, ...
  3  partial: some volumes failed, others succeeded
  4  the Docker engine cannot be reached
  5  no repository at the given location (run `lifeboat init`)
  6  wrong or missing repository password
  7  the repository is locked by another process
  8  audit: a finding at or above --fail-on
  130 interrupted (SIGINT/SIGTERM); stopped containers were started again

Environment:
  DOCKER_HOST              the engine to use (default unix:///var/run/docker.sock)
  LIFEBOAT_REPO            the repository (default /var/lib/lifeboat/repo as root)
  LIFEBOAT_PASSWORD        the repository password
  LIFEBOAT_PASSWORD_FILE   a file holding it (default /etc/lifeboat/password as root)
  LIFEBOAT_CACHE_DIR       the repository cache (default /var/cache/lifeboat as root)";

/// Back up, restore and inventory the data of a Docker host.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version, about, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The repository: a directory, or a backend URL such as opendal:s3.
    #[arg(long, global = true, env = "LIFEBOAT_REPO", value_name = "REPO")]
    repo: Option<String>,

    /// A file holding the repository password.
    #[arg(
        long,
        global = true,
        env = "LIFEBOAT_PASSWORD_FILE",
        value_name = "FILE"
    )]
    password_file: Option<PathBuf>,

    /// The repository password (prefer the file: arguments are visible to
    /// every user of the host).
    #[arg(
        long,
        global = true,
        env = "LIFEBOAT_PASSWORD",
        hide_env_values = true,
        hide = true
    )]
    password: Option<String>,

    /// The configuration file (default: lifeboat.toml in lifeboat's
    /// configuration directory, /etc/lifeboat as root, when it exists).
    #[arg(long, global = true, env = "LIFEBOAT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Where lifeboat caches what it read from repositories, one
    /// directory per repository (default: /var/cache/lifeboat as root).
    #[arg(long, global = true, env = "LIFEBOAT_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Where lifeboat keeps its journal of containers it stopped (default:
    /// its data directory, /var/lib/lifeboat as root).
    #[arg(long, global = true, env = "LIFEBOAT_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// Log more (warnings are always shown; -vv progress notes, -vvv
    /// debugging). No level prints credentials.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every volume, bind mount and tmpfs mount of the engine.
    Ls(ls::LsArgs),
    /// Find persistence mistakes on the engine or in a compose file.
    Audit(audit::AuditArgs),
    /// Create a repository.
    Init(init::InitArgs),
    /// Back up volumes and bind mounts, one snapshot each.
    Backup(backup::BackupArgs),
    /// List the snapshots in the repository.
    Snapshots(snapshots::SnapshotsArgs),
    /// Restore a snapshot into a volume or directory.
    Restore(restore::RestoreArgs),
    /// Remove unused volumes whose data a snapshot holds (a dry run
    /// without --yes).
    Prune(prune::PruneArgs),
    /// Remove the snapshots each target's keep rules do not keep, never
    /// its newest.
    Forget(forget::ForgetArgs),
    /// Check the repository's structure, and its data when asked.
    Check(check::CheckArgs),
}

/// How to read or write a volume's files.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub(crate) enum Via {
    /// The host path when lifeboat can use it, the engine otherwise.
    #[default]
    Auto,
    /// The volume's directory on this host.
    Host,
    /// The engine's archive API, through a never-started helper container.
    Engine,
}

impl From<Via> for ReaderChoice {
    fn from(v: Via) -> Self {
        match v {
            Via::Auto => Self::Auto,
            Via::Host => Self::Host,
            Via::Engine => Self::Engine,
        }
    }
}

impl Cli {
    pub(crate) async fn run(self) -> anyhow::Result<u8> {
        let events = Arc::new(Reporter::new(self.global.json));
        let session = Session::begin(self.global.session_options(), events).await;
        let (global, session) = (&self.global, &session);
        match self.command {
            Command::Ls(args) => ls::run(session, global, args).await,
            Command::Audit(args) => audit::run(session, global, args).await,
            Command::Init(args) => init::run(session, global, args).await,
            Command::Backup(args) => backup::run(session, global, args).await,
            Command::Snapshots(args) => snapshots::run(session, global, args).await,
            Command::Restore(args) => restore::run(session, global, args).await,
            Command::Prune(args) => prune::run(session, global, args).await,
            Command::Forget(args) => forget::run(session, global, args).await,
            Command::Check(args) => check::run(session, global, args).await,
        }
    }
}

impl Global {
    fn session_options(&self) -> SessionOptions {
        let mut repo = RepoSettings::new(
            self.repo.clone(),
            self.password.clone(),
            self.password_file.clone(),
        );
        if let Some(dir) = &self.cache_dir {
            repo.cache_dir.clone_from(dir);
        }
        SessionOptions {
            repo,
            state_dir: self
                .state_dir
                .clone()
                .unwrap_or_else(lifeboat_core::journal::default_state_dir),
            config_file: self.config.clone(),
        }
    }
}

/// What a second SIGINT or SIGTERM does while an operation stops.
pub(crate) enum SecondSignal {
    /// Nothing: the operation is putting back what it changed and must
    /// finish that.
    Wait,
    /// Leave at once, printing this; the operation is dropped where it
    /// stands.
    Leave(&'static str),
}

/// Runs an operation that SIGINT and SIGTERM stop: the first signal,
/// announced with `stopping`, asks it to stop (it undoes what it changed
/// and ends as interrupted); what a second does, `second` says. `None`
/// when lifeboat left without waiting for the operation.
pub(crate) async fn stoppable<T>(
    session: &Session,
    operation: impl std::future::Future<Output = T>,
    stopping: &str,
    second: SecondSignal,
) -> Option<T> {
    tokio::pin!(operation);
    tokio::select! {
        done = &mut operation => return Some(done),
        signal = interrupted() => {
            errln!("lifeboat: {signal}: {stopping}");
            session.cancel();
        }
    }
    let SecondSignal::Leave(leaving) = second else {
        return Some(operation.await);
    };
    tokio::select! {
        done = &mut operation => Some(done),
        signal = interrupted() => {
            session.abandon();
            errln!("lifeboat: {signal} again: {leaving}");
            if let Err(e) = session.remove_helpers().await {
                errln!("lifeboat: {e}");
            }
            None
        }
    }
}

/// Waits for SIGINT or SIGTERM and names it.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "interrupted",
            _ = term.recv() => "terminated",
        },
        // Without signal handlers, never: the default action applies.
        _ => std::future::pending().await,
    }
}
