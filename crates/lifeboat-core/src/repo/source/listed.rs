//! Files lifeboat makes itself, listed up front: a database dump's.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;

use rustic_core::repofile::{Metadata, Node, NodeType};

use super::{Entry, Open, Source};
use crate::repo::node::{Kind, go_mode};

/// A root directory, one directory in it, and files in that: each file
/// with how its content is made. All belong to root, readable by it
/// only, and carry the time the listing was made.
pub(crate) struct ListedSource<O> {
    entries: Mutex<Option<Vec<Entry<O>>>>,
}

impl<O> ListedSource<O> {
    /// The root is named `base` in the entries and `root_name` in the
    /// snapshot; `files` are (name, content) in the directory `dir`, in
    /// any order: they are sorted here, as the archiver requires.
    pub(crate) fn new(
        base: PathBuf,
        root_name: OsString,
        dir: &str,
        mut files: Vec<(String, O)>,
    ) -> Self {
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let now = jiff::Timestamp::now();
        let meta = |mode: u32, kind: Kind| Metadata {
            mode: Some(go_mode(mode, kind)),
            mtime: Some(now),
            atime: Some(now),
            uid: Some(0),
            gid: Some(0),
            ..Default::default()
        };
        let dir_path = base.join(dir);
        let mut entries = vec![
            Entry {
                path: base,
                node: Node::new_node(&root_name, NodeType::Dir, meta(0o700, Kind::Dir)),
                open: None,
            },
            Entry {
                path: dir_path.clone(),
                node: Node::new_node(dir.as_ref(), NodeType::Dir, meta(0o700, Kind::Dir)),
                open: None,
            },
        ];
        for (name, open) in files {
            entries.push(Entry {
                path: dir_path.join(&name),
                node: Node::new_node(name.as_ref(), NodeType::File, meta(0o600, Kind::File)),
                open: Some(open),
            });
        }
        Self {
            entries: Mutex::new(Some(entries)),
        }
    }
}

/// An entry of a [`ListedSource`], which never fails to list.
type Listed<O> = Result<Entry<O>, String>;

impl<O: Open> Source for ListedSource<O> {
    type Open = O;
    type Entries = std::iter::Map<std::vec::IntoIter<Entry<O>>, fn(Entry<O>) -> Listed<O>>;

    fn size(&self) -> Result<Option<u64>, String> {
        Ok(None)
    }

    fn entries(&self) -> Self::Entries {
        self.entries
            .lock()
            .ok()
            .and_then(|mut e| e.take())
            .unwrap_or_default()
            .into_iter()
            .map(Ok)
    }
}
