//! What the repository holds already: every data blob's id (so that no
//! chunk is stored twice) and where each tree is (so that the previous
//! snapshot's trees can be read to skip unchanged files).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use aes256ctr_poly1305aes::aead::AeadInPlace;
use rustic_core::repofile::{BlobType, IndexFile, Tree};
use rustic_core::{BlobId, FileType, Id, OpenStatus, ReadBackend, Repository, TreeId};

use crate::error::{Error, Result};

thread_local! {
    /// A decompression context for each thread that reads blobs: making
    /// one for every tree took a tenth of a backup that found nothing
    /// changed.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// A blob's content from what its pack stores: decrypted, and
/// decompressed when the index says it is compressed.
pub(crate) fn open_blob(
    cipher: &Aes256CtrPoly1305Aes,
    stored: &[u8],
    uncompressed: Option<NonZeroU32>,
) -> std::result::Result<Vec<u8>, String> {
    if stored.len() < 32 {
        return Err("too short".to_string());
    }
    let (nonce, rest) = stored.split_at(16);
    let (sealed, tag) = rest.split_at(rest.len() - 16);
    let mut plain = sealed.to_vec();
    cipher
        .decrypt_in_place_detached(nonce.into(), &[], &mut plain, tag.into())
        .map_err(|_| "it does not decrypt".to_string())?;
    match uncompressed {
        Some(length) => decompress(&plain, length.get() as usize).map_err(|e| e.to_string()),
        None => Ok(plain),
    }
}

fn decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with_borrow_mut(|kept| {
        let decompressor = match kept {
            Some(d) => d,
            None => kept.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress(data, capacity)
    })
}

/// Where a tree blob is.
#[derive(Clone, Copy, Debug)]
struct TreePlace {
    pack: Id,
    offset: u32,
    length: u32,
    uncompressed: Option<NonZeroU32>,
}

/// The blobs of the repository's index.
#[derive(Default)]
pub(crate) struct Known {
    data: HashSet<BlobId>,
    trees: HashMap<BlobId, TreePlace>,
    /// What the repository holds of each type, stored: packs grow with it.
    pub(crate) data_size: u64,
    pub(crate) tree_size: u64,
}

impl Known {
    /// Reads every index file. Packs an index marks for deletion do not
    /// count: their blobs may be gone by the time a snapshot needs them.
    pub(crate) fn load(repo: &Repository<OpenStatus>) -> Result<Self> {
        let mut known = Self::default();
        let files = repo
            .stream_files::<IndexFile>()
            .map_err(|e| Error::Storage(format!("reading the index: {}", e.display_log())))?;
        for file in files {
            let (_, file) = file
                .map_err(|e| Error::Storage(format!("reading the index: {}", e.display_log())))?;
            for pack in file.packs {
                for blob in pack.blobs {
                    let length = u64::from(blob.location.length);
                    match blob.tpe {
                        BlobType::Data => {
                            known.data_size += length;
                            known.data.insert(blob.id);
                        }
                        BlobType::Tree => {
                            known.tree_size += length;
                            known.trees.insert(
                                blob.id,
                                TreePlace {
                                    pack: *pack.id,
                                    offset: blob.location.offset,
                                    length: blob.location.length,
                                    uncompressed: blob.location.uncompressed_length,
                                },
                            );
                        }
                    }
                }
            }
        }
        Ok(known)
    }

    pub(crate) fn has_data(&self, id: &BlobId) -> bool {
        self.data.contains(id)
    }

    pub(crate) fn has_tree(&self, id: &BlobId) -> bool {
        self.trees.contains_key(id)
    }

    /// Reads a tree of the repository.
    pub(crate) fn tree(
        &self,
        backend: &Arc<dyn rustic_core::WriteBackend>,
        cipher: &Aes256CtrPoly1305Aes,
        id: TreeId,
    ) -> Result<Tree> {
        let bad = |why: String| Error::Other(format!("reading tree {id}: {why}"));
        let place = self
            .trees
            .get(&BlobId::from(*id))
            .ok_or_else(|| bad("not in the index".to_string()))?;
        let stored = ReadBackend::read_partial(
            &**backend,
            FileType::Pack,
            &place.pack,
            true,
            place.offset,
            place.length,
        )
        .map_err(|e| bad(e.display_log()))?;
        let plain = open_blob(cipher, &stored, place.uncompressed).map_err(bad)?;
        if Id::new(crate::repo::archiver::pack::hash(&plain)) != *id {
            return Err(bad("its content does not match its id".to_string()));
        }
        serde_json::from_slice(&plain).map_err(|e| bad(e.to_string()))
    }
}
