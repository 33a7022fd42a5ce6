//! Pack files of a repository in a local directory: written at once, and
//! flushed to disk on a thread of their own.
//!
//! The repository library's local backend flushes every file it writes to
//! disk before it returns. A backup of new data then waited for the disk
//! at every 16 MiB pack: on two cores, a first backup of 1 GiB of random
//! data kept them busy 60% of its wall time (perf, `lifeboat backup` of
//! the bench's `big` set). Here a pack is written under a temporary name
//! and handed to a flusher thread, which syncs it and gives it its name
//! while the backup goes on, as the library's backend does in line.
//!
//! What the format needs on disk still holds: [`LocalPacks::flushed`]
//! returns once every pack written so far is synced and named, and the
//! repository's backend calls it before it writes anything else (an index
//! that lists the packs, a snapshot), and before it reads a pack that is
//! still on its way.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, mpsc};

use rustic_core::{BytesList, ErrorKind, Id, RusticError, RusticResult};

/// The pack files written in a local repository and not yet flushed.
pub(crate) struct LocalPacks {
    dir: PathBuf,
    state: std::sync::Arc<(Mutex<Flushing>, Condvar)>,
    /// The flusher's queue and thread, started with the first pack.
    flusher: Mutex<Option<(mpsc::Sender<Written>, std::thread::JoinHandle<()>)>>,
}

#[derive(Default)]
struct Flushing {
    /// The packs written and not yet flushed.
    pending: HashSet<Id>,
    /// Why a pack could not be flushed: no later index may list it.
    failure: Option<String>,
}

/// A pack written under its temporary name.
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
            state: std::sync::Arc::default(),
            flusher: Mutex::new(None),
        }
    }

    fn state(&self) -> MutexGuard<'_, Flushing> {
        self.state
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes a pack under a temporary name and queues it for flushing.
    pub(crate) fn write(&self, id: &Id, content: BytesList) -> RusticResult<()> {
        if let Some(failure) = &self.state().failure {
            return Err(RusticError::new(
                ErrorKind::InputOutput,
                "an earlier pack could not be flushed to disk: {failure}",
            )
            .attach_context("failure", failure.clone()));
        }
        let hex = id.to_hex();
        let parent = self.dir.join("data").join(&hex[..2]);
        std::fs::create_dir_all(&parent)
            .map_err(|e| io_error("cannot create the directory", &parent, e))?;
        let path = parent.join(hex.as_str());
        let temporary = parent.join(format!("{}-tmp-", hex.as_str()));
        let written = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&temporary)
            .and_then(|mut file| {
                for piece in content.into_vec() {
                    file.write_all(&piece)?;
                }
                Ok(file)
            });
        let file = match written {
            Ok(file) => file,
            Err(e) => {
                let _ = std::fs::remove_file(&temporary);
                return Err(io_error("cannot write the pack", &temporary, e));
            }
        };
        self.state().pending.insert(*id);
        let written = Written {
            id: *id,
            file,
            temporary,
            path,
        };
        let mut flusher = self
            .flusher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if flusher.is_none() {
            let (tx, rx) = mpsc::channel();
            let state = self.state.clone();
            let started = std::thread::Builder::new()
                .name("lifeboat-flush".into())
                .spawn(move || flush(&rx, &state));
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
            flush_one(written, &self.state);
        }
        Ok(())
    }

    /// Waits until every pack written so far is on disk under its name.
    pub(crate) fn flushed(&self) -> RusticResult<()> {
        self.wait_for(|pending| !pending.is_empty())
    }

    /// Waits until the pack `id`, if it is on its way, is on disk.
    pub(crate) fn flushed_pack(&self, id: &Id) -> RusticResult<()> {
        self.wait_for(|pending| pending.contains(id))
    }

    fn wait_for(&self, waiting: impl Fn(&HashSet<Id>) -> bool) -> RusticResult<()> {
        let mut state = self.state();
        while state.failure.is_none() && waiting(&state.pending) {
            state = self
                .state
                .1
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
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
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some((tx, thread)) = flusher {
            drop(tx);
            let _ = thread.join();
        }
    }
}

fn flush(queue: &mpsc::Receiver<Written>, state: &(Mutex<Flushing>, Condvar)) {
    for written in queue {
        flush_one(written, state);
    }
}

/// Syncs a pack and gives it its name; a failure is kept for whoever
/// waits.
fn flush_one(written: Written, state: &(Mutex<Flushing>, Condvar)) {
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
    let mut flushing = state
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
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

    #[test]
    fn packs_get_their_names_once_flushed() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let packs = LocalPacks::new(dir.path().to_path_buf());
        let ids: Vec<Id> = (0..5u8).map(|i| Id::new([i; 32])).collect();
        for (i, id) in ids.iter().enumerate() {
            let content: BytesList = vec![i as u8; 1000 + i].into();
            packs.write(id, content).expect("written");
        }
        packs.flushed().expect("flushed");
        for (i, id) in ids.iter().enumerate() {
            let hex = id.to_hex();
            let path = dir.path().join("data").join(&hex[..2]).join(hex.as_str());
            assert_eq!(std::fs::read(&path)?, vec![i as u8; 1000 + i]);
        }
        let leftovers: Vec<_> = walk(dir.path())
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with("-tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        packs
            .flushed_pack(&Id::new([9; 32]))
            .expect("nothing to wait for");
        Ok(())
    }

    #[test]
    fn a_pack_that_cannot_be_written_is_an_error_and_leaves_nothing() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        // `data` is a file: no pack directory can be made in it.
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

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path);
            }
        }
        found
    }
}
