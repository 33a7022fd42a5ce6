//! The command line: global options and one module per command. Each
//! command's `run` turns its flags into a plain request and hands it to the
//! library; it prints results, never errors (main does that once).

mod audit;
mod backup;
mod init;
mod ls;
mod prune;
mod restore;
mod snapshots;

use std::path::PathBuf;

use crate::output::errln;
use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use lifeboat_core::backup::ReaderChoice;
use lifeboat_core::engine::Engine;
use lifeboat_core::repo::{OpenReport, Repo, RepoSettings};

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
    pub(crate) config: Option<PathBuf>,

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
        recover_first(&self.global).await;
        match self.command {
            Command::Ls(args) => ls::run(&self.global, args).await,
            Command::Audit(args) => audit::run(&self.global, args).await,
            Command::Init(args) => init::run(&self.global, args).await,
            Command::Backup(args) => backup::run(&self.global, args).await,
            Command::Snapshots(args) => snapshots::run(&self.global, args).await,
            Command::Restore(args) => restore::run(&self.global, args).await,
            Command::Prune(args) => prune::run(&self.global, args).await,
        }
    }
}

impl Global {
    pub(crate) fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(lifeboat_core::journal::default_state_dir)
    }

    pub(crate) fn repo_settings(&self) -> RepoSettings {
        let mut settings = RepoSettings::new(
            self.repo.clone(),
            self.password.clone(),
            self.password_file.clone(),
        );
        if let Some(dir) = &self.cache_dir {
            settings.cache_dir.clone_from(dir);
        }
        settings
    }
}

/// Before any command: what a killed lifeboat could not undo is undone
/// (containers it stopped start again, hooks it owed run). Only when a
/// journal waits is the engine contacted.
async fn recover_first(global: &Global) {
    let state_dir = global.state_dir();
    if !lifeboat_core::journal::journals_waiting(&state_dir) {
        return;
    }
    let recovered = match Engine::connect().await {
        Ok(engine) => lifeboat_core::journal::recover(&engine, &state_dir, false).await,
        Err(e) => Err(e),
    };
    match recovered {
        Ok(done) if !done.is_empty() => errln!(
            "lifeboat: finished what a killed lifeboat left undone: {}",
            done.join("; ")
        ),
        Ok(_) => {}
        Err(e) => errln!("lifeboat: could not finish what a killed lifeboat left undone: {e}"),
    }
}

/// After SIGINT or SIGTERM: undoes what this run did (containers start
/// again, owed hooks run). The caller returns at once with the exit code,
/// dropping the work it abandons (which releases the repository lock).
pub(crate) async fn give_up(engine: &Engine, global: &Global, signal: &str) -> u8 {
    errln!("lifeboat: {signal}: undoing what this run changed");
    // Helper containers of the abandoned work would keep their volumes in
    // use (`docker volume rm` refuses) until the next lifeboat command.
    if let Err(e) = engine.remove_own_helpers().await {
        errln!("lifeboat: {e}");
    }
    match lifeboat_core::journal::recover(engine, &global.state_dir(), true).await {
        Ok(done) if !done.is_empty() => errln!("lifeboat: {}", done.join("; ")),
        Ok(_) => {}
        Err(e) => errln!("lifeboat: {e}"),
    }
    crate::exit::INTERRUPTED
}

/// Waits for SIGINT or SIGTERM and names it.
pub(crate) async fn interrupted() -> &'static str {
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

/// Connects to the engine, removing helper containers a killed lifeboat
/// left there.
pub(crate) async fn connect() -> anyhow::Result<Engine> {
    let engine = Engine::connect().await?;
    match engine.remove_stale_helpers().await {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} helper container(s) left by a killed lifeboat"),
        Err(e) => tracing::warn!("could not check for leftover helper containers: {e}"),
    }
    Ok(engine)
}

/// Opens the repository on a blocking thread.
pub(crate) async fn open_repo(settings: RepoSettings) -> anyhow::Result<Repo> {
    let location = settings.shown_location();
    tokio::task::spawn_blocking(move || Repo::open(&settings))
        .await
        .context("opening the repository")?
        .with_context(|| format!("opening repository {location}"))
}

/// Opens the repository, creating lifeboat's default one on first use, and
/// announces a generated password where nobody can miss it.
pub(crate) async fn open_or_create_repo(settings: RepoSettings) -> anyhow::Result<Repo> {
    let (repo, report) =
        tokio::task::spawn_blocking(move || Repo::open_or_create_default(&settings))
            .await
            .context("opening the repository")??;
    announce(&repo, &report);
    Ok(repo)
}

/// Starts opening an existing repository on a blocking thread, so that
/// deriving its key from the password (scrypt, tens of milliseconds) runs
/// while the engine is asked what there is to do; nothing is created.
pub(crate) fn start_opening(
    settings: RepoSettings,
) -> tokio::task::JoinHandle<lifeboat_core::Result<Repo>> {
    tokio::task::spawn_blocking(move || Repo::open(&settings))
}

/// Finishes what [`start_opening`] began: a repository that did not exist
/// is created now when it is lifeboat's default one, as
/// [`open_or_create_repo`] does.
pub(crate) async fn finish_opening(
    opening: tokio::task::JoinHandle<lifeboat_core::Result<Repo>>,
    settings: RepoSettings,
) -> anyhow::Result<Repo> {
    match opening.await.context("opening the repository")? {
        Err(lifeboat_core::Error::RepositoryMissing { .. }) => open_or_create_repo(settings).await,
        opened => Ok(opened?),
    }
}

pub(crate) fn announce(repo: &Repo, report: &OpenReport) {
    if report.created {
        errln!("lifeboat: created repository {}", repo.location());
    }
    if let Some(file) = &report.generated_password_file {
        crate::output::loud_password_notice(file);
    }
}
