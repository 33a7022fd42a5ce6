//! The operations a user can ask for, one file each: a request in, a
//! report out, and events on the way (progress, each target's result).
//! Every front end runs them the same way: the command line maps flags to
//! a request and the report to output and an exit code; a daemon will map
//! them to schedules, HTTP and metrics.
//!
//! A [`Session`] holds what they share: the engine connection, the
//! repository (opened once, when needed), the state directory, the
//! configuration, and cancellation. Blocking work runs on blocking threads
//! inside the library: an operation is a plain future.

pub mod audit;
pub mod backup;
pub mod check;
mod events;
pub mod forget;
pub mod init;
pub mod inventory;
pub mod restore;
mod session;
pub mod snapshots;
pub mod volume_prune;

pub use events::{Event, Events, Silent};
pub use session::{RepoSnapshots, Session, SessionOptions};
