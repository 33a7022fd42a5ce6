//! Reads a tar stream (the engine's archive of a volume) entry by entry,
//! with every name exactly as the stream carries it.
//!
//! The engine writes POSIX tar with PAX extended headers: a name that is
//! not ASCII, or longer than a header holds, travels in a PAX `path`
//! record, whose length prefix is the only thing that says where it ends
//! (it may hold newlines). The `tar` crate splits PAX records at newlines,
//! so such a name came out altered, and a crafted one could smuggle in a
//! record that renamed the entry. Here records are read by their lengths,
//! GNU long names are honoured too, and anything ambiguous (a record whose
//! length does not add up, a key given twice, a PAX and a GNU name that
//! disagree, global headers, sparse files, a header whose checksum does
//! not match) is an error: the volume fails rather than being stored under
//! other names.
//!
//! It reads and never writes; [`crate::tarball`] writes.

use std::io::Read;

use jiff::Timestamp;

use crate::repo::node::{TarMeta, parse_pax_time};

const BLOCK: usize = 512;

/// Entry types this reader resolves itself; the others are the caller's.
const PAX_LOCAL: u8 = b'x';
const PAX_GLOBAL: u8 = b'g';
const GNU_LONG_NAME: u8 = b'L';
const GNU_LONG_LINK: u8 = b'K';

/// How large a PAX header or GNU long name may be: names are at most a
/// few kilobytes, and extended attributes rarely more than one.
const EXTENSION_LIMIT: u64 = 16 << 20;

/// One entry of the stream: its name and metadata as sent, and its type
/// flag (`b'0'` a file, `b'5'` a directory, ...).
#[derive(Debug)]
pub(crate) struct TarEntry {
    pub(crate) path: Vec<u8>,
    pub(crate) typeflag: u8,
    pub(crate) meta: TarMeta,
}

/// Reads entries from a tar stream.
pub(crate) struct TarReader<R> {
    inner: R,
    /// Content bytes of the current entry not read yet, and the padding
    /// after them.
    left: u64,
    padding: u64,
    ended: bool,
}

/// What the extension headers before an entry said about it.
#[derive(Default)]
struct Extensions {
    pax: Option<Vec<(String, Vec<u8>)>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

impl<R: Read> TarReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            left: 0,
            padding: 0,
            ended: false,
        }
    }

    /// The next entry, past what is left of the current one; `None` at the
    /// archive's end marker. A stream that ends before the marker is an
    /// error: a truncated archive must not read as a smaller volume.
    pub(crate) fn next_entry(&mut self) -> std::io::Result<Option<TarEntry>> {
        let mut extensions = Extensions::default();
        loop {
            self.skip_rest()?;
            if self.ended {
                return Ok(None);
            }
            let mut header = [0u8; BLOCK];
            self.read_block(&mut header)?;
            if header.iter().all(|b| *b == 0) {
                self.ended = true;
                return Ok(None);
            }
            check_checksum(&header)?;
            let typeflag = header[156];
            let size = number(&header[124..136], "size")?;
            self.expect(size);
            match typeflag {
                PAX_LOCAL => {
                    if extensions.pax.is_some() {
                        return Err(invalid(
                            "two PAX headers for one entry (ambiguous)".to_string(),
                        ));
                    }
                    let data = self.extension_data(size, "PAX header")?;
                    extensions.pax = Some(pax_records(&data)?);
                }
                PAX_GLOBAL => {
                    let data = self.extension_data(size, "PAX global header")?;
                    if let Some((key, _)) = pax_records(&data)?
                        .into_iter()
                        .find(|(k, _)| k != "comment")
                    {
                        return Err(invalid(format!(
                            "a PAX global header sets {key:?} for every entry after it; the engine does not write such headers"
                        )));
                    }
                }
                GNU_LONG_NAME | GNU_LONG_LINK => {
                    let slot = if typeflag == GNU_LONG_NAME {
                        &mut extensions.long_name
                    } else {
                        &mut extensions.long_link
                    };
                    if slot.is_some() {
                        return Err(invalid(
                            "two GNU long names for one entry (ambiguous)".to_string(),
                        ));
                    }
                    let mut data = self.extension_data(size, "GNU long name")?;
                    // The name is NUL-terminated, and may be padded with more.
                    if let Some(end) = data.iter().position(|b| *b == 0) {
                        data.truncate(end);
                    }
                    *slot = Some(data);
                }
                _ => {
                    let entry = entry(&header, typeflag, size, extensions)?;
                    // A PAX size says how much content really follows.
                    self.expect(entry.meta.size);
                    return Ok(Some(entry));
                }
            }
        }
    }

    /// Sets how many content bytes the current entry has, and the padding
    /// to the next block after them.
    fn expect(&mut self, size: u64) {
        self.left = size;
        self.padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
    }

    /// The content of the current entry (what its header's size says).
    pub(crate) fn content(&mut self) -> Content<'_, R> {
        Content { reader: self }
    }

    fn extension_data(&mut self, size: u64, what: &str) -> std::io::Result<Vec<u8>> {
        if size > EXTENSION_LIMIT {
            return Err(invalid(format!("a {what} of {size} bytes")));
        }
        let mut data = Vec::with_capacity(size as usize);
        self.content().read_to_end(&mut data)?;
        if (data.len() as u64) < size {
            return Err(truncated());
        }
        Ok(data)
    }

    fn skip_rest(&mut self) -> std::io::Result<()> {
        let rest = self.left + self.padding;
        if rest > 0 {
            let skipped = std::io::copy(&mut (&mut self.inner).take(rest), &mut std::io::sink())?;
            if skipped < rest {
                return Err(truncated());
            }
        }
        self.left = 0;
        self.padding = 0;
        Ok(())
    }

    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> std::io::Result<()> {
        self.inner.read_exact(block).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                truncated()
            } else {
                e
            }
        })
    }
}

fn truncated() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the archive stream ended before its end marker (truncated)",
    )
}

/// Reads the content of the current entry, and no further.
pub(crate) struct Content<'a, R> {
    reader: &'a mut TarReader<R>,
}

impl<R: Read> Read for Content<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.reader.left;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.reader.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(truncated());
        }
        self.reader.left -= n as u64;
        Ok(n)
    }
}

/// The header's checksum: the sum of its bytes with the checksum field
/// counted as spaces (unsigned, or signed as some old writers made it).
fn check_checksum(header: &[u8; BLOCK]) -> std::io::Result<()> {
    let recorded = number(&header[148..156], "checksum")?;
    let spaces = 8 * u64::from(b' ');
    let field = 148..156;
    let unsigned: u64 = header
        .iter()
        .enumerate()
        .filter(|(i, _)| !field.contains(i))
        .map(|(_, b)| u64::from(*b))
        .sum::<u64>()
        + spaces;
    let signed: i64 = header
        .iter()
        .enumerate()
        .filter(|(i, _)| !field.contains(i))
        .map(|(_, b)| i64::from(*b as i8))
        .sum::<i64>()
        + spaces as i64;
    if recorded == unsigned || i64::try_from(recorded).is_ok_and(|r| r == signed) {
        Ok(())
    } else {
        Err(invalid(format!(
            "a header's checksum is {recorded}, its bytes add up to {unsigned} (a corrupt stream)"
        )))
    }
}

/// A numeric header field: octal digits (space- or NUL-terminated, maybe
/// space-padded), or base-256 when the first byte's high bit is set.
fn number(field: &[u8], what: &str) -> std::io::Result<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return Err(invalid(format!("a negative {what} field")));
        }
        let mut value: u64 = u64::from(field[0] & 0x3f);
        for b in &field[1..] {
            value = value
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(*b)))
                .ok_or_else(|| invalid(format!("the {what} field overflows")))?;
        }
        return Ok(value);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| *b != b' ' && *b != 0)
        .collect();
    if text.is_empty() {
        return Ok(0);
    }
    std::str::from_utf8(&text)
        .ok()
        .and_then(|t| u64::from_str_radix(t, 8).ok())
        .ok_or_else(|| {
            invalid(format!(
                "the {what} field {:?} is not a number",
                String::from_utf8_lossy(field)
            ))
        })
}

/// A NUL-terminated text field.
fn text(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Parses PAX records: `LENGTH KEY=VALUE\n`, where LENGTH counts the
/// whole record, its own digits included. The value is what the length
/// says, newlines and all.
fn pax_records(data: &[u8]) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let bad = |why: &str| invalid(format!("a PAX record {why}"));
        let space = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| bad("has no length"))?;
        let length: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad("has no length"))?;
        if length <= space + 1 || length > rest.len() || rest[length - 1] != b'\n' {
            return Err(bad("is not as long as it says"));
        }
        let body = &rest[space + 1..length - 1];
        let equals = body
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(|| bad("has no '='"))?;
        let key = std::str::from_utf8(&body[..equals])
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| bad("has no readable key"))?;
        if records.iter().any(|(k, _)| k == key) {
            return Err(invalid(format!(
                "the PAX record {key:?} is given twice for one entry (ambiguous)"
            )));
        }
        records.push((key.to_string(), body[equals + 1..].to_vec()));
        rest = &rest[length..];
    }
    Ok(records)
}

/// Builds an entry from its header and the extensions before it.
fn entry(
    header: &[u8; BLOCK],
    typeflag: u8,
    size: u64,
    extensions: Extensions,
) -> std::io::Result<TarEntry> {
    let ustar = &header[257..263] == b"ustar\0";
    let mut path = text(&header[0..100]).to_vec();
    if ustar {
        let prefix = text(&header[345..500]);
        if !prefix.is_empty() {
            path = [prefix, b"/", &path].concat();
        }
    }
    let mut link = Some(text(&header[157..257]).to_vec()).filter(|l| !l.is_empty());
    let Extensions {
        pax,
        long_name,
        long_link,
    } = extensions;
    if let Some(long) = &long_name {
        path.clone_from(long);
    }
    if let Some(long) = &long_link {
        link = Some(long.clone());
    }
    // Which name is meant when a GNU long name and a PAX record disagree
    // cannot be told.
    let disagree = |gnu: &Option<Vec<u8>>, pax: &[u8], what: &str| {
        gnu.as_ref().filter(|g| g.as_slice() != pax).map(|g| {
            invalid(format!(
                "a PAX {what} {:?} and a GNU long {what} {:?} for one entry (ambiguous)",
                String::from_utf8_lossy(pax),
                String::from_utf8_lossy(g)
            ))
        })
    };
    let name_field = |range: std::ops::Range<usize>| {
        std::str::from_utf8(text(&header[range]))
            .ok()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let device = match typeflag {
        b'3' | b'4' => Some((
            number(&header[329..337], "device major")?,
            number(&header[337..345], "device minor")?,
        )),
        _ => None,
    };
    let mut meta = TarMeta {
        mode: u32::try_from(number(&header[100..108], "mode")? & 0o7777).unwrap_or(0),
        uid: number(&header[108..116], "uid")?,
        gid: number(&header[116..124], "gid")?,
        user: name_field(265..297),
        group: name_field(297..329),
        size,
        mtime: i64::try_from(number(&header[136..148], "mtime")?)
            .ok()
            .and_then(|t| Timestamp::from_second(t).ok()),
        device,
        ..Default::default()
    };
    for (key, value) in pax.unwrap_or_default() {
        let value_text = || {
            std::str::from_utf8(&value)
                .map_err(|_| invalid(format!("the PAX record {key:?} is not text")))
        };
        let number_of = |what: &str| -> std::io::Result<u64> {
            value_text()?
                .parse()
                .map_err(|_| invalid(format!("the PAX record {what} is not a number")))
        };
        // An empty value takes the record back: the header's own applies.
        if value.is_empty() {
            continue;
        }
        match key.as_str() {
            "path" => {
                if let Some(e) = disagree(&long_name, &value, "name") {
                    return Err(e);
                }
                path = value;
            }
            "linkpath" => {
                if let Some(e) = disagree(&long_link, &value, "link name") {
                    return Err(e);
                }
                link = Some(value);
            }
            "size" => meta.size = number_of("size")?,
            "uid" => meta.uid = number_of("uid")?,
            "gid" => meta.gid = number_of("gid")?,
            "uname" => meta.user = Some(value_text()?.to_string()),
            "gname" => meta.group = Some(value_text()?.to_string()),
            "mtime" | "atime" | "ctime" => {
                let time = parse_pax_time(value_text()?)
                    .ok_or_else(|| invalid(format!("the PAX record {key} is not a time")))?;
                match key.as_str() {
                    "mtime" => meta.mtime = Some(time),
                    "atime" => meta.atime = Some(time),
                    _ => meta.ctime = Some(time),
                }
            }
            k if k.starts_with("SCHILY.xattr.") => meta
                .xattrs
                .push((k["SCHILY.xattr.".len()..].to_string(), value)),
            k if k.starts_with("GNU.sparse.") => {
                return Err(invalid(
                    "a sparse file in GNU's PAX encoding, which lifeboat does not read".to_string(),
                ));
            }
            // Comments, character sets and other writers' extras say
            // nothing about the file's name, content or metadata.
            _ => {}
        }
    }
    if meta.size != size && typeflag != b'0' && typeflag != 0 && typeflag != b'7' {
        return Err(invalid(
            "a PAX size on an entry that holds no content".to_string(),
        ));
    }
    meta.link_target = link;
    Ok(TarEntry {
        path,
        typeflag,
        meta,
    })
}

#[cfg(test)]
mod tests;
