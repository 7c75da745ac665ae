//! A HyperLogLog built on the node, in Redis's own dense format, so that a
//! broadcast's distinct recipients are counted with one `PFMERGE` of a
//! 12 KiB value instead of a `PFADD` naming every recipient (for 10,000
//! recipients, 100 KB or more of command that Redis hashes one by one).
//!
//! Redis's format (`src/hyperloglog.c`): a 16-byte header (`HYLL`, the
//! encoding, 3 unused bytes, the cached cardinality with its "invalid" bit)
//! and 16,384 six-bit registers packed little-endian. An element's hash is
//! MurmurHash64A with seed `0xadc83b19`; its low 14 bits pick the register
//! and the run of zeros above them, plus one, is its value. A merge takes
//! each register's maximum, so a sketch merged is exactly as if every
//! element had been added with `PFADD` (tested byte for byte against a
//! real Redis: `bus::redis::stats`'s tests).

const P: u32 = 14;
const REGISTERS: usize = 1 << P;
const BITS: usize = 6;
/// The dense format's header, before the registers.
pub const HEADER: usize = 16;
/// `HLL_DENSE_SIZE`: what Redis accepts as a dense HyperLogLog.
pub const DENSE_SIZE: usize = HEADER + (REGISTERS * BITS).div_ceil(8);

/// MurmurHash64A as Redis has it (little-endian reads).
fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let mut k = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate() {
            h ^= u64::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// Where an element lands in a sketch: the register and the value it
/// offers it. Fixed for an element, so a session computes its user's once
/// and each broadcast that counts it touches one register and no string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    index: u16,
    value: u8,
}

impl Place {
    pub fn of(element: &[u8]) -> Self {
        let (index, value) = place(element);
        Self {
            index: index as u16,
            value,
        }
    }
}

/// The register an element falls in and the value it offers it.
fn place(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, 0xadc8_3b19);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    // A sentinel bit at 50 bounds the run (HLL_Q).
    let rest = (hash >> P) | (1 << (64 - P));
    (index, rest.trailing_zeros() as u8 + 1)
}

/// Distinct users of one scope in a batch from which they are counted
/// with a sketch rather than named: about where a `PFADD` of the ids grows
/// past the sketch's 12 KiB.
pub const SKETCH_FROM: usize = 1024;

/// Distinct elements, as Redis would count them, in a compact form.
#[derive(Clone)]
pub struct Sketch {
    registers: Box<[u8; REGISTERS]>,
}

impl Default for Sketch {
    fn default() -> Self {
        Self {
            registers: Box::new([0; REGISTERS]),
        }
    }
}

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self.registers.iter().filter(|&&r| r > 0).count();
        write!(f, "Sketch({used} registers set)")
    }
}

impl Sketch {
    /// Takes every register's maximum: the union of both sets.
    pub fn merge(&mut self, other: &Sketch) {
        for (a, b) in self.registers.iter_mut().zip(other.registers.iter()) {
            *a = (*a).max(*b);
        }
    }

    pub fn add(&mut self, element: &[u8]) {
        self.add_place(Place::of(element));
    }

    /// [`Sketch::add`] for an element whose place is already known.
    pub fn add_place(&mut self, place: Place) {
        let r = &mut self.registers[usize::from(place.index)];
        if *r < place.value {
            *r = place.value;
        }
    }

    /// The value Redis reads as a dense HyperLogLog (`SET` it, then
    /// `PFMERGE` it into the counted key).
    pub fn to_dense(&self) -> Vec<u8> {
        // One spare byte: packing the last register touches the next one.
        let mut out = vec![0u8; DENSE_SIZE + 1];
        out[..4].copy_from_slice(b"HYLL");
        // Encoding 0 (dense); the cached cardinality is marked invalid.
        out[HEADER - 1] = 0x80;
        let regs = &mut out[HEADER..];
        for (n, &v) in self.registers.iter().enumerate() {
            let (byte, fb) = (n * BITS / 8, (n * BITS) & 7);
            let v = u16::from(v) << fb;
            regs[byte] |= v as u8;
            regs[byte + 1] |= (v >> 8) as u8;
        }
        out.truncate(DENSE_SIZE);
        out
    }
}
