//! Cutting a file into chunks where restic cuts it, so that the same
//! content is the same blobs whichever program stored it.
//!
//! restic's content-defined chunking: no chunk is shorter than the minimum
//! (512 KiB by default) unless the file ends; from the minimum on, a chunk
//! ends after the first byte at which the Rabin fingerprint of the 64 bytes
//! ending there has its low bits (as many as the average chunk size has)
//! all zero, or at the maximum (8 MiB). That is restic's rule to the byte:
//! at the minimum, its window holds the minimum's last 64 bytes. (The Rust
//! library of the format leaves the minimum's last byte out of its first
//! window, and so cuts elsewhere than restic when a chunk would end within
//! 64 bytes of the minimum, about one chunk in 16,000; restic, sharing the
//! repository, then stores such chunks again.) The engine tests check the
//! result against restic.
//!
//! Unlike the library, the chunker reads in large blocks and hands out
//! slices of its buffer: one copy of each byte, from the file into memory.

use std::io::{ErrorKind, Read};

use rustic_cdc::{Polynom64, Rabin64, RollingHash64};

/// The window of the fingerprint: 2^6 = 64 bytes.
const WINDOW_BITS: u32 = 6;
const WINDOW: usize = 1 << WINDOW_BITS;

/// How much is read at once, beyond what a chunk needs.
const READ_BLOCK: usize = 1 << 20;

/// How much is read, when there is that much, before a chunk's end is
/// searched for: a search hashes stretches side by side only when it has
/// enough bytes for all of them.
const SEARCH_AHEAD: usize = 256 << 10;

/// How a repository cuts files.
#[derive(Clone, Debug)]
pub(crate) enum Cutting {
    /// Content defined, with this polynomial.
    Rabin {
        polynom: Polynom64,
        /// Average size, a power of two.
        average: usize,
        min: usize,
        max: usize,
    },
    /// Fixed-size pieces.
    Fixed(usize),
}

impl Cutting {
    fn longest(&self) -> usize {
        match self {
            Self::Rabin { max, .. } => *max,
            Self::Fixed(size) => *size,
        }
    }
}

/// The chunks of one file, in order.
pub(crate) struct Chunker<R> {
    reader: R,
    cutting: Cutting,
    rabin: Option<Rabin64>,
    /// Bytes read: the next chunk starts at `start`, and `filled` bytes are
    /// valid.
    buf: Vec<u8>,
    start: usize,
    filled: usize,
    eof: bool,
    /// Bytes taken from the reader so far.
    pub(crate) read: u64,
}

impl<R: Read> Chunker<R> {
    /// A chunker for a file expected to hold about `size_hint` bytes (the
    /// buffer is no larger than that needs).
    pub(crate) fn new(reader: R, cutting: &Cutting, size_hint: u64) -> Self {
        let rabin = match cutting {
            Cutting::Rabin { polynom, .. } => Some(Rabin64::new_with_polynom(WINDOW_BITS, polynom)),
            Cutting::Fixed(_) => None,
        };
        let most = cutting.longest() + READ_BLOCK;
        let first = usize::try_from(size_hint)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
            .clamp(1, most);
        Self {
            reader,
            cutting: cutting.clone(),
            rabin,
            buf: vec![0; first],
            start: 0,
            filled: 0,
            eof: false,
            read: 0,
        }
    }

    /// The next chunk, valid until the next call; `None` at the end.
    pub(crate) fn next_chunk(&mut self) -> std::io::Result<Option<&[u8]>> {
        let (min, average, max) = match self.cutting {
            Cutting::Rabin {
                min, average, max, ..
            } => (min, average, max),
            Cutting::Fixed(size) => (size, 0, size),
        };
        self.fill_to(min)?;
        let available = self.filled - self.start;
        if available == 0 {
            return Ok(None);
        }
        let mut len = available.min(min);
        if len == min && average > 0 {
            let mut rabin = self
                .rabin
                .take()
                .ok_or_else(|| std::io::Error::other("no rolling hash"))?;
            let scanned = self.scan(&mut rabin, min, average as u64 - 1, max);
            self.rabin = Some(rabin);
            len = scanned?;
        }
        let chunk = self.start..self.start + len;
        self.start += len;
        Ok(Some(&self.buf[chunk]))
    }

    /// Where the chunk starting at `start` ends: at `min` bytes or past
    /// them, after the first byte at which the fingerprint of the window
    /// ending there has none of `mask`'s bits, or at `max`. `min` bytes,
    /// and at least a window's worth, are in the buffer.
    fn scan(
        &mut self,
        rabin: &mut Rabin64,
        min: usize,
        mask: u64,
        max: usize,
    ) -> std::io::Result<usize> {
        // The window of the minimum's last 64 bytes: 63 prefilled, and the
        // last one taken in where nothing is yet to leave.
        let last = self.start + min - 1;
        rabin.reset_and_prefill_window(&mut self.buf[last + 1 - WINDOW..last].iter().copied());
        rabin.roll(0, self.buf[last]);
        if rabin.hash & mask == 0 || min >= max {
            return Ok(min);
        }
        // From here on, the fingerprint at a byte is that of the window
        // ending there, whatever came before: long stretches are searched
        // at once, several side by side.
        let mut len = min;
        loop {
            self.fill_to(max.min(len + SEARCH_AHEAD))?;
            let end = self.filled.min(self.start + max);
            if let Some(i) = rabin.find_window(&self.buf[..end], self.start + len, mask) {
                return Ok(i + 1 - self.start);
            }
            // Reading more may move the chunk to the front of the buffer:
            // positions are taken from `start` again.
            len = end - self.start;
            if len >= max || !self.more()? {
                return Ok(len);
            }
        }
    }

    /// Reads until `n` bytes from `start` on are there, or the file ends.
    fn fill_to(&mut self, n: usize) -> std::io::Result<()> {
        while self.filled - self.start < n {
            if !self.more()? {
                break;
            }
        }
        Ok(())
    }

    /// Reads more, first moving what is left to the front and growing the
    /// buffer when it is full; false at the end of the file.
    fn more(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.filled == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.filled, 0);
                self.filled -= self.start;
                self.start = 0;
            }
            if self.filled == self.buf.len() {
                let most = self.cutting.longest() + READ_BLOCK;
                let grown = (self.buf.len() * 2).clamp(64 * 1024, most.max(self.buf.len() + 1));
                self.buf.resize(grown, 0);
            }
        }
        loop {
            match self.reader.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.filled += n;
                    self.read += n as u64;
                    return Ok(true);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// restic's default chunking with the polynomial of the library's own
    /// tests.
    fn default_cutting() -> Cutting {
        Cutting::Rabin {
            polynom: 0x003D_A335_8B4D_C173,
            average: 1 << 20,
            min: 512 * 1024,
            max: 8 << 20,
        }
    }

    /// The chunk boundaries as restic computes them: a byte at a time, by
    /// the algorithm described at the top of this module.
    fn reference(data: &[u8], cutting: &Cutting) -> Vec<usize> {
        let Cutting::Rabin {
            polynom,
            average,
            min,
            max,
        } = cutting
        else {
            unreachable!()
        };
        let mut rabin = Rabin64::new_with_polynom(WINDOW_BITS, polynom);
        let mask = *average as u64 - 1;
        let mut cuts = Vec::new();
        let mut start = 0;
        while start < data.len() {
            if data.len() - start < *min {
                cuts.push(data.len() - start);
                break;
            }
            let mut len = *min;
            // A fresh window of zeros, and the minimum's last 64 bytes slid
            // in: the zeros leaving take nothing away.
            rabin.reset();
            for &b in &data[start + min - 64..start + min] {
                rabin.slide(b);
            }
            while len < *max && rabin.hash & mask != 0 && start + len < data.len() {
                rabin.slide(data[start + len]);
                len += 1;
            }
            cuts.push(len);
            start += len;
        }
        cuts
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect()
    }

    /// A reader that hands out at most `step` bytes a call.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(self.1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn cuts(data: &[u8], cutting: &Cutting, step: usize, hint: u64) -> Vec<usize> {
        let mut chunker = Chunker::new(Trickle(data, step), cutting, hint);
        let mut cuts = Vec::new();
        let mut joined = Vec::new();
        while let Some(chunk) = chunker.next_chunk().expect("read") {
            cuts.push(chunk.len());
            joined.extend_from_slice(chunk);
        }
        assert_eq!(joined, data, "the chunks are the file");
        assert_eq!(chunker.read, data.len() as u64);
        cuts
    }

    #[test]
    fn cuts_where_the_byte_at_a_time_algorithm_cuts() {
        // Smaller sizes than the default, so that many cuts are tested.
        let cutting = Cutting::Rabin {
            polynom: 0x3f_ac41_9b2c_3b2b,
            average: 1 << 12,
            min: 1 << 11,
            max: 1 << 14,
        };
        let data = noise(3 << 20, 5);
        let expected = reference(&data, &cutting);
        assert!(expected.len() > 300, "{}", expected.len());
        assert!(expected.contains(&(1 << 14)), "a maximum cut");
        for (step, hint) in [(usize::MAX, 0), (7, 0), (4096, 3 << 20), (100_000, 10)] {
            assert_eq!(cuts(&data, &cutting, step, hint), expected, "step {step}");
        }
    }

    #[test]
    fn cuts_at_every_distance_from_the_minimum() {
        // The smallest minimum and a fingerprint that matches every 64
        // bytes: ends fall at every distance past the minimum, also where
        // the window first holds only bytes past it (63 bytes on).
        let cutting = Cutting::Rabin {
            polynom: 0x3f_ac41_9b2c_3b2b,
            average: 1 << 6,
            min: 64,
            max: 1 << 16,
        };
        let data = noise(1 << 20, 17);
        let expected = reference(&data, &cutting);
        for past in [0, 1, 62, 63, 64, 65] {
            assert!(
                expected.contains(&(64 + past)),
                "a chunk ending {past} past the minimum"
            );
        }
        for (step, hint) in [(usize::MAX, 1 << 20), (1000, 0)] {
            assert_eq!(cuts(&data, &cutting, step, hint), expected, "step {step}");
        }
    }

    #[test]
    fn long_searches_cut_where_the_byte_at_a_time_algorithm_cuts() {
        // Chunks long enough that their ends are searched for in
        // stretches side by side, and many of them.
        let cutting = Cutting::Rabin {
            polynom: 0x3f_ac41_9b2c_3b2b,
            average: 1 << 17,
            min: 1 << 15,
            max: 1 << 18,
        };
        let data = noise(8 << 20, 13);
        let expected = reference(&data, &cutting);
        assert!(expected.len() > 30, "{}", expected.len());
        assert!(expected.contains(&(1 << 18)), "a maximum cut");
        assert!(
            expected.iter().any(|&c| c > (1 << 15) + (64 << 10)),
            "a chunk whose end is far past the minimum"
        );
        for (step, hint) in [
            (usize::MAX, 8 << 20),
            (1000, 0),
            (50_000, 100),
            (300_000, 0),
        ] {
            assert_eq!(cuts(&data, &cutting, step, hint), expected, "step {step}");
        }
    }

    #[test]
    fn default_sizes_and_short_files() {
        let cutting = default_cutting();
        let data = noise(20 << 20, 9);
        let expected = reference(&data, &cutting);
        assert_eq!(cuts(&data, &cutting, usize::MAX, 20 << 20), expected);
        assert!(expected.iter().all(|&c| c <= 8 << 20));
        assert_eq!(cuts(&data[..1000], &cutting, usize::MAX, 1000), [1000]);
        assert_eq!(cuts(&[], &cutting, usize::MAX, 0), Vec::<usize>::new());
        // Exactly the minimum: one chunk.
        assert_eq!(cuts(&data[..512 * 1024], &cutting, 999, 0), [512 * 1024]);
        // Zeros hash to zero: every chunk ends at the minimum.
        let zeros = vec![0u8; 17 << 20];
        assert_eq!(cuts(&zeros, &cutting, usize::MAX, 0), vec![512 * 1024; 34]);
    }

    #[test]
    fn fixed_size_pieces() {
        let data = noise(10_000, 3);
        assert_eq!(
            cuts(&data, &Cutting::Fixed(4096), 1000, 0),
            [4096, 4096, 1808]
        );
    }
}
