//! Passes over a whole row, written so that the compiler vectorises them (fixed-width lanes, no
//! early exits inside a lane block), and the exponential they use.
//!
//! On x86-64 the row passes also come compiled for AVX2 + FMA and AVX-512 (the latter with Rust ≥
//! 1.89, see build.rs) and are chosen at run time. The arithmetic is the same operation for
//! operation in every variant: Rust never fuses a multiply and an add on its own, and where the
//! exponential fuses them it says so (`mul_add`, rounded once on every instruction set: an FMA
//! instruction where the variant has one, libm's `fmaf` elsewhere), so every variant gives
//! bit-identical results. Code that calls [`exp`] per entry belongs in a [`dispatch`]ed function,
//! or the fused operations become library calls.

/// Lanes of the accumulators: wide enough for AVX-512, harmless on SSE2.
const LANES: usize = 16;
/// Entries per block of [`scan_above`]: a block whose entries are all at or under the threshold is
/// skipped after one vectorised comparison.
const BLOCK: usize = 64;

/// Defines `$name` as the body compiled three ways (generic, AVX2 + FMA, AVX-512) and chosen at
/// run time.
macro_rules! dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                #[cfg(specdec_avx512)]
                {
                    #[target_feature(enable = "avx512f")]
                    unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                        imp($($arg),*)
                    }
                    if std::arch::is_x86_feature_detected!("avx512f") {
                        // SAFETY: the CPU has AVX-512F, which implies FMA (checked above).
                        return unsafe { avx512($($arg),*) };
                    }
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}
pub(crate) use dispatch;

/// e^x in single precision: Cody-Waite range reduction and Cephes' degree-6 polynomial (in fused
/// multiply-adds, a third fewer operations than separate ones), within about 1.5 ulp of the exact
/// value for x in [-87, 88], subnormal results (down to x ≈ -103.9) included and rounded once; 0
/// below, +inf above 88.7, 0 for NaN. The same code runs in every pass, scalar or vectorised, so
/// a probability does not depend on where it was computed.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Clamping also maps NaN to the low end (`>=` is false for NaN).
    let x = if x >= -104.0 { x } else { -104.0 };
    let x = if x <= 88.7 { x } else { 88.7 };
    let (y, k) = exp_parts(x);
    // 2^k as two normal factors, so that a subnormal result is rounded only once.
    let k1 = k >> 1;
    let k2 = k - k1;
    y * f32::from_bits(((k1 + 127) as u32) << 23) * f32::from_bits(((k2 + 127) as u32) << 23)
}

/// [`exp`] for x in [-87, 0], where its clamps do nothing and 2^k is one normal factor (the
/// result is normal, so scaling by 2^k in one step or two rounds the same): the same value in
/// fewer operations.
#[inline(always)]
fn exp_in_range(x: f32) -> f32 {
    let (y, k) = exp_parts(x);
    y * f32::from_bits(((k + 127) as u32) << 23)
}

/// e^x = y · 2^k for an x in [-104, 88.7]: the reduction and the polynomial both exponentials share.
#[inline(always)]
fn exp_parts(x: f32) -> (f32, i32) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding 1.5·2^23 rounds to an integer, which then sits in the low mantissa bits.
    const SHIFT: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let t = x.mul_add(LOG2E, SHIFT);
    let n = t - SHIFT;
    let k = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let r = (-n).mul_add(LN2_HI, x);
    let r = (-n).mul_add(LN2_LO, r);
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    ((p * r).mul_add(r, r) + 1.0, k)
}

dispatch! {
/// The largest value, NaN ignored; -inf for an empty or all-NaN row.
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut blocks = x.chunks_exact(LANES);
    for b in &mut blocks {
        for j in 0..LANES {
            acc[j] = if b[j] > acc[j] { b[j] } else { acc[j] };
        }
    }
    acc.iter().chain(blocks.remainder()).fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}
}

dispatch! {
/// Index of the first entry equal to `v`, if any.
pub fn position(x: &[f32], v: f32) -> Option<usize> {
    let mut blocks = x.chunks_exact(BLOCK);
    let mut base = 0;
    for b in &mut blocks {
        let mut hit = false;
        for &y in b {
            hit |= y == v;
        }
        if hit {
            return b.iter().position(|&y| y == v).map(|j| base + j);
        }
        base += BLOCK;
    }
    blocks.remainder().iter().position(|&y| y == v).map(|j| base + j)
}
}

dispatch! {
/// Σ exp((x_i − m)·k) in double precision: each lane of a block of 64 sums its 4 entries in single
/// precision, then adds that to a double-precision lane total.
pub fn exp_sum(x: &[f32], m: f32, k: f32) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let mut blocks = x.chunks_exact(LANES * 4);
    for b in &mut blocks {
        let mut acc = [0.0f32; LANES];
        for q in b.chunks_exact(LANES) {
            for j in 0..LANES {
                acc[j] += exp((q[j] - m) * k);
            }
        }
        add_lanes(&mut lanes, &acc);
    }
    lanes.iter().sum::<f64>() + blocks.remainder().iter().map(|&v| exp((v - m) * k) as f64).sum::<f64>()
}
}

/// Add single-precision lane sums to double-precision ones, lane by lane: vectorised, where adding
/// each block's lanes up into one total would be a chain of sixteen dependent additions.
#[inline(always)]
fn add_lanes(lanes: &mut [f64; LANES], acc: &[f32; LANES]) {
    for j in 0..LANES {
        lanes[j] += acc[j] as f64;
    }
}

dispatch! {
/// For each of four thresholds, the sum of the entries at or above it (in single precision within
/// blocks of 1024, accurate to ~1e-6: for choosing, not for deciding).
pub fn mass_at_least(x: &[f32], t: [f32; 4]) -> [f64; 4] {
    let mut total = [0.0f64; 4];
    for b in x.chunks(1024) {
        mass_chunk(b, t, &mut total);
    }
    total
}
}

/// [`mass_at_least`] of up to 1024 entries, added to `total`.
#[inline(always)]
fn mass_chunk(b: &[f32], t: [f32; 4], total: &mut [f64; 4]) {
    let mut a = [[0.0f32; LANES]; 4];
    let mut blocks = b.chunks_exact(LANES);
    for q in &mut blocks {
        for c in 0..4 {
            for j in 0..LANES {
                a[c][j] += if q[j] >= t[c] { q[j] } else { 0.0 };
            }
        }
    }
    for c in 0..4 {
        total[c] += a[c].iter().map(|&v| v as f64).sum::<f64>();
        total[c] += blocks.remainder().iter().filter(|&&v| v >= t[c]).map(|&v| v as f64).sum::<f64>();
    }
}

dispatch! {
/// `out[i] = exp((x_i − m)·k)` for the whole row; returns their sum as [`exp_sum`] computes it.
pub fn exp_store(x: &[f32], m: f32, k: f32, out: &mut [f32]) -> f64 {
    let out = &mut out[..x.len()];
    let mut lanes = [0.0f64; LANES];
    let whole = exp_blocks(x, m, k, out, &mut lanes);
    exp_entries(&x[whole..], m, k, &mut out[whole..]);
    exp_total(&lanes, &out[whole..])
}
}

dispatch! {
/// [`exp_store`] (the same exps and sum) that also returns [`mass_at_least`] of the exps for the
/// thresholds `t`, summed while each piece of the row is still in the first-level cache.
pub fn exp_store_mass(x: &[f32], m: f32, k: f32, out: &mut [f32], t: [f32; 4]) -> (f64, [f64; 4]) {
    let out = &mut out[..x.len()];
    let mut lanes = [0.0f64; LANES];
    let mut mass = [0.0f64; 4];
    let mut whole = 0;
    // Pieces of 1024 hold whole blocks of exp_blocks (64), so the sums are added as exp_store
    // adds them; only the last piece has entries past them, which exp_total adds last.
    for (xc, oc) in x.chunks(1024).zip(out.chunks_mut(1024)) {
        let w = exp_blocks(xc, m, k, oc, &mut lanes);
        whole += w;
        exp_entries(&xc[w..], m, k, &mut oc[w..]);
        mass_chunk(oc, t, &mut mass);
    }
    (exp_total(&lanes, &out[whole..]), mass)
}
}

/// `out[i] = exp((x_i − m)·k)` over the whole blocks of 64 entries of `x`, each lane's sum added to
/// `lanes`; returns how many entries that was.
#[inline(always)]
fn exp_blocks(x: &[f32], m: f32, k: f32, out: &mut [f32], lanes: &mut [f64; LANES]) -> usize {
    let mut blocks = x.chunks_exact(LANES * 4);
    let mut outs = out.chunks_exact_mut(LANES * 4);
    let mut n = 0;
    for (b, o) in (&mut blocks).zip(&mut outs) {
        let mut acc = [0.0f32; LANES];
        // Arguments first; a block whose arguments are all in exp_in_range's range (NaN is not)
        // takes the shorter exponential.
        let mut a = [0.0f32; LANES * 4];
        let mut in_range = true;
        for (aj, &v) in a.iter_mut().zip(b) {
            *aj = (v - m) * k;
            in_range &= *aj >= -87.0 && *aj <= 0.0;
        }
        if in_range {
            exp_block(&a, o, &mut acc, exp_in_range);
        } else {
            exp_block(&a, o, &mut acc, exp);
        }
        add_lanes(lanes, &acc);
        n += LANES * 4;
    }
    n
}

/// `out[i] = exp((x_i − m)·k)` one entry at a time (the entries after [`exp_blocks`]'s).
#[inline(always)]
fn exp_entries(x: &[f32], m: f32, k: f32, out: &mut [f32]) {
    for (&v, o) in x.iter().zip(out) {
        *o = exp((v - m) * k);
    }
}

/// The row's total: the lane sums, then each exp after [`exp_blocks`]'s (`tail`) in order.
#[inline(always)]
fn exp_total(lanes: &[f64; LANES], tail: &[f32]) -> f64 {
    tail.iter().fold(lanes.iter().sum::<f64>(), |total, &e| total + e as f64)
}

/// `o = f(a)` lane by lane, each lane's sum added to `acc` (exp_store's block body, with the
/// exponential it chose).
#[inline(always)]
fn exp_block(a: &[f32], o: &mut [f32], acc: &mut [f32; LANES], f: impl Fn(f32) -> f32) {
    for (q, oq) in a.chunks_exact(LANES).zip(o.chunks_exact_mut(LANES)) {
        for j in 0..LANES {
            let e = f(q[j]);
            oq[j] = e;
            acc[j] += e;
        }
    }
}

dispatch! {
/// The sum (in double precision, in a fixed order) and the number of the entries at or above `t`:
/// for deciding, where [`mass_at_least`]'s single-precision sums are for choosing.
pub fn sum_at_least(x: &[f32], t: f32) -> (f64, usize) {
    let (mut lanes, mut n) = ([0.0f64; LANES], [0u32; LANES]);
    let tail = add_at_least(x, t, &mut lanes, &mut n);
    at_least_total(&lanes, &n, tail)
}
}

/// Adds [`sum_at_least`]'s sums of `x` to `lanes` and `n` (per lane of 16) and returns those of
/// the entries past the last whole lane block: a row added in pieces whose lengths are multiples
/// of 16 is added in the same order as in one piece.
#[inline(always)]
fn add_at_least(x: &[f32], t: f32, lanes: &mut [f64; LANES], n: &mut [u32; LANES]) -> (f64, usize) {
    let mut blocks = x.chunks_exact(LANES);
    for b in &mut blocks {
        for j in 0..LANES {
            let hit = b[j] >= t;
            lanes[j] += if hit { b[j] as f64 } else { 0.0 };
            n[j] += hit as u32;
        }
    }
    blocks.remainder().iter().filter(|&&v| v >= t).fold((0.0, 0), |(s, c), &v| (s + v as f64, c + 1))
}

/// [`add_at_least`]'s parts as one sum and count.
#[inline(always)]
fn at_least_total(lanes: &[f64; LANES], n: &[u32; LANES], tail: (f64, usize)) -> (f64, usize) {
    (lanes.iter().sum::<f64>() + tail.0, n.iter().map(|&c| c as usize).sum::<usize>() + tail.1)
}

dispatch! {
/// The ids of the entries with `lo <= x_i < hi`, in increasing order, into `ids`; returns the sum
/// and the number of the entries at or above `hi` as [`sum_at_least`] computes them (the same
/// additions in the same order). One pass where the two would take two: each chunk of 1024
/// entries is summed, then scanned while it is in the first-level cache.
pub fn gather_within(x: &[f32], lo: f32, hi: f32, ids: &mut Vec<u32>) -> (f64, usize) {
    ids.clear();
    let (mut lanes, mut n, mut tail) = ([0.0f64; LANES], [0u32; LANES], (0.0f64, 0usize));
    let (lo_under, hi_under) = mask_bounds(lo, hi);
    let mut base = 0u32;
    for c in x.chunks(1024) {
        // Only the last chunk has a tail (1024 is a multiple of 16).
        let t = add_at_least(c, hi, &mut lanes, &mut n);
        tail = (tail.0 + t.0, tail.1 + t.1);
        let mut blocks = c.chunks_exact(BLOCK);
        for b in &mut blocks {
            // A plain loop, which the compiler turns into mask registers where the instruction
            // set has them ([`above`]'s fixed SSE comparisons do worse in a wide variant).
            let mut hits = 0u64;
            for (j, &v) in b.iter().enumerate() {
                hits |= ((v > lo_under && v <= hi_under) as u64) << j;
            }
            while hits != 0 {
                ids.push(base + hits.trailing_zeros());
                hits &= hits - 1;
            }
            base += BLOCK as u32;
        }
        for _ in blocks.remainder() {
            ids.push(base);
            base += 1;
        }
    }
    // The masks hold a superset: the exact test.
    ids.retain(|&i| x[i as usize] >= lo && x[i as usize] < hi);
    at_least_total(&lanes, &n, tail)
}
}

dispatch! {
/// The number of entries above `t` (strictly; NaN never is).
pub fn count_above(x: &[f32], t: f32) -> usize {
    // Counted in floats within blocks (exact below 2^24), which vectorises where integer
    // counters from comparisons did not.
    let mut total = 0usize;
    for c in x.chunks(4096) {
        let mut n = [0.0f32; LANES];
        let mut blocks = c.chunks_exact(LANES);
        for b in &mut blocks {
            for j in 0..LANES {
                n[j] += if b[j] > t { 1.0 } else { 0.0 };
            }
        }
        total += n.iter().sum::<f32>() as usize + blocks.remainder().iter().filter(|&&v| v > t).count();
    }
    total
}
}

dispatch! {
/// Σ x_i in double precision.
pub fn sum(x: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut blocks = x.chunks_exact(LANES);
    for b in &mut blocks {
        for j in 0..LANES {
            acc[j] += b[j] as f64;
        }
    }
    acc.iter().sum::<f64>() + blocks.remainder().iter().map(|&v| v as f64).sum::<f64>()
}
}

/// A row of weights as a distribution may hold them before normalising: entry i weighs
/// `w_i · scale` where `w_i >= floor`, and nothing where it is under. The passes that read it
/// compute each product as it is needed, the same float a pass writing the products out would
/// have stored, so that pass is not needed. A plain row is floor −∞, scale 1.
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    pub w: &'a [f32],
    pub floor: f32,
    pub scale: f32,
}

impl<'a> Weights<'a> {
    /// `w` as it is.
    pub fn plain(w: &'a [f32]) -> Self {
        Weights { w, floor: f32::NEG_INFINITY, scale: 1.0 }
    }

    pub fn len(&self) -> usize {
        self.w.len()
    }

    pub fn is_empty(&self) -> bool {
        self.w.is_empty()
    }

    /// Entry `i`'s weight (0 past the end).
    pub fn get(&self, i: usize) -> f32 {
        self.w.get(i).map_or(0.0, |&v| self.of(v))
    }

    /// The weight of a stored value.
    #[inline(always)]
    pub fn of(&self, v: f32) -> f32 {
        if v >= self.floor {
            v * self.scale
        } else {
            0.0
        }
    }

    /// The entries in `r` (clipped to the row), weighed alike.
    pub fn part(&self, r: std::ops::Range<usize>) -> Self {
        let n = self.w.len();
        Weights { w: &self.w[r.start.min(n)..r.end.min(n)], ..*self }
    }

    /// Every entry with a positive weight, with it, in increasing index order.
    pub fn positive(&self) -> impl Iterator<Item = (usize, f32)> + '_ {
        self.w.iter().map(|&v| self.of(v)).enumerate().filter(|&(_, x)| x > 0.0)
    }
}

dispatch! {
/// Σ w_i (weights as [`Weights`] reads them) in double precision.
pub fn weight_sum(x: Weights<'_>) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut blocks = x.w.chunks_exact(LANES);
    for b in &mut blocks {
        for j in 0..LANES {
            acc[j] += x.of(b[j]) as f64;
        }
    }
    acc.iter().sum::<f64>() + blocks.remainder().iter().map(|&v| x.of(v) as f64).sum::<f64>()
}
}

dispatch! {
/// Σ min(a_i, b_i) in double precision, over the common length.
pub fn sum_min(a: Weights<'_>, b: Weights<'_>) -> f64 {
    let n = a.len().min(b.len());
    let mut acc = [0.0f64; LANES];
    let mut ab = a.w[..n].chunks_exact(LANES);
    let mut bb = b.w[..n].chunks_exact(LANES);
    for (x, y) in (&mut ab).zip(&mut bb) {
        for j in 0..LANES {
            let (x, y) = (a.of(x[j]), b.of(y[j]));
            acc[j] += (if x < y { x } else { y }) as f64;
        }
    }
    let tail: f64 = ab
        .remainder()
        .iter()
        .zip(bb.remainder())
        .map(|(&x, &y)| {
            let (x, y) = (a.of(x), b.of(y));
            (if x < y { x } else { y }) as f64
        })
        .sum();
    acc.iter().sum::<f64>() + tail
}
}

dispatch! {
/// `out = max(0, a − b)` entry by entry (b read as 0 past its end; `out` as long as `a`); returns
/// whether any is > 0.
pub fn positive_difference_into(a: Weights<'_>, b: Weights<'_>, out: &mut [f32]) -> bool {
    let n = a.len().min(b.len());
    let (head, tail) = out.split_at_mut(n);
    for ((o, &x), &y) in head.iter_mut().zip(&a.w[..n]).zip(&b.w[..n]) {
        let (x, y) = (a.of(x), b.of(y));
        *o = if x - y > 0.0 { x - y } else { 0.0 };
    }
    for (o, &x) in tail.iter_mut().zip(&a.w[n..]) {
        let x = a.of(x);
        *o = if x > 0.0 { x } else { 0.0 };
    }
    let mut any = false;
    for &v in out.iter() {
        any |= v > 0.0;
    }
    any
}
}

/// Calls `visit(i, x_i, threshold)` for every entry above `threshold` (strictly), in increasing
/// index order; `visit` returns the threshold for the entries after it (it may raise it). Blocks
/// whose entries are all at or under the threshold cost one vectorised comparison. Returns the
/// final threshold.
#[inline]
pub fn scan_above(x: &[f32], mut threshold: f32, mut visit: impl FnMut(u32, f32, f32) -> f32) -> f32 {
    let mut blocks = x.chunks_exact(BLOCK);
    let mut base = 0usize;
    for b in &mut blocks {
        let mut hits = above(b.try_into().unwrap(), threshold);
        while hits != 0 {
            let j = hits.trailing_zeros() as usize;
            hits &= hits - 1;
            // The threshold may have risen since the block's mask was taken.
            if b[j] > threshold {
                threshold = visit((base + j) as u32, b[j], threshold);
            }
        }
        base += BLOCK;
    }
    for (j, &v) in blocks.remainder().iter().enumerate() {
        if v > threshold {
            threshold = visit((base + j) as u32, v, threshold);
        }
    }
    threshold
}

/// Thresholds for masks of `x > t` that hold at least the entries with `lo <= x < hi` (the exact
/// test comes after): over the largest float under a positive lo (else over -inf), and not over the
/// largest float under a positive hi (else not over hi).
#[inline(always)]
fn mask_bounds(lo: f32, hi: f32) -> (f32, f32) {
    let under = |t: f32| f32::from_bits(t.to_bits() - 1);
    (if lo > 0.0 { under(lo) } else { f32::NEG_INFINITY }, if hi > 0.0 { under(hi) } else { hi })
}

/// Bit j set where `b[j] > t` (false for NaN).
#[inline(always)]
fn above(b: &[f32; BLOCK], t: f32) -> u64 {
    #[cfg(target_arch = "x86_64")]
    #[allow(unused_unsafe)]
    // SAFETY: SSE2 is part of x86-64; every load reads four floats inside `b`.
    unsafe {
        use std::arch::x86_64::{_mm_cmpgt_ps, _mm_loadu_ps, _mm_movemask_ps, _mm_set1_ps};
        let t = _mm_set1_ps(t);
        let mut hits = 0u64;
        for g in 0..BLOCK / 4 {
            let v = _mm_loadu_ps(b.as_ptr().add(4 * g));
            hits |= (_mm_movemask_ps(_mm_cmpgt_ps(v, t)) as u64) << (4 * g);
        }
        hits
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut hits = 0u64;
        for (j, &v) in b.iter().enumerate() {
            hits |= ((v > t) as u64) << j;
        }
        hits
    }
}

/// Draw an index with probability proportional to `w` given a uniform `u` in [0, 1): the first
/// index where the running sum of the positive weights passes `u · Σw`; the last positive index
/// where rounding leaves it short, 0 when none is positive. One vectorised pass sums blocks of at
/// least 512 entries (at most 512 blocks, kept on the stack); the walk steps over whole blocks by
/// those sums and goes entry by entry only in the block where the sum passes.
pub fn draw(w: Weights<'_>, u: f64) -> usize {
    let step = draw_step(w.len());
    let mut sums = [0.0f64; DRAW_BLOCKS];
    draw_sums(w, step, &mut sums);
    draw_walk(w, u, step, &sums)
}

/// Most blocks [`draw`] sums.
pub(crate) const DRAW_BLOCKS: usize = 512;

/// The block length [`draw`] sums a row of `len` in.
pub fn draw_step(len: usize) -> usize {
    const MIN_STEP: usize = 512;
    MIN_STEP.max(len.div_ceil(DRAW_BLOCKS))
}

/// [`draw`]'s block sums of `w`, blocks of `step`, into `sums` (one per block, in order): a
/// caller may sum a row in pieces that hold whole blocks and get the same sums.
pub fn draw_sums(w: Weights<'_>, step: usize, sums: &mut [f64]) {
    for (s, b) in sums.iter_mut().zip(w.w.chunks(step)) {
        *s = weight_sum(Weights { w: b, ..w });
    }
}

/// [`draw`]'s walk over the row by its block sums.
pub fn draw_walk(w: Weights<'_>, u: f64, step: usize, sums: &[f64]) -> usize {
    let blocks = w.len().div_ceil(step);
    let total: f64 = sums[..blocks].iter().sum();
    let mut r = u * total;
    for (c, (b, &s)) in w.w.chunks(step).zip(sums).enumerate() {
        if r >= s {
            r -= s;
            continue;
        }
        for (j, &x) in b.iter().enumerate() {
            let x = w.of(x);
            if x > 0.0 {
                r -= x as f64;
                if r < 0.0 {
                    return c * step + j;
                }
            }
        }
    }
    w.w.iter().rposition(|&x| w.of(x) > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0.0f64;
        let mut x = -103.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            if want > f32::MIN_POSITIVE as f64 {
                worst = worst.max(((got - want) / want).abs());
            } else {
                // Subnormal: within one step of the exact value.
                assert!((got - want).abs() <= 1.4013e-45, "{x}: {got} vs {want}");
            }
            x += 0.000_731;
        }
        println!("worst relative error {worst:e} ({:.2} ulp of 1)", worst / f32::EPSILON as f64);
        assert!(worst < 2.0 * f32::EPSILON as f64, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(f32::NAN), 0.0);
    }

    #[test]
    fn passes_agree_with_plain_loops() {
        let x: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1013) as f32 * 0.01 - 5.0).collect();
        for n in [0, 1, 15, 16, 17, 63, 64, 65, 200, 1000] {
            let x = &x[..n];
            let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(x), m);
            let want: f64 = x.iter().map(|&v| exp((v - m) * 0.7) as f64).sum();
            assert!((exp_sum(x, m, 0.7) - want).abs() <= want * 1e-6);
            let mut out = vec![0.0; n];
            assert!((exp_store(x, m, 0.7, &mut out) - want).abs() <= want * 1e-6);
            assert!(out.iter().zip(x).all(|(&o, &v)| o == exp((v - m) * 0.7)));
            if n > 0 {
                assert_eq!(position(x, x[n - 1]), x.iter().position(|&v| v == x[n - 1]));
            }
            let mut seen = Vec::new();
            scan_above(x, 1.0, |i, v, t| {
                seen.push(i);
                assert!(v > t);
                t
            });
            assert_eq!(seen, (0..n as u32).filter(|&i| x[i as usize] > 1.0).collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_in_range_exponential_is_the_exponential() {
        let mut x = -87.0f32;
        while x <= 0.0 {
            assert_eq!(exp_in_range(x).to_bits(), exp(x).to_bits(), "{x}");
            x += 0.000_37;
        }
        for x in [-87.0f32, -86.99999, -0.0, 0.0, -1e-30] {
            assert_eq!(exp_in_range(x).to_bits(), exp(x).to_bits(), "{x}");
        }
    }

    #[test]
    fn threshold_passes_agree_with_plain_loops() {
        let x: Vec<f32> = (0..2100).map(|i| ((i * 7919) % 1013) as f32 * 0.001).collect();
        for n in [0, 1, 15, 16, 17, 63, 64, 65, 200, 1000, 1024, 1040, 2100] {
            let x = &x[..n];
            for (lo, hi) in [(0.2f32, 0.7f32), (0.0, 1.0), (0.5, 0.5), (0.3, f32::INFINITY), (f32::MIN_POSITIVE, 0.011)] {
                let want: Vec<u32> = (0..n as u32).filter(|&i| x[i as usize] >= lo && x[i as usize] < hi).collect();
                let (s, c) = sum_at_least(x, lo);
                let kept: Vec<f64> = x.iter().filter(|&&v| v >= lo).map(|&v| v as f64).collect();
                assert_eq!(c, kept.len());
                assert!((s - kept.iter().sum::<f64>()).abs() <= 1e-9);
                assert_eq!(count_above(x, lo), x.iter().filter(|&&v| v > lo).count());
                let mut ids = Vec::new();
                let above = gather_within(x, lo, hi, &mut ids);
                assert_eq!(ids, want, "gather_within {lo} {hi} n {n}");
                let at_hi = sum_at_least(x, hi);
                assert_eq!((above.0.to_bits(), above.1), (at_hi.0.to_bits(), at_hi.1), "gather_within's sum {hi} n {n}");
            }
        }
    }

    #[test]
    fn draw_walks_the_positive_weights() {
        // Longer than 512 blocks of 512: the blocks grow.
        for n in [2000, 300_000] {
            let w: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { 0.0 } else { (i % 7) as f32 }).collect();
            let total: f64 = w.iter().map(|&x| x as f64).sum();
            for u in [0.0, 0.1, 0.5, 0.77, 0.999_999] {
                let mut r = u * total;
                let want = w.iter().position(|&x| {
                    if x > 0.0 {
                        r -= x as f64;
                    }
                    x > 0.0 && r < 0.0
                });
                assert_eq!(Some(draw(Weights::plain(&w), u)), want, "n {n} u {u}");
            }
        }
        assert_eq!(draw(Weights::plain(&[0.0, 0.0]), 0.5), 0);
    }
}
