//! Blobs as the repository stores them, and the pack files and index files
//! that hold and find them (restic's repository format, version 1 or 2).
//!
//! A blob is compressed with zstd when the repository is of version 2, at
//! its configured level, then encrypted with the master key: a random
//! nonce, AES-256-CTR, a Poly1305-AES MAC. When the repository asks for it
//! (the default), each blob is decrypted and decompressed again and
//! compared with what was meant to be stored before it goes anywhere: a
//! fault in memory or in the compressor would otherwise be found only by a
//! restore.
//!
//! A pack gathers blobs of one type and ends with its header, an encrypted
//! list of its blobs, and the header's length; it is named by its SHA-256.
//! Index files list the packs and where each blob is in them.

use std::num::NonZeroU32;
use std::sync::Arc;

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use aes256ctr_poly1305aes::aead::AeadInPlace;
use rustic_core::repofile::{BlobType, ConfigFile, MasterKey};
use rustic_core::{FileType, Id, WriteBackend};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::repo::local_packs::{LocalPacks, PackFile};

/// The largest pack the format allows (what the repository library
/// allows, for packs it can read back).
const MAX_PACK: u64 = 4076 << 20;

/// How many packs one index file lists at most.
const PACKS_PER_INDEX: usize = 1000;

/// How many blobs of written packs wait before they are listed in an
/// index file (restic's full index holds 50,000): a backup of a million
/// small files then does not keep a million entries until it ends.
const BLOBS_PER_INDEX: usize = if cfg!(test) { 4 } else { 50_000 };

/// The size of a data pack when the repository does not set one:
/// restic's default (the repository library's own is twice as large). A
/// repository that is not a local directory gets each pack whole, so it
/// is gathered in memory first.
/// (Small under test, so that tests make many packs.)
const DEFAULT_DATA_PACK: u32 = if cfg!(test) { 64 << 10 } else { 16 << 20 };

/// A blob ready for a pack.
pub(crate) struct Encoded {
    pub(crate) id: [u8; 32],
    pub(crate) tpe: BlobType,
    pub(crate) bytes: Vec<u8>,
    /// The plain length, when the blob is compressed.
    pub(crate) uncompressed: Option<NonZeroU32>,
    pub(crate) plain_len: u32,
}

/// What turns plain blobs into stored ones: one per thread.
pub(crate) struct Codec {
    cipher: Aes256CtrPoly1305Aes,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    verify: Option<Verifier>,
}

struct Verifier {
    decompressor: zstd::bulk::Decompressor<'static>,
    scratch: Vec<u8>,
    plain: Vec<u8>,
}

/// The compression level a repository asks for: `None` for none.
pub(crate) fn level(config: &ConfigFile) -> Result<Option<i32>> {
    config.zstd().map_err(|e| {
        Error::Other(format!(
            "the repository's configuration: {}",
            e.display_log()
        ))
    })
}

impl Codec {
    pub(crate) fn new(key: &MasterKey, config: &ConfigFile) -> Result<Self> {
        let compressor = level(config)?
            .map(zstd::bulk::Compressor::new)
            .transpose()
            .map_err(|e| Error::Other(format!("starting zstd: {e}")))?;
        let verify = if config.extra_verify() {
            Some(Verifier {
                decompressor: zstd::bulk::Decompressor::new()
                    .map_err(|e| Error::Other(format!("starting zstd: {e}")))?,
                scratch: Vec::new(),
                plain: Vec::new(),
            })
        } else {
            None
        };
        Ok(Self {
            cipher: crate::repo::crypto::cipher(key),
            compressor,
            verify,
        })
    }

    /// Compresses (when the repository does), encrypts and checks a blob
    /// whose id, the SHA-256 of `plain`, is `id`.
    pub(crate) fn encode(&mut self, tpe: BlobType, id: [u8; 32], plain: &[u8]) -> Result<Encoded> {
        let plain_len = u32::try_from(plain.len())
            .map_err(|_| Error::Other(format!("a blob of {} bytes is too large", plain.len())))?;
        let (mut bytes, uncompressed) = match self.compressor.as_mut() {
            Some(compressor) => {
                let bound = zstd::zstd_safe::compress_bound(plain.len());
                let mut out = std::io::Cursor::new(Vec::with_capacity(16 + bound + 16));
                out.get_mut().extend_from_slice(&[0; 16]);
                out.set_position(16);
                compressor
                    .compress_to_buffer(plain, &mut out)
                    .map_err(|e| Error::Other(format!("compressing a blob: {e}")))?;
                (out.into_inner(), NonZeroU32::new(plain_len))
            }
            None => {
                let mut out = Vec::with_capacity(plain.len() + 32);
                out.extend_from_slice(&[0; 16]);
                out.extend_from_slice(plain);
                (out, None)
            }
        };
        let nonce = crate::repo::crypto::nonce()?;
        bytes[..16].copy_from_slice(&nonce);
        let tag = self
            .cipher
            .encrypt_in_place_detached((&nonce).into(), &[], &mut bytes[16..])
            .map_err(|_| Error::Other("encrypting a blob failed".to_string()))?;
        bytes.extend_from_slice(&tag);
        if let Some(verifier) = self.verify.as_mut() {
            verifier.check(&self.cipher, &bytes, uncompressed, plain)?;
        }
        Ok(Encoded {
            id,
            tpe,
            bytes,
            uncompressed,
            plain_len,
        })
    }
}

impl Verifier {
    /// Decrypts and decompresses a stored blob and compares it with what
    /// it should hold.
    fn check(
        &mut self,
        cipher: &Aes256CtrPoly1305Aes,
        stored: &[u8],
        uncompressed: Option<NonZeroU32>,
        plain: &[u8],
    ) -> Result<()> {
        let corrupt = || {
            Error::Other(
                "a blob did not read back as written after compression and encryption (faulty memory?); nothing was stored from it".to_string(),
            )
        };
        let (nonce, rest) = stored.split_at(16);
        let (sealed, tag) = rest.split_at(rest.len() - 16);
        self.scratch.clear();
        self.scratch.extend_from_slice(sealed);
        cipher
            .decrypt_in_place_detached(nonce.into(), &[], &mut self.scratch, tag.into())
            .map_err(|_| corrupt())?;
        let same = match uncompressed {
            Some(length) => {
                self.plain.clear();
                self.plain.reserve(length.get() as usize);
                self.decompressor
                    .decompress_to_buffer(&self.scratch, &mut self.plain)
                    .map_err(|_| corrupt())?;
                self.plain == plain
            }
            None => self.scratch == plain,
        };
        if same { Ok(()) } else { Err(corrupt()) }
    }
}

/// The SHA-256 of some bytes: a blob's id.
pub(crate) fn hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Where a blob went.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct PackedBlob {
    pub(crate) id: Id,
    #[serde(skip)]
    raw_id: [u8; 32],
    #[serde(rename = "type")]
    pub(crate) tpe: BlobType,
    pub(crate) offset: u32,
    pub(crate) length: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) uncompressed_length: Option<NonZeroU32>,
}

/// A pack as an index file lists it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct WrittenPack {
    pub(crate) id: Id,
    pub(crate) blobs: Vec<PackedBlob>,
}

/// What was stored, for the snapshot's summary.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Added {
    pub(crate) data_blobs: u64,
    pub(crate) tree_blobs: u64,
    pub(crate) data_plain: u64,
    pub(crate) data_stored: u64,
    pub(crate) tree_plain: u64,
    pub(crate) tree_stored: u64,
}

/// The pack being filled for one blob type.
struct Open {
    /// Its bytes, from the first blob on.
    body: Option<Body>,
    len: usize,
    hasher: Sha256,
    blobs: Vec<PackedBlob>,
}

impl Open {
    fn new() -> Self {
        Self {
            body: None,
            len: 0,
            hasher: Sha256::new(),
            blobs: Vec::new(),
        }
    }
}

/// Where a pack's bytes go as its blobs come.
enum Body {
    /// Gathered, then written whole through the backend.
    Memory(Vec<u8>),
    /// Written as they come into a pack file of a local repository.
    File(PackFile),
}

impl Body {
    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Self::Memory(gathered) => {
                gathered.extend_from_slice(bytes);
                Ok(())
            }
            Self::File(file) => file
                .append(bytes)
                .map_err(|e| Error::Storage(format!("writing a pack: {e}"))),
        }
    }
}

/// Gathers blobs into packs and writes them; then the index.
pub(crate) struct Packer<'a> {
    backend: Arc<dyn WriteBackend>,
    /// The repository's pack files, when it is a local directory: packs
    /// are then written as they fill.
    local: Option<&'a LocalPacks>,
    cipher: Aes256CtrPoly1305Aes,
    files_level: Option<i32>,
    data: Open,
    trees: Open,
    /// Target pack sizes: the repository's default size, grown with the
    /// square root of what the repository holds of the type.
    data_target: u64,
    tree_target: u64,
    /// Packs written and not yet in an index file, and their blobs.
    written: Vec<WrittenPack>,
    unlisted_blobs: usize,
    pub(crate) added: Added,
}

impl<'a> Packer<'a> {
    pub(crate) fn new(
        backend: Arc<dyn WriteBackend>,
        local: Option<&'a LocalPacks>,
        key: &MasterKey,
        config: &ConfigFile,
        data_size: u64,
        tree_size: u64,
    ) -> Result<Self> {
        let target = |tpe: BlobType, held: u64| {
            let (default, grow, limit) = config.packsize(tpe);
            let default = match tpe {
                BlobType::Data => config.datapack_size.unwrap_or(DEFAULT_DATA_PACK),
                BlobType::Tree => default,
            };
            (held.isqrt() * u64::from(grow) + u64::from(default))
                .min(u64::from(limit))
                .min(MAX_PACK)
        };
        Ok(Self {
            backend,
            local,
            cipher: crate::repo::crypto::cipher(key),
            files_level: level(config)?,
            data: Open::new(),
            trees: Open::new(),
            data_target: target(BlobType::Data, data_size),
            tree_target: target(BlobType::Tree, tree_size),
            written: Vec::new(),
            unlisted_blobs: 0,
            added: Added::default(),
        })
    }

    /// Adds a blob; a pack that reaches its size is written.
    pub(crate) fn add(&mut self, blob: Encoded) -> Result<()> {
        let length = u32::try_from(blob.bytes.len())
            .map_err(|_| Error::Other("a stored blob is too large".to_string()))?;
        // A blob that would take the pack, header included, past its size
        // goes into the next one: the buffer reserved for a pack is then
        // enough, and no pack is copied to grow it.
        let (open, target) = match blob.tpe {
            BlobType::Data => (&self.data, self.data_target),
            BlobType::Tree => (&self.trees, self.tree_target),
        };
        let full = open.len + blob.bytes.len() + stored_header_len(open.blobs.len() + 1);
        if !open.blobs.is_empty() && full as u64 > target {
            self.flush(blob.tpe)?;
        }
        let (open, target) = match blob.tpe {
            BlobType::Data => {
                self.added.data_blobs += 1;
                self.added.data_plain += u64::from(blob.plain_len);
                self.added.data_stored += u64::from(length);
                (&mut self.data, self.data_target)
            }
            BlobType::Tree => {
                self.added.tree_blobs += 1;
                self.added.tree_plain += u64::from(blob.plain_len);
                self.added.tree_stored += u64::from(length);
                (&mut self.trees, self.tree_target)
            }
        };
        let body =
            match open.body.as_mut() {
                Some(body) => body,
                None => open.body.insert(match self.local {
                    Some(local) => Body::File(local.create().map_err(|e| {
                        Error::Storage(format!("writing a pack: {}", e.display_log()))
                    })?),
                    // Room for the whole pack at once: growing a buffer of
                    // megabytes by doubling copies it and leaves it twice as
                    // big.
                    None => Body::Memory(Vec::with_capacity(
                        usize::try_from(target)
                            .unwrap_or(usize::MAX)
                            .max(blob.bytes.len() + stored_header_len(1)),
                    )),
                }),
            };
        let offset = u32::try_from(open.len)
            .map_err(|_| Error::Other("a pack grew too large".to_string()))?;
        open.hasher.update(&blob.bytes);
        body.append(&blob.bytes)?;
        open.len += blob.bytes.len();
        open.blobs.push(PackedBlob {
            id: Id::new(blob.id),
            raw_id: blob.id,
            tpe: blob.tpe,
            offset,
            length,
            uncompressed_length: blob.uncompressed,
        });
        if open.len as u64 >= target {
            self.flush(blob.tpe)?;
        }
        Ok(())
    }

    /// Writes the open pack of a type, if it holds anything.
    fn flush(&mut self, tpe: BlobType) -> Result<()> {
        let open = match tpe {
            BlobType::Data => &mut self.data,
            BlobType::Tree => &mut self.trees,
        };
        if open.blobs.is_empty() {
            return Ok(());
        }
        let Open {
            body,
            mut hasher,
            blobs,
            ..
        } = std::mem::replace(open, Open::new());
        let mut body = body.ok_or_else(|| Error::Other("a pack without bytes".to_string()))?;
        let header = seal(&self.cipher, &header(&blobs))?;
        let header_len = u32::try_from(header.len())
            .map_err(|_| Error::Other("a pack header is too large".to_string()))?
            .to_le_bytes();
        hasher.update(&header);
        hasher.update(header_len);
        body.append(&header)?;
        body.append(&header_len)?;
        let id = Id::new(hasher.finalize().into());
        let written = match (body, self.local) {
            (Body::File(file), Some(local)) => local.finish(file, &id),
            (Body::Memory(bytes), _) => {
                self.backend
                    .write_bytes(FileType::Pack, &id, tpe == BlobType::Tree, bytes.into())
            }
            (Body::File(_), None) => {
                return Err(Error::Other(
                    "a pack file without its repository".to_string(),
                ));
            }
        };
        written.map_err(|e| Error::Storage(format!("writing a pack: {}", e.display_log())))?;
        self.unlisted_blobs += blobs.len();
        self.written.push(WrittenPack { id, blobs });
        if self.unlisted_blobs >= BLOBS_PER_INDEX || self.written.len() >= PACKS_PER_INDEX {
            self.write_index()?;
        }
        Ok(())
    }

    /// Writes the last packs, then an index file for the packs not yet in
    /// one: only then may a snapshot refer to their blobs.
    pub(crate) fn finish(mut self) -> Result<Added> {
        self.flush(BlobType::Data)?;
        self.flush(BlobType::Tree)?;
        self.write_index()?;
        Ok(self.added)
    }

    /// Lists the packs written since the last index file in a new one.
    /// They are complete: an index file may name them at any time.
    fn write_index(&mut self) -> Result<()> {
        for packs in self.written.chunks(PACKS_PER_INDEX) {
            #[derive(Serialize)]
            struct IndexJson<'a> {
                packs: &'a [WrittenPack],
            }
            let json = serde_json::to_vec(&IndexJson { packs })
                .map_err(|e| Error::Other(format!("writing the index: {e}")))?;
            write_file(
                &*self.backend,
                &self.cipher,
                self.files_level,
                FileType::Index,
                &json,
            )?;
        }
        self.written.clear();
        self.unlisted_blobs = 0;
        Ok(())
    }
}

/// The most a pack's header of `blobs` blobs takes in the pack: an entry
/// of at most 41 bytes a blob, sealed (a nonce and a tag), and its length.
fn stored_header_len(blobs: usize) -> usize {
    blobs * 41 + 32 + 4
}

/// A pack's header, before encryption: for each blob its type (compressed
/// types have the high bit set), its stored length, its plain length when
/// compressed, and its id.
fn header(blobs: &[PackedBlob]) -> Vec<u8> {
    let mut out = Vec::with_capacity(blobs.len() * 41);
    for blob in blobs {
        let kind: u8 = match blob.tpe {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        };
        match blob.uncompressed_length {
            Some(plain) => {
                out.push(kind | 2);
                out.extend_from_slice(&blob.length.to_le_bytes());
                out.extend_from_slice(&plain.get().to_le_bytes());
            }
            None => {
                out.push(kind);
                out.extend_from_slice(&blob.length.to_le_bytes());
            }
        }
        out.extend_from_slice(&blob.raw_id);
    }
    out
}

/// Encrypts a small thing (a pack header, a file) with a fresh nonce.
fn seal(cipher: &Aes256CtrPoly1305Aes, plain: &[u8]) -> Result<Vec<u8>> {
    let nonce = crate::repo::crypto::nonce()?;
    let mut out = Vec::with_capacity(plain.len() + 32);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let tag = cipher
        .encrypt_in_place_detached((&nonce).into(), &[], &mut out[16..])
        .map_err(|_| Error::Other("encryption failed".to_string()))?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Writes a repository file (an index, a snapshot): its JSON, compressed
/// as the repository asks (a leading 2 marks zstd), encrypted, named by
/// the SHA-256 of what is stored.
pub(crate) fn write_file(
    backend: &dyn WriteBackend,
    cipher: &Aes256CtrPoly1305Aes,
    level: Option<i32>,
    tpe: FileType,
    json: &[u8],
) -> Result<Id> {
    let plain = match level {
        Some(level) => {
            let mut out = vec![2u8];
            out.extend(
                zstd::bulk::compress(json, level)
                    .map_err(|e| Error::Other(format!("compressing a repository file: {e}")))?,
            );
            out
        }
        None => json.to_vec(),
    };
    let stored = seal(cipher, &plain)?;
    let id = Id::new(hash(&stored));
    backend
        .write_bytes(tpe, &id, true, stored.into())
        .map_err(|e| Error::Storage(format!("writing to the repository: {}", e.display_log())))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_format() {
        let id = Id::new([7; 32]);
        let blobs = [
            PackedBlob {
                id,
                raw_id: [7; 32],
                tpe: BlobType::Data,
                offset: 0,
                length: 100,
                uncompressed_length: None,
            },
            PackedBlob {
                id,
                raw_id: [7; 32],
                tpe: BlobType::Tree,
                offset: 100,
                length: 50,
                uncompressed_length: NonZeroU32::new(300),
            },
        ];
        let h = header(&blobs);
        assert_eq!(h.len(), 37 + 41);
        assert_eq!(h[0], 0);
        assert_eq!(&h[1..5], &100u32.to_le_bytes());
        assert_eq!(&h[5..37], &[7; 32]);
        assert_eq!(h[37], 3);
        assert_eq!(&h[38..42], &50u32.to_le_bytes());
        assert_eq!(&h[42..46], &300u32.to_le_bytes());
        // What a pack reserves for its header is enough for any blobs.
        let cipher = crate::repo::crypto::cipher(&MasterKey::new());
        let sealed = seal(&cipher, &h).expect("sealed");
        assert!(sealed.len() + 4 <= stored_header_len(blobs.len()));
    }
}
