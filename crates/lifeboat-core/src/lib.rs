//! lifeboat-core: the library behind lifeboat, which keeps the data of
//! Docker hosts safe.
//!
//! It finds every volume, bind mount and tmpfs mount on an engine
//! ([`inventory`]), backs them up into an encrypted, deduplicated repository
//! in restic's format ([`backup`], [`repo`]) and restores them ([`restore`]).
//! It never prints and never parses flags: it returns plain data and one
//! error type ([`Error`]) whose messages name what failed.
//!
//! Only [`engine`] talks to the Docker engine and only [`repo`] (with the
//! sources it reads) to the repository library. The engine API is async;
//! the repository library is blocking, so repository work runs on blocking
//! threads and byte streams cross between the two through bounded channels.

pub mod audit;
pub mod backup;
pub mod cancel;
pub mod config;
pub mod dump;
pub mod engine;
pub mod error;
pub mod hooks;
pub mod inventory;
pub mod journal;
pub mod ops;
pub mod plan;
pub mod progress;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod stop;
pub mod tmpfs;
pub mod volume_prune;

mod fsmeta;
mod host;
mod paths;
mod pipe;
mod tar_reader;

pub use error::{Error, ErrorClass, Result};
pub use host::raise_open_file_limit;

use base64::Engine as _;

/// `n` random bytes as lowercase hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    // The operating system's generator does not fail on Linux once booted;
    // should it, a zeroed buffer would make a guessable password, so fall
    // back to the clock and the process id rather than to zeros.
    if getrandom::fill(&mut bytes).is_err() {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            ^ u128::from(std::process::id());
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}
