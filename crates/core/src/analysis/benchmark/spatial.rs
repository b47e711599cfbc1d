//! Spatial coherence: Moran's I of a latent's activation map over the patch grid (rook
//! neighbours, binary weights), I = (N / W) Σ_{i~j} z_i z_j / Σ_i z_i², z = x − x̄ (Moran 1950,
//! the statistic ViSAEBench reports). It is near 1 when a latent fires on contiguous regions,
//! near −1/(N−1) when it fires on scattered patches. A latent's score is the mean of its I over
//! the images where it fired, each image weighted by the latent's largest activation there.

use super::estimate::Estimate;

pub struct Spatial {
    grid_h: usize,
    grid_w: usize,
    weighted: Vec<f64>,
    weight: Vec<f64>,
    images: Vec<u32>,
}

/// A latent is scored once it has a map with some variance on at least this many images.
pub const MIN_IMAGES: u32 = 2;

impl Spatial {
    pub fn new(d_sae: usize, grid_h: usize, grid_w: usize) -> Self {
        Spatial {
            grid_h,
            grid_w,
            weighted: vec![0.0; d_sae],
            weight: vec![0.0; d_sae],
            images: vec![0; d_sae],
        }
    }

    /// One image: (patch index in row-major grid order, latent, activation) for every fired
    /// latent on a patch token.
    pub fn add_image(&mut self, mut active: Vec<(u32, u32, f32)>) {
        active.sort_unstable_by_key(|&(p, k, _)| (k, p));
        let n = self.grid_h * self.grid_w;
        let mut map = vec![0f32; n];
        let mut start = 0;
        while start < active.len() {
            let k = active[start].1;
            let end = start + active[start..].iter().take_while(|a| a.1 == k).count();
            map.iter_mut().for_each(|v| *v = 0.0);
            let mut top = 0f32;
            for &(p, _, v) in &active[start..end] {
                map[p as usize] = v;
                top = top.max(v);
            }
            if let Some(i) = morans_i(&map, self.grid_h, self.grid_w) {
                let k = k as usize;
                self.weighted[k] += top as f64 * i;
                self.weight[k] += top as f64;
                self.images[k] += 1;
            }
            start = end;
        }
    }

    pub fn scores(&self) -> Vec<Option<f64>> {
        (0..self.weight.len())
            .map(|k| {
                (self.images[k] >= MIN_IMAGES && self.weight[k] > 0.0)
                    .then(|| self.weighted[k] / self.weight[k])
            })
            .collect()
    }

    pub fn finish(&self) -> Option<Estimate> {
        Estimate::mean_of(&self.scores().into_iter().flatten().collect::<Vec<_>>())
    }
}

/// Moran's I of `map` [h, w] with rook neighbours; None when the map is constant.
pub fn morans_i(map: &[f32], h: usize, w: usize) -> Option<f64> {
    let n = (h * w) as f64;
    let mean = map.iter().map(|&v| v as f64).sum::<f64>() / n;
    let z: Vec<f64> = map.iter().map(|&v| v as f64 - mean).collect();
    let var: f64 = z.iter().map(|v| v * v).sum();
    if var <= 1e-20 {
        return None;
    }
    let (mut cross, mut pairs) = (0f64, 0f64);
    for r in 0..h {
        for c in 0..w {
            let i = r * w + c;
            // Each unordered neighbour pair once, counted twice (W counts ordered pairs).
            if c + 1 < w {
                cross += 2.0 * z[i] * z[i + 1];
                pairs += 2.0;
            }
            if r + 1 < h {
                cross += 2.0 * z[i] * z[i + w];
                pairs += 2.0;
            }
        }
    }
    (pairs > 0.0).then(|| n / pairs * cross / var)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_coherent_and_a_checkerboard_is_not() {
        let (h, w) = (6, 6);
        let blob: Vec<f32> = (0..h * w)
            .map(|i| if i / w < 3 && i % w < 3 { 1.0 } else { 0.0 })
            .collect();
        let checks: Vec<f32> = (0..h * w).map(|i| ((i / w + i % w) % 2) as f32).collect();
        let ib = morans_i(&blob, h, w).unwrap();
        let ic = morans_i(&checks, h, w).unwrap();
        assert!(ib > 0.5, "blob {ib}");
        assert!((ic + 1.0).abs() < 1e-9, "checkerboard {ic}");
        assert!(morans_i(&[2.0; 36], h, w).is_none());
    }
}
