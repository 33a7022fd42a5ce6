//! Checks that a restore target holds exactly a snapshot's tree: the same
//! names, no fewer and no more, each of the same type, owner, permissions
//! and size, links pointing where they pointed, hard links linked; and,
//! read back through the engine, the same content.
//!
//! A restore is reported done only when this passes. The writers alone
//! cannot know: a volume whose driver keeps its files when it is removed
//! and made again (a bind or NFS volume) kept old files beside the
//! restored ones, and for a database, newer files next to older data make
//! a corrupt database.
//!
//! Both sides come in the same order, a depth-first walk with each
//! directory's entries sorted by name (the snapshot's trees are sorted;
//! the engine's archive walks so; the host listing here sorts), so the
//! check is a merge of two streams and holds one directory listing in
//! memory per level, whatever the target's size. Extended attributes and
//! times are not compared: the engine's archive carries neither whole.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustic_core::repofile::{Node, NodeType};

use crate::error::{Error, Result};
use crate::repo::node::{makedev, unix_permissions};
use crate::repo::{RepoReader, SnapshotNode};
use crate::tar_reader::TarReader;

/// How many differences a failed check names.
const SHOWN: usize = 5;

/// What an entry found in the target is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FoundType {
    File,
    Dir,
    Symlink(Vec<u8>),
    Fifo,
    CharDevice(u64),
    BlockDevice(u64),
    Socket,
    /// A second name of a file met earlier, as the engine's archive shows
    /// one: the path of the first name.
    HardLink(Vec<Vec<u8>>),
}

/// An entry found in the target.
#[derive(Debug)]
pub(crate) struct Found {
    /// Its path's components below the target; empty for the target
    /// itself.
    pub(crate) parts: Vec<Vec<u8>>,
    pub(crate) kind: FoundType,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Permission bits, with setuid, setgid and sticky.
    pub(crate) mode: u32,
    pub(crate) size: u64,
    /// The device and inode of a file on the host, for hard links.
    pub(crate) inode: Option<(u64, u64)>,
}

/// A path's components below the target; empty for the target itself.
type Parts = Vec<Vec<u8>>;

/// The snapshot's entries, each with its path's components.
type Expected<'a> = Box<dyn Iterator<Item = Result<(Parts, Node)>> + 'a>;

/// The first name of a hard-linked file, and the device and inode it was
/// found at (on the host).
type FirstLink = (Parts, Option<(u64, u64)>);

/// Compares what was found in a target, entry by entry, with the snapshot.
pub(crate) struct Verifier<'a> {
    reader: &'a RepoReader,
    expected: std::iter::Peekable<Expected<'a>>,
    /// The previous entry found, to check the order.
    previous: Option<Vec<Vec<u8>>>,
    /// The first name of each hard-linked file of the snapshot, and the
    /// inode it was found at.
    first_links: HashMap<(u64, u64), FirstLink>,
    problems: Vec<String>,
    count: usize,
    target: String,
}

fn shown(parts: &[Vec<u8>]) -> String {
    if parts.is_empty() {
        return "the target's root".to_string();
    }
    let path: PathBuf = parts
        .iter()
        .map(|p| OsString::from_vec(p.clone()))
        .collect();
    format!("{:?}", path.as_os_str())
}

fn parts_of(path: &Path) -> Vec<Vec<u8>> {
    path.components()
        .map(|c| c.as_os_str().as_bytes().to_vec())
        .collect()
}

impl<'a> Verifier<'a> {
    /// A check of `target` (named in messages) against the tree below
    /// `root`.
    fn new(reader: &'a RepoReader, root: &SnapshotNode, target: &str) -> Result<Self> {
        let root = &root.0;
        let below = reader
            .walk(root)?
            .map(|e| e.map(|e| (parts_of(&e.path), e.node)))
            // Neither writer makes sockets (see the restorer): a socket
            // belongs to the process that listens on it.
            .filter(|e| !matches!(e, Ok((_, n)) if n.node_type == NodeType::Socket));
        let expected: Expected<'a> =
            Box::new(std::iter::once(Ok((Vec::new(), root.clone()))).chain(below));
        Ok(Self {
            reader,
            expected: expected.peekable(),
            previous: None,
            first_links: HashMap::new(),
            problems: Vec::new(),
            count: 0,
            target: target.to_string(),
        })
    }

    fn problem(&mut self, parts: &[Vec<u8>], what: &str) {
        self.count += 1;
        if self.problems.len() < SHOWN {
            self.problems.push(format!("{}: {what}", shown(parts)));
        }
    }

    /// Takes the next entry found; returns the snapshot's node of the same
    /// name, when there is one, for its content to be checked.
    pub(crate) fn found(&mut self, found: Found) -> Result<Option<Node>> {
        if let Some(previous) = &self.previous
            && found.parts <= *previous
        {
            return Err(Error::Other(format!(
                "checking the restore into {}: its listing is not in order at {}",
                self.target,
                shown(&found.parts)
            )));
        }
        self.previous = Some(found.parts.clone());
        loop {
            let next = match self.expected.peek() {
                None => None,
                Some(Ok((parts, _))) => Some(parts.cmp(&found.parts)),
                Some(Err(_)) => {
                    return match self.expected.next() {
                        Some(Err(e)) => Err(e),
                        _ => Err(Error::Other("the snapshot's walk failed".to_string())),
                    };
                }
            };
            match next {
                Some(std::cmp::Ordering::Less) => {
                    if let Some(Ok((parts, _))) = self.expected.next() {
                        self.problem(&parts, "missing");
                    }
                }
                Some(std::cmp::Ordering::Equal) => {
                    let Some(Ok((_, node))) = self.expected.next() else {
                        return Ok(None);
                    };
                    self.compare(&node, &found)?;
                    return Ok(Some(node));
                }
                Some(std::cmp::Ordering::Greater) | None => {
                    self.problem(&found.parts, "not in the snapshot");
                    return Ok(None);
                }
            }
        }
    }

    fn compare(&mut self, node: &Node, found: &Found) -> Result<()> {
        let parts = &found.parts;
        let meta = &node.meta;
        // The later names of a hard-linked file.
        let link_key = (node.is_file() && meta.links > 1 && meta.inode != 0 && meta.device_id != 0)
            .then_some((meta.device_id, meta.inode));
        let first = link_key.and_then(|k| self.first_links.get(&k).cloned());
        if let Some(key) = link_key
            && first.is_none()
        {
            self.first_links.insert(key, (parts.clone(), found.inode));
        }
        let type_ok = match (&node.node_type, &found.kind) {
            (NodeType::File, FoundType::HardLink(to)) => match &first {
                Some((first_parts, _)) if first_parts == to => true,
                _ => {
                    self.problem(parts, &format!("a hard link to {}", shown(to)));
                    return Ok(());
                }
            },
            (NodeType::File, FoundType::File) => {
                if let (Some((first_parts, Some(first_inode))), Some(inode)) = (&first, found.inode)
                    && *first_inode != inode
                {
                    self.problem(parts, &format!("not a hard link to {}", shown(first_parts)));
                    return Ok(());
                }
                true
            }
            (NodeType::Dir, FoundType::Dir) | (NodeType::Fifo, FoundType::Fifo) => true,
            (NodeType::Symlink { .. }, FoundType::Symlink(target)) => {
                let want = node.node_type.to_link().as_os_str().as_bytes().to_vec();
                if *target != want {
                    self.problem(
                        parts,
                        &format!("points to {:?}", String::from_utf8_lossy(target)),
                    );
                    return Ok(());
                }
                true
            }
            (NodeType::Chardev { device }, FoundType::CharDevice(rdev))
            | (NodeType::Dev { device }, FoundType::BlockDevice(rdev)) => *device == *rdev,
            _ => false,
        };
        if !type_ok {
            self.problem(
                parts,
                &format!("is a {:?}, not a {}", found.kind, node.node_type),
            );
            return Ok(());
        }
        if matches!(found.kind, FoundType::HardLink(_)) {
            return Ok(());
        }
        if let Some(uid) = meta.uid
            && uid != found.uid
        {
            self.problem(parts, &format!("owner {} instead of {uid}", found.uid));
        }
        if let Some(gid) = meta.gid
            && gid != found.gid
        {
            self.problem(parts, &format!("group {} instead of {gid}", found.gid));
        }
        if !node.is_symlink()
            && let Some(mode) = meta.mode
        {
            let want = unix_permissions(mode);
            if found.mode != want {
                self.problem(parts, &format!("mode {:o} instead of {want:o}", found.mode));
            }
        }
        if node.is_file() {
            let want = self.reader.content_length(node)?;
            if found.size != want {
                self.problem(parts, &format!("{} bytes instead of {want}", found.size));
            }
        }
        Ok(())
    }

    /// Checks a file's content, read from `content`, against the
    /// snapshot's: each piece's hash is the id of the blob it was restored
    /// from.
    pub(crate) fn check_content(&mut self, node: &Node, content: &mut impl Read) -> Result<()> {
        for (id, length) in self.reader.blob_lengths(node)? {
            if !id.blob_matches_reader(u64::from(length), content) {
                let parts = self.previous.clone().unwrap_or_default();
                self.problem(&parts, "content differs from the snapshot");
                return Ok(());
            }
        }
        Ok(())
    }

    /// Ends the check: what the snapshot holds and was not found is
    /// missing.
    pub(crate) fn finish(mut self) -> Result<()> {
        while let Some(next) = self.expected.next() {
            let (parts, _) = next?;
            self.problem(&parts, "missing");
        }
        match self.problems.as_slice() {
            [] => Ok(()),
            [first, rest @ ..] => Err(Error::Mismatch(format!(
                "the restore into {} does not match the snapshot: {first}{}{}",
                self.target,
                rest.iter().map(|p| format!("; {p}")).collect::<String>(),
                if self.count > self.problems.len() {
                    format!(" (and {} more)", self.count - self.problems.len())
                } else {
                    String::new()
                }
            ))),
        }
    }
}

/// Checks a directory on this host against the snapshot.
pub(crate) fn verify_directory(reader: &RepoReader, root: &SnapshotNode, dir: &Path) -> Result<()> {
    let mut verifier = Verifier::new(reader, root, &dir.display().to_string())?;
    for found in HostListing::new(dir) {
        verifier.found(found?)?;
    }
    verifier.finish()
}

/// Checks a tar stream of the target (the engine's archive of it, its
/// root as `./`) against the snapshot, content included.
pub(crate) fn verify_archive(
    reader: &RepoReader,
    root: &SnapshotNode,
    target: &str,
    stream: impl Read,
) -> Result<()> {
    let mut verifier = Verifier::new(reader, root, target)?;
    let mut archive = TarReader::new(stream);
    let failed = |e: std::io::Error| {
        Error::Other(format!(
            "checking the restore into {target}: reading it back through the engine: {e}"
        ))
    };
    while let Some(entry) = archive.next_entry().map_err(failed)? {
        let parts = crate::repo::source::archive_components(&entry.path).map_err(Error::Other)?;
        let meta = &entry.meta;
        let device = || {
            meta.device
                .map_or(0, |(major, minor)| makedev(major, minor))
        };
        let kind = match entry.typeflag {
            b'0' | 0 | b'7' => FoundType::File,
            b'5' => FoundType::Dir,
            b'2' => FoundType::Symlink(meta.link_target.clone().unwrap_or_default()),
            b'1' => FoundType::HardLink(
                crate::repo::source::archive_components(
                    meta.link_target.as_deref().unwrap_or_default(),
                )
                .map_err(Error::Other)?,
            ),
            b'3' => FoundType::CharDevice(device()),
            b'4' => FoundType::BlockDevice(device()),
            b'6' => FoundType::Fifo,
            other => {
                return Err(Error::Other(format!(
                    "checking the restore into {target}: an entry of type {:?} at {}",
                    other as char,
                    shown(&parts)
                )));
            }
        };
        let is_file = kind == FoundType::File;
        let found = Found {
            parts,
            kind,
            uid: u32::try_from(meta.uid).unwrap_or(u32::MAX),
            gid: u32::try_from(meta.gid).unwrap_or(u32::MAX),
            mode: meta.mode & 0o7777,
            size: meta.size,
            inode: None,
        };
        if let Some(node) = verifier.found(found)?
            && is_file
            && node.is_file()
        {
            verifier.check_content(&node, &mut archive.content())?;
        }
    }
    verifier.finish()
}

/// The entries of a directory on this host, the directory first, in the
/// order of the snapshot's walk; links are not followed.
struct HostListing {
    root: PathBuf,
    started: bool,
    /// The directories being listed, outermost first: their path's
    /// components and the names left, in order.
    open: Vec<(Parts, std::vec::IntoIter<Vec<u8>>)>,
}

impl HostListing {
    fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            started: false,
            open: Vec::new(),
        }
    }

    fn path(&self, parts: &[Vec<u8>]) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(parts.iter().map(|p| std::ffi::OsStr::from_bytes(p)));
        path
    }

    fn entry(&mut self, parts: Vec<Vec<u8>>) -> Result<Found> {
        let path = self.path(&parts);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        let t = meta.file_type();
        let kind = if t.is_file() {
            FoundType::File
        } else if t.is_dir() {
            let mut names: Vec<Vec<u8>> = std::fs::read_dir(&path)
                .map_err(|e| Error::io(&path, e))?
                .map(|e| e.map(|e| e.file_name().into_vec()))
                .collect::<std::io::Result<_>>()
                .map_err(|e| Error::io(&path, e))?;
            names.sort();
            self.open.push((parts.clone(), names.into_iter()));
            FoundType::Dir
        } else if t.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| Error::io(&path, e))?;
            FoundType::Symlink(target.into_os_string().into_vec())
        } else if t.is_fifo() {
            FoundType::Fifo
        } else if t.is_char_device() {
            FoundType::CharDevice(meta.rdev())
        } else if t.is_block_device() {
            FoundType::BlockDevice(meta.rdev())
        } else {
            FoundType::Socket
        };
        Ok(Found {
            parts,
            inode: t.is_file().then(|| (meta.dev(), meta.ino())),
            kind,
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
            size: if t.is_file() { meta.len() } else { 0 },
        })
    }
}

impl Iterator for HostListing {
    type Item = Result<Found>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.started {
            self.started = true;
            return Some(self.entry(Vec::new()));
        }
        loop {
            let (parent, names) = self.open.last_mut()?;
            match names.next() {
                Some(name) => {
                    let mut parts = parent.clone();
                    parts.push(name);
                    return Some(self.entry(parts));
                }
                None => {
                    self.open.pop();
                }
            }
        }
    }
}
