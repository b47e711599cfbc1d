//! The monosemanticity score of Pach et al. 2025 (arXiv 2504.02821, eq. 2): for each latent, the
//! mean pairwise cosine similarity of images under an image embedding, each pair weighted by the
//! product of the latent's min-max-normalised activations on the two images,
//!   MS_k = Σ_{n<m} ã_nk ã_mk s_nm / Σ_{n<m} ã_nk ã_mk.
//! With unit embeddings e_n, Σ_{n<m} ã_n ã_m s_nm = (‖Σ ã_n e_n‖² − Σ ã_n²) / 2, so one pass keeps
//! per latent Σ a_n e_n, Σ a_n, Σ a_n² and the minimum, and the score is exact (the max of the
//! normalisation cancels in the ratio). An image's activation is the latent's largest over the
//! image's tokens, the value the explorer ranks top images by.

use super::estimate::Estimate;

pub struct Monosemanticity {
    d_emb: usize,
    /// [d_sae, d_emb]: Σ_n a_nk e_n over images where latent k fired.
    weighted: Vec<f32>,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    min: Vec<f32>,
    active_images: Vec<u32>,
    /// Σ_n e_n over every image (the shift by a nonzero minimum needs it).
    emb_sum: Vec<f64>,
    images: usize,
}

/// A latent is scored once it fired on at least this many images.
pub const MIN_IMAGES: u32 = 2;

impl Monosemanticity {
    pub fn new(d_sae: usize, d_emb: usize) -> Self {
        Monosemanticity {
            d_emb,
            weighted: vec![0.0; d_sae * d_emb],
            sum: vec![0.0; d_sae],
            sum_sq: vec![0.0; d_sae],
            min: vec![f32::INFINITY; d_sae],
            active_images: vec![0; d_sae],
            emb_sum: vec![0.0; d_emb],
            images: 0,
        }
    }

    /// One image: its embedding (any norm; it is normalised here) and each fired latent's
    /// largest activation on it.
    pub fn add_image(&mut self, embedding: &[f32], active: &[(u32, f32)]) {
        let norm = embedding
            .iter()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt()
            .max(1e-12);
        let e: Vec<f32> = embedding.iter().map(|v| v / norm).collect();
        self.images += 1;
        self.emb_sum
            .iter_mut()
            .zip(&e)
            .for_each(|(s, &v)| *s += v as f64);
        for &(k, a) in active {
            let k = k as usize;
            let row = &mut self.weighted[k * self.d_emb..(k + 1) * self.d_emb];
            row.iter_mut().zip(&e).for_each(|(w, &v)| *w += a * v);
            self.sum[k] += a as f64;
            self.sum_sq[k] += (a as f64).powi(2);
            self.min[k] = self.min[k].min(a);
            self.active_images[k] += 1;
        }
    }

    /// Each latent's score (None for latents that fired on fewer than [`MIN_IMAGES`] images).
    pub fn scores(&self) -> Vec<Option<f64>> {
        let n = self.images as f64;
        (0..self.sum.len())
            .map(|k| {
                if self.active_images[k] < MIN_IMAGES {
                    return None;
                }
                // Images where the latent did not fire have activation 0, the minimum.
                let m = if self.active_images[k] as usize == self.images {
                    self.min[k] as f64
                } else {
                    0.0
                };
                let row = &self.weighted[k * self.d_emb..(k + 1) * self.d_emb];
                let shifted_sq: f64 = row
                    .iter()
                    .zip(&self.emb_sum)
                    .map(|(&w, &s)| (w as f64 - m * s).powi(2))
                    .sum();
                let s1 = self.sum[k] - n * m;
                let s2 = self.sum_sq[k] - 2.0 * m * self.sum[k] + n * m * m;
                let pairs = s1 * s1 - s2;
                (pairs > 1e-12 * s1.abs().max(1.0)).then(|| (shifted_sq - s2) / pairs)
            })
            .collect()
    }

    /// The mean score over scored latents, with its standard error.
    pub fn finish(&self) -> Option<Estimate> {
        Estimate::mean_of(&self.scores().into_iter().flatten().collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass form equals the definition's double sum over pairs.
    #[test]
    fn equals_the_pairwise_definition() {
        let mut rng = crate::rng::Rng::new(5);
        let (n, d_emb) = (9, 4);
        let emb: Vec<Vec<f32>> = (0..n)
            .map(|_| (0..d_emb).map(|_| rng.normal()).collect())
            .collect();
        // Latent 0 fires on some images; latent 1 on every image (a nonzero minimum).
        let acts: Vec<[f32; 2]> = (0..n)
            .map(|i| {
                [
                    if i % 3 == 0 { 0.0 } else { rng.uniform() * 2.0 },
                    0.5 + rng.uniform(),
                ]
            })
            .collect();
        let mut ms = Monosemanticity::new(2, d_emb);
        for (e, a) in emb.iter().zip(&acts) {
            let active: Vec<(u32, f32)> = (0..2)
                .filter(|&k| a[k] > 0.0)
                .map(|k| (k as u32, a[k]))
                .collect();
            ms.add_image(e, &active);
        }
        let unit = |v: &[f32]| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| (x / n) as f64).collect::<Vec<f64>>()
        };
        let scores = ms.scores();
        for k in 0..2 {
            let a: Vec<f64> = acts.iter().map(|a| a[k] as f64).collect();
            let (lo, hi) = a
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            let norm: Vec<f64> = a.iter().map(|v| (v - lo) / (hi - lo)).collect();
            let (mut num, mut den) = (0.0, 0.0);
            for i in 0..n {
                for j in i + 1..n {
                    let s: f64 = unit(&emb[i])
                        .iter()
                        .zip(unit(&emb[j]))
                        .map(|(x, y)| x * y)
                        .sum();
                    num += norm[i] * norm[j] * s;
                    den += norm[i] * norm[j];
                }
            }
            let got = scores[k].unwrap();
            assert!(
                (got - num / den).abs() < 1e-5,
                "latent {k}: {got} vs {}",
                num / den
            );
        }
    }
}
