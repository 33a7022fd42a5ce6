//! The one error type of the library.
//!
//! Every message names the volume, container, path or repository involved,
//! so that the binary can print it once and stop. [`Error::class`] tells the
//! binary which documented exit code a failure maps to.

use std::path::PathBuf;

/// Result type of the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is, for exit codes and scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The Docker engine could not be reached at all.
    EngineUnreachable,
    /// The repository does not exist (not initialised).
    RepositoryMissing,
    /// The password does not open the repository.
    WrongPassword,
    /// Another process holds a lock that excludes this operation.
    RepositoryLocked,
    /// The request itself is wrong: unknown volume, non-empty target, ...
    BadRequest,
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
    Interrupted(String),

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
            Self::UnknownTarget(_) | Self::BadRequest(_) => ErrorClass::BadRequest,
            Self::Interrupted(_) => ErrorClass::Interrupted,
            Self::Engine { .. } | Self::Repository { .. } | Self::Io { .. } | Self::Other(_) => {
                ErrorClass::Other
            }
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
