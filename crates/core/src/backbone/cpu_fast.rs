//! The CPU fast path for transformer blocks (f32). candle runs each op separately — batched
//! attention becomes thousands of tiny single-threaded GEMM calls and every elementwise op is a
//! single-threaded pass that allocates. Here a block is: GEMMs with the bias folded into the
//! output (our AVX-512 / AVX2 kernels in `sgemm`, else the gemm crate; multi-threaded), one
//! fused attention kernel per image (rayon over images), and fused residual + LayerNorm /
//! activation passes over row chunks. Same math as the candle path (checked against it in tests
//! and against PyTorch in tests/parity.rs).

use super::layers::{Activation, Block};
use super::sgemm;
use crate::error::Result;
use candle_core::Tensor;
use rayon::prelude::*;

/// Token rows per sub-batch when running several blocks (intermediates stay in cache).
pub const CHUNK_ROWS: usize = 4096;

/// Rows per parallel work item for elementwise passes.
const ROW_CHUNK: usize = 64;

pub struct FastLinear {
    weights: Weights,
    bias: Option<Vec<f32>>,
    d_in: usize,
    d_out: usize,
}

/// The weight in the layout the CPU's GEMM wants: packed panels for our AVX-512 or AVX2 kernel,
/// or row-major [in, out] for the `gemm` crate.
enum Weights {
    Packed(sgemm::PackedB),
    RowMajor(Vec<f32>),
}

impl FastLinear {
    pub fn new(w_t: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let (d_in, d_out) = w_t.dims2()?;
        Ok(Self::from_parts(
            w_t.flatten_all()?.to_vec1()?,
            bias.map(|b| b.to_vec1()).transpose()?,
            d_in,
            d_out,
        ))
    }

    /// From a row-major [d_in, d_out] weight (benchmarks and tests).
    pub fn from_parts(w_t: Vec<f32>, bias: Option<Vec<f32>>, d_in: usize, d_out: usize) -> Self {
        let weights = if sgemm::available() {
            Weights::Packed(sgemm::PackedB::new(&w_t, d_in, d_out))
        } else {
            Weights::RowMajor(w_t)
        };
        FastLinear {
            weights,
            bias,
            d_in,
            d_out,
        }
    }

    /// out = act(x·W + b), written into `out` (resized; its allocation is reused). The activation
    /// runs on each finished block of rows while it is in cache.
    pub fn forward_into(
        &self,
        x: &[f32],
        rows: usize,
        act: Option<Activation>,
        out: &mut Vec<f32>,
    ) {
        out.resize(rows * self.d_out, 0.0);
        let out = &mut out[..rows * self.d_out];
        match &self.weights {
            Weights::Packed(p) => {
                let bias = self.bias.as_deref();
                match act {
                    None => sgemm::gemm(x, rows, p, bias, out, |_| {}),
                    Some(act) => sgemm::gemm(x, rows, p, bias, out, |s| activate_slice(s, act)),
                }
            }
            Weights::RowMajor(w_t) => {
                self.forward_gemm_crate(w_t, x, rows, out);
                if let Some(act) = act {
                    activate(out, act);
                }
            }
        }
    }

    fn forward_gemm_crate(&self, w_t: &[f32], x: &[f32], rows: usize, out: &mut [f32]) {
        let read_dst = if let Some(b) = &self.bias {
            out.par_chunks_mut(self.d_out * ROW_CHUNK).for_each(|c| {
                for row in c.chunks_mut(self.d_out) {
                    row.copy_from_slice(b);
                }
            });
            true
        } else {
            false
        };
        let threads = candle_core::utils::get_num_threads();
        let par = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: the slices hold rows×d_in, d_in×d_out and rows×d_out elements with the given
        // row-major strides; dst does not alias the inputs.
        unsafe {
            gemm::gemm(
                rows,
                self.d_out,
                self.d_in,
                out.as_mut_ptr(),
                1,
                self.d_out as isize,
                read_dst,
                x.as_ptr(),
                1,
                self.d_in as isize,
                w_t.as_ptr(),
                1,
                self.d_out as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                par,
            );
        }
    }
}

struct FastNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

pub struct FastBlock {
    norm1: FastNorm,
    norm2: FastNorm,
    qkv: FastLinear,
    out: FastLinear,
    fc1: FastLinear,
    fc2: FastLinear,
    act: Activation,
    layer_scale: Option<(Vec<f32>, Vec<f32>)>,
    norm_first: bool,
    heads: usize,
    d: usize,
}

impl FastBlock {
    pub fn from_block(b: &Block) -> Result<Self> {
        let norm = |n: &super::layers::LayerNorm| -> Result<FastNorm> {
            let (w, bias, eps) = n.parts();
            Ok(FastNorm {
                weight: w.to_vec1()?,
                bias: bias.to_vec1()?,
                eps,
            })
        };
        let lin = |l: &super::layers::Linear| FastLinear::new(l.weight_t(), l.bias());
        let (qkv, out, heads) = b.attn.parts();
        Ok(FastBlock {
            norm1: norm(&b.norm1)?,
            norm2: norm(&b.norm2)?,
            qkv: lin(qkv)?,
            out: lin(out)?,
            fc1: lin(&b.mlp.fc1)?,
            fc2: lin(&b.mlp.fc2)?,
            act: b.mlp.act,
            layer_scale: b
                .layer_scale
                .as_ref()
                .map(|(a, c)| Ok::<_, crate::Error>((a.to_vec1()?, c.to_vec1()?)))
                .transpose()?,
            norm_first: b.norm_first,
            heads,
            d: out.out_dim(),
        })
    }

    /// x: [batch·tokens, d] row-major, updated in place. `s` holds the intermediates (its
    /// buffers are reused from block to block instead of allocated and page-faulted each time).
    pub fn forward(
        &self,
        x: &mut [f32],
        batch: usize,
        tokens: usize,
        causal: bool,
        s: &mut Scratch,
    ) {
        let rows = batch * tokens;
        let d = self.d;
        let scales = self.layer_scale.as_ref();
        if self.norm_first {
            layer_norm_into(x, d, &self.norm1, &mut s.y);
            self.qkv.forward_into(&s.y, rows, None, &mut s.qkv);
            attention_into(&s.qkv, tokens, self.heads, d, causal, &mut s.att);
            self.out.forward_into(&s.att, rows, None, &mut s.a);
            add_scaled(x, &s.a, d, scales.map(|s| s.0.as_slice()));
            layer_norm_into(x, d, &self.norm2, &mut s.y);
            self.fc1.forward_into(&s.y, rows, Some(self.act), &mut s.h);
            self.fc2.forward_into(&s.h, rows, None, &mut s.a);
            add_scaled(x, &s.a, d, scales.map(|s| s.1.as_slice()));
        } else {
            self.qkv.forward_into(x, rows, None, &mut s.qkv);
            attention_into(&s.qkv, tokens, self.heads, d, causal, &mut s.att);
            self.out.forward_into(&s.att, rows, None, &mut s.a);
            add_then_norm(x, &s.a, d, &self.norm1);
            self.fc1.forward_into(x, rows, Some(self.act), &mut s.h);
            self.fc2.forward_into(&s.h, rows, None, &mut s.a);
            add_then_norm(x, &s.a, d, &self.norm2);
        }
    }
}

/// A block's intermediate buffers, kept across blocks and sub-batches.
#[derive(Default)]
pub struct Scratch {
    y: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    a: Vec<f32>,
    h: Vec<f32>,
}

#[inline(always)]
fn norm_row(src: &[f32], dst: &mut [f32], n: &FastNorm) {
    let d = src.len() as f32;
    let mean = src.iter().sum::<f32>() / d;
    let var = src.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d;
    let inv = 1.0 / (var + n.eps).sqrt();
    for (((o, &v), &w), &b) in dst.iter_mut().zip(src).zip(&n.weight).zip(&n.bias) {
        *o = (v - mean) * inv * w + b;
    }
}

fn layer_norm_into(x: &[f32], d: usize, n: &FastNorm, out: &mut Vec<f32>) {
    out.resize(x.len(), 0.0);
    out[..x.len()]
        .par_chunks_mut(d * ROW_CHUNK)
        .zip(x.par_chunks(d * ROW_CHUNK))
        .for_each(|(o, s)| {
            for (orow, srow) in o.chunks_mut(d).zip(s.chunks(d)) {
                norm_row(srow, orow, n);
            }
        });
}

/// x = LayerNorm(x + a), row by row (post-norm residual).
fn add_then_norm(x: &mut [f32], a: &[f32], d: usize, n: &FastNorm) {
    x.par_chunks_mut(d * ROW_CHUNK)
        .zip(a.par_chunks(d * ROW_CHUNK))
        .for_each(|(xc, ac)| {
            let mut tmp = vec![0f32; d];
            for (xrow, arow) in xc.chunks_mut(d).zip(ac.chunks(d)) {
                for ((t, &xv), &av) in tmp.iter_mut().zip(xrow.iter()).zip(arow) {
                    *t = xv + av;
                }
                norm_row(&tmp, xrow, n);
            }
        });
}

/// x += a (· scale per channel).
fn add_scaled(x: &mut [f32], a: &[f32], d: usize, scale: Option<&[f32]>) {
    x.par_chunks_mut(d * ROW_CHUNK)
        .zip(a.par_chunks(d * ROW_CHUNK))
        .for_each(|(xc, ac)| match scale {
            Some(s) => {
                for (xrow, arow) in xc.chunks_mut(d).zip(ac.chunks(d)) {
                    for ((xv, &av), &g) in xrow.iter_mut().zip(arow).zip(s) {
                        *xv += av * g;
                    }
                }
            }
            None => {
                for (xv, &av) in xc.iter_mut().zip(ac) {
                    *xv += av;
                }
            }
        });
}

fn activate(h: &mut [f32], act: Activation) {
    h.par_chunks_mut(4096).for_each(|c| activate_slice(c, act));
}

fn activate_slice(c: &mut [f32], act: Activation) {
    match act {
        Activation::Relu => c.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Gelu => gelu(c),
        Activation::GeluTanh => c.iter_mut().for_each(|v| {
            let x = *v;
            *v = 0.5
                * x
                * (1.0
                    + ((2.0f32 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh());
        }),
        Activation::QuickGelu => c.iter_mut().for_each(|v| *v /= 1.0 + (-1.702 * *v).exp()),
    }
}

/// Multi-head attention over packed qkv [batch, tokens, 3, heads, hd] → [batch, tokens, heads·hd].
fn attention_into(
    qkv: &[f32],
    tokens: usize,
    heads: usize,
    d: usize,
    causal: bool,
    out: &mut Vec<f32>,
) {
    let n = qkv.len() / 3;
    out.resize(n, 0.0);
    out[..n]
        .par_chunks_mut(tokens * d)
        .zip(qkv.par_chunks(tokens * 3 * d))
        .for_each(|(o, src)| attention_image(src, o, tokens, heads, d, causal));
}

fn attention_image(src: &[f32], out: &mut [f32], t: usize, heads: usize, d: usize, causal: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        match sgemm::best() {
            // SAFETY: the CPU supports the features the functions are compiled for.
            Some(sgemm::Isa::Avx512) => {
                return unsafe { attention_image_avx512(src, out, t, heads, d, causal) };
            }
            Some(sgemm::Isa::Avx2) => {
                return unsafe { attention_image_avx2(src, out, t, heads, d, causal) };
            }
            None => {}
        }
    }
    attention_image_generic(src, out, t, heads, d, causal)
}

/// [`attention_image_packed`] with AVX-512 code generation for its softmax.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn attention_image_avx512(
    src: &[f32],
    out: &mut [f32],
    t: usize,
    heads: usize,
    d: usize,
    causal: bool,
) {
    attention_image_packed(src, out, t, heads, d, causal)
}

/// [`attention_image_packed`] with AVX2 + FMA code generation for its softmax.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attention_image_avx2(
    src: &[f32],
    out: &mut [f32],
    t: usize,
    heads: usize,
    d: usize,
    causal: bool,
) {
    attention_image_packed(src, out, t, heads, d, causal)
}

/// One image's attention with our GEMM kernels: per head, S = Q·Kᵀ reading Q in place from the
/// qkv rows (K packed transposed), a scaled softmax, and O = P·V written straight into the
/// head's columns of `out`.
#[inline(always)]
fn attention_image_packed(
    src: &[f32],
    out: &mut [f32],
    t: usize,
    heads: usize,
    d: usize,
    causal: bool,
) {
    let hd = d / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut s = vec![0f32; t * t];
    let mut keys = sgemm::PackedB::empty();
    let mut values = sgemm::PackedB::empty();
    for h in 0..heads {
        let q = &src[h * hd..];
        keys.repack(&src[d + h * hd..], 3 * d, hd, t, true);
        values.repack(&src[2 * d + h * hd..], 3 * d, t, hd, false);
        sgemm::gemm_strided(q, 3 * d, t, &keys, &mut s, t);
        for (i, row) in s.chunks_mut(t).enumerate() {
            softmax_scaled_row(row, if causal { i + 1 } else { t }, scale);
        }
        sgemm::gemm_strided(&s, t, t, &values, &mut out[h * hd..], d);
    }
}

/// Exact (erf) GELU in place, vectorised with AVX-512 or AVX2 + FMA when the CPU has them.
fn gelu(c: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { gelu_avx512(c) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { gelu_avx2(c) };
        }
    }
    gelu_generic(c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_avx2(c: &mut [f32]) {
    gelu_generic(c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_avx512(c: &mut [f32]) {
    gelu_generic(c)
}

#[inline(always)]
fn gelu_generic(c: &mut [f32]) {
    for v in c.iter_mut() {
        *v = (erf(*v * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * *v;
    }
}

/// erf(x) by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7; 5.7e-7 in f32 arithmetic), branch-free so
/// GELU vectorises. libm's scalar `erff` took ~40% of a DINOv2 block's time (395k calls per
/// block and image at ~30 ns each).
#[inline(always)]
fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * exp_nonpositive(-a * a);
    y.copysign(x)
}

/// exp(x) for x ≤ 0 (softmax after subtracting the max): Cody–Waite range reduction and a
/// degree-6 polynomial, relative error ~1e-7. Branch-free so the softmax loop vectorises.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.max(-87.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n from n's bits without a float→int cast (Rust's saturating `as` does not vectorise):
    // adding 1.5·2^23 puts the integer n in the low mantissa bits.
    let biased = (n + 12_582_912.0).to_bits().wrapping_sub(0x4B40_0000);
    p * f32::from_bits(biased.wrapping_add(127) << 23)
}

/// C[m×n] = A·B for small row-major matrices, single-threaded (callers parallelise over images).
/// `b_transposed`: B is given as [n×k] (rows of keys) instead of [k×n].
#[inline(always)]
fn small_gemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    b_transposed: bool,
    c: &mut [f32],
) {
    let (b_cs, b_rs) = if b_transposed {
        (k as isize, 1)
    } else {
        (1, n as isize)
    };
    // SAFETY: a is m×k, b is k×n (or n×k transposed) and c is m×n, all row-major and disjoint.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            b_cs,
            b_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// One image's attention, all heads: S = Q·Kᵀ and O = P·V through the gemm micro-kernels,
/// softmax with a vectorised exp in between.
#[inline(always)]
fn attention_image_generic(
    src: &[f32],
    out: &mut [f32],
    t: usize,
    heads: usize,
    d: usize,
    causal: bool,
) {
    let hd = d / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut q = vec![0f32; t * hd];
    let mut k = vec![0f32; t * hd];
    let mut v = vec![0f32; t * hd];
    let mut s = vec![0f32; t * t];
    let mut o = vec![0f32; t * hd];
    for h in 0..heads {
        for i in 0..t {
            let row = &src[i * 3 * d..(i + 1) * 3 * d];
            for c in 0..hd {
                q[i * hd + c] = row[h * hd + c] * scale;
            }
            k[i * hd..(i + 1) * hd].copy_from_slice(&row[d + h * hd..d + (h + 1) * hd]);
            v[i * hd..(i + 1) * hd].copy_from_slice(&row[2 * d + h * hd..2 * d + (h + 1) * hd]);
        }
        small_gemm(t, t, hd, &q, &k, true, &mut s);
        for (i, row) in s.chunks_mut(t).enumerate() {
            softmax_row(row, if causal { i + 1 } else { t });
        }
        small_gemm(t, hd, t, &s, &v, false, &mut o);
        for i in 0..t {
            out[i * d + h * hd..i * d + (h + 1) * hd].copy_from_slice(&o[i * hd..(i + 1) * hd]);
        }
    }
}

/// Softmax over the first `n` entries (the rest, masked keys, become 0).
#[inline(always)]
fn softmax_row(row: &mut [f32], n: usize) {
    softmax_scaled_row(row, n, 1.0)
}

/// softmax(scale · row) over the first `n` entries (scale > 0; the rest become 0).
#[inline(always)]
fn softmax_scaled_row(row: &mut [f32], n: usize, scale: f32) {
    let (vis, masked) = row.split_at_mut(n);
    masked.iter_mut().for_each(|x| *x = 0.0);
    let max = vis
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    vis.iter_mut()
        .for_each(|x| *x = exp_nonpositive((*x - max) * scale));
    // Sixteen partial sums so the reduction vectorises.
    let mut lanes = [0f32; 16];
    let mut chunks = vis.chunks_exact(16);
    for c in &mut chunks {
        for l in 0..16 {
            lanes[l] += c[l];
        }
    }
    let sum: f32 = lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
    let inv = 1.0 / sum;
    vis.iter_mut().for_each(|x| *x *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_erf_and_gelu_match_libm() {
        let mut worst = 0f32;
        for i in -100_000..=100_000 {
            let x = i as f32 * 1e-4 * 6.0; // [-6, 6]
            let d = (erf(x) - candle_core::cpu::erf::erf_f32(x)).abs();
            worst = worst.max(d);
        }
        assert!(worst < 1e-6, "max |erf error| {worst:e}");
        let mut xs: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.02).collect();
        let want: Vec<f32> = xs
            .iter()
            .map(|&x| {
                (candle_core::cpu::erf::erf_f32(x * std::f32::consts::FRAC_1_SQRT_2) + 1.0)
                    * 0.5
                    * x
            })
            .collect();
        gelu(&mut xs);
        for (g, w) in xs.iter().zip(&want) {
            assert!((g - w).abs() < 5e-6, "{g} vs {w}");
        }
    }
}
