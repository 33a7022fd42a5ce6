//! The snapshots of a repository, as callers see them, and the reading of
//! their files that skips (and names) the ones that cannot be read.

use rustic_core::repofile::SnapshotFile;
use rustic_core::{OpenStatus, Repository, RusticResult};
use serde::Serialize;

use super::settings::one_line;

/// One snapshot, as the caller sees it.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotInfo {
    pub id: String,
    pub short_id: String,
    pub time: String,
    pub hostname: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    pub files: Option<u64>,
    pub bytes: Option<u64>,
    pub description: Option<String>,
    #[serde(skip)]
    pub(crate) file: SnapshotFile,
}

impl SnapshotInfo {
    /// Seconds since the epoch, for ordering.
    pub fn epoch_seconds(&self) -> i64 {
        self.file.time.timestamp().as_second()
    }

    /// The bytes this snapshot added to the repository (after
    /// deduplication and compression), when its summary says.
    pub fn bytes_added(&self) -> Option<u64> {
        self.file.summary.as_ref().map(|s| s.data_added_packed)
    }

    /// A snapshot as the repository lists one, for tests of what picks
    /// among them; `time` as `2026-01-01T00:00:00+00:00[UTC]`.
    #[cfg(test)]
    pub(crate) fn example(id: &str, hostname: &str, tags: &[&str], time: &str) -> Self {
        let file = SnapshotFile {
            time: time.parse().expect("a time"),
            ..Default::default()
        };
        Self {
            id: id.into(),
            short_id: id[..8.min(id.len())].into(),
            time: time.into(),
            hostname: hostname.into(),
            paths: vec![],
            tags: tags.iter().map(|t| (*t).to_string()).collect(),
            files: None,
            bytes: None,
            description: None,
            file,
        }
    }
}

/// The snapshots of a repository, and the files that are not.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SnapshotListing {
    pub snapshots: Vec<SnapshotInfo>,
    pub unreadable: Vec<UnreadableSnapshot>,
}

/// A snapshot file that cannot be read (truncated, damaged, written with
/// another key).
#[derive(Clone, Debug, Serialize)]
pub struct UnreadableSnapshot {
    /// The file's name, the snapshot's full id.
    pub id: String,
    pub reason: String,
}

/// Reads every snapshot file of the repository that can be read, and
/// names those that cannot. The repository library reads them all or
/// fails, whichever one is damaged.
pub(crate) fn readable_snapshots(
    opened: &Repository<OpenStatus>,
) -> RusticResult<(Vec<SnapshotFile>, Vec<UnreadableSnapshot>)> {
    let listed: Vec<rustic_core::repofile::SnapshotId> = opened.list()?.collect();
    let mut files = Vec::with_capacity(listed.len());
    let mut read = std::collections::HashSet::new();
    // Failures carry no name here; they are found below by what is
    // missing.
    for (id, mut file) in opened
        .stream_files_list::<SnapshotFile>(listed.clone())?
        .flatten()
    {
        file.id = id;
        read.insert(id);
        files.push(file);
    }
    let mut unreadable = Vec::new();
    for id in listed.into_iter().filter(|id| !read.contains(id)) {
        let hex = id.to_hex().to_string();
        match opened.get_snapshots(&[hex.as_str()]) {
            Ok(mut again) => files.append(&mut again),
            Err(e) => unreadable.push(UnreadableSnapshot {
                id: hex,
                reason: one_line(&e),
            }),
        }
    }
    Ok((files, unreadable))
}

pub(super) fn snapshot_info(file: SnapshotFile) -> SnapshotInfo {
    // The id's display form is its first eight digits.
    let id = file.id.to_hex().to_string();
    SnapshotInfo {
        short_id: id.chars().take(8).collect(),
        id,
        time: file.time.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        hostname: file.hostname.clone(),
        paths: file.paths.iter().cloned().collect(),
        tags: file.tags.iter().cloned().collect(),
        files: file.summary.as_ref().map(|s| s.total_files_processed),
        bytes: file.summary.as_ref().map(|s| s.total_bytes_processed),
        description: file.description.clone(),
        file,
    }
}
