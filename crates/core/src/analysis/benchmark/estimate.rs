//! A figure with its standard error, and the rule that says whether a trained SAE's figure
//! stands apart from a control's.

use serde::{Deserialize, Serialize};

/// A mean (or ratio) over units (image folds, features, images) and its standard error.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub value: f64,
    pub se: f64,
    /// How many units the figure is over (folds, scored features or images).
    pub n: usize,
}

impl Estimate {
    /// Mean and standard error of the mean of `xs` (se 0 with fewer than two).
    pub fn mean_of(xs: &[f64]) -> Option<Estimate> {
        if xs.is_empty() {
            return None;
        }
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let se = if xs.len() > 1 {
            (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt()
        } else {
            0.0
        };
        Some(Estimate {
            value: mean,
            se,
            n: xs.len(),
        })
    }

    /// A proportion `p` over `n` trials with its binomial standard error.
    pub fn proportion(p: f64, n: usize) -> Estimate {
        Estimate {
            value: p,
            se: (p * (1.0 - p) / n.max(1) as f64).sqrt(),
            n,
        }
    }
}

/// Trained beats a control when the difference in the better direction exceeds this many
/// standard errors of the difference (a two-sided z test at about the 5% level).
pub const SEPARATION_Z: f64 = 2.0;

/// Whether `trained` is better than `control` by more than [`SEPARATION_Z`] standard errors;
/// `higher_is_better` says which way is better.
pub fn separates(trained: &Estimate, control: &Estimate, higher_is_better: bool) -> bool {
    let diff = if higher_is_better {
        trained.value - control.value
    } else {
        control.value - trained.value
    };
    diff > SEPARATION_Z * (trained.se.powi(2) + control.se.powi(2)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separation_needs_a_difference_beyond_the_noise() {
        let a = Estimate::mean_of(&[1.0, 1.1, 0.9, 1.0]).unwrap();
        let b = Estimate::mean_of(&[0.2, 0.3, 0.1, 0.2]).unwrap();
        assert!(separates(&a, &b, true));
        assert!(!separates(&b, &a, true));
        assert!(separates(&b, &a, false));
        let noisy = Estimate::mean_of(&[0.0, 2.0, 0.1, 1.9]).unwrap();
        assert!(!separates(&noisy, &a, true) && !separates(&a, &noisy, true));
    }
}
