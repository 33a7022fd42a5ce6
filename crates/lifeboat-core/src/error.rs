//! The one error type of the library.
//!
//! Every message names the volume, container, path or repository involved,
//! so that the binary can print it once and stop. [`Error::class`] tells the
//! binary which documented exit code a failure maps to.

use std::path::PathBuf;

/// Result type of the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is: the command line maps it to an
/// exit code, reports carry it for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// The Docker engine could not be reached at all.
    EngineUnreachable,
    /// The repository does not exist (not initialised).
    RepositoryMissing,
    /// The password does not open the repository.
    WrongPassword,
    /// Another process holds a lock that excludes this operation.
    RepositoryLocked,
    /// The request itself is wrong: bad values, missing or conflicting
    /// arguments.
    BadRequest,
    /// What the request names does not exist: a volume, a snapshot, a
    /// container, a database in a dump.
    NotFound,
    /// Refused as unsafe: the target holds data or is in use, the path is
    /// the engine's own, ...; nothing was changed.
    Refused,
    /// A database's own dump or restore tool failed.
    DumpFailed,
    /// Reading or writing files failed; the message names the path.
    Io,
    /// The engine answered with an error.
    Engine,
    /// What was restored does not match the snapshot.
    Mismatch,
    /// Stopped on request (SIGINT, SIGTERM); what the work changed was
    /// undone.
    Interrupted,
    /// Anything else.
    Other,
}

/// An error of the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot reach the Docker engine at {host}: {reason} (set DOCKER_HOST to point lifeboat at another engine)"
    )]
    EngineUnreachable { host: String, reason: String },

    #[error("Docker engine: {action}: {reason}")]
    Engine { action: String, reason: String },

    #[error("no volume or bind mount named {0:?} on this engine (see `lifeboat ls`)")]
    UnknownTarget(String),

    #[error("no repository at {location}: create it with `lifeboat init`")]
    RepositoryMissing { location: String },

    #[error(
        "the password does not open the repository at {location} (check LIFEBOAT_PASSWORD / LIFEBOAT_PASSWORD_FILE)"
    )]
    WrongPassword { location: String },

    #[error("no password for the repository at {location}: set LIFEBOAT_PASSWORD or LIFEBOAT_PASSWORD_FILE (expected a password file at {expected})", expected = .expected.display())]
    NoPassword { location: String, expected: PathBuf },

    #[error("the password file {} does not exist (named by --password-file or LIFEBOAT_PASSWORD_FILE)", .path.display())]
    PasswordFileMissing { path: PathBuf },

    #[error("the password file {} holds no password", .path.display())]
    PasswordFileEmpty { path: PathBuf },

    #[error("the repository at {location} is locked: {holder}")]
    RepositoryLocked { location: String, holder: String },

    #[error("repository {location}: {message}")]
    Repository { location: String, message: String },

    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    BadRequest(String),

    #[error("{0}")]
    NotFound(String),

    #[error("{0}")]
    Refused(String),

    #[error("{0}")]
    DumpFailed(String),

    /// Files that could not be read, named in the message.
    #[error("{0}")]
    ReadFailed(String),

    /// Writing to or reading from the repository's storage failed.
    #[error("{0}")]
    Storage(String),

    /// What was restored does not match the snapshot, as read back.
    #[error("{0}")]
    Mismatch(String),

    #[error("{0}")]
    Interrupted(String),

    /// An error of another class, with more said about it: see
    /// [`Error::context`].
    #[error("{message}")]
    Context { class: ErrorClass, message: String },

    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The class of this error, which decides the exit code.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::EngineUnreachable { .. } => ErrorClass::EngineUnreachable,
            Self::RepositoryMissing { .. } => ErrorClass::RepositoryMissing,
            Self::WrongPassword { .. }
            | Self::NoPassword { .. }
            | Self::PasswordFileMissing { .. }
            | Self::PasswordFileEmpty { .. } => ErrorClass::WrongPassword,
            Self::RepositoryLocked { .. } => ErrorClass::RepositoryLocked,
            Self::BadRequest(_) => ErrorClass::BadRequest,
            Self::UnknownTarget(_) | Self::NotFound(_) => ErrorClass::NotFound,
            Self::Refused(_) => ErrorClass::Refused,
            Self::DumpFailed(_) => ErrorClass::DumpFailed,
            Self::Io { .. } | Self::ReadFailed(_) | Self::Storage(_) => ErrorClass::Io,
            Self::Engine { .. } => ErrorClass::Engine,
            Self::Mismatch(_) => ErrorClass::Mismatch,
            Self::Context { class, .. } => *class,
            Self::Interrupted(_) => ErrorClass::Interrupted,
            Self::Repository { .. } | Self::Other(_) => ErrorClass::Other,
        }
    }

    /// This error with more said about it (what was or was not undone,
    /// where the old data is), keeping its class: `say` gets its message.
    /// An interruption said more about is no longer one: "interrupted"
    /// promises that what the work changed was undone, and what is said
    /// here is what was not.
    pub(crate) fn context(self, say: impl FnOnce(String) -> String) -> Self {
        let class = match self.class() {
            ErrorClass::Interrupted => ErrorClass::Other,
            class => class,
        };
        Self::Context {
            class,
            message: say(self.to_string()),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
