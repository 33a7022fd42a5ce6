//! The size limit of a tmpfs mount, read the one way whoever wrote it:
//! the engine (`--tmpfs /run:size=64m`, `--mount tmpfs-size=67108864`),
//! compose (`tmpfs: {size: 64m}`, `- /run:size=50%`) or the kernel's own
//! mount options, which also take a share of the host's memory.

use serde::{Serialize, Serializer};

/// How large a tmpfs may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TmpfsSize {
    Bytes(u64),
    /// A share of the host's memory, in percent (`size=50%`).
    Percent(u32),
}

impl TmpfsSize {
    /// A size as docker, compose and the kernel write one: bytes, or a
    /// number with `k`, `m`, `g`, `t`, `p`, `e` (powers of 1024, any case,
    /// optionally followed by `b` or `ib`), or a percentage. Zero means no
    /// limit, so it is `None`.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let not_a_size = || format!("{text:?} is not a size");
        let t = text.trim().to_ascii_lowercase();
        if let Some(percent) = t.strip_suffix('%') {
            let percent: u32 = percent.trim().parse().map_err(|_| not_a_size())?;
            return Ok((percent > 0).then_some(Self::Percent(percent)));
        }
        let digits = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(digits);
        let number: f64 = number.parse().map_err(|_| not_a_size())?;
        let unit = unit.trim();
        let unit = unit
            .strip_suffix("ib")
            .or_else(|| unit.strip_suffix('b'))
            .unwrap_or(unit);
        let power = match unit {
            "" => 0,
            "k" => 1,
            "m" => 2,
            "g" => 3,
            "t" => 4,
            "p" => 5,
            "e" => 6,
            _ => return Err(not_a_size()),
        };
        let bytes = number * 1024f64.powi(power);
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(not_a_size());
        }
        // Rounded down, as the kernel does with a page count.
        let bytes = bytes as u64;
        Ok((bytes > 0).then_some(Self::Bytes(bytes)))
    }

    /// The `size=` among comma-separated mount options (`rw,size=64m`);
    /// `None` when there is none or it is zero.
    pub fn from_options(options: &str) -> Result<Option<Self>, String> {
        options
            .split(',')
            .find_map(|o| o.trim().strip_prefix("size="))
            .map_or(Ok(None), Self::parse)
    }
}

impl std::fmt::Display for TmpfsSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(bytes) => write!(f, "{bytes} bytes"),
            Self::Percent(percent) => write!(f, "{percent}% of memory"),
        }
    }
}

/// Bytes as a number, a share as a string such as `"50%"`: what scripts
/// reading `--json` see.
impl Serialize for TmpfsSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Bytes(bytes) => serializer.serialize_u64(*bytes),
            Self::Percent(percent) => serializer.collect_str(&format_args!("{percent}%")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_every_writer_spells_them() {
        for (text, want) in [
            ("65536", Some(TmpfsSize::Bytes(65536))),
            ("64m", Some(TmpfsSize::Bytes(64 << 20))),
            ("64M", Some(TmpfsSize::Bytes(64 << 20))),
            ("64mb", Some(TmpfsSize::Bytes(64 << 20))),
            ("64MiB", Some(TmpfsSize::Bytes(64 << 20))),
            ("1g", Some(TmpfsSize::Bytes(1 << 30))),
            ("1.5k", Some(TmpfsSize::Bytes(1536))),
            (" 2 t ", Some(TmpfsSize::Bytes(2 << 40))),
            ("50%", Some(TmpfsSize::Percent(50))),
            ("0", None),
            ("0%", None),
        ] {
            assert_eq!(TmpfsSize::parse(text), Ok(want), "{text:?}");
        }
        for bad in ["", "12x", "m", "%", "-1", "1.2.3m", "half%", "99999999e"] {
            assert!(TmpfsSize::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn options_give_their_size() {
        assert_eq!(
            TmpfsSize::from_options("rw,size=64m"),
            Ok(Some(TmpfsSize::Bytes(64 << 20)))
        );
        assert_eq!(
            TmpfsSize::from_options("size=25%,mode=1777"),
            Ok(Some(TmpfsSize::Percent(25)))
        );
        assert_eq!(TmpfsSize::from_options("mode=1777"), Ok(None));
        assert_eq!(TmpfsSize::from_options(""), Ok(None));
        assert!(TmpfsSize::from_options("size=12x").is_err());
    }

    #[test]
    fn json_keeps_bytes_a_number() -> serde_json::Result<()> {
        assert_eq!(serde_json::to_string(&TmpfsSize::Bytes(1024))?, "1024");
        assert_eq!(serde_json::to_string(&TmpfsSize::Percent(50))?, "\"50%\"");
        Ok(())
    }
}
