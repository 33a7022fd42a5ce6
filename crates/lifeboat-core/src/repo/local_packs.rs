//! Pack files of a repository in a local directory: written as their
//! blobs come, and flushed to disk on a thread of their own.
//!
//! The repository library's local backend flushes every file it writes to
//! disk before it returns. A backup of new data then waited for the disk
//! at every 16 MiB pack: on two cores, a first backup of 1 GiB of random
//! data kept them busy 60% of its wall time (perf, `lifeboat backup` of
//! the bench's `big` set). Here a pack is written under a temporary name,
//! blob by blob ([`PackFile`]: no pack is gathered in memory), and handed
//! to a flusher thread, which syncs it and gives it its name while the
//! backup goes on, as the library's backend does in line.
//!
//! What the format needs on disk still holds: [`LocalPacks::flushed`]
//! returns once every pack finished so far is synced and named, and the
//! repository's backend calls it before it writes anything else (an index
//! that lists the packs, a snapshot), and before it reads a pack that is
//! still on its way.
//!
//! Blobs are read back ([`LocalPacks::read`]) through the last few packs
//! kept open: a restore of small files reads one blob for each file, and
//! opening its pack each time cost a path lookup, an open and a close per
//! file.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};

use rustic_core::{BytesList, ErrorKind, Id, RusticError, RusticResult};

/// How much of a pack is gathered before it is written: the small blobs of
/// small files go to the file together.
const PACK_BUFFER: usize = 1 << 20;

/// How many packs are kept open for reading: a restore's few workers each
/// read along one pack at a time.
const OPEN_FOR_READING: usize = 8;

/// The pack files written in a local repository and not yet flushed.
pub(crate) struct LocalPacks {
    dir: PathBuf,
    state: Arc<(Mutex<Flushing>, Condvar)>,
    /// The flusher's queue and thread, started with the first pack.
    flusher: Mutex<Option<(mpsc::Sender<Written>, std::thread::JoinHandle<()>)>>,
    /// Packs open for reading, the most recently read first.
    reading: Mutex<VecDeque<(Id, Arc<File>)>>,
}

#[derive(Default)]
struct Flushing {
    /// The packs finished and not yet flushed.
    pending: HashSet<Id>,
    /// Why a pack could not be flushed: no later index may list it.
    failure: Option<String>,
}

/// A pack being written under a temporary name; dropped unfinished, it
/// is removed.
pub(crate) struct PackFile {
    file: Option<BufWriter<File>>,
    temporary: PathBuf,
}

impl PackFile {
    /// Appends bytes to the pack.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.write_all(bytes),
            None => Err(std::io::Error::other("the pack was finished")),
        }
    }
}

impl Drop for PackFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// A finished pack, under its temporary name.
struct Written {
    id: Id,
    file: File,
    temporary: PathBuf,
    path: PathBuf,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::InputOutput, "{what} `{path}`", e)
        .attach_context("what", what)
        .attach_context("path", path.display().to_string())
}

impl LocalPacks {
    /// The packs of the repository in `dir`.
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            state: Arc::default(),
            flusher: Mutex::new(None),
            reading: Mutex::default(),
        }
    }

    /// Where the pack `id` is, once flushed.
    fn path(&self, id: &Id) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join("data").join(&hex[..2]).join(hex.as_str())
    }

    /// Reads `length` bytes at `offset` of the pack `id`, once it is on
    /// disk.
    pub(crate) fn read(&self, id: &Id, offset: u32, length: u32) -> RusticResult<Vec<u8>> {
        self.flushed_pack(id)?;
        let file = self.open_for_reading(id)?;
        let mut bytes = vec![0; length as usize];
        file.read_exact_at(&mut bytes, offset.into())
            .map_err(|e| io_error("cannot read the pack", &self.path(id), e))?;
        Ok(bytes)
    }

    /// Closes the packs kept open for reading: one that was deleted since
    /// (pruned) keeps its disk space while it is open.
    pub(crate) fn close_reading(&self) {
        self.reading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn open_for_reading(&self, id: &Id) -> RusticResult<Arc<File>> {
        let mut reading = self.reading.lock().unwrap_or_else(PoisonError::into_inner);
        let at = reading.iter().position(|(open, _)| open == id);
        if let Some((open, file)) = at.and_then(|at| reading.remove(at)) {
            reading.push_front((open, file.clone()));
            return Ok(file);
        }
        let path = self.path(id);
        let file =
            Arc::new(File::open(&path).map_err(|e| io_error("cannot open the pack", &path, e))?);
        reading.truncate(OPEN_FOR_READING - 1);
        reading.push_front((*id, file.clone()));
        Ok(file)
    }

    fn state(&self) -> MutexGuard<'_, Flushing> {
        self.state.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes a whole pack and queues it for flushing.
    pub(crate) fn write(&self, id: &Id, content: BytesList) -> RusticResult<()> {
        let mut pack = self.create()?;
        for piece in content.into_vec() {
            pack.append(&piece)
                .map_err(|e| io_error("cannot write the pack", &pack.temporary, e))?;
        }
        self.finish(pack, id)
    }

    /// Writes a whole repository file that is not a pack (an index, a
    /// snapshot) into `dir_name` under its id: first under a temporary name
    /// beside the packs (which listings skip and [`remove_abandoned`]
    /// cleans up after a kill), synced, then renamed into place.
    pub(crate) fn write_file(
        &self,
        dir_name: &str,
        id: &Id,
        content: BytesList,
    ) -> RusticResult<()> {
        let mut written = self.create()?;
        for piece in content.into_vec() {
            written
                .append(&piece)
                .map_err(|e| io_error("cannot write", &written.temporary, e))?;
        }
        let dir = self.dir.join(dir_name);
        let path = dir.join(id.to_hex().as_str());
        let temporary = std::mem::take(&mut written.temporary);
        let synced = match written.file.take().map(BufWriter::into_inner) {
            Some(Ok(file)) => file.sync_all(),
            Some(Err(e)) => Err(e.into_error()),
            None => Ok(()),
        };
        synced
            .and_then(|()| std::fs::create_dir_all(&dir))
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&temporary);
                io_error("cannot write", &path, e)
            })
    }

    /// Starts a pack under a temporary name, for its bytes to be appended
    /// as they come.
    pub(crate) fn create(&self) -> RusticResult<PackFile> {
        self.wait_for(|_| false)?;
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data)
            .map_err(|e| io_error("cannot create the directory", &data, e))?;
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| {
            RusticError::new(ErrorKind::InputOutput, "no randomness for a file name: {e}")
                .attach_context("e", e.to_string())
        })?;
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        // Neither a pack's name nor in a pack's directory: listings of the
        // repository skip it. Its writer's host and process are in its
        // name, for [`remove_abandoned`].
        let temporary = data.join(format!(
            "{TEMPORARY_PREFIX}{}.{}@{}.{name}.tmp",
            crate::host::hostname(),
            std::process::id(),
            crate::host::pid_namespace().unwrap_or(0)
        ));
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&temporary)
            .map_err(|e| io_error("cannot create the pack", &temporary, e))?;
        Ok(PackFile {
            file: Some(BufWriter::with_capacity(PACK_BUFFER, file)),
            temporary,
        })
    }

    /// Queues a pack whose bytes are all written, and whose name is `id`,
    /// for flushing.
    pub(crate) fn finish(&self, mut pack: PackFile, id: &Id) -> RusticResult<()> {
        let path = self.path(id);
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        std::fs::create_dir_all(&parent)
            .map_err(|e| io_error("cannot create the directory", &parent, e))?;
        let file = match pack.file.take().map(BufWriter::into_inner) {
            Some(Ok(file)) => file,
            Some(Err(e)) => {
                let _ = std::fs::remove_file(&pack.temporary);
                return Err(io_error(
                    "cannot write the pack",
                    &pack.temporary,
                    e.into_error(),
                ));
            }
            None => {
                return Err(RusticError::new(
                    ErrorKind::InputOutput,
                    "the pack `{path}` was finished twice",
                )
                .attach_context("path", pack.temporary.display().to_string()));
            }
        };
        self.state().pending.insert(*id);
        let written = Written {
            id: *id,
            file,
            temporary: std::mem::take(&mut pack.temporary),
            path,
        };
        let mut flusher = self.flusher.lock().unwrap_or_else(PoisonError::into_inner);
        if flusher.is_none() {
            let (tx, rx) = mpsc::channel();
            let state = self.state.clone();
            let started = std::thread::Builder::new()
                .name("lifeboat-flush".into())
                .spawn(move || {
                    for written in rx {
                        flush(written, &state);
                    }
                });
            match started {
                Ok(thread) => *flusher = Some((tx, thread)),
                Err(e) => tracing::debug!("flushing packs in line: {e}"),
            }
        }
        let unsent = match flusher.as_ref() {
            Some((tx, _)) => tx.send(written).err().map(|mpsc::SendError(w)| w),
            None => Some(written),
        };
        if let Some(written) = unsent {
            // No flusher (it could not start, or it panicked): in line.
            flush(written, &self.state);
        }
        Ok(())
    }

    /// Waits until every pack finished so far is on disk under its name.
    pub(crate) fn flushed(&self) -> RusticResult<()> {
        self.wait_for(|pending| !pending.is_empty())
    }

    /// Waits until the pack `id`, if it is on its way, is on disk.
    pub(crate) fn flushed_pack(&self, id: &Id) -> RusticResult<()> {
        self.wait_for(|pending| pending.contains(id))
    }

    /// Waits while `waiting` says so; fails once a pack could not be
    /// flushed.
    fn wait_for(&self, waiting: impl Fn(&HashSet<Id>) -> bool) -> RusticResult<()> {
        let mut state = self.state();
        while state.failure.is_none() && waiting(&state.pending) {
            state = self
                .state
                .1
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        match &state.failure {
            None => Ok(()),
            Some(failure) => Err(RusticError::new(
                ErrorKind::InputOutput,
                "a pack could not be flushed to disk: {failure}",
            )
            .attach_context("failure", failure.clone())),
        }
    }
}

impl Drop for LocalPacks {
    /// Lets the flusher finish: the packs written get their names.
    fn drop(&mut self) {
        let flusher = self
            .flusher
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((tx, thread)) = flusher {
            drop(tx);
            let _ = thread.join();
        }
    }
}

/// How the names of packs being written begin.
const TEMPORARY_PREFIX: &str = "lifeboat.";

/// Removes the packs that lifeboat processes of this host were writing
/// when they were killed (the process in their name is gone), and any
/// lifeboat left under an older naming more than a day ago. A killed
/// backup's packs are referenced by nothing, and nothing else would ever
/// remove them. Returns how many were removed.
pub(crate) fn remove_abandoned(repo_dir: &Path) -> usize {
    let data = repo_dir.join("data");
    let Ok(entries) = std::fs::read_dir(&data) else {
        return 0;
    };
    let this_host = crate::host::hostname();
    let day_old = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 86_400))
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".tmp") else {
            continue;
        };
        let abandoned = match stem.strip_prefix(TEMPORARY_PREFIX) {
            // `HOST.PID@NAMESPACE.RANDOM`, the host name maybe with dots
            // of its own.
            Some(owner) => {
                let mut parts = owner.rsplitn(3, '.');
                let (_, process, host) = (parts.next(), parts.next(), parts.next());
                let (pid, namespace) = process
                    .and_then(|p| p.split_once('@'))
                    .map_or((None, None), |(pid, ns)| {
                        (pid.parse::<i64>().ok(), ns.parse::<u64>().ok())
                    });
                match (host, pid) {
                    (Some(host), Some(pid)) if host == this_host => {
                        crate::host::process_is_gone(pid, namespace)
                    }
                    _ => day_old(&entry.path()),
                }
            }
            None => stem.starts_with("lifeboat-") && day_old(&entry.path()),
        };
        if abandoned && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Syncs a pack and gives it its name; a failure is kept for whoever
/// waits.
fn flush(written: Written, state: &(Mutex<Flushing>, Condvar)) {
    let Written {
        id,
        file,
        temporary,
        path,
    } = written;
    let flushed = file
        .sync_all()
        .map_err(|e| format!("{}: {e}", temporary.display()))
        .and_then(|()| {
            drop(file);
            std::fs::rename(&temporary, &path)
                .map_err(|e| format!("naming {}: {e}", path.display()))
        });
    let mut flushing = state.0.lock().unwrap_or_else(PoisonError::into_inner);
    flushing.pending.remove(&id);
    if let Err(why) = flushed {
        let _ = std::fs::remove_file(&temporary);
        flushing.failure.get_or_insert(why);
    }
    state.1.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack_path(dir: &Path, id: &Id) -> PathBuf {
        let hex = id.to_hex();
        dir.join("data").join(&hex[..2]).join(hex.as_str())
    }

    #[test]
    fn packs_get_their_names_once_flushed() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("data"))?;
        let packs = LocalPacks::new(dir.path().to_path_buf());
        let ids: Vec<Id> = (0..5u8).map(|i| Id::new([i; 32])).collect();
        for (i, id) in ids.iter().enumerate() {
            let content: BytesList = vec![i as u8; 1000 + i].into();
            packs.write(id, content).expect("written");
        }
        // Appended piece by piece, past the buffer.
        let streamed = Id::new([7; 32]);
        let mut pack = packs.create().expect("created");
        let big = vec![7u8; PACK_BUFFER + 10];
        pack.append(b"head")?;
        pack.append(&big)?;
        packs.finish(pack, &streamed).expect("finished");
        packs.flushed().expect("flushed");
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                std::fs::read(pack_path(dir.path(), id))?,
                vec![i as u8; 1000 + i]
            );
        }
        let mut expected = b"head".to_vec();
        expected.extend_from_slice(&big);
        assert_eq!(std::fs::read(pack_path(dir.path(), &streamed))?, expected);
        assert_eq!(temporaries(dir.path()), Vec::<PathBuf>::new());
        packs
            .flushed_pack(&Id::new([9; 32]))
            .expect("nothing to wait for");
        Ok(())
    }

    #[test]
    fn blobs_are_read_back_from_more_packs_than_are_kept_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let packs = LocalPacks::new(dir.path().to_path_buf());
        let count = OPEN_FOR_READING as u8 * 2 + 1;
        let ids: Vec<Id> = (0..count).map(|i| Id::new([i; 32])).collect();
        let content = |i: u8| -> Vec<u8> { (0..100u8).map(|b| b ^ i).collect() };
        for (i, id) in (0..count).zip(&ids) {
            // Read at once: the read waits for the flusher.
            packs.write(id, content(i).into()).expect("written");
            assert_eq!(packs.read(id, 10, 5).expect("read"), content(i)[10..15]);
        }
        // Round after round, every pack again: most are no longer open.
        for _ in 0..2 {
            for (i, id) in (0..count).zip(&ids).rev() {
                assert_eq!(packs.read(id, 0, 100).expect("read"), content(i));
                assert_eq!(packs.read(id, 99, 1).expect("read"), [99 ^ i]);
            }
        }
        assert!(packs.reading.lock().expect("lock").len() <= OPEN_FOR_READING);
        packs.close_reading();
        assert!(packs.reading.lock().expect("lock").is_empty());
        assert_eq!(packs.read(&ids[1], 0, 100).expect("read"), content(1));
        // Past the end of a pack, and a pack that does not exist.
        assert!(packs.read(&ids[0], 95, 10).is_err());
        assert!(packs.read(&Id::new([200; 32]), 0, 1).is_err());
    }

    #[test]
    fn an_unfinished_pack_leaves_nothing() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("data"))?;
        let packs = LocalPacks::new(dir.path().to_path_buf());
        let mut pack = packs.create().expect("created");
        pack.append(b"half a pack")?;
        assert_eq!(temporaries(dir.path()).len(), 1);
        drop(pack);
        assert_eq!(temporaries(dir.path()), Vec::<PathBuf>::new());
        Ok(())
    }

    #[test]
    fn a_pack_that_cannot_be_written_is_an_error() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        // `data` is a file: no pack can be made in it.
        std::fs::write(dir.path().join("data"), b"")?;
        let packs = LocalPacks::new(dir.path().to_path_buf());
        assert!(
            packs
                .write(&Id::new([1; 32]), vec![1u8; 10].into())
                .is_err()
        );
        packs.flushed().expect("nothing pending");
        Ok(())
    }

    #[test]
    fn packs_abandoned_by_a_killed_writer_are_removed() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("data"))?;
        let packs = LocalPacks::new(dir.path().to_path_buf());
        let mut live = packs.create().expect("created");
        live.append(b"being written")?;
        let host = crate::host::hostname();
        let data = dir.path().join("data");
        // A process of this host that no longer runs, one of another host
        // (which cannot be asked), and a file that is not lifeboat's.
        let namespace = crate::host::pid_namespace().unwrap_or(0);
        let dead = data.join(format!("lifeboat.{host}.{}@{namespace}.00.tmp", i32::MAX));
        let elsewhere = data.join("lifeboat.other.host.example.1@1.00.tmp");
        // A process of another namespace (a container): it cannot be asked.
        let other_namespace = data.join(format!("lifeboat.{host}.{}@1.00.tmp", i32::MAX));
        let foreign = data.join("someone-else.tmp");
        for path in [&dead, &elsewhere, &foreign, &other_namespace] {
            std::fs::write(path, b"x")?;
        }
        assert_eq!(remove_abandoned(dir.path()), 1);
        assert!(!dead.exists());
        assert!(elsewhere.exists() && foreign.exists() && other_namespace.exists());
        assert_eq!(
            temporaries(dir.path()).len(),
            4,
            "the live pack was removed"
        );
        drop(live);
        Ok(())
    }

    fn temporaries(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(temporaries(&path));
            } else if path.to_string_lossy().ends_with(".tmp") {
                found.push(path);
            }
        }
        found
    }
}
