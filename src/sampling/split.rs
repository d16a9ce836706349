//! The passes over a very large row (a 150k vocabulary's) cut into fixed chunks, which a helper
//! thread shares with the caller when it is free.
//!
//! The chunks, and the order in which their results are combined, depend only on the row's
//! length: never on which thread ran a chunk, nor on whether the helper took part. So a row gives
//! the same floats with or without the helper, on any machine. Rows shorter than [`SPLIT_MIN`] are
//! one chunk and call the kernels directly, exactly as before the split existed.
//!
//! The helper is one thread per process. It spins for a short while after each piece of work and
//! then sleeps, so between rows (while ONNX Runtime runs a model) it leaves its core alone. One
//! job is on offer at a time: a caller that finds another caller's job still waiting in the slot
//! does all of its own chunks.
//!
//! The floats are the same whichever thread runs a chunk as long as both threads round alike: a
//! host that sets flush-to-zero or denormals-are-zero on some of its threads only (the helper
//! inherits the mode of the thread that first sampled a large row) could see subnormal exps
//! differ. Rust code never sets these modes.

use std::cell::UnsafeCell;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::{Duration, Instant};

use super::kernels::{self, Weights};

/// Entries per chunk: a multiple of every block the kernels work in (up to 1024 entries), 64 KB of
/// floats.
const CHUNK: usize = 16 * 1024;
/// Rows shorter than this are one chunk: handing half of a smaller row over would cost about what
/// it saves.
pub(crate) const SPLIT_MIN: usize = 64 * 1024;
/// At most this many chunks (longer rows get longer chunks), so that results fit on the stack.
const MAX_CHUNKS: usize = 64;
/// How long the helper looks for work after its last piece before it sleeps. A row's passes
/// follow each other within microseconds; the next row comes after a model call, which the helper
/// must not slow down by spinning beside it.
const SPIN: Duration = Duration::from_micros(30);

/// How a row of `len` entries is cut: chunk length and number of chunks.
fn layout(len: usize) -> (usize, usize) {
    if len < SPLIT_MIN {
        return (len.max(1), 1);
    }
    let chunk = CHUNK.max(len.div_ceil(MAX_CHUNKS).next_multiple_of(1024));
    (chunk, len.div_ceil(chunk))
}

/// The helper's switch: on by default where there are at least two cores.
static ENABLED: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = 2;

/// Environment variable that turns the helper off when set to `0` (read once, at first use).
pub const HELPER_ENV: &str = "SPECDEC_SAMPLING_HELPER";

/// Turn the sampling helper thread on or off for the process (default: on with two or more cores,
/// unless `SPECDEC_SAMPLING_HELPER=0`). Results do not depend on it, only the time a large row
/// takes. Models loaded while it is on keep the thread pools chosen for it.
pub fn set_helper(on: bool) {
    ENABLED.store(on as u8, Ordering::Relaxed);
}

/// Whether rows are shared with the helper.
pub fn helper_enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        UNSET => {
            let on = std::env::var_os(HELPER_ENV).is_none_or(|v| v != "0")
                && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
            // A set_helper that came in meanwhile wins.
            match ENABLED.compare_exchange(UNSET, on as u8, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => on,
                Err(v) => v == 1,
            }
        }
        v => v == 1,
    }
}

thread_local! {
    /// Set by tests: this thread's rows run without the helper whatever the switch says.
    static ALONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `f` with this thread's rows run without the helper (tests compare the two).
#[cfg(test)]
pub(crate) fn alone<R>(f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            ALONE.set(false);
        }
    }
    ALONE.set(true);
    let _reset = Reset;
    f()
}

/// Chunks the helper has run, for tests to see that it took part.
#[cfg(test)]
static HELPER_CHUNKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One split pass: its chunks are claimed one at a time by the caller, from the first, and the
/// helper, from the last. Each thread so tends to get the same part of the row in every pass over
/// it, which is then still in that core's cache from the pass before.
struct Job {
    /// Chunks claimed from the front (low 32 bits) and from the back (high 32 bits). One atomic
    /// for both, so that every claim sees all claims before it: a claim is valid while the two
    /// counts before it sum to under `n`, which hands each chunk out exactly once.
    claimed: AtomicU64,
    n: usize,
    run: *const (dyn Fn(usize) + Sync),
    /// Set by the helper when it has stopped touching the job.
    helper_done: AtomicBool,
    helper_panicked: AtomicBool,
}

const BACK: u64 = 1 << 32;

impl Job {
    /// Run chunks until none is left, claiming them from the back of the row or from its front.
    fn work(&self, from_back: bool) {
        loop {
            let was = self.claimed.fetch_add(if from_back { BACK } else { 1 }, Ordering::Relaxed);
            let (front, back) = ((was & (BACK - 1)) as usize, (was >> 32) as usize);
            if front + back >= self.n {
                return;
            }
            let c = if from_back { self.n - 1 - back } else { front };
            // SAFETY: the closure outlives the job (for_each_chunk waits for the helper before
            // returning), and it is Sync.
            unsafe { (*self.run)(c) };
            #[cfg(test)]
            if std::thread::current().name() == Some(HELPER_NAME) {
                HELPER_CHUNKS.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

struct Helper {
    /// The job on offer (null: none). Whoever swaps it out owns running it.
    slot: AtomicPtr<Job>,
    sleeping: AtomicBool,
    thread: Thread,
}

static HELPER: OnceLock<Option<&'static Helper>> = OnceLock::new();
const HELPER_NAME: &str = "specdec-sampling";

fn helper() -> Option<&'static Helper> {
    if !helper_enabled() {
        return None;
    }
    *HELPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new().name(HELPER_NAME.into()).spawn(move || {
            let h: &'static Helper = Box::leak(Box::new(Helper {
                slot: AtomicPtr::new(ptr::null_mut()),
                sleeping: AtomicBool::new(false),
                thread: std::thread::current(),
            }));
            let _ = tx.send(h);
            helper_loop(h);
        });
        // Without a helper thread (the system refused one) every chunk runs on the caller.
        spawned.ok().and_then(|_| rx.recv().ok())
    })
}

fn helper_loop(h: &'static Helper) {
    loop {
        let mut idle_since = Instant::now();
        let mut polls = 0u32;
        loop {
            let job = h.slot.swap(ptr::null_mut(), Ordering::Acquire);
            if !job.is_null() {
                // SAFETY: the caller keeps the job alive until helper_done is set.
                let job = unsafe { &*job };
                let ok = std::panic::catch_unwind(AssertUnwindSafe(|| job.work(true))).is_ok();
                job.helper_panicked.store(!ok, Ordering::Relaxed);
                job.helper_done.store(true, Ordering::Release);
                idle_since = Instant::now();
                continue;
            }
            polls += 1;
            if polls % 64 == 0 && idle_since.elapsed() > SPIN {
                break;
            }
            std::hint::spin_loop();
        }
        h.sleeping.store(true, Ordering::SeqCst);
        // A job offered after the swap above but before `sleeping` was set finds it unset and
        // does not wake the helper: look once more.
        if h.slot.load(Ordering::SeqCst).is_null() {
            std::thread::park();
        }
        h.sleeping.store(false, Ordering::SeqCst);
    }
}

/// Takes the job off offer when the caller is done with its chunks (also when one of them
/// panicked), and waits for the helper if it took the job.
struct Retract<'a> {
    helper: &'a Helper,
    job: &'a Job,
}

impl Drop for Retract<'_> {
    fn drop(&mut self) {
        let p = self.job as *const Job as *mut Job;
        if self.helper.slot.compare_exchange(p, ptr::null_mut(), Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return;
        }
        // The helper finishes the chunk it is on, at most a few microseconds; should it lose its
        // core meanwhile, this thread yields instead of burning its own slice.
        let mut spins = 0u32;
        while !self.job.helper_done.load(Ordering::Acquire) {
            spins += 1;
            if spins < 1 << 12 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// `run(c)` for every chunk `c` in `0..n`, the helper taking chunks while it is free; returns
/// when every chunk is done.
fn for_each_chunk(n: usize, run: &(dyn Fn(usize) + Sync)) {
    let helper = if n > 1 && !ALONE.get() { helper() } else { None };
    let Some(helper) = helper else {
        (0..n).for_each(run);
        return;
    };
    // SAFETY (lifetime erasure): the job, and with it this pointer, is retracted or waited for
    // before this function returns.
    let run: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(run) };
    let job =
        Job { claimed: AtomicU64::new(0), n, run, helper_done: AtomicBool::new(false), helper_panicked: AtomicBool::new(false) };
    let p = &job as *const Job as *mut Job;
    // SeqCst, like the helper's side: the offer and its `sleeping` flag form a handshake in which
    // at least one side must see the other's store.
    if helper.slot.compare_exchange(ptr::null_mut(), p, Ordering::SeqCst, Ordering::Relaxed).is_err() {
        // Busy with another caller's row.
        job.work(false);
        return;
    }
    if helper.sleeping.load(Ordering::SeqCst) {
        helper.thread.unpark();
    }
    {
        let _retract = Retract { helper, job: &job };
        job.work(false);
    }
    assert!(!job.helper_panicked.load(Ordering::Relaxed), "a sampling chunk panicked on the helper thread");
}

/// One result per chunk, each written by whichever thread ran that chunk.
struct Slots<T>([UnsafeCell<Option<T>>; MAX_CHUNKS]);

// SAFETY: slot c is written only by the one run of chunk c, and read after for_each_chunk has
// joined every run.
unsafe impl<T: Send> Sync for Slots<T> {}

impl<T: Copy> Slots<T> {
    fn new() -> Self {
        Slots(std::array::from_fn(|_| UnsafeCell::new(None)))
    }

    /// # Safety
    /// Only the one run of chunk `c` may call this for `c`.
    unsafe fn set(&self, c: usize, v: T) {
        unsafe { *self.0[c].get() = Some(v) };
    }

    fn get(&mut self, c: usize) -> T {
        self.0[c].get_mut().expect("every chunk ran")
    }
}

/// A pointer that chunks index disjointly.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);

// SAFETY: chunks write disjoint ranges.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// # Safety
    /// `r` lies inside the buffer, and no other live slice overlaps it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, r: Range<usize>) -> &mut [T] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(r.start), r.len()) }
    }

    /// # Safety
    /// As [`Shared::slice`], for the one element `i`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn at(&self, i: usize) -> &mut T {
        unsafe { &mut *self.0.add(i) }
    }
}

/// `f` over each chunk of a row of `len`, the results combined in chunk order by `fold`.
fn reduce<T: Copy + Send>(len: usize, f: impl Fn(Range<usize>) -> T + Sync, fold: impl Fn(T, T) -> T) -> T {
    let (chunk, n) = layout(len);
    if n == 1 {
        return f(0..len);
    }
    let mut slots = Slots::new();
    // SAFETY: chunk c's run is the only one to write slot c.
    for_each_chunk(n, &|c| unsafe { slots.set(c, f(c * chunk..((c + 1) * chunk).min(len))) });
    (1..n).fold(slots.get(0), |acc, c| fold(acc, slots.get(c)))
}

fn add_pair(a: (f64, usize), b: (f64, usize)) -> (f64, usize) {
    (a.0 + b.0, a.1 + b.1)
}

/// [`kernels::max`].
pub(crate) fn max(x: &[f32]) -> f32 {
    reduce(x.len(), |r| kernels::max(&x[r]), |a, b| if b > a { b } else { a })
}

/// [`kernels::sum`], summed per chunk.
pub(crate) fn sum(x: &[f32]) -> f64 {
    reduce(x.len(), |r| kernels::sum(&x[r]), |a, b| a + b)
}

/// [`kernels::exp_store`], summed per chunk.
pub(crate) fn exp_store(x: &[f32], m: f32, k: f32, out: &mut [f32]) -> f64 {
    let out = &mut out[..x.len()];
    let o = Shared(out.as_mut_ptr());
    // SAFETY: chunks are disjoint ranges of `out`.
    reduce(x.len(), |r| kernels::exp_store(&x[r.clone()], m, k, unsafe { o.slice(r) }), |a, b| a + b)
}

/// [`kernels::exp_store_mass`], summed per chunk as [`exp_store`] and [`mass_at_least`] sum.
pub(crate) fn exp_store_mass(x: &[f32], m: f32, k: f32, out: &mut [f32], t: [f32; 4]) -> (f64, [f64; 4]) {
    let out = &mut out[..x.len()];
    let o = Shared(out.as_mut_ptr());
    reduce(
        x.len(),
        // SAFETY: chunks are disjoint ranges of `out`.
        |r| kernels::exp_store_mass(&x[r.clone()], m, k, unsafe { o.slice(r) }, t),
        |a, b| (a.0 + b.0, std::array::from_fn(|j| a.1[j] + b.1[j])),
    )
}

/// [`kernels::mass_at_least`], summed per chunk.
pub(crate) fn mass_at_least(x: &[f32], t: [f32; 4]) -> [f64; 4] {
    reduce(x.len(), |r| kernels::mass_at_least(&x[r], t), |a, b| std::array::from_fn(|j| a[j] + b[j]))
}

/// [`kernels::sum_at_least`], summed per chunk.
pub(crate) fn sum_at_least(x: &[f32], t: f32) -> (f64, usize) {
    reduce(x.len(), |r| kernels::sum_at_least(&x[r], t), add_pair)
}

/// [`kernels::gather_within`]; its sum is [`sum_at_least`]'s, bit for bit, as the kernel's is.
/// `parts` holds the chunks' ids between calls.
pub(crate) fn gather_within(x: &[f32], lo: f32, hi: f32, ids: &mut Vec<u32>, parts: &mut Vec<Vec<u32>>) -> (f64, usize) {
    let (chunk, n) = layout(x.len());
    if n == 1 {
        return kernels::gather_within(x, lo, hi, ids);
    }
    if parts.len() < n {
        parts.resize_with(n, Vec::new);
    }
    let p = Shared(parts.as_mut_ptr());
    let above = reduce(
        x.len(),
        |r| {
            // SAFETY: the chunk starting at r.start is the only one to use its part.
            let part = unsafe { p.at(r.start / chunk) };
            kernels::gather_within(&x[r], lo, hi, part)
        },
        add_pair,
    );
    ids.clear();
    for (c, part) in parts[..n].iter().enumerate() {
        let base = (c * chunk) as u32;
        ids.extend(part.iter().map(|&i| base + i));
    }
    above
}

/// [`kernels::draw`], its block sums split: the same sums, so the same index for the same `u`.
pub(crate) fn draw(w: Weights<'_>, u: f64) -> usize {
    let chunks = layout(w.len()).1;
    if chunks == 1 {
        return kernels::draw(w, u);
    }
    let step = kernels::draw_step(w.len());
    let blocks = w.len().div_ceil(step);
    // Groups of whole blocks, as many as a row of this length has chunks.
    let per_group = blocks.div_ceil(chunks);
    let mut sums = [0.0f64; kernels::DRAW_BLOCKS];
    let s = Shared(sums.as_mut_ptr());
    for_each_chunk(blocks.div_ceil(per_group), &|g| {
        let bs = g * per_group..((g + 1) * per_group).min(blocks);
        // SAFETY: groups are disjoint ranges of `sums`.
        kernels::draw_sums(w.part(bs.start * step..bs.end * step), step, unsafe { s.slice(bs) });
    });
    kernels::draw_walk(w, u, step, &sums)
}

/// [`kernels::sum_min`], summed per chunk, for rows of the same length.
pub(crate) fn sum_min(a: Weights<'_>, b: Weights<'_>) -> f64 {
    if a.len() != b.len() {
        return kernels::sum_min(a, b);
    }
    reduce(a.len(), |r| kernels::sum_min(a.part(r.clone()), b.part(r)), |x, y| x + y)
}

/// `out = max(0, a − b)` entry by entry (b read as 0 past its end); returns whether any is > 0
/// ([`kernels::positive_difference_into`] per chunk).
pub(crate) fn positive_difference(a: Weights<'_>, b: Weights<'_>, out: &mut Vec<f32>) -> bool {
    out.clear();
    out.resize(a.len(), 0.0);
    let o = Shared(out.as_mut_ptr());
    // SAFETY: chunks are disjoint ranges of `out`.
    reduce(
        a.len(),
        |r| kernels::positive_difference_into(a.part(r.clone()), b.part(r.clone()), unsafe { o.slice(r) }),
        |p, q| p | q,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn row(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-8.0f32..8.0)).collect()
    }

    /// The helper on or off, the same bits: the chunks and their order depend on the length only.
    #[test]
    fn results_do_not_depend_on_the_helper() {
        for &n in &[1000, SPLIT_MIN - 1, SPLIT_MIN, 151_936, 262_144 + 17] {
            let x = row(n, n as u64);
            let m = max(&x);
            let run = || {
                let mut e = vec![0.0f32; n];
                let z = exp_store(&x, m, 1.0, &mut e);
                let mass = mass_at_least(&e, [0.5, 0.1, 0.01, 0.001]);
                // The fused pass gives the same exps, sum and masses.
                let mut fused = vec![0.0f32; n];
                let (z2, mass2) = exp_store_mass(&x, m, 1.0, &mut fused, [0.5, 0.1, 0.01, 0.001]);
                assert!(fused == e && z2.to_bits() == z.to_bits() && mass2 == mass, "{n} entries: fused exp pass");
                let (mut ids, mut parts) = (Vec::new(), Vec::new());
                let above = gather_within(&e, 0.01, 0.1, &mut ids, &mut parts);
                let at_least = sum_at_least(&e, 0.1);
                let s = sum(&e);
                // Scaled and floored as a distribution's exps are read, against a plain row.
                let scaled = Weights { w: &e, floor: 0.01, scale: 3.0 };
                let overlap = sum_min(scaled, Weights::plain(&x)).to_bits();
                let mut d = Vec::new();
                let any = positive_difference(scaled, Weights::plain(&x), &mut d);
                (z.to_bits(), mass.map(f64::to_bits), ids, above.0.to_bits(), above.1, at_least, s.to_bits(), d, any, e, overlap)
            };
            let alone = super::alone(run);
            set_helper(true);
            // Several times: the helper joins at different points of different passes (and, on a
            // busy machine, may first need a few rows to be scheduled at all).
            let before = HELPER_CHUNKS.load(Ordering::Relaxed);
            for i in 0.. {
                assert!(run() == alone, "{n} entries: the helper changed a result");
                let took_part = HELPER_CHUNKS.load(Ordering::Relaxed) > before;
                if i >= 4 && (took_part || layout(n).1 == 1) {
                    break;
                }
                assert!(i < 2000, "{n} entries: the helper never ran a chunk");
            }
            assert_eq!(m, kernels::max(&x));
            let e: Vec<f32> = x.iter().map(|&v| (v - m).exp()).collect();
            // Scaled weights draw as the products written out would.
            let (floor, scale) = (0.05, 0.37);
            let stored: Vec<f32> = e.iter().map(|&v| if v >= floor { v * scale } else { 0.0 }).collect();
            for u in [0.0, 0.1, 0.5, 0.9, 0.999_999] {
                for (w, what) in [(Weights::plain(&e), "plain"), (Weights { w: &e, floor, scale }, "scaled")] {
                    let want = kernels::draw(Weights::plain(if what == "plain" { &e } else { &stored }), u);
                    assert_eq!(kernels::draw(w, u), want, "{n} entries: {what} draw at {u}, unsplit");
                    assert_eq!(draw(w, u), want, "{n} entries: {what} draw at {u}");
                    assert_eq!(super::alone(|| draw(w, u)), want, "{n} entries: {what} draw at {u}, alone");
                }
            }
            // The gathered ids are the kernel's, in increasing order.
            let mut e = vec![0.0f32; n];
            kernels::exp_store(&x, m, 1.0, &mut e);
            let mut want = Vec::new();
            let above = kernels::gather_within(&e, 0.01, 0.1, &mut want);
            assert_eq!(alone.2, want, "{n} entries: gathered ids");
            assert_eq!(alone.4, above.1, "{n} entries: count at or over hi");
            assert_eq!(alone.3, sum_at_least(&e, 0.1).0.to_bits(), "{n} entries: gather's sum is sum_at_least's");
        }
    }

    #[test]
    fn layout_covers_the_row_in_order() {
        for &n in &[0, 1, SPLIT_MIN - 1, SPLIT_MIN, 151_936, 1 << 20, (1 << 22) + 3] {
            let (chunk, k) = layout(n);
            assert!(k <= MAX_CHUNKS && chunk * k >= n && (k == 1 || chunk * (k - 1) < n), "{n}: {chunk} × {k}");
        }
    }

    /// Callers on several threads at once: each gets its own row's results whoever ran its chunks.
    #[test]
    fn concurrent_callers_get_their_own_results() {
        set_helper(true);
        let rows: Vec<Vec<f32>> = (0..4).map(|s| row(151_936, 100 + s)).collect();
        let want: Vec<f64> = rows.iter().map(|r| sum(r)).collect();
        std::thread::scope(|s| {
            for (r, &w) in rows.iter().zip(&want) {
                s.spawn(move || {
                    for _ in 0..50 {
                        assert_eq!(sum(r).to_bits(), w.to_bits());
                    }
                });
            }
        });
    }
}
