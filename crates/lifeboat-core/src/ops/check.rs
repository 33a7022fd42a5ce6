//! Checking the repository, and keeping the time and result of the last
//! check of each repository in the state directory (for the daemon's
//! metrics).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::session::Session;
use crate::error::{Error, Result};
use crate::repo::{CheckReport, ReadData};

/// The file, in the state directory, that keeps the last checks.
const CHECKS_FILE: &str = "checks.json";

/// The last check of one repository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastCheck {
    pub time: String,
    pub ok: bool,
    pub errors: usize,
    pub warnings: usize,
    pub read_data: ReadData,
    pub seconds: f64,
}

/// Checks the repository's structure, and its data as `read_data` says,
/// and records the result. Fails only when it cannot check at all (no
/// repository, locked, wrong password); what it finds is in the report.
pub async fn check(session: &Session, read_data: &ReadData) -> Result<CheckReport> {
    let repo = session.repo().await?.clone();
    let location = repo.location();
    let read = read_data.clone();
    let report = Session::blocking(move || repo.check(&read)).await?;
    let last = LastCheck {
        time: report.time.clone(),
        ok: report.ok(),
        errors: report.errors.len(),
        warnings: report.warnings.len(),
        read_data: report.read_data.clone(),
        seconds: report.seconds,
    };
    // The check is done whether or not it can be recorded.
    if let Err(e) = record(session.state_dir(), &location, last) {
        tracing::warn!("could not record the check: {e}");
    }
    Ok(report)
}

/// The last check of each repository, by location, as recorded in
/// `state_dir`: empty when none was.
pub fn last_checks(state_dir: &Path) -> Result<BTreeMap<String, LastCheck>> {
    let path = state_dir.join(CHECKS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::BadRequest(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Adds `last` to the recorded checks. Two checks recording at once take
/// turns; a file that cannot be read is kept aside, not overwritten.
fn record(state_dir: &Path, location: &str, last: LastCheck) -> Result<PathBuf> {
    std::fs::create_dir_all(state_dir).map_err(|e| Error::io(state_dir, e))?;
    let guard = state_dir.join("checks.lock");
    let turn = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&guard)
        .map_err(|e| Error::io(&guard, e))?;
    turn.lock().map_err(|e| Error::io(&guard, e))?;
    let mut checks = match last_checks(state_dir) {
        Ok(checks) => checks,
        Err(e) => {
            let aside = state_dir.join(format!("{CHECKS_FILE}.unreadable"));
            tracing::warn!("{e}; kept aside as {}", aside.display());
            std::fs::rename(state_dir.join(CHECKS_FILE), &aside)
                .map_err(|e| Error::io(&aside, e))?;
            BTreeMap::new()
        }
    };
    checks.insert(location.to_string(), last);
    let path = state_dir.join(CHECKS_FILE);
    crate::journal::save_json(state_dir, &path, &checks)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_recorded_per_repository_and_read_back() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        assert!(last_checks(dir.path())?.is_empty());
        let check = |ok: bool, read_data: ReadData| LastCheck {
            time: "2026-12-07T05:00:00Z".into(),
            ok,
            errors: usize::from(!ok),
            warnings: 0,
            read_data,
            seconds: 1.5,
        };
        record(dir.path(), "/srv/a", check(true, ReadData::None))?;
        record(dir.path(), "/srv/b", check(false, ReadData::All))?;
        record(
            dir.path(),
            "/srv/a",
            check(true, ReadData::Subset("10%".into())),
        )?;
        let checks = last_checks(dir.path())?;
        assert_eq!(checks.len(), 2);
        assert_eq!(
            checks["/srv/a"],
            check(true, ReadData::Subset("10%".into()))
        );
        assert!(!checks["/srv/b"].ok);
        std::fs::write(dir.path().join(CHECKS_FILE), b"{").map_err(|e| Error::io("checks", e))?;
        assert!(last_checks(dir.path()).is_err());
        // Recording again keeps the unreadable file aside.
        record(dir.path(), "/srv/c", check(true, ReadData::All))?;
        assert_eq!(last_checks(dir.path())?.len(), 1);
        let aside = std::fs::read(dir.path().join("checks.json.unreadable"))
            .map_err(|e| Error::io("aside", e))?;
        assert_eq!(aside, b"{");
        Ok(())
    }
}
