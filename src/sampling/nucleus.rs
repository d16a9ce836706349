//! Top-p's bracket: thresholds on a row of exps between which the nucleus's cut falls, found in
//! few vectorised passes (each summing the row over four thresholds) from where the cut fell in
//! the rows before and a probit-linear model of the mass over a cut.

use super::kernels;

/// Where the top-p cut fell in the last row (in [`nucleus_bracket`]'s exponent units, `None` when
/// it gave no useful hint) and the mean distance it moved between rows lately.
#[derive(Debug, Clone, Copy)]
pub(super) struct CutHint {
    at: Option<f32>,
    step: f32,
}

impl Default for CutHint {
    fn default() -> Self {
        CutHint { at: None, step: 0.05 }
    }
}

/// The exp an entry must reach to be at or over cut `c` (in [`nucleus_bracket`]'s exponent units).
fn cut_value(c: f32) -> f32 {
    kernels::exp(-c)
}

/// The cuts of [`nucleus_bracket`]'s first pass: around where the cut fell in the rows before, at
/// the distance it has been moving (a flat row's moves little: one pass then settles it), and four
/// times wider in case it moved more; fixed ones without a hint.
fn first_cuts(hint: &CutHint) -> [f32; 4] {
    match hint.at.filter(|&c| c > 0.1) {
        Some(c) => {
            let s = (1.5 * hint.step).clamp(1e-3, 0.5);
            [c - 4.0 * s, c - s, c + s, c + 4.0 * s]
        }
        None => [1.5f32, 4.0, 8.0, 16.0],
    }
}

/// The thresholds on the exps that [`nucleus_bracket`]'s first pass sums over. They depend on the
/// hint only, so the pass that computes the exps can sum them on its way
/// ([`super::split::exp_store_mass`]) and hand the masses to it.
pub(super) fn first_thresholds(hint: &CutHint) -> [f32; 4] {
    first_cuts(hint).map(cut_value)
}

/// Thresholds (lo, hi) on a row of exps such that the entries at or over lo hold at least
/// `target` and those at or over hi less, narrowed (up to five vectorised passes, four thresholds
/// each) until few entries lie between them; `total` is the row's sum. The first thresholds go
/// around where the cut fell in the rows before (`hint`), which is then updated with this row's;
/// `first` is their masses where the caller summed them already (for [`first_thresholds`] of the
/// same hint).
pub(super) fn nucleus_bracket(
    e: &[f32],
    target: f64,
    total: f64,
    hint: &mut CutHint,
    guess: bool,
    mut first: Option<[f64; 4]>,
) -> (f32, f32, bool) {
    // In exponent units: an entry e is at or over the cut c when e >= exp(-c). Every e is at most 1
    // (the top token's), so hi starts over it; exp(-104) is 0, which every entry is at or over.
    let (mut c_hi, mut c_lo) = (-1e-3f32, 104.0f32);
    let (mut m_hi, mut m_lo) = (0.0f64, total);
    let hinted = hint.at.filter(|&c| c > 0.1);
    let mut cuts = first_cuts(hint);
    // Every (cut, mass) measured inside the bracket, in increasing cut order, those past the
    // crossing included: where the mass reaches the target is interpolated through the two around
    // it, and the next ones out say how far off that may be.
    let mut pts = [(0.0f32, 0.0f64); 22];
    pts[0] = (c_hi, m_hi);
    pts[1] = (c_lo, m_lo);
    let mut n_pts = 2;
    let mut guessed = false;
    let mut passes = 0;
    while passes < 5 {
        passes += 1;
        let mass = first.take().unwrap_or_else(|| super::split::mass_at_least(e, cuts.map(cut_value)));
        for (j, &c) in cuts.iter().enumerate() {
            if c > c_hi && c < c_lo {
                pts[n_pts] = (c, mass[j]);
                n_pts += 1;
            }
        }
        for (j, &c) in cuts.iter().enumerate() {
            if mass[j] >= target {
                (c_lo, m_lo) = (c, mass[j]);
                break;
            }
            (c_hi, m_hi) = (c, mass[j]);
        }
        pts[..n_pts].sort_by(|a, b| a.0.total_cmp(&b.0));
        // Every entry between the bounds is at least exp(-c_lo), so their number is at most their
        // mass over that (no bound while c_lo is the end of the range, where that is 0).
        if m_lo - m_hi <= GATHER_MAX * cut_value(c_lo) as f64 {
            break;
        }
        cuts = if c_lo >= 104.0 {
            // No threshold reached the target yet: steps growing away from the highest tried.
            [0.1f32, 0.3, 1.0, 3.0].map(|d| c_hi.max(0.0) + d)
        } else {
            let w = c_lo - c_hi;
            let (at, err) = crossing(&pts[..n_pts], target, total, (c_hi, m_hi), (c_lo, m_lo));
            if let Some(err) = err.filter(|_| guess) {
                // Bounds at three times the estimate's error around it, if they hold few entries (the
                // mass between them, at the bracket's mean slope, over the least exp there).
                let d = 3.0 * err.max(w / 1024.0);
                let (g_hi, g_lo) = ((at - d).max(c_hi), (at + d).min(c_lo));
                if ((m_lo - m_hi) / w as f64) * (g_lo - g_hi) as f64 <= GATHER_MAX * cut_value(g_lo) as f64 {
                    (c_hi, c_lo) = (g_hi, g_lo);
                    guessed = true;
                    break;
                }
            }
            let err = err.unwrap_or(w / 8.0);
            let d = err.clamp(w / 256.0, w / 6.0);
            let mut c =
                [at - 2.0 * d, at - 0.5 * d, at + 0.5 * d, at + 2.0 * d].map(|c| c.clamp(c_hi + w / 512.0, c_lo - w / 512.0));
            c.sort_by(f32::total_cmp);
            c
        };
    }
    // Not from a row the fixed thresholds settled at once (a peaked one, whose cut moves too much
    // from row to row for a hint to beat them).
    let at = ((passes > 1 || hinted.is_some()) && c_hi > 0.0 && c_lo < 104.0).then_some(0.5 * (c_hi + c_lo));
    if let (Some(was), Some(now)) = (hinted, at) {
        hint.step = 0.75 * hint.step + 0.25 * (now - was).abs();
    }
    hint.at = at;
    (cut_value(c_lo), cut_value(c_hi), guessed)
}

const GATHER_MAX: f64 = 1024.0;

/// Where the mass reaches `target` between the bracket's bounds `hi` and `lo` (cut, mass), and how
/// far that may be off. Interpolated in probit units, y = Φ⁻¹(mass / total): for normally
/// distributed logits the mass over cut c is total·Φ((c − c₀)/σ), so y is linear in c there, and
/// near enough on real rows that one pass of thresholds around the estimate settles the cut. The
/// error is how far the estimates through the neighbouring points (one on either side) fall from it.
fn crossing(pts: &[(f32, f64)], target: f64, total: f64, hi: (f32, f64), lo: (f32, f64)) -> (f32, Option<f32>) {
    let w = lo.0 - hi.0;
    let linear = hi.0 + w * ((target - hi.1) / (lo.1 - hi.1).max(f64::MIN_POSITIVE)) as f32;
    let y = |m: f64| probit(m / total);
    let through = |a: (f32, f64), b: (f32, f64)| -> Option<f64> {
        let (ya, yb) = (y(a.1), y(b.1));
        (ya.is_finite() && yb.is_finite() && yb > ya).then(|| a.0 as f64 + (b.0 - a.0) as f64 * (y(target) - ya) / (yb - ya))
    };
    let Some(at) = through(hi, lo).filter(|&at| at > hi.0 as f64 && at < lo.0 as f64) else {
        return (linear, None);
    };
    let i = pts.iter().position(|p| p.0 == hi.0).unwrap_or(0);
    let mut err = 0.0f64;
    let mut seen = false;
    if i > 0 {
        if let Some(e) = through(pts[i - 1], lo) {
            err = err.max((e - at).abs());
            seen = true;
        }
    }
    if i + 2 < pts.len() && pts[i + 2].0 < 103.0 {
        if let Some(e) = through(hi, pts[i + 2]) {
            err = err.max((e - at).abs());
            seen = true;
        }
    }
    (at as f32, seen.then_some(err as f32))
}

/// Φ⁻¹(p), the standard normal quantile (Acklam's rational approximation, relative error ~1e-9);
/// ±inf at 0 and 1.
fn probit(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}
