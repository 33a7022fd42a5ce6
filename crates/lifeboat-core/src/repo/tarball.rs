//! Writes a snapshot's tree as a tar stream, for the engine-archive writer.
//!
//! The engine extracts the stream into a volume with the archive's owners
//! (`copyUIDGID`). Modes, numeric owners, nanosecond mtimes and extended
//! attributes travel in PAX records; hard links become link entries that
//! point at the first path of their inode. Sockets cannot be expressed in a
//! tar archive and are left out (they are recreated by whoever listens).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use rustic_core::repofile::{Node, NodeType};

use crate::error::{Error, Result};
use crate::progress::TransferProgress;
use crate::repo::node::{split_dev, unix_permissions, xattrs_of};
use crate::repo::{RepoReader, SnapshotNode};

/// Writes `root` as the directory `prefix` and the tree below it to `out`.
///
/// The engine does not apply an archive's `./` entry to the directory it
/// extracts into, so the root must be a named entry: the caller extracts
/// at `/` and names the mount point as `prefix`.
pub(crate) fn write_tree(
    reader: &RepoReader,
    root: &SnapshotNode,
    prefix: &Path,
    out: impl Write,
    progress: &TransferProgress,
) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    let tar_error = |path: &Path, e: std::io::Error| {
        Error::Other(format!(
            "writing {} into the archive stream: {e}",
            path.display()
        ))
    };
    let root = &root.0;
    append_node(&mut builder, reader, prefix, root, None)
        .map_err(|e| tar_error(Path::new("/"), e))?;
    let mut first_path_of_inode: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for entry in reader.walk(root)? {
        let entry = entry?;
        let path = prefix.join(&entry.path);
        let link_to = match hardlink_key(&entry.node) {
            Some(key) => match first_path_of_inode.get(&key) {
                Some(first) => Some(first.clone()),
                None => {
                    first_path_of_inode.insert(key, path.clone());
                    None
                }
            },
            None => None,
        };
        append_node(&mut builder, reader, &path, &entry.node, link_to.as_deref())
            .map_err(|e| tar_error(&entry.path, e))?;
        if entry.node.is_file() {
            progress.files_done.fetch_add(1, Ordering::Relaxed);
        }
    }
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| tar_error(Path::new("end of archive"), e))
}

fn hardlink_key(node: &Node) -> Option<(u64, u64)> {
    (node.is_file() && node.meta.links > 1 && node.meta.inode != 0 && node.meta.device_id != 0)
        .then_some((node.meta.device_id, node.meta.inode))
}

fn append_node<W: Write>(
    builder: &mut tar::Builder<W>,
    reader: &RepoReader,
    path: &Path,
    node: &Node,
    link_to: Option<&Path>,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    let meta = &node.meta;
    header.set_mode(meta.mode.map_or(0o644, unix_permissions));
    header.set_uid(meta.uid.map_or(0, u64::from));
    header.set_gid(meta.gid.map_or(0, u64::from));
    let mtime = meta.mtime.map_or(0, |t| t.as_second());
    header.set_mtime(u64::try_from(mtime).unwrap_or(0));

    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(t) = meta.mtime {
        pax.push((
            "mtime".into(),
            format!(
                "{}.{:09}",
                t.as_second(),
                t.subsec_nanosecond().unsigned_abs()
            )
            .into_bytes(),
        ));
    }
    for (name, value) in xattrs_of(node) {
        pax.push((format!("SCHILY.xattr.{name}"), value));
    }
    if !pax.is_empty() {
        append_pax(builder, &pax)?;
    }

    if let Some(first) = link_to {
        header.set_entry_type(tar::EntryType::Link);
        header.set_size(0);
        return builder.append_link(&mut header, path, first);
    }
    match &node.node_type {
        NodeType::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, path, std::io::empty())
        }
        NodeType::File => {
            let length = reader
                .content_length(node)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(length);
            let content = reader
                .file_reader(node, length)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            builder.append_data(&mut header, path, content)
        }
        NodeType::Symlink { .. } => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, path, node.node_type.to_link())
        }
        NodeType::Dev { device } | NodeType::Chardev { device } => {
            let char_device = matches!(node.node_type, NodeType::Chardev { .. });
            header.set_entry_type(if char_device {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            let (major, minor) = split_dev(*device);
            header.set_device_major(u32::try_from(major).unwrap_or(0))?;
            header.set_device_minor(u32::try_from(minor).unwrap_or(0))?;
            header.set_size(0);
            builder.append_data(&mut header, path, std::io::empty())
        }
        NodeType::Fifo => {
            header.set_entry_type(tar::EntryType::Fifo);
            header.set_size(0);
            builder.append_data(&mut header, path, std::io::empty())
        }
        NodeType::Socket => Ok(()),
    }
}

/// Writes a PAX extended header that applies to the next entry.
fn append_pax<W: Write>(
    builder: &mut tar::Builder<W>,
    records: &[(String, Vec<u8>)],
) -> std::io::Result<()> {
    let mut data = Vec::new();
    for (key, value) in records {
        data.extend_from_slice(&pax_record(key, value));
    }
    let mut header = tar::Header::new_ustar();
    header.set_path("PaxHeader")?;
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    builder.append(&header, data.as_slice())
}

/// One PAX record: `LEN key=value\n`, where LEN counts the whole record,
/// its own digits included.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + body.to_string().len();
    if len.to_string().len() != body.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        for (key, value) in [("mtime", "1.5"), ("SCHILY.xattr.user.k", "v")] {
            let r = pax_record(key, value.as_bytes());
            let text = String::from_utf8(r.clone()).expect("utf8");
            let (len, _) = text.split_once(' ').expect("length");
            assert_eq!(len.parse::<usize>().expect("number"), r.len(), "{text:?}");
        }
        // A record whose length crosses a power of ten while counting
        // itself.
        let value = vec![b'x'; 89];
        let r = pax_record("k", &value);
        let len: usize = String::from_utf8_lossy(&r)
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("length");
        assert_eq!(len, r.len());
    }
}
