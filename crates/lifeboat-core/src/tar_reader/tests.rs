use super::*;

/// A header block: name, type, size; ustar format, checksum set.
fn header(name: &[u8], typeflag: u8, size: u64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name);
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"14000000000");
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    set_checksum(&mut h);
    h
}

fn set_checksum(h: &mut [u8; BLOCK]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

fn with_data(out: &mut Vec<u8>, h: [u8; BLOCK], data: &[u8]) {
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
}

fn record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + body.to_string().len();
    if len.to_string().len() != body.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn pax(out: &mut Vec<u8>, records: &[u8]) {
    with_data(
        out,
        header(b"PaxHeader", b'x', records.len() as u64),
        records,
    );
}

fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0u8; 2 * BLOCK]);
}

fn read_all(stream: &[u8]) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut reader = TarReader::new(stream);
    let mut entries = Vec::new();
    while let Some(e) = reader.next_entry()? {
        let mut content = Vec::new();
        reader.content().read_to_end(&mut content)?;
        entries.push((e.path, content));
    }
    Ok(entries)
}

#[test]
fn a_pax_name_with_newlines_and_other_bytes_is_kept_whole() {
    // Regression: the tar crate split PAX records at newlines, so this
    // name lost everything after its newline.
    let name = b"new\nline-\xe9\xff";
    let mut s = Vec::new();
    pax(&mut s, &record("path", name));
    with_data(&mut s, header(b"placeholder", b'0', 3), b"abc");
    end(&mut s);
    let entries = read_all(&s).expect("reads");
    assert_eq!(entries, vec![(name.to_vec(), b"abc".to_vec())]);
}

#[test]
fn a_name_cannot_smuggle_a_record_that_renames_the_entry() {
    // A name holding what looks like another record: read by length,
    // it stays part of the name.
    let name = b"x\n30 path=../../../etc/cron.d/a\n";
    let mut s = Vec::new();
    pax(&mut s, &record("path", name));
    with_data(&mut s, header(b"x", b'0', 0), b"");
    end(&mut s);
    let entries = read_all(&s).expect("reads");
    assert_eq!(entries[0].0, name.to_vec());
}

#[test]
fn ambiguous_extensions_are_refused() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a key given twice", {
            let mut r = record("path", b"a");
            r.extend(record("path", b"b"));
            r
        }),
        ("a length that does not add up", b"99 path=a\n".to_vec()),
        ("no length", b"path=a\n".to_vec()),
        ("a sparse file", record("GNU.sparse.major", b"1")),
    ];
    for (what, records) in cases {
        let mut s = Vec::new();
        pax(&mut s, &records);
        with_data(&mut s, header(b"f", b'0', 0), b"");
        end(&mut s);
        assert!(read_all(&s).is_err(), "{what}");
    }
    // Two PAX headers for one entry.
    let mut s = Vec::new();
    pax(&mut s, &record("path", b"a"));
    pax(&mut s, &record("path", b"b"));
    with_data(&mut s, header(b"f", b'0', 0), b"");
    end(&mut s);
    assert!(read_all(&s).is_err(), "two PAX headers");
    // A GNU long name and a PAX name that disagree.
    let mut s = Vec::new();
    with_data(&mut s, header(b"././@LongLink", b'L', 2), b"a\0");
    pax(&mut s, &record("path", b"b"));
    with_data(&mut s, header(b"f", b'0', 0), b"");
    end(&mut s);
    assert!(read_all(&s).is_err(), "GNU and PAX names");
    // A global header that sets anything.
    let mut s = Vec::new();
    with_data(&mut s, header(b"g", b'g', 12), &record("path", b"a"));
    with_data(&mut s, header(b"f", b'0', 0), b"");
    end(&mut s);
    assert!(read_all(&s).is_err(), "a global header");
}

#[test]
fn a_corrupt_header_is_refused() {
    let mut s = Vec::new();
    let mut h = header(b"f", b'0', 0);
    h[0] = b'g';
    with_data(&mut s, h, b"");
    end(&mut s);
    let err = read_all(&s).expect_err("checksum");
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn gnu_long_names_ustar_prefixes_and_pax_sizes_are_honoured() {
    let long = vec![b'n'; 300];
    let mut s = Vec::new();
    let mut gnu_name = long.clone();
    gnu_name.push(0);
    with_data(
        &mut s,
        header(b"././@LongLink", b'L', gnu_name.len() as u64),
        &gnu_name,
    );
    with_data(&mut s, header(b"short", b'0', 1), b"1");
    let mut prefixed = header(b"name", b'5', 0);
    prefixed[345..351].copy_from_slice(b"prefix");
    set_checksum(&mut prefixed);
    with_data(&mut s, prefixed, b"");
    // A size beyond the header's field: only the PAX record tells.
    pax(&mut s, &record("size", b"5"));
    s.extend_from_slice(&header(b"big", b'0', 0));
    let mut data = b"12345".to_vec();
    data.resize(BLOCK, 0);
    s.extend_from_slice(&data);
    end(&mut s);
    let entries = read_all(&s).expect("reads");
    assert_eq!(entries[0], (long, b"1".to_vec()));
    assert_eq!(entries[1].0, b"prefix/name".to_vec());
    assert_eq!(entries[2], (b"big".to_vec(), b"12345".to_vec()));
}

#[test]
fn a_stream_cut_short_is_an_error() {
    let mut s = Vec::new();
    with_data(&mut s, header(b"f", b'0', 3000), &[7u8; 3000]);
    s.truncate(BLOCK * 3);
    let mut reader = TarReader::new(s.as_slice());
    let _ = reader.next_entry().expect("the header is whole");
    let mut content = Vec::new();
    assert!(reader.content().read_to_end(&mut content).is_err());
    // Without an end marker.
    let mut s = Vec::new();
    with_data(&mut s, header(b"f", b'0', 1), b"x");
    assert!(read_all(&s).is_err());
}

#[test]
fn base256_numbers_are_read() {
    let mut field = [0u8; 12];
    field[0] = 0x80;
    field[11] = 1;
    field[10] = 2;
    assert_eq!(number(&field, "size").expect("a number"), 513);
    assert_eq!(number(b"0000644 \0", "mode").expect("octal"), 0o644);
    assert_eq!(number(b"   12\0", "mode").expect("padded"), 0o12);
    assert!(number(b"9x", "mode").is_err());
}
