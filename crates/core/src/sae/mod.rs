//! Sparse autoencoders: weights, activation functions and the encode/decode math.
//! An SAE maps x (d_in) to sparse features f = σ((x·s − b_dec)·W_enc + b_enc) and back:
//! x̂ = (f·W_dec + b_dec) / s, with row vectors, `s` the optional input scale and the `b_dec`
//! subtraction only when `apply_b_dec_to_input` (saev's encoder does not subtract it).

pub mod catalog;
pub mod checkpoint;
pub mod device;
pub mod evaluate;
pub mod formats;
pub mod run;
mod shuffle;
pub mod train;
pub mod workflow;

use crate::error::{Error, Result};
use crate::linalg::{RhsLayout, matmul};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SaeActivation {
    /// ReLU (trained with an L1 penalty).
    Relu,
    /// Keep the k largest pre-activations per token (then ReLU).
    TopK { k: usize },
    /// Trained with a batch-level top-k; at inference a single learned threshold.
    BatchTopK { k: f32, threshold: f32 },
    /// ReLU gated by a per-latent threshold (`Sae::threshold`).
    JumpRelu,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SaeMeta {
    pub model_name: Option<String>,
    pub hook_name: Option<String>,
    /// Which file layout it was read from (`saelens`, `saev`, `dictionary_learning`, `sparsify`, `openai`).
    pub source_format: Option<String>,
    /// How the backbone's position table was resized (`transformers` or `original`), when it
    /// was: activations from the two differ, so an SAE is bound to the one it was trained with.
    pub pos_interpolation: Option<String>,
    /// saescope training: how many times as often each CLS row was drawn as a patch row
    /// (`--cls-weight`), when more than once.
    #[serde(default)]
    pub cls_weight: Option<u32>,
    /// saescope training on some of a workspace's images only (`train --images`): the folder
    /// and how many of the workspace's images it held.
    #[serde(default)]
    pub training_images: Option<String>,
    /// How saescope trained it (`topk`, `batchtopk`, `matryoshka`, `jumprelu`, `relu`), when it did.
    #[serde(default)]
    pub training_architecture: Option<String>,
    /// Matryoshka: the prefix rule it was trained with.
    #[serde(default)]
    pub prefixes: Option<train::Prefixes>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sae {
    pub d_in: usize,
    pub d_sae: usize,
    /// [d_in, d_sae]
    pub w_enc: Vec<f32>,
    /// [d_sae]
    pub b_enc: Vec<f32>,
    /// [d_sae, d_in]
    pub w_dec: Vec<f32>,
    /// [d_in]
    pub b_dec: Vec<f32>,
    /// [d_sae], JumpReLU only.
    pub threshold: Option<Vec<f32>>,
    pub activation: SaeActivation,
    pub apply_b_dec_to_input: bool,
    /// Inputs are multiplied by this before encoding and reconstructions divided by it.
    pub input_scale: Option<f32>,
    pub meta: SaeMeta,
    /// Where encoding runs: the CPU path below, or a device (see [`Sae::on_device`]).
    pub engine: Engine,
}

/// The SAE's weights on a compute device, when encoding should run there instead of on the
/// CPU path. Not part of what an SAE *is*: two SAEs with equal weights are equal wherever they
/// run.
#[derive(Clone, Default)]
pub struct Engine(Option<std::sync::Arc<device::DeviceSae>>);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "device" } else { "cpu" })
    }
}

impl PartialEq for Engine {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Sae {
    /// The `n` features whose decoder directions are closest to `feature`'s by cosine, closest
    /// first (ties by id); an error names the range when `feature` is not one of this SAE's.
    pub fn nearest_features(&self, feature: u32, n: usize) -> Result<Vec<(u32, f32)>> {
        let f = feature as usize;
        if f >= self.d_sae {
            return Err(Error::Invalid(format!(
                "feature {feature} is not one of this SAE's (0 to {})",
                self.d_sae.saturating_sub(1)
            )));
        }
        let d = self.d_in;
        Ok(self.closest_to(&self.w_dec[f * d..(f + 1) * d], n, Some(feature)))
    }

    /// The `n` features whose decoder directions are closest by cosine to `direction` (any
    /// norm, `d_in` long), closest first (ties by id), leaving out `except`: a feature's
    /// neighbours in its own SAE, or its matches in another one.
    pub fn closest_to(&self, direction: &[f32], n: usize, except: Option<u32>) -> Vec<(u32, f32)> {
        let d = self.d_in;
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        let na = norm(direction);
        let mut v: Vec<(u32, f32)> = (0..self.d_sae)
            .filter(|&j| Some(j as u32) != except)
            .map(|j| {
                let b = &self.w_dec[j * d..(j + 1) * d];
                let dot: f32 = direction.iter().zip(b).map(|(x, y)| x * y).sum();
                (j as u32, dot / (na * norm(b)))
            })
            .collect();
        v.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        v.truncate(n);
        v
    }

    /// This SAE with its encoding on `device`: the CPU keeps the cache-blocked sparse path
    /// below; any other device gets the weights copied there once, and [`Sae::encode_sparse`]
    /// runs the GEMM and top-k there and brings back only the active features.
    pub fn on_device(mut self, device: &candle_core::Device) -> Result<Sae> {
        self.engine = if device.is_cpu() {
            Engine::default()
        } else {
            Engine(Some(std::sync::Arc::new(device::DeviceSae::new(
                &self, device,
            )?)))
        };
        Ok(self)
    }

    /// Like [`Sae::on_device`] for any device, the CPU included: lets tests run the device path
    /// on the CPU.
    pub fn with_device_engine(mut self, device: &candle_core::Device) -> Result<Sae> {
        self.engine = Engine(Some(std::sync::Arc::new(device::DeviceSae::new(
            &self, device,
        )?)));
        Ok(self)
    }

    /// Changes whenever the weights do (FNV-1a over every 7th weight, with d_sae): binds an
    /// index or an imported copy to the SAE it came from.
    pub fn fingerprint(&self) -> String {
        let h = crate::fingerprint::fnv1a(
            self.w_enc
                .iter()
                .chain(&self.b_enc)
                .chain(&self.w_dec)
                .chain(&self.b_dec)
                .step_by(7)
                .map(|v| v.to_bits() as u64),
        );
        format!("d_sae={} fnv={h:016x}", self.d_sae)
    }

    /// Checks every tensor has the size d_in/d_sae imply.
    pub fn validate(&self) -> Result<()> {
        let (i, s) = (self.d_in, self.d_sae);
        let checks = [
            ("W_enc", self.w_enc.len(), i * s),
            ("b_enc", self.b_enc.len(), s),
            ("W_dec", self.w_dec.len(), s * i),
            ("b_dec", self.b_dec.len(), i),
        ];
        for (name, got, want) in checks {
            if got != want {
                return Err(Error::Invalid(format!(
                    "SAE tensor {name} has {got} values but d_in={i}, d_sae={s} needs {want}"
                )));
            }
        }
        if let Some(t) = &self.threshold
            && t.len() != s
        {
            return Err(Error::Invalid(format!(
                "SAE threshold has {} values, expected d_sae={s}",
                t.len()
            )));
        }
        let mut values: Vec<(&str, &[f32])> = vec![
            ("W_enc", &self.w_enc),
            ("b_enc", &self.b_enc),
            ("W_dec", &self.w_dec),
            ("b_dec", &self.b_dec),
        ];
        if let Some(t) = &self.threshold {
            values.push(("threshold", t));
        }
        for (name, v) in values {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(Error::Invalid(format!(
                    "SAE tensor {name} holds a non-finite value ({} at flat index {i}): the \
                     file is corrupt or its training diverged; retrain or re-export it",
                    v[i]
                )));
            }
        }
        if let Some(scale) = self.input_scale
            && !(scale.is_finite() && scale > 0.0)
        {
            return Err(Error::Invalid(format!(
                "SAE input scale must be a finite number above 0 (got {scale})"
            )));
        }
        if self.activation == SaeActivation::JumpRelu && self.threshold.is_none() {
            return Err(Error::Invalid(
                "a JumpReLU SAE needs a `threshold` tensor".into(),
            ));
        }
        if let SaeActivation::TopK { k } = self.activation
            && (k == 0 || k > s)
        {
            return Err(Error::Invalid(format!("TopK k={k} must be in 1..={s}")));
        }
        Ok(())
    }

    /// Refuses an SAE whose input width does not match the layer it is applied to.
    pub fn check_fits(&self, d_model: usize, what: &str) -> Result<()> {
        if self.d_in != d_model {
            return Err(Error::Invalid(format!(
                "SAE expects d_in={} but {what} has width {d_model}: pick the layer/model the SAE was trained on, or another SAE",
                self.d_in
            )));
        }
        Ok(())
    }

    /// Dense feature activations [rows, d_sae]: the sparse codes scattered into zeros, so both
    /// forms follow one selection rule.
    pub fn encode(&self, x: &[f32]) -> Vec<f32> {
        self.encode_sparse(x).to_dense(self.d_sae)
    }

    /// Only the active features of each row: what the index, heatmaps and OOD scores need, and
    /// much cheaper to select (TopK keeps a k-heap per row instead of sorting d_sae values).
    /// Works in cache-sized blocks of rows, one per thread: each block's GEMM output is scanned
    /// while still in cache and never materialised for the whole batch.
    pub fn encode_sparse(&self, x: &[f32]) -> SparseCodes {
        if let Some(dev) = &self.engine.0 {
            match dev.encode_sparse(x) {
                Ok(codes) => return codes,
                // A device failure (out of memory, lost context) must not lose the user's run:
                // say so once and fall back to the CPU path, which gives the same codes.
                Err(e) => warn_device_fallback(&e),
            }
        }
        const BLOCK: usize = 1024;
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let scale = self.input_scale.unwrap_or(1.0);
        let blocks: Vec<(Vec<u32>, Vec<f32>, Vec<usize>)> = x
            .par_chunks(BLOCK * d_in)
            .map_init(
                || (vec![0f32; BLOCK * d_in], vec![0f32; BLOCK * d_sae]),
                |(xin, pre), xb| {
                    let rows = xb.len() / d_in;
                    for (dst, src) in xin.chunks_mut(d_in).zip(xb.chunks(d_in)) {
                        for ((d, &v), &b) in dst.iter_mut().zip(src).zip(&self.b_dec) {
                            *d = v * scale - if self.apply_b_dec_to_input { b } else { 0.0 };
                        }
                    }
                    for row in pre.chunks_mut(d_sae).take(rows) {
                        row.copy_from_slice(&self.b_enc);
                    }
                    matmul(
                        pre,
                        xin,
                        &self.w_enc,
                        (rows, d_in, d_sae),
                        RhsLayout::RowMajor,
                        true,
                        false,
                    );
                    let (mut ids, mut vals, mut lens) = (Vec::new(), Vec::new(), Vec::new());
                    for row in pre.chunks(d_sae).take(rows) {
                        let mut list: Vec<(u32, f32)> = match self.activation {
                            SaeActivation::TopK { k } => train::top_k_row(row, k),
                            SaeActivation::Relu => above(row, |_| 0.0),
                            SaeActivation::BatchTopK { threshold, .. } => above(row, |_| threshold),
                            SaeActivation::JumpRelu => {
                                let t = self.threshold.as_deref().unwrap_or(&[]);
                                above(row, |j| t[j])
                            }
                        };
                        list.retain(|&(_, v)| v > 0.0);
                        list.sort_unstable_by_key(|&(j, _)| j);
                        lens.push(list.len());
                        for (j, v) in list {
                            ids.push(j);
                            vals.push(v);
                        }
                    }
                    (ids, vals, lens)
                },
            )
            .collect();
        let total: usize = blocks.iter().map(|b| b.0.len()).sum();
        let mut codes = SparseCodes {
            row_start: Vec::with_capacity(x.len() / d_in + 1),
            ids: Vec::with_capacity(total),
            vals: Vec::with_capacity(total),
        };
        codes.row_start.push(0);
        for (ids, vals, lens) in blocks {
            codes.ids.extend_from_slice(&ids);
            codes.vals.extend_from_slice(&vals);
            for l in lens {
                let last = *codes.row_start.last().unwrap_or(&0);
                codes.row_start.push(last + l);
            }
        }
        codes
    }

    /// Reconstruction [rows, d_in] from features [rows, d_sae].
    pub fn decode(&self, f: &[f32]) -> Vec<f32> {
        let rows = f.len() / self.d_sae;
        let mut out = vec![0f32; rows * self.d_in];
        out.par_chunks_mut(self.d_in * 256).for_each(|c| {
            for row in c.chunks_mut(self.d_in) {
                row.copy_from_slice(&self.b_dec);
            }
        });
        matmul(
            &mut out,
            f,
            &self.w_dec,
            (rows, self.d_sae, self.d_in),
            RhsLayout::RowMajor,
            true,
            true,
        );
        if let Some(s) = self.input_scale {
            out.iter_mut().for_each(|v| *v /= s);
        }
        out
    }

    /// The same SAE with the input scale folded into the weights, so it applies to raw
    /// activations with no normalisation step (what SAELens/Neuronpedia expect).
    /// A TopK SAE with N(0, scale²) encoder and decoder weights from a seeded generator: for
    /// benchmarks and tests that need an SAE of a given shape, not a trained one.
    pub fn random_topk(d_in: usize, d_sae: usize, k: usize, scale: f32, seed: u64) -> Sae {
        let mut rng = crate::rng::Rng::new(seed);
        let mut v = |n: usize| (0..n).map(|_| rng.normal() * scale).collect::<Vec<f32>>();
        Sae {
            d_in,
            d_sae,
            w_enc: v(d_in * d_sae),
            b_enc: vec![0.0; d_sae],
            w_dec: v(d_sae * d_in),
            b_dec: vec![0.0; d_in],
            threshold: None,
            activation: SaeActivation::TopK { k },
            apply_b_dec_to_input: true,
            input_scale: None,
            engine: Engine::default(),
            meta: SaeMeta::default(),
        }
    }

    pub fn with_scale_folded(&self) -> Sae {
        let Some(s) = self.input_scale else {
            return self.clone();
        };
        let mut out = self.clone();
        out.w_enc.iter_mut().for_each(|v| *v *= s);
        out.w_dec.iter_mut().for_each(|v| *v /= s);
        out.b_dec.iter_mut().for_each(|v| *v /= s);
        out.input_scale = None;
        out
    }
}

/// Active features per row, compressed: row r owns `ids/vals[row_start[r]..row_start[r + 1]]`,
/// sorted by feature id.
/// Fraction of variance explained and mean active features per row, over `rows` [n, d_in].
pub fn fve_and_l0(sae: &Sae, rows: &[f32]) -> (f64, f64) {
    let d = sae.d_in;
    let n = (rows.len() / d.max(1)).max(1) as f64;
    let codes = sae.encode_sparse(rows);
    let rec = sae.decode(&codes.to_dense(sae.d_sae));
    let mut mean = vec![0f64; d];
    for x in rows.chunks(d) {
        mean.iter_mut()
            .zip(x)
            .for_each(|(m, &v)| *m += v as f64 / n);
    }
    let (mut err, mut var) = (0f64, 0f64);
    for (x, xh) in rows.chunks(d).zip(rec.chunks(d)) {
        for ((&a, &b), m) in x.iter().zip(xh).zip(&mean) {
            err += ((a - b) as f64).powi(2);
            var += (a as f64 - m).powi(2);
        }
    }
    (1.0 - err / var.max(1e-12), codes.ids.len() as f64 / n)
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseCodes {
    pub row_start: Vec<usize>,
    pub ids: Vec<u32>,
    pub vals: Vec<f32>,
}

impl SparseCodes {
    pub fn rows(&self) -> usize {
        self.row_start.len().saturating_sub(1)
    }
    pub fn row(&self, r: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let (a, b) = (self.row_start[r], self.row_start[r + 1]);
        self.ids[a..b]
            .iter()
            .copied()
            .zip(self.vals[a..b].iter().copied())
    }

    /// Rows [rows, d_sae] with zeros where a feature is inactive.
    pub fn to_dense(&self, d_sae: usize) -> Vec<f32> {
        let mut out = vec![0f32; self.rows() * d_sae];
        for r in 0..self.rows() {
            for (j, v) in self.row(r) {
                out[r * d_sae + j as usize] = v;
            }
        }
        out
    }

    /// Feature `f`'s activation on every row (0 where inactive): a heatmap's values.
    pub fn feature_column(&self, f: u32) -> Vec<f32> {
        (0..self.rows())
            .map(|r| self.row(r).find(|&(j, _)| j == f).map_or(0.0, |x| x.1))
            .collect()
    }
}

/// Entries of `row` strictly above a per-latent threshold (and positive).
fn above(row: &[f32], threshold: impl Fn(usize) -> f32) -> Vec<(u32, f32)> {
    row.iter()
        .enumerate()
        .filter(|&(j, &v)| v > threshold(j) && v > 0.0)
        .map(|(j, &v)| (j as u32, v))
        .collect()
}

/// Says once per process that device encoding failed and the CPU took over.
fn warn_device_fallback(e: &Error) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| eprintln!("warning: SAE encoding on the device failed ({e}); using the CPU"));
}

#[cfg(test)]
mod tests {

    /// ReLU with W_enc = [I | −I] and W_dec = [I; −I] reconstructs every row exactly.
    #[test]
    fn fve_is_one_for_an_exact_sae_and_l0_counts_active_features() {
        let sae = Sae {
            d_in: 2,
            d_sae: 4,
            w_enc: vec![1.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, -1.0],
            b_enc: vec![0.0; 4],
            w_dec: vec![1.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, -1.0],
            b_dec: vec![0.0; 2],
            threshold: None,
            activation: SaeActivation::Relu,
            apply_b_dec_to_input: true,
            input_scale: None,
            engine: Engine::default(),
            meta: SaeMeta::default(),
        };
        let rows = [1.0, -2.0, 0.5, 0.0, -3.0, 4.0];
        let (fve, l0) = fve_and_l0(&sae, &rows);
        assert!((fve - 1.0).abs() < 1e-9, "{fve}");
        assert!((l0 - 5.0 / 3.0).abs() < 1e-9, "{l0}");
    }
    use super::*;

    pub(crate) fn tiny(activation: SaeActivation) -> Sae {
        let (d_in, d_sae) = (3, 4);
        Sae {
            d_in,
            d_sae,
            w_enc: (0..12).map(|i| (i as f32 - 5.0) * 0.1).collect(),
            b_enc: vec![0.1, -0.2, 0.0, 0.05],
            w_dec: (0..12).map(|i| (i as f32 % 5.0) * 0.2 - 0.3).collect(),
            b_dec: vec![0.5, -0.5, 0.25],
            threshold: Some(vec![0.0, 0.1, 0.2, 0.3]),
            activation,
            apply_b_dec_to_input: true,
            input_scale: None,
            engine: Engine::default(),
            meta: SaeMeta::default(),
        }
    }

    /// Straight-line reference for one row.
    fn reference_encode(s: &Sae, x: &[f32]) -> Vec<f32> {
        let xin: Vec<f32> = (0..s.d_in)
            .map(|i| {
                x[i] * s.input_scale.unwrap_or(1.0)
                    - if s.apply_b_dec_to_input {
                        s.b_dec[i]
                    } else {
                        0.0
                    }
            })
            .collect();
        let pre: Vec<f32> = (0..s.d_sae)
            .map(|j| {
                s.b_enc[j]
                    + (0..s.d_in)
                        .map(|i| xin[i] * s.w_enc[i * s.d_sae + j])
                        .sum::<f32>()
            })
            .collect();
        match s.activation {
            SaeActivation::Relu => pre.iter().map(|v| v.max(0.0)).collect(),
            SaeActivation::TopK { k } => {
                let mut sorted = pre.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                pre.iter()
                    .map(|&v| if v >= sorted[k - 1] { v.max(0.0) } else { 0.0 })
                    .collect()
            }
            SaeActivation::JumpRelu => pre
                .iter()
                .zip(s.threshold.as_ref().unwrap())
                .map(|(&v, &t)| if v > t { v.max(0.0) } else { 0.0 })
                .collect(),
            SaeActivation::BatchTopK { threshold, .. } => pre
                .iter()
                .map(|&v| if v > threshold { v.max(0.0) } else { 0.0 })
                .collect(),
        }
    }

    #[test]
    fn encode_and_decode_follow_the_formula() {
        let x = [0.3, -1.2, 2.0, 1.0, 0.5, -0.7];
        for act in [
            SaeActivation::Relu,
            SaeActivation::TopK { k: 2 },
            SaeActivation::JumpRelu,
            SaeActivation::BatchTopK {
                k: 2.0,
                threshold: 0.15,
            },
        ] {
            let s = tiny(act);
            s.validate().unwrap();
            let f = s.encode(&x);
            for r in 0..2 {
                let want = reference_encode(&s, &x[r * 3..r * 3 + 3]);
                for (a, b) in f[r * 4..r * 4 + 4].iter().zip(&want) {
                    assert!((a - b).abs() < 1e-6, "{act:?}: {a} vs {b}");
                }
            }
            let xh = s.decode(&f);
            for (i, got) in xh.iter().enumerate().take(3) {
                let want = s.b_dec[i] + (0..4).map(|j| f[j] * s.w_dec[j * 3 + i]).sum::<f32>();
                assert!((got - want).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn sparse_codes_equal_the_dense_encoding() {
        let x = [0.3, -1.2, 2.0, 1.0, 0.5, -0.7, 2.0, 2.0, -3.0];
        for act in [
            SaeActivation::Relu,
            SaeActivation::TopK { k: 2 },
            SaeActivation::JumpRelu,
            SaeActivation::BatchTopK {
                k: 2.0,
                threshold: 0.15,
            },
        ] {
            let s = tiny(act);
            let dense = s.encode(&x);
            let sparse = s.encode_sparse(&x);
            assert_eq!(sparse.rows(), 3);
            let mut back = vec![0f32; dense.len()];
            for r in 0..3 {
                for (j, v) in sparse.row(r) {
                    back[r * 4 + j as usize] = v;
                }
            }
            assert_eq!(back, dense, "{act:?}");
        }
    }

    #[test]
    fn folding_the_input_scale_changes_nothing_observable() {
        let mut s = tiny(SaeActivation::Relu);
        s.input_scale = Some(2.5);
        let x = [0.3, -1.2, 2.0];
        let folded = s.with_scale_folded();
        let (f1, f2) = (s.encode(&x), folded.encode(&x));
        let (r1, r2) = (s.decode(&f1), folded.decode(&f2));
        for (a, b) in f1.iter().zip(&f2).chain(r1.iter().zip(&r2)) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn a_mismatched_sae_is_refused_with_the_fix() {
        let err = tiny(SaeActivation::Relu)
            .check_fits(128, "layer 3 of vit_cifar10")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("d_in=3") && err.contains("width 128") && err.contains("another SAE"),
            "{err}"
        );
    }
}
