//! Sums that come out the same bits in any order. Floating-point addition is not associative:
//! an index built in one pass and one merged from tasks over parts of the shards would differ
//! in the last bits of every mean. These sums keep each added value rounded to a multiple of
//! 2⁻⁴⁸ in an `i128` (far finer than an f32 activation's own precision above 10⁻⁶), and
//! integer addition (wrapping, so never a panic) is associative and commutative: any split of
//! the work adds up to exactly the one-pass result.

const FRACTION_BITS: i32 = 48;

/// A vector of exact sums.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExactSums(Vec<i128>);

/// `v` as a fixed-point count of 2⁻⁴⁸ (non-finite values count as 0).
fn fixed(v: f64) -> i128 {
    if v.is_finite() {
        // Scaling by a power of two is exact; `as` saturates beyond ±2¹²⁷.
        (v * 2f64.powi(FRACTION_BITS)).round() as i128
    } else {
        0
    }
}

impl ExactSums {
    pub fn zeros(n: usize) -> Self {
        ExactSums(vec![0; n])
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `v` to sum `i`.
    pub fn add(&mut self, i: usize, v: f64) {
        if let Some(s) = self.0.get_mut(i) {
            *s = s.wrapping_add(fixed(v));
        }
    }

    /// Adds `values` to the sums starting at `first`.
    pub fn add_slice(&mut self, first: usize, values: &[f32]) {
        for (s, &v) in self.0.iter_mut().skip(first).zip(values) {
            *s = s.wrapping_add(fixed(v as f64));
        }
    }

    /// Adds another set of sums of the same length, element by element.
    pub fn add_all(&mut self, other: &ExactSums) {
        for (s, o) in self.0.iter_mut().zip(&other.0) {
            *s = s.wrapping_add(*o);
        }
    }

    /// Sum `i` (0 outside the vector).
    pub fn get(&self, i: usize) -> f64 {
        self.0
            .get(i)
            .map_or(0.0, |&s| s as f64 * 2f64.powi(-FRACTION_BITS))
    }

    /// The sums as two little-endian 64-bit words each (low, high), for the state file.
    pub(super) fn to_words(&self) -> Vec<u64> {
        self.0
            .iter()
            .flat_map(|&s| [s as u64, (s >> 64) as u64])
            .collect()
    }

    /// The inverse of [`Self::to_words`] (None for an odd number of words).
    pub(super) fn from_words(words: &[u64]) -> Option<Self> {
        words.len().is_multiple_of(2).then(|| {
            ExactSums(
                words
                    .chunks(2)
                    .map(|w| (w[0] as i128 & u64::MAX as i128) | ((w[1] as i128) << 64))
                    .collect(),
            )
        })
    }

    /// Sums of an index written before sums were exact (read as the nearest fixed point).
    pub(super) fn from_f64(values: &[f64]) -> Self {
        ExactSums(values.iter().map(|&v| fixed(v)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_split_adds_up_to_the_same_bits() {
        let mut rng = crate::rng::Rng::new(7);
        let values: Vec<f32> = (0..10_000)
            .map(|_| (rng.uniform() * 8.0).exp() * 1e-3)
            .collect();
        let mut whole = ExactSums::zeros(1);
        values.iter().for_each(|&v| whole.add(0, v as f64));
        for cut in [1, 333, 5_000, 9_999] {
            let (mut a, mut b) = (ExactSums::zeros(1), ExactSums::zeros(1));
            values[..cut].iter().for_each(|&v| a.add(0, v as f64));
            values[cut..].iter().rev().for_each(|&v| b.add(0, v as f64));
            a.add_all(&b);
            assert_eq!(a, whole);
        }
        // And the value is the f64 sum to within the rounding of each term.
        let f: f64 = values.iter().map(|&v| v as f64).sum();
        assert!(
            (whole.get(0) - f).abs() < 1e-9 * f,
            "{} vs {f}",
            whole.get(0)
        );
        let back = ExactSums::from_words(&whole.to_words()).unwrap();
        assert_eq!(back, whole);
        let neg = ExactSums::from_f64(&[-3.25, 0.0]);
        assert_eq!(ExactSums::from_words(&neg.to_words()).unwrap(), neg);
        assert_eq!(neg.get(0), -3.25);
    }
}
