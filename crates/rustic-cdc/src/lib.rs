//! The Rabin fingerprint over a sliding window that restic's content
//! defined chunking is built on, with the API rustic_core uses from the
//! `rustic_cdc` crate; the workspace patches it in for that crate.
//!
//! Why: rustic_core makes a new [`Rabin64`] for every file it chunks, and
//! each one derived its two 256-entry tables from the polynomial again:
//! about 16,000 reductions of a 64-bit polynomial, a sixth of the CPU time
//! of a first backup of a root file system (12.9k files, measured with
//! `perf` on lifeboat 0.1). Here the tables are derived once per window
//! size and polynomial and shared. The hash values, and so the chunk
//! boundaries and the repository's content, are the same: the tests check
//! the rolling hash against the polynomial arithmetic it stands for, and
//! lifeboat's engine tests check that restic finds every chunk of a file
//! lifeboat stored already there.
//!
//! Only what rustic_core uses is here: [`Polynom`], [`Polynom64`],
//! [`Rabin64`] and [`RollingHash64`].

use std::sync::{Arc, Mutex};

/// A polynomial over GF(2), its coefficients as the bits of an integer.
pub trait Polynom {
    /// The degree: the position of the highest set bit, or -1 for zero.
    fn degree(&self) -> i32;

    /// The remainder of the division by `m`, which must not be zero.
    #[must_use]
    fn modulo(&self, m: &Self) -> Self;
}

/// A polynomial of degree below 64.
pub type Polynom64 = u64;

impl Polynom for Polynom64 {
    #[allow(clippy::cast_possible_wrap)] // at most 64
    fn degree(&self) -> i32 {
        63 - self.leading_zeros() as i32
    }

    fn modulo(&self, m: &Self) -> Self {
        assert!(*m != 0, "division by the zero polynomial");
        let divisor = m.degree();
        let mut rest = *self;
        loop {
            let degree = rest.degree();
            if degree < divisor {
                return rest;
            }
            rest ^= m << (degree - divisor);
        }
    }
}

/// A hash over the last bytes seen, updated one byte at a time.
pub trait RollingHash64 {
    /// Forgets every byte seen.
    fn reset(&mut self);

    /// Slides in up to one byte less than the window holds; returns how
    /// many bytes it took from `iter`.
    fn prefill_window<I>(&mut self, iter: &mut I) -> usize
    where
        I: Iterator<Item = u8>;

    /// [`reset`](Self::reset), then
    /// [`prefill_window`](Self::prefill_window), without sliding out the
    /// bytes the reset forgot.
    fn reset_and_prefill_window<I>(&mut self, iter: &mut I) -> usize
    where
        I: Iterator<Item = u8>;

    /// Takes `byte` in, and the oldest byte of the window out.
    fn slide(&mut self, byte: u8);

    /// The hash of the window.
    fn get_hash(&self) -> &Polynom64;
}

/// The tables of one window size and polynomial.
#[derive(Debug)]
struct Tables {
    window_bits: u32,
    polynom: Polynom64,
    /// For each byte value b: b·x^(8·(window − 1)) mod P, the term that
    /// byte contributes when it is the oldest of the window.
    leaving: [Polynom64; 256],
    /// For each value t of the byte above the hash's degree after a shift
    /// by 8: what to add to clear it and reduce, (t·x^k mod P) | t·x^k.
    reducing: [Polynom64; 256],
}

impl Tables {
    fn derive(window_bits: u32, polynom: Polynom64) -> Self {
        let window = 1usize << window_bits;
        let degree = polynom.degree();
        let mut leaving = [0; 256];
        let mut reducing = [0; 256];
        for b in 0..256u64 {
            let mut term = b.modulo(&polynom);
            for _ in 1..window {
                term = (term << 8).modulo(&polynom);
            }
            leaving[b as usize] = term;
            let high = b << degree;
            reducing[b as usize] = high.modulo(&polynom) | high;
        }
        Self {
            window_bits,
            polynom,
            leaving,
            reducing,
        }
    }

    /// The tables for this window size and polynomial, derived on first
    /// use. A repository has one polynomial, so the list stays short.
    fn shared(window_bits: u32, polynom: Polynom64) -> Arc<Self> {
        static DERIVED: Mutex<Vec<Arc<Tables>>> = Mutex::new(Vec::new());
        let mut derived = DERIVED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = derived
            .iter()
            .find(|t| t.window_bits == window_bits && t.polynom == polynom)
        {
            return t.clone();
        }
        let tables = Arc::new(Self::derive(window_bits, polynom));
        derived.push(tables.clone());
        tables
    }
}

/// The default polynomial, of degree 53.
pub const MOD_POLYNOM: Polynom64 = 0x003D_A335_8B4D_C173;

/// The Rabin fingerprint of a sliding window of 2^n bytes.
#[derive(Clone, Debug)]
pub struct Rabin64 {
    tables: Arc<Tables>,
    /// Shift that brings the byte above the hash's degree down to the
    /// lowest 8 bits.
    shift: i32,
    window: Box<[u8]>,
    /// Where the oldest byte is, and the next one goes.
    index: usize,
    /// The hash of the window.
    pub hash: Polynom64,
}

impl Rabin64 {
    /// A window of 2^`window_size_nb_bits` bytes, with [`MOD_POLYNOM`].
    #[must_use]
    pub fn new(window_size_nb_bits: u32) -> Self {
        Self::new_with_polynom(window_size_nb_bits, &MOD_POLYNOM)
    }

    /// A window of 2^`window_size_nb_bits` bytes and the polynomial
    /// `mod_polynom` (of degree 8 or more).
    #[must_use]
    pub fn new_with_polynom(window_size_nb_bits: u32, mod_polynom: &Polynom64) -> Self {
        let tables = Tables::shared(window_size_nb_bits, *mod_polynom);
        Self {
            tables,
            shift: mod_polynom.degree() - 8,
            window: vec![0; 1 << window_size_nb_bits].into_boxed_slice(),
            index: 0,
            hash: 0,
        }
    }

    /// Appends `byte` to the hash (the hash times x^8, plus the byte,
    /// reduced), without taking anything out of it.
    #[inline]
    fn append(&mut self, byte: u8) {
        let above = (self.hash >> self.shift) & 0xff;
        self.hash =
            ((self.hash << 8) | Polynom64::from(byte)) ^ self.tables.reducing[above as usize];
    }

    /// Takes `byte` in and `leaving` out, where the caller keeps the
    /// window's bytes itself (the window here is not updated: use either
    /// this or [`RollingHash64::slide`] after a prefill, not both).
    #[inline]
    pub fn roll(&mut self, leaving: u8, byte: u8) {
        self.hash = self.step(self.hash, leaving, byte);
    }

    #[inline]
    fn advance(&mut self) {
        self.index = (self.index + 1) & (self.window.len() - 1);
    }

    /// The first position `i` from `from` on at which the fingerprint of
    /// the window of bytes ending there (`bytes[i + 1 - window..=i]`) has
    /// none of `mask`'s bits set, or `None`. `from` must be at least the
    /// window's size. This hash's own state is neither used nor changed.
    ///
    /// Why not [`roll`](Self::roll) byte by byte: each byte's table lookup
    /// waits for the previous byte's, about eight cycles a byte, and that
    /// was a quarter of a first backup's CPU time. The fingerprint of a
    /// full window depends on nothing before it, so stretches far apart
    /// are hashed side by side ([`CHAINS`] of them, interleaved), and
    /// their lookups overlap.
    #[must_use]
    pub fn find_window(&self, bytes: &[u8], from: usize, mask: Polynom64) -> Option<usize> {
        let window = self.window.len();
        assert!(from >= window, "the window before {from} must be whole");
        let mut pos = from;
        while bytes.len() - pos >= CHAINS * SEGMENT {
            let stretch = &bytes[pos - window..pos + CHAINS * SEGMENT];
            if let Some(found) = self.find_side_by_side(stretch, mask) {
                return Some(pos + found);
            }
            pos += CHAINS * SEGMENT;
        }
        self.find_serial(bytes, pos, mask)
    }

    /// [`find_window`](Self::find_window) in the `CHAINS` segments of
    /// `SEGMENT` bytes that follow a window's worth of `stretch`, hashed
    /// side by side; the position is counted from the first segment's
    /// start.
    fn find_side_by_side(&self, stretch: &[u8], mask: Polynom64) -> Option<usize> {
        let window = self.window.len();
        // Fixed lengths, so that no index is checked in the loop.
        let outs: &[u8; CHAINS * SEGMENT] = stretch[..CHAINS * SEGMENT].try_into().ok()?;
        let ins: &[u8; CHAINS * SEGMENT] = stretch[window..].try_into().ok()?;
        // Each chain starts with the fingerprint of the window before its
        // segment, and then sees the bytes leaving and coming in.
        let mut hashes: [Polynom64; CHAINS] = std::array::from_fn(|c| {
            outs[c * SEGMENT..][..window]
                .iter()
                .fold(0, |hash, &b| self.step(hash, 0, b))
        });
        let mut found = [None; CHAINS];
        for j in 0..SEGMENT {
            let mut any = false;
            for c in 0..CHAINS {
                let hash = self.step(hashes[c], outs[c * SEGMENT + j], ins[c * SEGMENT + j]);
                hashes[c] = hash;
                any |= hash & mask == 0;
            }
            if any {
                for c in 0..CHAINS {
                    if hashes[c] & mask == 0 && found[c].is_none() {
                        found[c] = Some(c * SEGMENT + j);
                    }
                }
                // Nothing before the first segment's match can follow.
                if found[0].is_some() {
                    break;
                }
            }
        }
        found.into_iter().flatten().next()
    }

    /// [`find_window`](Self::find_window) a byte at a time, for short
    /// stretches.
    fn find_serial(&self, bytes: &[u8], from: usize, mask: Polynom64) -> Option<usize> {
        let window = self.window.len();
        let mut hash = bytes[from - window..from]
            .iter()
            .fold(0, |hash, &b| self.step(hash, 0, b));
        (from..bytes.len()).find(|&i| {
            hash = self.step(hash, bytes[i - window], bytes[i]);
            hash & mask == 0
        })
    }

    /// `hash` with `out` taken out and `byte` in.
    #[inline(always)]
    fn step(&self, hash: Polynom64, out: u8, byte: u8) -> Polynom64 {
        let hash = hash ^ self.tables.leaving[out as usize];
        ((hash << 8) | Polynom64::from(byte))
            ^ self.tables.reducing[((hash >> self.shift) & 0xff) as usize]
    }
}

/// How many stretches [`Rabin64::find_window`] hashes side by side, and
/// how long each is: a match found in one ends the search once the
/// stretches before it are done, so what was hashed past it (at most
/// `CHAINS × SEGMENT` bytes) is wasted. Less than that is hashed a byte
/// at a time.
const CHAINS: usize = 4;
const SEGMENT: usize = 8 << 10;

impl RollingHash64 for Rabin64 {
    fn reset(&mut self) {
        self.window.fill(0);
        self.index = 0;
        self.hash = 0;
    }

    fn prefill_window<I>(&mut self, iter: &mut I) -> usize
    where
        I: Iterator<Item = u8>,
    {
        iter.take(self.window.len() - 1)
            .map(|b| self.slide(b))
            .count()
    }

    fn reset_and_prefill_window<I>(&mut self, iter: &mut I) -> usize
    where
        I: Iterator<Item = u8>,
    {
        // The bytes the window held are forgotten without being slid out:
        // each slot is overwritten as a new byte comes, and the slot of the
        // next byte to leave is cleared.
        self.hash = 0;
        let mut taken = 0;
        for b in iter.take(self.window.len() - 1) {
            self.window[self.index] = b;
            self.append(b);
            self.advance();
            taken += 1;
        }
        self.window[self.index] = 0;
        taken
    }

    #[inline]
    fn slide(&mut self, byte: u8) {
        let leaving = self.window[self.index];
        self.hash ^= self.tables.leaving[leaving as usize];
        self.window[self.index] = byte;
        self.append(byte);
        self.advance();
    }

    #[inline]
    fn get_hash(&self) -> &Polynom64 {
        &self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fingerprint by its definition: the bytes as the coefficients of
    /// a polynomial, most significant first, reduced modulo P.
    fn fingerprint(bytes: &[u8], polynom: Polynom64) -> Polynom64 {
        bytes.iter().fold(0, |hash: Polynom64, &b| {
            ((hash << 8) | Polynom64::from(b)).modulo(&polynom)
        })
    }

    /// Deterministic bytes with no structure to speak of.
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn degree_and_remainder() {
        assert_eq!(0u64.degree(), -1);
        assert_eq!(1u64.degree(), 0);
        assert_eq!(0x80u64.degree(), 7);
        assert_eq!(u64::MAX.degree(), 63);
        // x^2+x+1 = (x+1)·x + 1
        assert_eq!(0b111u64.modulo(&0b11), 1);
        assert_eq!(0b111u64.modulo(&0b100), 0b11);
        assert_eq!(0b10000u64.modulo(&0b1000), 0);
        assert_eq!(0b10011u64.modulo(&0b100), 0b11);
    }

    #[test]
    fn the_rolling_hash_is_the_fingerprint_of_the_window() {
        for (bits, polynom) in [(6, MOD_POLYNOM), (5, MOD_POLYNOM), (6, 0x3f_ac41_9b2c_3b2b)] {
            let window = 1usize << bits;
            let data = noise(3 * window + 17, polynom);
            let mut rabin = Rabin64::new_with_polynom(bits, &polynom);
            for (i, &b) in data.iter().enumerate() {
                rabin.slide(b);
                let start = (i + 1).saturating_sub(window);
                assert_eq!(
                    rabin.hash,
                    fingerprint(&data[start..=i], polynom),
                    "window {window}, byte {i}"
                );
            }
        }
    }

    #[test]
    fn a_prefilled_window_rolls_on_as_a_slid_one() {
        let data = noise(500, 7);
        let mut fresh = Rabin64::new(6);
        let mut reused = Rabin64::new(6);
        // Whatever the window held before, a reset and prefill forgets it.
        for &b in &noise(100, 9) {
            reused.slide(b);
        }
        assert_eq!(
            fresh.reset_and_prefill_window(&mut data.iter().copied()),
            63
        );
        assert_eq!(
            reused.reset_and_prefill_window(&mut data.iter().copied()),
            63
        );
        assert_eq!(fresh.hash, fingerprint(&data[..63], MOD_POLYNOM));
        for (i, &b) in data.iter().enumerate().skip(63) {
            fresh.slide(b);
            reused.slide(b);
            assert_eq!(fresh.hash, reused.hash);
            assert_eq!(fresh.hash, fingerprint(&data[i + 1 - 64..=i], MOD_POLYNOM));
        }
        let mut reset = Rabin64::new(6);
        reset.slide(1);
        reset.reset();
        assert_eq!(reset.prefill_window(&mut data.iter().copied()), 63);
        assert_eq!(reset.hash, fresh_hash_of(&data[..63]));
    }

    fn fresh_hash_of(bytes: &[u8]) -> Polynom64 {
        let mut rabin = Rabin64::new(6);
        for &b in bytes {
            rabin.slide(b);
        }
        rabin.hash
    }

    #[test]
    fn rolling_with_the_caller_s_window_is_sliding() {
        let data = noise(400, 11);
        let mut slid = Rabin64::new(6);
        let mut rolled = Rabin64::new(6);
        for (i, &b) in data.iter().enumerate() {
            slid.slide(b);
            rolled.roll(if i >= 64 { data[i - 64] } else { 0 }, b);
            assert_eq!(slid.hash, rolled.hash);
        }
    }

    /// Every position whose window matches, by sliding a byte at a time.
    fn matches_by_sliding(data: &[u8], bits: u32, mask: Polynom64) -> Vec<usize> {
        let mut rabin = Rabin64::new(bits);
        let window = 1 << bits;
        (0..data.len())
            .filter(|&i| {
                rabin.slide(data[i]);
                i + 1 >= window && rabin.hash & mask == 0
            })
            .collect()
    }

    #[test]
    fn found_windows_are_the_first_that_sliding_matches() {
        let data = noise(300_000, 3);
        for (bits, mask) in [(6, (1 << 9) - 1), (6, (1 << 13) - 1), (5, (1 << 7) - 1)] {
            let window = 1usize << bits;
            let matches = matches_by_sliding(&data, bits, mask);
            assert!(matches.len() > 20, "{} matches", matches.len());
            let rabin = Rabin64::new(bits);
            // From every match on, from just past it, and from places
            // that leave a short rest or none.
            let starts = matches
                .iter()
                .flat_map(|&m| [m, m + 1])
                .chain([window, window + 1, data.len() - 1, data.len() - 300])
                .filter(|&s| s >= window && s < data.len());
            for start in starts {
                let expected = matches.iter().copied().find(|&m| m >= start);
                assert_eq!(
                    rabin.find_window(&data, start, mask),
                    expected,
                    "from {start}"
                );
            }
            assert_eq!(rabin.find_window(&data, data.len(), mask), None);
            // The end of the slice ends the search.
            let cut = matches[5];
            assert_eq!(rabin.find_window(&data[..cut], matches[4] + 1, mask), None);
        }
    }

    #[test]
    fn tables_are_derived_once_per_polynomial() {
        let a = Rabin64::new_with_polynom(6, &0x3f_ac41_9b2c_3b2b);
        let b = Rabin64::new_with_polynom(6, &0x3f_ac41_9b2c_3b2b);
        let c = Rabin64::new_with_polynom(5, &0x3f_ac41_9b2c_3b2b);
        assert!(Arc::ptr_eq(&a.tables, &b.tables));
        assert!(!Arc::ptr_eq(&a.tables, &c.tables));
    }
}
