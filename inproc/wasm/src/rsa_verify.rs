//! RSASSA-PKCS1-v1_5 with SHA-256 (RS256) verification written for wasm32:
//! Montgomery multiplication over 32-bit limbs, whose 32×32→64-bit products
//! are single `i64.mul` instructions in wasm (the `rsa` crate's bignum is
//! several times slower there). Only the public operation: nothing here is
//! secret, so nothing needs to be constant-time. The key's Montgomery
//! constants are computed once, when the configuration is loaded.

use sha2::{Digest, Sha256};

/// Up to 4096-bit moduli.
const MAX_LIMBS: usize = 128;

/// DER of DigestInfo for SHA-256, before the 32-byte hash (RFC 8017 §9.2).
const SHA256_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

pub struct RsaKey {
    /// The modulus, little-endian 32-bit limbs.
    n: Vec<u32>,
    /// -n⁻¹ mod 2³².
    n0inv: u32,
    /// R² mod n, R = 2^(32·limbs).
    rr: Vec<u32>,
    /// The public exponent.
    e: u64,
    /// The modulus's length in bytes (the signature's length).
    len: usize,
}

impl RsaKey {
    /// From the big-endian modulus and exponent (a JWK's `n` and `e`).
    pub fn new(n: &[u8], e: &[u8]) -> Option<Self> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        if n.len() < 256
            || n.len() > 4 * MAX_LIMBS
            || n[n.len() - 1] & 1 == 0
            || e.is_empty()
            || e.len() > 8
        {
            return None; // 2048 bits at least, odd modulus, small exponent
        }
        let e = e.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        if e < 3 || e & 1 == 0 {
            return None;
        }
        // Padded to 64, 96 or 128 limbs (R just needs to exceed n), so the
        // arithmetic is monomorphized for three sizes.
        let limbs = from_be(n, [64, 96, 128].into_iter().find(|&l| 4 * l >= n.len())?);
        // Newton's iteration for n[0]⁻¹ mod 2³² (n odd: n·n ≡ 1 mod 8).
        let mut inv = limbs[0];
        for _ in 0..4 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(limbs[0].wrapping_mul(inv)));
        }
        // R² mod n by doubling 1, 2·32·limbs times.
        let mut rr = vec![0u32; limbs.len()];
        rr[0] = 1;
        for _ in 0..2 * 32 * limbs.len() {
            let top = shl1(&mut rr);
            if top || !less(&rr, &limbs) {
                sub_in_place(&mut rr, &limbs);
            }
        }
        Some(Self {
            n0inv: inv.wrapping_neg(),
            rr,
            e,
            len: n.len(),
            n: limbs,
        })
    }

    /// Whether `sig` is this key's RS256 signature of `message`.
    pub fn verify_rs256(&self, message: &[u8], sig: &[u8]) -> bool {
        if sig.len() != self.len {
            return false;
        }
        let mut m = [0u32; MAX_LIMBS];
        let l = self.n.len();
        let ok = match l {
            64 => self.public_op::<64>(sig, &mut m),
            96 => self.public_op::<96>(sig, &mut m),
            _ => self.public_op::<128>(sig, &mut m),
        };
        if !ok {
            return false;
        }
        // EM = 00 01 FF…FF 00 DigestInfo(SHA-256(message)), big-endian.
        let hash = Sha256::digest(message);
        let pad_end = self.len - SHA256_PREFIX.len() - hash.len();
        (0..self.len).all(|i| {
            let got = byte_be(&m[..l], self.len, i);
            let want = match i {
                0 => 0x00,
                1 => 0x01,
                _ if i < pad_end - 1 => 0xff,
                _ if i == pad_end - 1 => 0x00,
                _ if i < pad_end + SHA256_PREFIX.len() => SHA256_PREFIX[i - pad_end],
                _ => hash[i - pad_end - SHA256_PREFIX.len()],
            };
            got == want
        })
    }

    /// out = sig^e mod n, false when sig ≥ n. L is the (padded) limb
    /// count, a constant so that the loops have no bounds checks.
    fn public_op<const L: usize>(&self, sig: &[u8], out: &mut [u32; MAX_LIMBS]) -> bool {
        let n: &[u32; L] = self.n[..].try_into().expect("padded modulus");
        let rr: &[u32; L] = self.rr[..].try_into().expect("padded R²");
        let s: [u32; L] = from_be(sig, L).try_into().expect("L limbs");
        if !less(&s, n) {
            return false;
        }
        // In Montgomery form until the end.
        let base = mont_mul(n, self.n0inv, &s, rr);
        let mut acc = base;
        for bit in (0..63 - self.e.leading_zeros()).rev() {
            acc = mont_mul(n, self.n0inv, &acc, &acc);
            if self.e >> bit & 1 == 1 {
                acc = mont_mul(n, self.n0inv, &acc, &base);
            }
        }
        let mut one = [0u32; L];
        one[0] = 1;
        out[..L].copy_from_slice(&mont_mul(n, self.n0inv, &acc, &one));
        true
    }
}

/// a·b·R⁻¹ mod n, R = 2^(32·L), for a, b < n (FIOS: the product and the
/// reduction in one pass over the limbs).
#[inline(always)]
fn mont_mul<const L: usize>(n: &[u32; L], n0inv: u32, a: &[u32; L], b: &[u32; L]) -> [u32; L] {
    let mut t = [0u32; L];
    let mut top = 0u32; // t's limb L
    for &bi in b {
        let bi = u64::from(bi);
        let s = u64::from(t[0]) + u64::from(a[0]) * bi;
        let mut c1 = s >> 32;
        let lo = s as u32;
        let m = u64::from(lo.wrapping_mul(n0inv));
        let mut c2 = (u64::from(lo) + m * u64::from(n[0])) >> 32;
        for j in 1..L {
            let s = u64::from(t[j]) + u64::from(a[j]) * bi + c1;
            c1 = s >> 32;
            let s2 = (s & 0xffff_ffff) + m * u64::from(n[j]) + c2;
            c2 = s2 >> 32;
            t[j - 1] = s2 as u32;
        }
        let s = u64::from(top) + c1 + c2;
        t[L - 1] = s as u32;
        top = (s >> 32) as u32;
    }
    if top != 0 || !less(&t, n) {
        sub_in_place(&mut t, n);
    }
    t
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// Big-endian bytes to `limbs` little-endian limbs (`b` must fit).
fn from_be(b: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    for (i, &byte) in b.iter().rev().enumerate() {
        out[i / 4] |= u32::from(byte) << (8 * (i % 4));
    }
    out
}

/// Byte `i` of the `len`-byte big-endian form of `x`.
fn byte_be(x: &[u32], len: usize, i: usize) -> u8 {
    let k = len - 1 - i; // little-endian byte index
    (x.get(k / 4).copied().unwrap_or(0) >> (8 * (k % 4))) as u8
}

fn less(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// a -= b (mod 2^(32·len)).
fn sub_in_place(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let d = u64::from(*x)
            .wrapping_sub(u64::from(y))
            .wrapping_sub(borrow);
        *x = d as u32;
        borrow = (d >> 63) & 1;
    }
}

/// a <<= 1, returning the bit shifted out.
fn shl1(a: &mut [u32]) -> bool {
    let mut carry = 0u32;
    for x in a.iter_mut() {
        let next = *x >> 31;
        *x = *x << 1 | carry;
        carry = next;
    }
    carry == 1
}
