//! What lifeboat does with one database engine, behind one interface: dump
//! it, clean up after the dump, tell whether a container holds data,
//! restore into it, and bring a new server up on a volume. Each engine's
//! module implements it; `Database::tools` (in `engines.rs`) is the one
//! place that picks the implementation, so a new engine is one new module.

use futures_util::future::BoxFuture;

use super::{DumpFiles, DumpFrom, DumpManifest, DumpOpen, RestoredDatabase};
use crate::engine::Engine;
use crate::error::Result;
use crate::journal::Journal;
use crate::progress::TransferProgress;
use crate::repo::source::SharedLog;

/// Where a dump is taken, and what it reports to.
pub(crate) struct DumpContext<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) from: &'a DumpFrom,
    pub(crate) log: &'a SharedLog,
    pub(crate) progress: &'a std::sync::Arc<TransferProgress>,
    pub(crate) journal: &'a mut Journal,
}

/// A dump ready to be archived: its files (commands that run when the
/// archiver reads them), and what to do once it has.
pub(crate) struct Prepared {
    pub(crate) files: Vec<(String, DumpOpen)>,
    pub(crate) after: Option<Box<dyn AfterDump>>,
}

/// Clean-up owed once a dump is archived, or failed to be: transactions
/// to end, a pinned file to remove.
pub(crate) trait AfterDump: Send {
    fn run<'a>(self: Box<Self>, engine: &'a Engine, journal: &'a mut Journal) -> BoxFuture<'a, ()>;
}

/// Where a dump is restored.
pub(crate) struct RestoreContext<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) container: &'a str,
    /// The container goes when it stops (`--rm`).
    pub(crate) auto_remove: bool,
    pub(crate) manifest: &'a DumpManifest,
    pub(crate) files: &'a DumpFiles,
    /// Only this database.
    pub(crate) only: Option<&'a str>,
    /// A server lifeboat brought up for the restore, holding nothing yet.
    pub(crate) fresh: bool,
    pub(crate) journal: &'a mut Journal,
}

/// How a temporary server of the database's image is started on a new
/// volume, and how to know it is up.
pub(crate) struct ServerStart {
    pub(crate) env: Vec<String>,
    pub(crate) args: Vec<String>,
    /// The names the real server's process has (not the init script's).
    pub(crate) processes: &'static [&'static str],
    /// A shell command that succeeds once it accepts connections.
    pub(crate) ready: &'static str,
    /// A shell command that succeeds once it accepts connections over TCP
    /// on the container's loopback: only the real server does, since the
    /// images' init scripts run their temporary server without networking.
    /// This tells it ready however the image starts it (as PID 1, under
    /// tini, or as the child of an `su` or `gosu` wrapper).
    pub(crate) ready_tcp: &'static str,
}

/// One database engine's tools.
pub(crate) trait DatabaseTools: Sync {
    /// Why one of the dump's databases cannot be restored alone, for an
    /// engine whose dump holds them all in one piece.
    fn whole_dump_only(&self) -> Option<&'static str> {
        None
    }

    /// Prepares a dump of the container's database.
    fn prepare<'a>(&'a self, dump: DumpContext<'a>) -> BoxFuture<'a, Result<Prepared>>;

    /// What the container holds that restoring the dump would replace, in
    /// words (`database shop`, `2104 keys`); empty when nothing.
    fn holds<'a>(
        &'a self,
        engine: &'a Engine,
        container: &'a str,
        manifest: &'a DumpManifest,
    ) -> BoxFuture<'a, Result<Vec<String>>>;

    /// Restores the dump and checks what it restored against what the
    /// manifest recorded.
    fn restore_into<'a>(
        &'a self,
        restore: RestoreContext<'a>,
    ) -> BoxFuture<'a, Result<Vec<RestoredDatabase>>>;

    /// How a new server starts with the settings the manifest recorded
    /// and `password` for its administrator.
    fn server_start(&self, manifest: &DumpManifest, password: &str) -> ServerStart;
}
