//! The repository format's encryption of small files (locks, keys):
//! AES-256-CTR with a Poly1305-AES MAC, as nonce, ciphertext, MAC. The
//! repository library does this for the files it knows; lifeboat needs it
//! for lock files, which the library does not write, and for key files
//! made with the same cost restic chooses.

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use aes256ctr_poly1305aes::aead::{Aead, AeadInPlace};
use rustic_core::repofile::MasterKey;

/// A key as its three parts, encryption key then MAC keys, laid out as
/// the cipher takes them.
pub(crate) fn raw_key(encrypt: &[u8], k: &[u8], r: &[u8]) -> [u8; 64] {
    let mut raw = [0u8; 64];
    raw[..32].copy_from_slice(&encrypt[..32.min(encrypt.len())]);
    raw[32..48].copy_from_slice(&k[..16.min(k.len())]);
    raw[48..64].copy_from_slice(&r[..16.min(r.len())]);
    raw
}

fn master(key: &MasterKey) -> [u8; 64] {
    raw_key(&key.encrypt, &key.mac.k, &key.mac.r)
}

/// The cipher of the repository's master key.
pub(crate) fn cipher(key: &MasterKey) -> Aes256CtrPoly1305Aes {
    Aes256CtrPoly1305Aes::new((&master(key)).into())
}

/// A fresh nonce. Unlike for lock files, no fallback: a nonce used twice
/// with one key would expose what both encrypt.
pub(crate) fn nonce() -> crate::error::Result<[u8; 16]> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce)
        .map_err(|e| crate::error::Error::Other(format!("no randomness for encryption: {e}")))?;
    Ok(nonce)
}

/// Encrypts with the repository's master key.
pub(crate) fn seal(key: &MasterKey, plain: &[u8]) -> Vec<u8> {
    seal_raw(&master(key), plain)
}

/// Decrypts with the repository's master key.
pub(crate) fn unseal(key: &MasterKey, data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 32 {
        return None;
    }
    let plain = Aes256CtrPoly1305Aes::new((&master(key)).into())
        .decrypt(data[..16].into(), &data[16..])
        .ok()?;
    // Version 2 repositories may store such files compressed: a leading 2
    // marks zstd; plain JSON starts with `{`.
    match plain.first() {
        Some(2) => zstd::decode_all(&plain[1..]).ok(),
        _ => Some(plain),
    }
}

/// A file's name in the repository: the SHA-256 of its content, in hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Encrypts with a raw key (see [`raw_key`]).
pub(crate) fn seal_raw(raw: &[u8; 64], plain: &[u8]) -> Vec<u8> {
    let cipher = Aes256CtrPoly1305Aes::new(raw.into());
    let mut nonce = [0u8; 16];
    if getrandom::fill(&mut nonce).is_err() {
        // A repeated nonce only weakens this one small file; never fail
        // for it.
        nonce = *b"lifeboat-nonce-n";
    }
    let mut out = Vec::with_capacity(plain.len() + 32);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let tag = cipher
        .encrypt_in_place_detached((&nonce).into(), &[], &mut out[16..])
        .unwrap_or_default();
    out.extend_from_slice(&tag);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_files_open_with_the_same_key_only() {
        let key = MasterKey::new();
        let sealed = seal(&key, b"{\"x\":1}");
        assert_eq!(unseal(&key, &sealed).as_deref(), Some(&b"{\"x\":1}"[..]));
        assert_eq!(unseal(&MasterKey::new(), &sealed), None);
        assert_eq!(unseal(&key, &sealed[..10]), None);
    }
}
