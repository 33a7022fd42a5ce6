//! File metadata in the repository's terms.
//!
//! The repository format stores a node's mode as Go's `os.FileMode` (type
//! bits high, permission bits low), device numbers in Linux's `makedev`
//! encoding, and extended attributes base64-encoded. This module turns tar
//! headers into such nodes and back, so that both engine-archive paths (read
//! and write) agree with what the host-path reader records.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use jiff::Timestamp;
use rustic_core::repofile::{Metadata, Node, NodeType};

const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;
const GO_MODE_DEVICE: u32 = 1 << 26;
const GO_MODE_NAMED_PIPE: u32 = 1 << 25;
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_CHAR_DEVICE: u32 = 1 << 21;
const GO_MODE_STICKY: u32 = 1 << 20;
const GO_MODE_PERM: u32 = 0o777;

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;

/// The kind of a file, independent of how it is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    BlockDevice,
    CharDevice,
    Fifo,
}

/// Encodes permission bits (with setuid, setgid, sticky) and a kind as a Go
/// file mode.
pub(crate) fn go_mode(unix_mode: u32, kind: Kind) -> u32 {
    let mut mode = unix_mode & GO_MODE_PERM;
    if unix_mode & S_ISUID != 0 {
        mode |= GO_MODE_SETUID;
    }
    if unix_mode & S_ISGID != 0 {
        mode |= GO_MODE_SETGID;
    }
    if unix_mode & S_ISVTX != 0 {
        mode |= GO_MODE_STICKY;
    }
    mode | match kind {
        Kind::File => 0,
        Kind::Dir => GO_MODE_DIR,
        Kind::Symlink => GO_MODE_SYMLINK,
        Kind::BlockDevice => GO_MODE_DEVICE,
        Kind::CharDevice => GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE,
        Kind::Fifo => GO_MODE_NAMED_PIPE,
    }
}

/// The permission bits (with setuid, setgid, sticky) of a Go file mode.
pub(crate) fn unix_permissions(go_mode: u32) -> u32 {
    let mut mode = go_mode & GO_MODE_PERM;
    if go_mode & GO_MODE_SETUID != 0 {
        mode |= S_ISUID;
    }
    if go_mode & GO_MODE_SETGID != 0 {
        mode |= S_ISGID;
    }
    if go_mode & GO_MODE_STICKY != 0 {
        mode |= S_ISVTX;
    }
    mode
}

/// Linux's `makedev`.
pub(crate) fn makedev(major: u64, minor: u64) -> u64 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32)
}

/// Linux's `major` and `minor`.
pub(crate) fn split_dev(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// The parts of a tar entry that a node is made from.
#[derive(Debug, Default)]
pub(crate) struct TarMeta {
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) user: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) size: u64,
    pub(crate) mtime: Option<Timestamp>,
    pub(crate) atime: Option<Timestamp>,
    pub(crate) ctime: Option<Timestamp>,
    pub(crate) link_target: Option<Vec<u8>>,
    pub(crate) device: Option<(u64, u64)>,
    pub(crate) xattrs: Vec<(String, Vec<u8>)>,
}

/// Builds a repository node from tar metadata.
pub(crate) fn node_from_tar(name: &OsStr, kind: Kind, meta: &TarMeta) -> Node {
    let node_type = match kind {
        Kind::File => NodeType::File,
        Kind::Dir => NodeType::Dir,
        Kind::Symlink => NodeType::from_link(std::path::Path::new(OsStr::from_bytes(
            meta.link_target.as_deref().unwrap_or_default(),
        ))),
        Kind::BlockDevice => NodeType::Dev {
            device: meta.device.map_or(0, |(ma, mi)| makedev(ma, mi)),
        },
        Kind::CharDevice => NodeType::Chardev {
            device: meta.device.map_or(0, |(ma, mi)| makedev(ma, mi)),
        },
        Kind::Fifo => NodeType::Fifo,
    };
    let metadata = Metadata {
        mode: Some(go_mode(meta.mode, kind)),
        mtime: meta.mtime,
        // The host-path reader records atime as mtime too, so that reading a
        // volume does not make every file look changed.
        atime: meta.atime.or(meta.mtime),
        ctime: meta.ctime,
        uid: u32::try_from(meta.uid).ok(),
        gid: u32::try_from(meta.gid).ok(),
        user: meta.user.clone(),
        group: meta.group.clone(),
        size: if kind == Kind::File { meta.size } else { 0 },
        extended_attributes: xattrs_to_repo(&meta.xattrs),
        ..Default::default()
    };
    Node::new_node(name, node_type, metadata)
}

/// The repository type of extended attributes is not exported by the
/// repository library; build it through its serialised form, which is
/// the documented repository format (`name`, base64 `value`).
fn xattrs_to_repo<T: serde::de::DeserializeOwned>(xattrs: &[(String, Vec<u8>)]) -> Vec<T> {
    xattrs
        .iter()
        .filter_map(|(name, value)| {
            serde_json::from_value(serde_json::json!({
                "name": name,
                "value": crate::base64_encode(value),
            }))
            .ok()
        })
        .collect()
}

/// The extended attributes of a node as name and value.
pub(crate) fn xattrs_of(node: &Node) -> Vec<(String, Vec<u8>)> {
    node.meta
        .extended_attributes
        .iter()
        .filter_map(|x| {
            let v = serde_json::to_value(x).ok()?;
            let name = v.get("name")?.as_str()?.to_string();
            let value = match v.get("value") {
                Some(serde_json::Value::String(s)) => crate::base64_decode(s)?,
                _ => Vec::new(),
            };
            Some((name, value))
        })
        .collect()
}

/// Parses a PAX time record (`1577836800.123456789`, possibly negative).
pub(crate) fn parse_pax_time(value: &str) -> Option<Timestamp> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(9).collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        nanos = format!("{digits:0<9}").parse().ok()?;
        if secs < 0 || value.starts_with('-') {
            nanos = -nanos;
        }
    }
    Timestamp::new(secs, i32::try_from(nanos).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_modes_round_trip() {
        for (mode, kind) in [
            (0o644, Kind::File),
            (0o4755, Kind::File),
            (0o2750, Kind::Dir),
            (0o1777, Kind::Dir),
            (0o777, Kind::Symlink),
            (0o660, Kind::CharDevice),
            (0o600, Kind::Fifo),
        ] {
            assert_eq!(
                unix_permissions(go_mode(mode, kind)),
                mode,
                "{mode:o} {kind:?}"
            );
        }
        assert_eq!(go_mode(0o755, Kind::Dir), 0x8000_01ed);
        assert_eq!(
            go_mode(0o666, Kind::CharDevice),
            (1 << 26) | (1 << 21) | 0o666
        );
    }

    #[test]
    fn device_numbers_round_trip() {
        for (ma, mi) in [(1, 3), (8, 17), (259, 4096), (4095, 255)] {
            assert_eq!(split_dev(makedev(ma, mi)), (ma, mi));
        }
        // /dev/null, as stat(2) reports it on Linux.
        assert_eq!(makedev(1, 3), 0x103);
    }

    #[test]
    fn pax_times_keep_nanoseconds() {
        let t = parse_pax_time("1577836800.123456789").expect("valid time");
        assert_eq!(t.as_second(), 1_577_836_800);
        assert_eq!(t.subsec_nanosecond(), 123_456_789);
        let t = parse_pax_time("1577836800.5").expect("valid time");
        assert_eq!(t.subsec_nanosecond(), 500_000_000);
        assert_eq!(parse_pax_time("12x"), None);
    }

    #[test]
    fn xattrs_survive_the_repository_encoding() {
        let meta = TarMeta {
            mode: 0o644,
            xattrs: vec![("user.k".into(), b"v\0\xff".to_vec())],
            ..Default::default()
        };
        let node = node_from_tar(OsStr::new("f"), Kind::File, &meta);
        assert_eq!(xattrs_of(&node), meta.xattrs);
    }
}
