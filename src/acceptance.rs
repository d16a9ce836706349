//! The acceptance rule of speculative sampling (Leviathan et al., Algorithm 1, steps 3-4).

use rand::Rng;

use crate::sampling::{draw, sample_index, split, Dist, Weights};

/// Decide on draft token `x` proposed from `q` while the target says `p`.
/// Returns `None` when `x` is accepted, or the token to emit instead, drawn from
/// norm(max(0, p − q)). Accepting with probability min(1, p(x)/q(x)) is written as
/// `r·q(x) < p(x)`, which also covers q(x) = 0 < p(x) (always accept) and p(x) = 0 (never).
pub fn verify(p: Dist<'_>, q: Dist<'_>, x: u32, rng: &mut impl Rng, scratch: &mut Vec<f32>) -> Option<u32> {
    let r: f32 = rng.random();
    if r * q.prob(x) < p.prob(x) {
        return None;
    }
    Some(residual(p, q, rng, scratch))
}

/// The probability that a proposal drawn from `q` is accepted under `p`: Σ min(p, q), the paper's
/// β at one position (its expectation is α). Over the kept tokens only where either side is sparse.
pub fn overlap(p: Dist<'_>, q: Dist<'_>) -> f64 {
    match (p, q) {
        (Dist::Point(a), Dist::Point(b)) => (a == b) as u32 as f64,
        (Dist::Point(t), d) | (d, Dist::Point(t)) => d.prob(t) as f64,
        (Dist::Sparse { ids, probs }, other) | (other, Dist::Sparse { ids, probs }) => {
            let mut sum = 0.0f64;
            beside(ids, probs, other, |x, y| sum += x.min(y) as f64);
            sum
        }
        (a, b) => match (a.weights(), b.weights()) {
            (Some(a), Some(b)) => split::sum_min(a, b),
            _ => unreachable!("only dense distributions are left"),
        },
    }
}

/// Sample from norm(max(0, p − q)); falls back to p where float rounding leaves no mass. Where p
/// is sparse, only its kept tokens are visited.
pub fn residual(p: Dist<'_>, q: Dist<'_>, rng: &mut impl Rng, scratch: &mut Vec<f32>) -> u32 {
    if let Some(pw) = p.weights() {
        match q {
            Dist::Point(y) => {
                dense_into(pw, scratch);
                if let Some(v) = scratch.get_mut(y as usize) {
                    *v = 0.0;
                }
            }
            Dist::Sparse { ids, probs } => {
                dense_into(pw, scratch);
                for (&t, &y) in ids.iter().zip(probs) {
                    if let Some(v) = scratch.get_mut(t as usize) {
                        *v = (*v - y).max(0.0);
                    }
                }
            }
            q => {
                let qw = q.weights().expect("a dense q is all that is left");
                split::positive_difference(pw, qw, scratch);
            }
        }
        return if scratch.iter().any(|&v| v > 0.0) { sample_index(scratch, rng) } else { draw(pw, rng) };
    }
    match p {
        Dist::Sparse { ids, probs } => {
            scratch.clear();
            beside(ids, probs, q, |x, y| scratch.push((x - y).max(0.0)));
            let w = if scratch.iter().any(|&v| v > 0.0) { &scratch[..] } else { probs };
            ids.get(sample_index(w, rng) as usize).copied().unwrap_or(0)
        }
        // A point-mass target puts all residual mass on its own token.
        Dist::Point(a) => a,
        Dist::Probs(_) | Dist::Scaled { .. } => unreachable!("dense p is handled above"),
    }
}

/// The probabilities of a dense row, written out.
fn dense_into(w: Weights<'_>, out: &mut Vec<f32>) {
    out.clear();
    out.extend(w.w.iter().map(|&v| w.of(v)));
}

/// Calls `f(p(t), q(t))` for each token t a sparse p keeps (`ids` increasing), in order.
fn beside(ids: &[u32], probs: &[f32], q: Dist<'_>, mut f: impl FnMut(f32, f32)) {
    match q {
        Dist::Sparse { ids: qi, probs: qp } => {
            let mut j = 0;
            for (&t, &x) in ids.iter().zip(probs) {
                while j < qi.len() && qi[j] < t {
                    j += 1;
                }
                f(x, if j < qi.len() && qi[j] == t { qp[j] } else { 0.0 });
            }
        }
        q => ids.iter().zip(probs).for_each(|(&t, &x)| f(x, q.prob(t))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_the_acceptance_probability() {
        let p = [0.5f32, 0.3, 0.2];
        let q = [0.2f32, 0.3, 0.5];
        assert!((overlap(Dist::Probs(&p), Dist::Probs(&q)) - 0.7).abs() < 1e-6);
        assert!((overlap(Dist::Probs(&p), Dist::Point(1)) - 0.3).abs() < 1e-6);
        assert_eq!(overlap(Dist::Point(2), Dist::Point(2)), 1.0);
        assert_eq!(overlap(Dist::Point(2), Dist::Point(0)), 0.0);
    }
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const N: usize = 200_000;

    /// Empirical distribution of the token emitted at the first position: x ~ q, then verify.
    fn emitted(p: Dist<'_>, q: Dist<'_>, vocab: usize) -> (Vec<f64>, f64) {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0usize; vocab];
        let mut accepted = 0usize;
        let mut scratch = Vec::new();
        for _ in 0..N {
            let x = q.sample(&mut rng);
            let t = match verify(p, q, x, &mut rng, &mut scratch) {
                None => {
                    accepted += 1;
                    x
                }
                Some(t) => t,
            };
            counts[t as usize] += 1;
        }
        (counts.iter().map(|&c| c as f64 / N as f64).collect(), accepted as f64 / N as f64)
    }

    fn assert_close(got: &[f64], want: &[f32]) {
        for (g, w) in got.iter().zip(want) {
            // 5 standard errors of a binomial proportion at N samples.
            let tol = 5.0 * ((*w as f64) * (1.0 - *w as f64) / N as f64).sqrt() + 1e-9;
            assert!((g - *w as f64).abs() <= tol, "got {got:?}, want {want:?}");
        }
    }

    fn alpha(p: &[f32], q: &[f32]) -> f64 {
        p.iter().zip(q).map(|(&a, &b)| a.min(b) as f64).sum()
    }

    #[test]
    fn output_follows_p_for_overlapping_supports() {
        let p = [0.5, 0.3, 0.2, 0.0];
        let q = [0.1, 0.2, 0.3, 0.4];
        let (got, acc) = emitted(Dist::Probs(&p), Dist::Probs(&q), 4);
        assert_close(&got, &p);
        assert!((acc - alpha(&p, &q)).abs() < 0.01, "acceptance {acc}");
    }

    #[test]
    fn q_zero_where_p_positive() {
        // Token 0 is never proposed, so it can only come from the residual.
        let p = [0.6, 0.4, 0.0];
        let q = [0.0, 0.5, 0.5];
        let (got, _) = emitted(Dist::Probs(&p), Dist::Probs(&q), 3);
        assert_close(&got, &p);
        // A proposal with q(x) = 0 < p(x) (a host drafter may make one) is always accepted.
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(verify(Dist::Probs(&p), Dist::Probs(&q), 0, &mut rng, &mut Vec::new()), None);
    }

    #[test]
    fn identical_distributions_always_accept() {
        let p = [0.25, 0.25, 0.5];
        let (got, acc) = emitted(Dist::Probs(&p), Dist::Probs(&p), 3);
        assert_eq!(acc, 1.0);
        assert_close(&got, &p);
    }

    #[test]
    fn point_mass_draft_is_verified_exactly() {
        let p = [0.7, 0.2, 0.1];
        let (got, acc) = emitted(Dist::Probs(&p), Dist::Point(1), 3);
        assert_close(&got, &p);
        assert!((acc - 0.2).abs() < 0.01);
    }

    #[test]
    fn greedy_is_the_point_mass_limit() {
        let mut rng = StdRng::seed_from_u64(3);
        let s = &mut Vec::new();
        assert_eq!(verify(Dist::Point(2), Dist::Point(2), 2, &mut rng, s), None);
        assert_eq!(verify(Dist::Point(2), Dist::Point(1), 1, &mut rng, s), Some(2));
        let q = [0.3, 0.7];
        assert_eq!(verify(Dist::Point(0), Dist::Probs(&q), 1, &mut rng, s), Some(0));
    }

    #[test]
    fn truncated_supports_on_both_sides() {
        // As after top-k/top-p: p and q keep different token sets.
        let p = [0.0, 0.5, 0.5, 0.0, 0.0];
        let q = [0.0, 0.0, 0.25, 0.75, 0.0];
        let (got, acc) = emitted(Dist::Probs(&p), Dist::Probs(&q), 5);
        assert_close(&got, &p);
        assert!((acc - 0.25).abs() < 0.01);
        // Disjoint supports: nothing is ever accepted, and the output is still p.
        let q = [1.0, 0.0, 0.0, 0.0, 0.0];
        let (got, acc) = emitted(Dist::Probs(&p), Dist::Probs(&q), 5);
        assert_eq!(acc, 0.0);
        assert_close(&got, &p);
    }

    /// The kept tokens of a dense row, as [`Dist::Sparse`] holds them.
    fn sparse(p: &[f32]) -> (Vec<u32>, Vec<f32>) {
        p.iter().enumerate().filter(|(_, &x)| x > 0.0).map(|(t, &x)| (t as u32, x)).unzip()
    }

    #[test]
    fn sparse_and_dense_representations_verify_alike() {
        let p = [0.0, 0.5, 0.3, 0.0, 0.2, 0.0];
        let q = [0.1, 0.0, 0.25, 0.4, 0.25, 0.0];
        let ((pi, pp), (qi, qp)) = (sparse(&p), sparse(&q));
        let (ps, qs) = (Dist::Sparse { ids: &pi, probs: &pp }, Dist::Sparse { ids: &qi, probs: &qp });
        let (pd, qd) = (Dist::Probs(&p), Dist::Probs(&q));
        let want = alpha(&p, &q);
        for (a, b) in [(ps, qs), (ps, qd), (pd, qs), (pd, qd)] {
            assert!((overlap(a, b) - want).abs() < 1e-6);
            let (got, acc) = emitted(a, b, 6);
            assert_close(&got, &p);
            assert!((acc - want).abs() < 0.01, "acceptance {acc}");
        }
        // A point-mass draft against a sparse target, and a sparse draft against a point target.
        let (got, acc) = emitted(ps, Dist::Point(2), 6);
        assert_close(&got, &p);
        assert!((acc - 0.3).abs() < 0.01);
        assert_eq!(overlap(Dist::Point(4), qs), 0.25);
        let mut rng = StdRng::seed_from_u64(2);
        assert_eq!(residual(Dist::Point(4), qs, &mut rng, &mut Vec::new()), 4);
        // Same uniforms, same tokens: the sparse walk visits the dense one's positive entries.
        for seed in 0..200 {
            let (mut r1, mut r2) = (StdRng::seed_from_u64(seed), StdRng::seed_from_u64(seed));
            assert_eq!(residual(ps, qs, &mut r1, &mut Vec::new()), residual(pd, qd, &mut r2, &mut Vec::new()));
            assert_eq!(ps.sample(&mut r1), pd.sample(&mut r2));
        }
    }

    #[test]
    fn a_wrong_rule_is_caught_by_the_same_check() {
        // Control: always accepting yields q, not p; the tolerance above must notice.
        let p = [0.5f32, 0.3, 0.2];
        let q = [0.2f32, 0.3, 0.5];
        let mut rng = StdRng::seed_from_u64(9);
        let mut counts = [0usize; 3];
        for _ in 0..N {
            counts[Dist::Probs(&q).sample(&mut rng) as usize] += 1;
        }
        let got: Vec<f64> = counts.iter().map(|&c| c as f64 / N as f64).collect();
        assert!(std::panic::catch_unwind(|| assert_close(&got, &p)).is_err());
    }
}
