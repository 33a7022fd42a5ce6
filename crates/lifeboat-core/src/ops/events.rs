//! What an operation tells its caller while it runs: progress to show,
//! each target's result the moment it is known, what was done on the way.
//! The command line prints these; a daemon will log them and feed its
//! metrics from them.

use std::path::Path;
use std::sync::Arc;

use crate::backup::TargetBackup;
use crate::error::Error;
use crate::progress::TransferProgress;
use crate::repo::SnapshotInfo;

/// Receives an operation's events. Called from the operation's task:
/// keep it quick.
pub trait Events: Send + Sync {
    fn event(&self, event: Event<'_>);
}

/// Something an operation did or is doing.
#[derive(Debug)]
pub enum Event<'a> {
    /// Before this run, what a killed lifeboat could not undo was undone:
    /// containers it stopped started again, hooks it owed ran.
    Recovered {
        done: &'a [String],
    },
    /// That recovery failed; the run goes on.
    RecoveryFailed {
        error: &'a Error,
    },
    /// lifeboat's default repository did not exist and was created.
    RepositoryCreated {
        location: &'a str,
    },
    /// A password was generated for it, into this file: the one copy
    /// there is, to be kept safe elsewhere too.
    PasswordGenerated {
        file: &'a Path,
    },
    /// The repository is not on this host's file system, so it is not
    /// locked against other programs while lifeboat writes to it.
    RepositoryUnlocked {
        location: &'a str,
    },
    /// Work whose progress can be shown begins (`volume pgdata`,
    /// `restoring`); it lasts until [`Event::WorkEnded`].
    WorkStarted {
        what: &'a str,
        progress: &'a Arc<TransferProgress>,
    },
    WorkEnded,
    /// One target of a backup is done, snapshot or failure.
    TargetBackedUp(&'a TargetBackup),
    /// What a forced restore overwrites was saved in this snapshot.
    PreviousSaved(&'a SnapshotInfo),
    /// After a stop was asked for, what this run changed was undone.
    Undone {
        done: &'a [String],
    },
    /// Undoing it failed in part.
    UndoFailed {
        error: &'a Error,
    },
    /// The operation waits for someone else (a lock), and why.
    Waiting {
        why: &'a str,
    },
}

/// Events nobody listens to.
pub struct Silent;

impl Events for Silent {
    fn event(&self, _: Event<'_>) {}
}
