//! A repository opened for reading content: snapshot trees walked and
//! checked before anything is written, file content read blob by blob.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustic_core::repofile::{Node, NodeType};
use rustic_core::{Id, IndexedFullStatus, LsOptions, Repository, RusticError};
use serde::Serialize;

use super::gate::SnapshotGate;
use super::settings::RepoSettings;
use super::snapshots::SnapshotInfo;
use crate::error::{Error, Result};

/// A repository opened for reading content.
pub(crate) struct RepoReader {
    pub(super) repo: Repository<IndexedFullStatus>,
    /// File content is read blob by blob from here, past the repository
    /// library's blob cache: a restore reads each blob once, and the
    /// cache only held 32 MiB more.
    pub(super) gate: Arc<SnapshotGate>,
    pub(super) cipher: aes256ctr_poly1305aes::Aes256CtrPoly1305Aes,
    pub(super) recursive: LsOptions,
    pub(super) settings: RepoSettings,
}

impl Drop for RepoReader {
    fn drop(&mut self) {
        if let Some(packs) = &self.gate.packs {
            packs.close_reading();
        }
    }
}

/// A file or directory of a snapshot. What the repository records of it
/// stays the repository's business: other rooms only hand it back.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotNode(pub(in crate::repo) Node);

impl SnapshotNode {
    pub(crate) fn is_dir(&self) -> bool {
        self.0.is_dir()
    }
}

/// One entry of a snapshot's tree below the restored root.
pub(crate) struct TreeEntry {
    /// Relative to the restored root; empty for the root itself.
    pub(crate) path: PathBuf,
    pub(crate) node: Node,
}

impl RepoReader {
    fn error(&self, e: &RusticError) -> Error {
        self.settings.repo_error(e)
    }

    /// The node at `path` in a snapshot.
    pub(crate) fn root(&self, snapshot: &SnapshotInfo, path: &str) -> Result<SnapshotNode> {
        self.repo
            .node_from_snapshot_and_path(&snapshot.file, path)
            .map(SnapshotNode)
            .map_err(|e| self.error(&e))
    }

    /// Walks the tree below `root` and refuses it when any entry could
    /// write outside the restore target: names that are empty, `.`, `..`
    /// or contain a slash, and duplicate names in one directory. Nothing is
    /// written before the whole tree has passed.
    pub(crate) fn check_tree(&self, root: &SnapshotNode) -> Result<TreeSummary> {
        let mut summary = TreeSummary::default();
        let mut previous: Option<PathBuf> = None;
        for item in self.walk(&root.0)? {
            let TreeEntry { path, node } = item?;
            let raw_name = node.name();
            let raw = std::os::unix::ffi::OsStrExt::as_bytes(&*raw_name);
            let name_ok = !raw.is_empty() && raw != b"." && raw != b".." && !raw.contains(&b'/');
            let path_ok = path.components().all(|c| matches!(c, Component::Normal(_)));
            if !name_ok || !path_ok {
                return Err(Error::Repository {
                    location: self.settings.shown_location(),
                    message: format!(
                        "refusing to restore: the snapshot holds an entry named {:?} under {:?}, which would escape the target",
                        node.name,
                        path.parent().unwrap_or(Path::new(""))
                    ),
                });
            }
            if previous.as_ref() == Some(&path) {
                return Err(Error::Repository {
                    location: self.settings.shown_location(),
                    message: format!(
                        "refusing to restore: {} appears twice in the snapshot",
                        path.display()
                    ),
                });
            }
            match node.node_type {
                NodeType::Dir => summary.dirs += 1,
                NodeType::File => {
                    summary.files += 1;
                    summary.bytes += node.meta.size;
                }
                NodeType::Socket => summary.sockets += 1,
                _ => summary.others += 1,
            }
            previous = Some(path);
        }
        Ok(summary)
    }

    /// The entries below `root` in tree order, paths relative to it.
    pub(in crate::repo) fn walk(
        &self,
        root: &Node,
    ) -> Result<impl Iterator<Item = Result<TreeEntry>> + '_> {
        let iter = self
            .repo
            .ls(root, &self.recursive)
            .map_err(|e| self.error(&e))?;
        Ok(iter.map(move |item| {
            item.map(|(path, node)| TreeEntry { path, node })
                .map_err(|e| self.error(&e))
        }))
    }

    /// Writes a file's content.
    pub(in crate::repo) fn dump(&self, node: &Node, w: &mut impl std::io::Write) -> Result<()> {
        for id in node.content.iter().flatten() {
            let blob = self.data_blob(id)?;
            w.write_all(&blob)
                .map_err(|e| Error::io(node.name().to_string_lossy().as_ref(), e))?;
        }
        Ok(())
    }

    /// One blob of file content, read from its pack.
    fn data_blob(&self, id: &rustic_core::DataId) -> Result<Vec<u8>> {
        let entry = self.repo.get_index_entry(id).map_err(|e| self.error(&e))?;
        let location = entry.location;
        let stored = self
            .gate
            .read_blob(&entry.pack, location.offset, location.length)
            .map_err(|e| self.error(&e))?;
        crate::repo::archiver::index::open_blob(&self.cipher, &stored, location.uncompressed_length)
            .map_err(|why| Error::Repository {
                location: self.settings.shown_location(),
                message: format!("reading blob {id} of pack {}: {why}", entry.pack),
            })
    }

    /// The number of bytes of a file's content, from the index (the size in
    /// the node's metadata may differ when the file changed while it was
    /// read).
    pub(in crate::repo) fn content_length(&self, node: &Node) -> Result<u64> {
        let mut total = 0u64;
        for id in node.content.iter().flatten() {
            let entry = self.repo.get_index_entry(id).map_err(|e| self.error(&e))?;
            total += u64::from(entry.data_length());
        }
        Ok(total)
    }

    /// The blobs of a file's content, in order, with their lengths.
    pub(in crate::repo) fn blob_lengths(&self, node: &Node) -> Result<Vec<(Id, u32)>> {
        node.content
            .iter()
            .flatten()
            .map(|id| {
                let entry = self.repo.get_index_entry(id).map_err(|e| self.error(&e))?;
                Ok((**id, entry.data_length()))
            })
            .collect()
    }

    /// A reader of a file's content, `length` bytes long.
    pub(in crate::repo) fn file_reader(&self, node: &Node, length: u64) -> Result<FileReader<'_>> {
        Ok(FileReader {
            reader: self,
            blobs: node.content.clone().unwrap_or_default().into_iter(),
            piece: bytes::Bytes::new(),
            length,
            left: length,
        })
    }

    /// A reader of a file's whole content, as the index records it.
    pub(crate) fn content(&self, file: &SnapshotNode) -> Result<FileReader<'_>> {
        let length = self.content_length(&file.0)?;
        self.file_reader(&file.0, length)
    }

    /// The whole content of a small file below `root` (a manifest).
    pub(crate) fn read_small_file(&self, root: &SnapshotNode, relative: &str) -> Result<Vec<u8>> {
        let file = self.node_below(root, relative)?;
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut self.content(&file)?, &mut data)
            .map_err(|e| Error::io(relative, e))?;
        Ok(data)
    }

    /// The node of the file at `relative` below `root`.
    pub(crate) fn node_below(&self, root: &SnapshotNode, relative: &str) -> Result<SnapshotNode> {
        let tree = root
            .0
            .subtree
            .ok_or_else(|| Error::Other("the snapshot's root is not a directory".to_string()))?;
        self.repo
            .node_from_path(tree, Path::new(relative))
            .map(SnapshotNode)
            .map_err(|e| self.error(&e))
    }
}

/// Reads a file's content from the repository, blob by blob.
pub(crate) struct FileReader<'a> {
    reader: &'a RepoReader,
    blobs: std::vec::IntoIter<rustic_core::DataId>,
    piece: bytes::Bytes,
    length: u64,
    left: u64,
}

impl FileReader<'_> {
    /// How many bytes the whole content has.
    pub(crate) fn length(&self) -> u64 {
        self.length
    }
}

impl std::io::Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.piece.is_empty() {
            if self.left == 0 {
                return Ok(0);
            }
            let Some(id) = self.blobs.next() else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the repository holds less content than its index says",
                ));
            };
            self.piece = self
                .reader
                .data_blob(&id)
                .map_err(|e| std::io::Error::other(e.to_string()))?
                .into();
        }
        let n = buf
            .len()
            .min(self.piece.len())
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.piece[..n]);
        bytes::Buf::advance(&mut self.piece, n);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Counts of a snapshot's tree.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct TreeSummary {
    pub files: u64,
    pub dirs: u64,
    /// Links, fifos and devices.
    pub others: u64,
    /// Sockets, which no restore makes: a socket is made by the process
    /// that listens on it.
    pub sockets: u64,
    pub bytes: u64,
}
