//! The backend every repository operation writes through: snapshots held
//! back until the source has been checked, local packs flushed on a
//! thread of their own.

use std::sync::{Arc, Mutex};

use rustic_core::{Id, ReadBackend, RusticResult, WriteBackend};

use super::local_packs::LocalPacks;

/// Holds back snapshot files while an archive runs, so that a snapshot is
/// published only after the source has been checked. Everything else
/// (packs, index) goes through at once, in the order the repository format
/// requires; a held snapshot that is dropped leaves only unreferenced data.
/// The packs of a local repository are flushed to disk on a thread of
/// their own (see [`LocalPacks`]): nothing else is written, and no pack
/// read, before those it may refer to are on disk.
pub(super) struct SnapshotGate {
    pub(super) inner: Arc<dyn WriteBackend>,
    pub(super) held: Mutex<Option<Vec<HeldSnapshot>>>,
    pub(super) packs: Option<LocalPacks>,
}

/// A snapshot file waiting at the gate: its id, whether it may be cached,
/// and its content.
type HeldSnapshot = (Id, bool, rustic_core::BytesList);

impl SnapshotGate {
    /// The held snapshots. A panic elsewhere while the lock was taken must
    /// not open the gate, so a poisoned lock is used as it is.
    pub(super) fn held(&self) -> std::sync::MutexGuard<'_, Option<Vec<HeldSnapshot>>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn hold(&self) {
        *self.held() = Some(Vec::new());
    }

    pub(super) fn release(&self, publish: bool) -> RusticResult<()> {
        let held = self.held().take();
        if publish {
            self.flushed()?;
            for (id, cacheable, content) in held.into_iter().flatten() {
                self.write_through(rustic_core::FileType::Snapshot, &id, cacheable, content)?;
            }
        }
        Ok(())
    }

    /// Writes a file that is not a pack. In a local repository an index or
    /// snapshot file is written whole under a temporary name and then
    /// renamed: a process killed while writing one (a prune rewriting the
    /// index) leaves no half file that restic would read as damage.
    fn write_through(
        &self,
        tpe: rustic_core::FileType,
        id: &Id,
        cacheable: bool,
        content: rustic_core::BytesList,
    ) -> RusticResult<()> {
        match &self.packs {
            Some(packs)
                if matches!(
                    tpe,
                    rustic_core::FileType::Index | rustic_core::FileType::Snapshot
                ) =>
            {
                packs.write_file(tpe.dirname(), id, content)
            }
            _ => self.inner.write_bytes(tpe, id, cacheable, content),
        }
    }

    /// Waits until the packs written so far are on disk.
    pub(super) fn flushed(&self) -> RusticResult<()> {
        self.packs.as_ref().map_or(Ok(()), LocalPacks::flushed)
    }

    /// Reads a blob's stored bytes: `length` at `offset` of the pack
    /// `pack`.
    pub(super) fn read_blob(
        &self,
        pack: &Id,
        offset: u32,
        length: u32,
    ) -> RusticResult<bytes::Bytes> {
        match &self.packs {
            Some(packs) => packs.read(pack, offset, length).map(bytes::Bytes::from),
            None => {
                self.inner
                    .read_partial(rustic_core::FileType::Pack, pack, false, offset, length)
            }
        }
    }

    /// Waits until the pack `id` is on disk, if it is on its way.
    pub(super) fn flushed_pack(&self, tpe: rustic_core::FileType, id: &Id) -> RusticResult<()> {
        match &self.packs {
            Some(packs) if tpe == rustic_core::FileType::Pack => packs.flushed_pack(id),
            _ => Ok(()),
        }
    }
}

impl ReadBackend for SnapshotGate {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn list_with_size(&self, tpe: rustic_core::FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.inner.list_with_size(tpe)
    }
    fn list(&self, tpe: rustic_core::FileType) -> RusticResult<Vec<Id>> {
        self.inner.list(tpe)
    }
    fn read_full(&self, tpe: rustic_core::FileType, id: &Id) -> RusticResult<bytes::Bytes> {
        self.flushed_pack(tpe, id)?;
        self.inner.read_full(tpe, id)
    }
    fn read_partial(
        &self,
        tpe: rustic_core::FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<bytes::Bytes> {
        self.flushed_pack(tpe, id)?;
        self.inner.read_partial(tpe, id, cacheable, offset, length)
    }
    fn warmup_path(&self, tpe: rustic_core::FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
    fn needs_warm_up(&self) -> bool {
        self.inner.needs_warm_up()
    }
    fn warm_up(&self, tpe: rustic_core::FileType, id: &Id) -> RusticResult<()> {
        self.inner.warm_up(tpe, id)
    }
}

impl WriteBackend for SnapshotGate {
    fn create(&self) -> RusticResult<()> {
        self.inner.create()
    }
    fn write_bytes(
        &self,
        tpe: rustic_core::FileType,
        id: &Id,
        cacheable: bool,
        content: rustic_core::BytesList,
    ) -> RusticResult<()> {
        if tpe == rustic_core::FileType::Pack
            && let Some(packs) = &self.packs
        {
            return packs.write(id, content);
        }
        if tpe == rustic_core::FileType::Snapshot
            && let Some(held) = self.held().as_mut()
        {
            held.push((*id, cacheable, content));
            return Ok(());
        }
        self.flushed()?;
        self.write_through(tpe, id, cacheable, content)
    }
    fn remove(&self, tpe: rustic_core::FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        self.inner.remove(tpe, id, cacheable)
    }
}
