//! Matryoshka prefixes (Bussmann et al. 2025, arXiv 2503.17547): the loss sums the
//! reconstruction error of nested prefixes of the dictionary, so early latents must reconstruct
//! on their own. The prefix ends are either fixed, or drawn anew for each batch as saev does
//! (`saev/nn/objectives.py::sample_prefixes`: n − 1 lengths without replacement from a Pareto law
//! of power ½ over 1..d_sae, plus d_sae itself).

use crate::error::Result;
use crate::fix::Opt;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// saev's default number of prefixes (`Matryoshka.n_prefixes`).
pub const SAEV_PREFIXES: usize = 10;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum Prefixes {
    /// `n` prefixes per batch: d_sae and n − 1 lengths drawn from saev's Pareto law.
    Sampled { n: usize },
    /// The same increasing ends for every batch; the last is d_sae.
    Ends { ends: Vec<usize> },
}

impl Prefixes {
    /// `n` geometric ends d_sae/2^(n−1), …, d_sae/2, d_sae (the PyTorch peer's rule).
    pub fn geometric(d_sae: usize, n: usize) -> Self {
        let mut ends: Vec<usize> = (0..n)
            .map(|i| (d_sae >> (n - 1 - i).min(63)).max(1))
            .collect();
        ends.dedup();
        Prefixes::Ends { ends }
    }

    /// Checks the rule against the dictionary size; fixed ends get d_sae appended if missing.
    pub fn checked(self, d_sae: usize) -> Result<Self> {
        match self {
            // saev asks n ≤ d_sae; lengths 2..d_sae − 1 leave n − 1 ≤ d_sae − 2 to draw.
            Prefixes::Sampled { n } if n == 0 || n > d_sae.saturating_sub(1).max(1) => {
                Err(crate::fixable!([
                    Opt::Prefixes,
                    " must be between 1 and ",
                    Opt::DSae,
                    format!(" − 1 ({}) (got {n})", d_sae.saturating_sub(1).max(1))
                ]))
            }
            Prefixes::Sampled { n } => Ok(Prefixes::Sampled { n }),
            Prefixes::Ends { mut ends } => {
                if ends.last() != Some(&d_sae) {
                    ends.push(d_sae);
                }
                if ends[0] == 0 || ends.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(crate::fixable!([
                        Opt::Prefixes,
                        " ends must increase from at least 1 up to ",
                        Opt::DSae,
                        format!(" ({d_sae}) (got {ends:?})")
                    ]));
                }
                Ok(Prefixes::Ends { ends })
            }
        }
    }

    /// The prefix ends used at `step` (sorted, the last = d_sae): fixed, or drawn from a stream
    /// seeded by (seed, step), so a resumed or swept run draws what a one-piece run draws.
    pub fn ends_at(&self, d_sae: usize, seed: u64, step: u64) -> Vec<usize> {
        match self {
            Prefixes::Ends { ends } => ends.clone(),
            Prefixes::Sampled { n } => sample(d_sae, *n, seed, step),
        }
    }
}

/// saev's law: P(ℓ) = cdf(ℓ) − cdf(ℓ − 1) with cdf(ℓ) = 1 − ℓ^(−½) over ℓ = 1..d_sae − 1 (so
/// ℓ = 1 is never drawn), sampled by inverting the cdf; repeats are drawn again.
fn sample(d_sae: usize, n: usize, seed: u64, step: u64) -> Vec<usize> {
    let mut ends = vec![d_sae];
    if n <= 1 || d_sae < 3 {
        return ends;
    }
    let mut rng = Rng::new(seed ^ 0x6D61_7472_796F_7368 ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let top = 1.0 - 1.0 / ((d_sae - 1) as f64).sqrt();
    let wanted = (n - 1).min(d_sae - 2);
    let mut tries = 0;
    while ends.len() <= wanted && tries < 64 * n {
        tries += 1;
        let u = rng.uniform() as f64 * top;
        let l = ((1.0 / ((1.0 - u) * (1.0 - u))).floor() as usize + 1).clamp(2, d_sae - 1);
        if !ends.contains(&l) {
            ends.push(l);
        }
    }
    // Rejection could in principle stall on a tiny dictionary: fill with the shortest unused.
    let mut l = 2;
    while ends.len() <= wanted {
        if !ends.contains(&l) {
            ends.push(l);
        }
        l += 1;
    }
    ends.sort_unstable();
    ends
}

/// The prefix group of latent `j`: the first prefix that contains it.
pub(super) fn group_of(ends: &[usize], j: usize) -> usize {
    ends.partition_point(|&e| e <= j)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_prefixes_follow_the_pareto_law_and_repeat_per_step() {
        let d_sae = 4096;
        let a = Prefixes::Sampled { n: 10 }.ends_at(d_sae, 1, 7);
        assert_eq!(a, Prefixes::Sampled { n: 10 }.ends_at(d_sae, 1, 7));
        assert_ne!(a, Prefixes::Sampled { n: 10 }.ends_at(d_sae, 1, 8));
        assert_eq!(a.len(), 10);
        assert_eq!(*a.last().unwrap(), d_sae);
        assert!(a.windows(2).all(|w| w[0] < w[1]) && a[0] >= 2);
        // P(ℓ = 2) = 1 − 2^(−½) ≈ 0.293 of all draws (first draw of each step).
        let twos = (0..4000)
            .filter(|&s| {
                let mut r = Rng::new(
                    1 ^ 0x6D61_7472_796F_7368 ^ (s as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                let top = 1.0 - 1.0 / ((d_sae - 1) as f64).sqrt();
                let u = r.uniform() as f64 * top;
                ((1.0 / ((1.0 - u) * (1.0 - u))).floor() as usize + 1).clamp(2, d_sae - 1) == 2
            })
            .count() as f64
            / 4000.0;
        let want = (1.0 - 0.5f64.sqrt()) / (1.0 - 1.0 / ((d_sae - 1) as f64).sqrt());
        assert!((twos - want).abs() < 0.03, "{twos} vs {want}");
    }

    #[test]
    fn fixed_ends_are_checked_and_groups_found() {
        assert_eq!(
            Prefixes::geometric(16384, 5),
            Prefixes::Ends {
                ends: vec![1024, 2048, 4096, 8192, 16384]
            }
        );
        let p = Prefixes::Ends { ends: vec![4, 8] }.checked(16).unwrap();
        assert_eq!(
            p,
            Prefixes::Ends {
                ends: vec![4, 8, 16]
            }
        );
        assert!(Prefixes::Ends { ends: vec![8, 4] }.checked(16).is_err());
        assert!(Prefixes::Sampled { n: 0 }.checked(16).is_err());
        let ends = [4, 8, 16];
        assert_eq!(
            (0..16).map(|j| group_of(&ends, j)).collect::<Vec<_>>(),
            [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]
        );
    }
}
