//! Checking the repository: its structure (index, packs, snapshots,
//! trees) and, when asked, its data, through the repository library's
//! check, which reads the format as restic does.

use std::str::FromStr;
use std::time::Instant;

use rustic_core::repofile::SnapshotFile;
use rustic_core::{CheckOptions, ReadSubsetOption};
use serde::{Deserialize, Serialize};

use super::Repo;
use crate::error::{Error, Result};

/// How much of the data a check reads back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "read", content = "subset")]
pub enum ReadData {
    /// None: the structure only.
    #[default]
    None,
    /// Every pack.
    All,
    /// A part of the packs, as restic's `--read-data-subset` says it:
    /// `10%`, `1/5` (the first of five parts; `n/t` in turn covers all),
    /// or a size such as `2GiB`.
    Subset(String),
}

impl ReadData {
    /// Reads a subset as `--read-data-subset` gives it; a value that does
    /// not parse is an error naming it.
    pub fn subset(text: &str) -> Result<Self> {
        parse_subset(text)?;
        Ok(Self::Subset(text.trim().to_string()))
    }

    fn options(&self) -> Result<CheckOptions> {
        let options = CheckOptions::default();
        Ok(match self {
            Self::None => options,
            Self::All => options.read_data(true),
            // Made without `subset`, a value may not parse: never "all".
            Self::Subset(text) => options
                .read_data(true)
                .read_data_subset(parse_subset(text)?),
        })
    }
}

fn parse_subset(text: &str) -> Result<ReadSubsetOption> {
    ReadSubsetOption::from_str(text.trim()).map_err(|_| {
        Error::BadRequest(format!(
            "invalid subset {text:?}: use a percentage (10%), a part (1/5, the first of five), or a size (2GiB)"
        ))
    })
}

/// What a check found.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    /// When it began.
    pub time: String,
    pub read_data: ReadData,
    /// Problems that make data unreadable or the repository inconsistent.
    pub errors: Vec<String>,
    /// Problems that do not (a pack no index lists, say: a backup running,
    /// or one that was killed).
    pub warnings: Vec<String>,
    pub snapshots: usize,
    pub seconds: f64,
}

impl CheckReport {
    /// Whether the repository is sound.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

impl Repo {
    /// Checks the repository's structure, and its data as `read` says.
    /// Fails only when it cannot check at all; what it finds is in the
    /// report.
    pub(crate) fn check(&self, read: &ReadData) -> Result<CheckReport> {
        let started = Instant::now();
        let time = jiff::Timestamp::now().to_string();
        let opened = self.opened()?;
        let snapshots: Vec<SnapshotFile> =
            opened.get_all_snapshots().map_err(|e| self.error(&e))?;
        let trees = snapshots.iter().map(|s| s.tree).collect();
        let found = opened
            .check_with_trees(read.options()?, trees)
            .map_err(|e| self.error(&e))?;
        let severe = found.is_ok().is_err();
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        // The library names the level's type but does not export it: its
        // variants are told apart by name, an unknown one counting as an
        // error.
        for (level, problem) in found.0 {
            match format!("{level:?}").as_str() {
                "Warn" => warnings.push(problem.to_string()),
                _ => errors.push(problem.to_string()),
            }
        }
        // The library's own verdict wins over the names.
        if severe && errors.is_empty() {
            errors.append(&mut warnings);
        }
        Ok(CheckReport {
            time,
            read_data: read.clone(),
            errors,
            warnings,
            snapshots: snapshots.len(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}
