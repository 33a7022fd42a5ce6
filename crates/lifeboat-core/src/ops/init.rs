//! Creating a repository.

use std::path::PathBuf;

use serde::Serialize;

use super::session::Session;
use crate::error::Result;
use crate::repo::Repo;

/// What creating the repository did.
#[derive(Clone, Debug, Serialize)]
pub struct InitReport {
    pub created: bool,
    /// Where a password generated for it was written: the one copy there
    /// is, to be kept safe elsewhere too.
    pub generated_password_file: Option<PathBuf>,
    pub repository: String,
}

/// Creates the session's repository with blobs compressed at
/// `compression` (zstd level; 0 stores them uncompressed).
pub async fn init(session: &Session, compression: i32) -> Result<InitReport> {
    let settings = session.repo_settings().clone();
    let (repo, report) = Session::blocking(move || Repo::init_with(&settings, compression)).await?;
    Ok(InitReport {
        created: report.created,
        generated_password_file: report.generated_password_file,
        repository: repo.location(),
    })
}
