use std::ffi::OsStr;
use std::io::Cursor;

use std::path::PathBuf;
use std::sync::Arc;

use rustic_core::repofile::{Metadata, Node, NodeType};

use super::settings::redact_url;
use super::source::{Entry, Open, Source};
use super::*;
use crate::error::{Error, Result};

impl Open for Cursor<Vec<u8>> {
    type Reader = Self;

    fn open(self) -> std::io::Result<Self> {
        Ok(self)
    }
}

type TestEntry = std::result::Result<Entry<Cursor<Vec<u8>>>, String>;

/// A source that yields the entries it is given, names and all.
struct Entries(Vec<(&'static str, &'static str, NodeType)>);

impl Source for Entries {
    type Open = Cursor<Vec<u8>>;
    type Entries = std::vec::IntoIter<TestEntry>;

    fn size(&self) -> std::result::Result<Option<u64>, String> {
        Ok(None)
    }

    fn entries(&self) -> Self::Entries {
        self.0
            .iter()
            .map(|(path, name, node_type)| {
                let node = Node::new_node(OsStr::new(name), node_type.clone(), Metadata::default());
                let open = node.is_file().then(|| Cursor::new(b"data".to_vec()));
                Ok(Entry {
                    path: PathBuf::from(path),
                    node,
                    open,
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
    }
}

use super::testing::{repo_in, request};

/// Files below `/b`, named and holding what is given.
struct Files(Vec<(String, Vec<u8>)>);

/// `count` files of 20 kB each, all different and incompressible.
fn distinct(count: usize) -> Files {
    Files(
        (0..count)
            .map(|i| (format!("f{i:03}"), distinct_content(i)))
            .collect(),
    )
}

fn distinct_content(i: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ (i as u64 + 1);
    (0..20_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

impl Source for Files {
    type Open = Cursor<Vec<u8>>;
    type Entries = std::vec::IntoIter<TestEntry>;

    fn size(&self) -> std::result::Result<Option<u64>, String> {
        Ok(None)
    }

    fn entries(&self) -> Self::Entries {
        let root = Node::new_node(OsStr::new("v"), NodeType::Dir, Metadata::default());
        let files = self.0.iter().map(|(name, content)| {
            let meta = Metadata {
                size: content.len() as u64,
                ..Metadata::default()
            };
            Ok(Entry {
                path: PathBuf::from("/b").join(name),
                node: Node::new_node(OsStr::new(name), NodeType::File, meta),
                open: Some(Cursor::new(content.clone())),
            })
        });
        std::iter::once(Ok(Entry {
            path: PathBuf::from("/b"),
            node: root,
            open: None,
        }))
        .chain(files)
        .collect::<Vec<_>>()
        .into_iter()
    }
}

/// Directories and fifos at the paths given, below `/b`; listing the
/// last one takes `pause` (a slow disk).
struct Paths(Vec<(String, NodeType)>, std::time::Duration);

impl Source for Paths {
    type Open = Cursor<Vec<u8>>;
    type Entries = Box<dyn Iterator<Item = TestEntry> + Send>;

    fn size(&self) -> std::result::Result<Option<u64>, String> {
        Ok(None)
    }

    fn entries(&self) -> Self::Entries {
        let root = Node::new_node(OsStr::new("v"), NodeType::Dir, Metadata::default());
        let below = self.0.iter().map(|(path, node_type)| {
            let path = PathBuf::from("/b").join(path);
            let name = path.file_name().unwrap_or_default().to_os_string();
            Ok(Entry {
                node: Node::new_node(&name, node_type.clone(), Metadata::default()),
                path,
                open: None,
            })
        });
        let entries: Vec<_> = std::iter::once(Ok(Entry {
            path: PathBuf::from("/b"),
            node: root,
            open: None,
        }))
        .chain(below)
        .collect();
        let (last, pause) = (entries.len() - 1, self.1);
        Box::new(entries.into_iter().enumerate().map(move |(i, entry)| {
            if i == last {
                std::thread::sleep(pause);
            }
            entry
        }))
    }
}

#[test]
fn a_backup_ends_though_the_trees_read_ahead_for_it_are_never_taken() -> Result<()> {
    // Regression: the previous snapshot's trees are read ahead up to
    // 100,000 nodes; when the directories holding more are gone, the
    // reader waited for the walk to take them after the walk had
    // ended, and the backup never finished.
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let repo = Arc::new(repo_in(dir.path()));
    let mut before = vec![("a".to_string(), NodeType::Dir)];
    for sub in 0..4 {
        before.push((format!("gone/s{sub}"), NodeType::Dir));
        before.extend((0..40_000).map(|i| (format!("gone/s{sub}/p{i:05}"), NodeType::Fifo)));
    }
    before.insert(1, ("gone".to_string(), NodeType::Dir));
    let quick = std::time::Duration::ZERO;
    repo.archive(&Paths(before, quick), &request(), || Ok(()))?;

    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let second = repo.clone();
    std::thread::spawn(move || {
        let request = ArchiveRequest {
            use_parent: true,
            ..request()
        };
        // The walk waits for its last entry while the reader reads
        // the gone directories' trees ahead, up to its limit.
        let source = Paths(
            vec![("a".to_string(), NodeType::Dir)],
            std::time::Duration::from_secs(3),
        );
        let _ = done_tx.send(second.archive(&source, &request, || Ok(())).map(|s| s.id));
    });
    let finished = done_rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .map_err(|_| Error::Other("the second backup did not end".to_string()))?;
    finished?;
    Ok(())
}

#[test]
fn packs_are_listed_in_index_files_as_they_are_written() -> Result<()> {
    // Under test, data packs are 64 KiB and written packs are listed
    // once they hold 4 blobs: 40 files of 20 kB make many of both.
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let repo = repo_in(dir.path());
    let snapshot = repo.archive(&distinct(40), &request(), || Ok(()))?;

    let opened = repo.opened()?;
    let mut index_files = 0;
    let mut listed_packs = std::collections::HashMap::new();
    let mut listed_blobs = std::collections::HashSet::new();
    let mut data_blobs = 0;
    for file in opened
        .stream_files::<rustic_core::repofile::IndexFile>()
        .map_err(|e| repo.error(&e))?
    {
        let (_, file) = file.map_err(|e| repo.error(&e))?;
        index_files += 1;
        for pack in file.packs {
            *listed_packs.entry(pack.id).or_insert(0) += 1;
            for blob in pack.blobs {
                assert!(listed_blobs.insert(blob.id), "a blob listed twice");
                data_blobs += usize::from(blob.tpe == rustic_core::repofile::BlobType::Data);
            }
        }
    }
    assert!(index_files >= 3, "{index_files} index files");
    assert!(listed_packs.values().all(|&n| n == 1), "{listed_packs:?}");
    // A data blob a file, and the trees of /, /volumes and /volumes/v.
    assert_eq!((data_blobs, listed_blobs.len()), (40, 43));
    let mut on_disk = 0;
    for sub in std::fs::read_dir(dir.path().join("repo/data")).map_err(|e| Error::io("data", e))? {
        let sub = sub.map_err(|e| Error::io("data", e))?.path();
        on_disk += std::fs::read_dir(&sub)
            .map_err(|e| Error::io(&sub, e))?
            .count();
    }
    assert_eq!(on_disk, listed_packs.len());

    let reader = repo.reader()?;
    let root = reader.root(&snapshot, "/volumes/v")?;
    for i in [0, 17, 39] {
        let read = reader.read_small_file(&root, &format!("f{i:03}"))?;
        assert!(read == distinct_content(i), "f{i:03} reads back otherwise");
    }
    Ok(())
}

#[test]
fn content_reads_back_whole_compressed_or_not() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let repo = repo_in(dir.path());
    // Text that compresses across several chunks, then random bytes
    // that do not compress. Past the largest chunk (8 MiB), so that it
    // is several chunks whatever the repository's polynomial: 4 MB
    // were one chunk in about one run of forty (no cut found).
    let mut content: Vec<u8> = (0..500_000u32)
        .flat_map(|i| format!("line {i} of a log\n").into_bytes())
        .collect();
    content.extend((0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let snapshot = repo.archive(
        &Files(vec![("f".into(), content.clone())]),
        &request(),
        || Ok(()),
    )?;
    let reader = repo.reader()?;
    let root = reader.root(&snapshot, "/volumes/v")?;
    let node = reader.node_below(&root, "f")?;
    assert!(node.0.content.as_ref().is_some_and(|c| c.len() > 1));
    assert!(reader.read_small_file(&root, "f")? == content);
    let mut dumped = Vec::new();
    reader.dump(&node.0, &mut dumped)?;
    assert!(dumped == content);
    // A reader asked for less stops there.
    let mut head = Vec::new();
    std::io::Read::read_to_end(&mut reader.file_reader(&node.0, 1000)?, &mut head)
        .map_err(|e| Error::io("f", e))?;
    assert!(head == content[..1000]);
    Ok(())
}

#[test]
fn a_file_is_as_long_as_what_was_read_of_it() -> Result<()> {
    // Dumps are listed with no size (the command has not run yet);
    // the snapshot must still say how long each file is.
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let repo = repo_in(dir.path());
    let source = Entries(vec![
        ("/b", "v", NodeType::Dir),
        ("/b/f", "f", NodeType::File),
        ("/b/g", "g", NodeType::File),
    ]);
    let snapshot = repo.archive(&source, &request(), || Ok(()))?;
    let reader = repo.reader()?;
    let root = reader.root(&snapshot, "/volumes/v")?;
    for name in ["f", "g"] {
        let node = reader.node_below(&root, name)?;
        assert_eq!(node.0.meta.size, 4, "{name}");
        assert_eq!(reader.content_length(&node.0)?, 4, "{name}");
    }
    assert_eq!(snapshot.bytes, Some(8));
    Ok(())
}

#[test]
fn a_pack_that_cannot_be_written_is_the_error_reported() -> Result<()> {
    // Regression: the walk, finding the packer gone, failed with "the
    // packer stopped", and that hid why the packer had stopped. Here no
    // pack can be created, and 200 different trees follow the first.
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let repo = repo_in(dir.path());
    let data = dir.path().join("repo/data");
    std::fs::remove_dir_all(&data).map_err(|e| Error::io(&data, e))?;
    std::fs::write(&data, b"").map_err(|e| Error::io(&data, e))?;
    let paths = (0..200)
        .flat_map(|i| {
            [
                (format!("d{i:03}"), NodeType::Dir),
                (format!("d{i:03}/p{i:03}"), NodeType::Fifo),
            ]
        })
        .collect();
    let source = Paths(paths, std::time::Duration::ZERO);
    let failed = repo.archive(&source, &request(), || Ok(()));
    let failed = failed.expect_err("no pack can be written");
    // A failure of the storage, not of lifeboat: a disk full, a read-only
    // mount.
    assert_eq!(failed.class(), crate::error::ErrorClass::Io);
    let message = failed.to_string();
    assert!(message.contains("writing a pack"), "{message}");
    assert!(message.contains("repo/data"), "{message}");
    Ok(())
}

#[test]
fn a_rejected_source_publishes_no_snapshot() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let repo = repo_in(dir.path());
    let source = Entries(vec![
        ("/b", "v", NodeType::Dir),
        ("/b/f", "f", NodeType::File),
    ]);
    let refused = repo.archive(&source, &request(), || {
        Err(Error::ReadFailed("a file could not be read".into()))
    });
    assert!(refused.is_err());
    assert!(
        repo.snapshots()?.is_empty(),
        "a refused archive left a snapshot"
    );
    repo.archive(&source, &request(), || Ok(()))?;
    assert_eq!(repo.snapshots()?.len(), 1);
    Ok(())
}

/// Directories `depth` deep below `/b`, each named `d`, with a file at
/// the bottom.
struct Deep(usize);

impl Source for Deep {
    type Open = Cursor<Vec<u8>>;
    type Entries = std::vec::IntoIter<TestEntry>;

    fn size(&self) -> std::result::Result<Option<u64>, String> {
        Ok(None)
    }

    fn entries(&self) -> Self::Entries {
        let dir = |name: &str| Node::new_node(OsStr::new(name), NodeType::Dir, Metadata::default());
        let mut path = PathBuf::from("/b");
        let mut entries = vec![Ok(Entry {
            path: path.clone(),
            node: dir("v"),
            open: None,
        })];
        for _ in 0..self.0 {
            path.push("d");
            entries.push(Ok(Entry {
                path: path.clone(),
                node: dir("d"),
                open: None,
            }));
        }
        let meta = Metadata {
            size: 6,
            ..Metadata::default()
        };
        entries.push(Ok(Entry {
            path: path.join("f"),
            node: Node::new_node(OsStr::new("f"), NodeType::File, meta),
            open: Some(Cursor::new(b"bottom".to_vec())),
        }));
        entries.into_iter()
    }
}

#[test]
fn credentials_in_a_location_are_not_shown() {
    assert_eq!(
        redact_url("rest:https://user:s3cret@host:8000/repo"),
        "rest:https://user:***@host:8000/repo"
    );
    assert_eq!(
        redact_url("rest:https://token@host/"),
        "rest:https://***@host/"
    );
    assert_eq!(
        redact_url("/var/lib/lifeboat/repo"),
        "/var/lib/lifeboat/repo"
    );
    assert_eq!(
        redact_url("rest:https://user:pa/ss@host/repo"),
        "rest:https://user:***@host/repo",
        "a / in the password"
    );
    assert_eq!(
        redact_url("opendal:s3://bucket/path?secret=abc"),
        "opendal:s3://bucket/path?***"
    );
    let settings = RepoSettings::new(None, Some("s3cret".into()), None);
    assert!(!format!("{settings:?}").contains("s3cret"));
}

#[test]
fn a_directory_chain_thousands_deep_is_archived_on_a_small_stack() -> Result<()> {
    // Regression: a file finished by a worker after the walk had closed
    // the directories above it finished them by recursion, one stack
    // frame per level, and a volume 1,000 directories deep overflowed
    // the stack and aborted the whole run.
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let repo = repo_in(dir.path());
    let depth = 5_000;
    let archived = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            let snapshot = repo.archive(&Deep(depth), &request(), || Ok(()))?;
            let reader = repo.reader()?;
            let root = reader.root(&snapshot, "/volumes/v")?;
            let summary = reader.check_tree(&root)?;
            let bottom = vec!["d"; depth].join("/") + "/f";
            Ok::<_, Error>((summary, reader.read_small_file(&root, &bottom)?))
        })
        .map_err(|e| Error::io("thread", e))?
        .join()
        .map_err(|_| Error::Other("the archive overflowed its stack".to_string()))??;
    assert_eq!((archived.0.dirs, archived.0.files), (depth as u64, 1));
    assert_eq!(archived.1, b"bottom");
    Ok(())
}

#[test]
fn hostile_names_in_a_snapshot_are_refused_before_restore() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let repo = repo_in(dir.path());
    for hostile in ["..", "a/../../../etc/passwd", "."] {
        let source = Entries(vec![
            ("/b", "v", NodeType::Dir),
            ("/b/fine", "fine", NodeType::File),
            ("/b/x", hostile, NodeType::File),
        ]);
        let snapshot = repo.archive(&source, &request(), || Ok(()))?;
        let reader = repo.reader()?;
        let root = reader.root(&snapshot, "/volumes/v")?;
        let err = reader.check_tree(&root).expect_err(hostile);
        assert!(err.to_string().contains("escape"), "{hostile}: {err}");
    }
    let duplicate = Entries(vec![
        ("/b", "v", NodeType::Dir),
        ("/b/x", "same", NodeType::File),
        ("/b/y", "same", NodeType::File),
    ]);
    let snapshot = repo.archive(&duplicate, &request(), || Ok(()))?;
    let reader = repo.reader()?;
    let root = reader.root(&snapshot, "/volumes/v")?;
    let err = reader.check_tree(&root).expect_err("duplicate");
    assert!(err.to_string().contains("twice"), "{err}");
    Ok(())
}
