//! A volume read from the engine's archive stream.

use std::ffi::OsString;
use std::io::{Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use bytes::Bytes;

use super::{CheckedOpen, Entry, Open, SharedLog, Source, record_fatal};
use crate::progress::TransferProgress;
use crate::repo::node::{Kind, node_from_tar};
use crate::tar_reader::{TarEntry, TarReader};

/// Files up to this size are held in memory between the archive stream and
/// the chunker; larger ones go to an unlinked spool file.
const MEMORY_LIMIT: u64 = 4 << 20;

/// How many parsed entries may wait for the chunker.
const QUEUE_DEPTH: usize = 16;

pub(crate) enum Payload {
    Memory(Bytes),
    Spooled(std::fs::File),
}

/// Reads a [`Payload`].
pub(crate) enum PayloadReader {
    Memory(bytes::buf::Reader<Bytes>),
    Spooled(std::io::BufReader<std::fs::File>),
}

impl Read for PayloadReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Memory(r) => r.read(buf),
            Self::Spooled(r) => r.read(buf),
        }
    }
}

impl Open for Payload {
    type Reader = PayloadReader;

    fn open(self) -> std::io::Result<Self::Reader> {
        Ok(match self {
            Self::Memory(b) => PayloadReader::Memory(bytes::Buf::reader(b)),
            Self::Spooled(f) => PayloadReader::Spooled(std::io::BufReader::new(f)),
        })
    }
}

type ArchiveItem = Result<Entry<CheckedOpen<Payload>>, String>;

/// A volume read from the engine's archive stream.
///
/// A parser thread turns the tar stream into entries. The archiver lists
/// entries ahead of the one it archives, so each file's content is
/// taken out of the stream before the next header is read: small files into
/// memory, large ones into an unlinked spool file. Memory stays bounded by
/// `QUEUE_DEPTH × MEMORY_LIMIT` here, and by the archiver's few batches of
/// about a megabyte (plus one file each) after it, whatever the volume
/// holds.
pub(crate) struct ArchiveSource {
    entries: Mutex<Option<mpsc::Receiver<ArchiveItem>>>,
    parser: Mutex<Option<std::thread::JoinHandle<()>>>,
    size: Option<u64>,
    close: Option<Close>,
}

impl Drop for ArchiveSource {
    /// Waits for the parser: it may be reading a hard link's content
    /// through a second helper container, which the caller removes after
    /// this source is gone. Dropping the receiver first makes it stop.
    fn drop(&mut self) {
        if let Ok(mut rx) = self.entries.lock() {
            rx.take();
        }
        // A parser in the middle of a large file would read it to its end
        // first (hours, for a volume's biggest); closed, its stream ends.
        if let Some(close) = self.close.take() {
            close();
        }
        if let Some(parser) = self.parser.lock().ok().and_then(|mut p| p.take()) {
            let _ = parser.join();
        }
    }
}

/// Fetches the content of one file again, for hard links: the archive
/// stream carries a link's content only once, under its first name.
pub(crate) type Refetch = Box<dyn Fn(&[u8]) -> std::io::Result<Payload> + Send>;

/// Closes the stream an [`ArchiveSource`] parses, when the source is done
/// with before the stream ends.
pub(crate) type Close = Box<dyn FnOnce() + Send + Sync>;

/// What the engine-archive source reads and how it names it.
pub(crate) struct ArchiveInput {
    /// The tar stream of the volume.
    pub(crate) stream: Box<dyn Read + Send>,
    /// The path entries are named below.
    pub(crate) base: PathBuf,
    /// The name the root directory gets in the snapshot.
    pub(crate) root_name: OsString,
    /// Where file content too large for memory waits.
    pub(crate) spool_dir: PathBuf,
    pub(crate) refetch: Refetch,
    pub(crate) close: Option<Close>,
}

impl ArchiveSource {
    /// Starts parsing the input's stream on a thread of its own.
    pub(crate) fn start(
        input: ArchiveInput,
        log: SharedLog,
        progress: Arc<TransferProgress>,
        size: Option<u64>,
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel(QUEUE_DEPTH);
        let parser = TarParser {
            base: input.base,
            root_name: input.root_name,
            spool_dir: input.spool_dir,
            refetch: input.refetch,
            log: log.clone(),
            progress,
            previous: None,
            regular_files: std::collections::HashMap::new(),
        };
        let stream = input.stream;
        let spawned = std::thread::Builder::new()
            .name("lifeboat-archive".into())
            .spawn(move || parser.run(stream, &tx));
        let parser = match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                // Without a parser the entries end at once: that must not
                // read as an empty volume.
                record_fatal(
                    &log,
                    format!("cannot start reading the archive stream: {e}"),
                );
                None
            }
        };
        Self {
            entries: Mutex::new(Some(rx)),
            parser: Mutex::new(parser),
            size,
            close: input.close,
        }
    }
}

impl Source for ArchiveSource {
    type Open = CheckedOpen<Payload>;
    type Entries = Box<dyn Iterator<Item = ArchiveItem> + Send>;

    fn size(&self) -> Result<Option<u64>, String> {
        Ok(self.size)
    }

    fn entries(&self) -> Self::Entries {
        let rx = self.entries.lock().ok().and_then(|mut e| e.take());
        match rx {
            Some(rx) => Box::new(rx.into_iter()),
            None => Box::new(std::iter::empty()),
        }
    }
}

struct TarParser {
    base: PathBuf,
    root_name: OsString,
    spool_dir: PathBuf,
    refetch: Refetch,
    log: SharedLog,
    progress: Arc<TransferProgress>,
    /// The previous entry's components, to check tree order.
    previous: Option<Vec<Vec<u8>>>,
    /// Regular files seen so far, by path, with the inode number given to
    /// them; hard links must point at one of these.
    regular_files: std::collections::HashMap<Vec<u8>, u64>,
}

/// Why an archive entry is refused.
fn hostile(path: &[u8], why: &str) -> String {
    format!(
        "refused archive entry {:?}: {why}",
        String::from_utf8_lossy(path)
    )
}

/// Splits an archive path into its components, refusing anything that
/// could leave the volume. `Ok(vec![])` is the root itself.
pub(crate) fn archive_components(path: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if path.first() == Some(&b'/') {
        return Err(hostile(path, "absolute path"));
    }
    let mut parts = Vec::new();
    for part in path.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(hostile(path, "parent directory component")),
            p if p.contains(&0) => return Err(hostile(path, "NUL byte in name")),
            p => parts.push(p.to_vec()),
        }
    }
    Ok(parts)
}

impl TarParser {
    fn run(mut self, stream: Box<dyn Read + Send>, tx: &mpsc::SyncSender<ArchiveItem>) {
        let mut archive = TarReader::new(stream);
        let mut inode = 0u64;
        loop {
            let entry = match archive.next_entry() {
                Ok(Some(e)) => e,
                Ok(None) => return,
                Err(e) => return self.fail(tx, format!("reading the archive stream: {e}")),
            };
            inode += 1;
            match self.convert(entry, &mut archive.content(), inode) {
                Ok(item) => {
                    if tx.send(Ok(item)).is_err() {
                        // The backup stopped reading: nothing more to do.
                        return;
                    }
                }
                Err(message) => return self.fail(tx, message),
            }
        }
    }

    fn fail(&self, tx: &mpsc::SyncSender<ArchiveItem>, message: String) {
        record_fatal(&self.log, message.clone());
        let _ = tx.send(Err(message));
    }

    fn convert(
        &mut self,
        entry: TarEntry,
        content: &mut impl Read,
        inode: u64,
    ) -> Result<Entry<CheckedOpen<Payload>>, String> {
        let TarEntry {
            path: raw_path,
            typeflag,
            mut meta,
        } = entry;
        let parts = archive_components(&raw_path)?;
        let hard_link = typeflag == b'1';
        let kind = match typeflag {
            b'0' | 0 | b'7' | b'1' => Kind::File,
            b'5' => Kind::Dir,
            b'2' => Kind::Symlink,
            b'3' => Kind::CharDevice,
            b'4' => Kind::BlockDevice,
            b'6' => Kind::Fifo,
            // Anything else (sparse or vendor entries) would be a file left
            // out without a word.
            other => {
                return Err(hostile(
                    &raw_path,
                    &format!("unsupported archive entry type {:?}", other as char),
                ));
            }
        };
        if parts.is_empty() && kind != Kind::Dir {
            return Err(hostile(
                &raw_path,
                "the root of the volume is not a directory",
            ));
        }
        if let Some(previous) = &self.previous
            && parts <= *previous
        {
            return Err(hostile(
                &raw_path,
                "out of order (the archive is not a sorted tree walk)",
            ));
        }
        self.previous = Some(parts.clone());

        let path = parts.iter().fold(self.base.clone(), |p, c| {
            p.join(std::ffi::OsStr::from_bytes(c))
        });
        let name: OsString = match parts.last() {
            Some(last) => std::ffi::OsStr::from_bytes(last).to_os_string(),
            None => self.root_name.clone(),
        };
        let joined = parts.join(&b'/');

        let (mut node, open) = if hard_link {
            let target = meta.link_target.clone().unwrap_or_default();
            let target_parts = archive_components(&target)?;
            let target_key = target_parts.join(&b'/');
            let Some(&target_inode) = self.regular_files.get(&target_key) else {
                return Err(hostile(
                    &raw_path,
                    &format!(
                        "hard link to {:?}, which is not a file earlier in the volume",
                        String::from_utf8_lossy(&target)
                    ),
                ));
            };
            let payload = (self.refetch)(&target_key).map_err(|e| {
                format!(
                    "reading {:?} again for its hard link {:?}: {e}",
                    String::from_utf8_lossy(&target_key),
                    String::from_utf8_lossy(&joined)
                )
            })?;
            meta.size = payload_len(&payload).map_err(|e| {
                format!("measuring {:?}: {e}", String::from_utf8_lossy(&target_key))
            })?;
            let mut node = node_from_tar(&name, Kind::File, &meta);
            node.meta.inode = target_inode;
            (node, Some(payload))
        } else if kind == Kind::File {
            let payload = self.take_content(content, meta.size).map_err(|e| {
                format!(
                    "reading {:?} from the archive stream: {e}",
                    String::from_utf8_lossy(&joined)
                )
            })?;
            self.regular_files.insert(joined, inode);
            let mut node = node_from_tar(&name, Kind::File, &meta);
            node.meta.inode = inode;
            (node, Some(payload))
        } else {
            (node_from_tar(&name, kind, &meta), None)
        };
        if kind == Kind::File {
            // The archive does not say which files will be linked later on,
            // so every file is a possible link: all carry a device and an
            // inode number and a link count above one, and restore links
            // exactly those that share an inode number. The recorded count
            // is therefore not st_nlink for this reader.
            node.meta.device_id = 1;
            node.meta.links = 2;
        }
        let open = open.map(|inner| {
            CheckedOpen::new(inner, path.clone(), self.log.clone(), self.progress.clone())
        });
        Ok(Entry { path, node, open })
    }

    fn take_content(&self, entry: &mut impl Read, size: u64) -> std::io::Result<Payload> {
        read_payload(entry, size, &self.spool_dir, &self.progress)
    }
}

fn payload_len(p: &Payload) -> std::io::Result<u64> {
    match p {
        Payload::Memory(b) => Ok(b.len() as u64),
        Payload::Spooled(f) => f.metadata().map(|m| m.len()),
    }
}

/// Takes one file's content out of a stream: into memory when small, into
/// an unlinked spool file otherwise.
pub(crate) fn read_payload(
    r: &mut impl Read,
    size: u64,
    spool_dir: &Path,
    progress: &TransferProgress,
) -> std::io::Result<Payload> {
    // The header's size, reserved at once: grown by doubling, a buffer
    // would hold up to twice the file while it waits for the chunker.
    let reserve = usize::try_from(size.min(MEMORY_LIMIT + 1)).unwrap_or(0);
    let mut head = Vec::with_capacity(reserve);
    r.by_ref().take(MEMORY_LIMIT + 1).read_to_end(&mut head)?;
    progress
        .bytes_read
        .fetch_add(head.len() as u64, Ordering::Relaxed);
    if head.len() as u64 <= MEMORY_LIMIT {
        return Ok(Payload::Memory(Bytes::from(head)));
    }
    std::fs::create_dir_all(spool_dir)?;
    let mut file = tempfile::tempfile_in(spool_dir)?;
    file.write_all(&head)?;
    let mut counted = CountingWriter {
        inner: &mut file,
        counter: &progress.bytes_read,
    };
    std::io::copy(r, &mut counted)?;
    file.rewind()?;
    Ok(Payload::Spooled(file))
}

struct CountingWriter<'a, W> {
    inner: W,
    counter: &'a AtomicU64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::source::ReadLog;

    fn parse(tar_bytes: Vec<u8>) -> (Vec<ArchiveItem>, ReadLog) {
        let log = SharedLog::default();
        let input = ArchiveInput {
            stream: Box::new(std::io::Cursor::new(tar_bytes)),
            base: PathBuf::from("/base"),
            root_name: OsString::from("vol"),
            spool_dir: std::env::temp_dir(),
            refetch: Box::new(|_| Err(std::io::Error::other("no refetch in tests"))),
            close: None,
        };
        let source = ArchiveSource::start(
            input,
            log.clone(),
            Arc::new(TransferProgress::default()),
            None,
        );
        let items: Vec<_> = source.entries().collect();
        let log = std::mem::take(&mut *log.lock().expect("log lock"));
        (items, log)
    }

    fn raw_header(name: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        // set_path refuses `..`; write the raw name field as a hostile
        // archive would.
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        h
    }

    fn archive(entries: &[(&[u8], tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let h = raw_header(name, *kind, data.len() as u64);
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("finish")
    }

    #[test]
    fn archive_entries_become_a_tree() {
        let (items, log) = parse(archive(&[
            (b"./", tar::EntryType::Directory, b""),
            (b"./a", tar::EntryType::Regular, b"hello"),
            (b"./d/", tar::EntryType::Directory, b""),
            (b"./d/b", tar::EntryType::Regular, b""),
        ]));
        assert!(log.fatal.is_empty(), "{:?}", log.fatal);
        let paths: Vec<_> = items
            .iter()
            .map(|i| i.as_ref().expect("entry").path.clone())
            .collect();
        assert_eq!(
            paths,
            ["/base", "/base/a", "/base/d", "/base/d/b"].map(PathBuf::from)
        );
        let root = items[0].as_ref().expect("root");
        assert_eq!(root.node.name, "vol");
        assert!(root.node.is_dir());
        let a = items[1].as_ref().expect("a");
        assert_eq!(a.node.meta.size, 5);
    }

    #[test]
    fn parent_components_are_refused() {
        let (items, log) = parse(archive(&[
            (b"./", tar::EntryType::Directory, b""),
            (b"../evil", tar::EntryType::Regular, b"x"),
        ]));
        assert!(items.iter().any(Result::is_err));
        assert!(log.fatal[0].contains("parent directory"), "{:?}", log.fatal);
    }

    #[test]
    fn absolute_paths_are_refused() {
        let (_, log) = parse(archive(&[(b"/etc/passwd", tar::EntryType::Regular, b"x")]));
        assert!(log.fatal[0].contains("absolute"), "{:?}", log.fatal);
    }

    #[test]
    fn hard_links_out_of_the_volume_are_refused() {
        let (_, log) = parse(archive(&[
            (b"./", tar::EntryType::Directory, b""),
            (b"./a", tar::EntryType::Regular, b"x"),
        ]));
        assert!(log.fatal.is_empty());
        let mut b = tar::Builder::new(Vec::new());
        b.append(&raw_header(b"./", tar::EntryType::Directory, 0), &b""[..])
            .expect("append");
        let mut link = raw_header(b"./l", tar::EntryType::Link, 0);
        link.set_link_name("../../etc/shadow").ok();
        link.as_old_mut().linkname[..16].copy_from_slice(b"../../etc/shadow");
        link.set_cksum();
        b.append(&link, &b""[..]).expect("append");
        let (_, log) = parse(b.into_inner().expect("finish"));
        assert!(log.fatal[0].contains("parent directory"), "{:?}", log.fatal);
    }

    #[test]
    fn a_truncated_stream_is_an_error() {
        let mut bytes = archive(&[
            (b"./", tar::EntryType::Directory, b""),
            (b"./a", tar::EntryType::Regular, b"hello"),
        ]);
        // Cut off the end-of-archive marker.
        bytes.truncate(bytes.len() - 1024);
        let (_, log) = parse(bytes);
        assert!(
            log.fatal.iter().any(|m| m.contains("truncated")),
            "{:?}",
            log.fatal
        );
    }

    #[test]
    fn content_cut_mid_file_is_an_error() {
        let mut bytes = archive(&[
            (b"./", tar::EntryType::Directory, b""),
            (b"./a", tar::EntryType::Regular, &[7u8; 3000]),
        ]);
        bytes.truncate(512 * 3);
        let (_, log) = parse(bytes);
        assert!(!log.fatal.is_empty());
    }

    #[test]
    fn large_files_are_spooled_not_held() {
        let big = vec![1u8; (MEMORY_LIMIT + 10) as usize];
        let payload = read_payload(
            &mut std::io::Cursor::new(big.clone()),
            big.len() as u64,
            &std::env::temp_dir(),
            &TransferProgress::default(),
        )
        .expect("payload");
        assert!(matches!(payload, Payload::Spooled(_)));
        let mut back = Vec::new();
        payload
            .open()
            .expect("open")
            .read_to_end(&mut back)
            .expect("read");
        assert_eq!(back, big);
    }

    #[test]
    fn out_of_order_archives_are_refused() {
        let (_, log) = parse(archive(&[
            (b"./", tar::EntryType::Directory, b""),
            (b"./b", tar::EntryType::Regular, b""),
            (b"./a", tar::EntryType::Regular, b""),
        ]));
        assert!(log.fatal[0].contains("out of order"), "{:?}", log.fatal);
    }
}
