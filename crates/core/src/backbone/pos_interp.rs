//! Resizing a learned position table to another patch grid (DINOv2 at 224 px uses a 16×16 grid
//! from a 37×37 table). The two references disagree, so both are here and the one used is
//! recorded in the workspace and in the SAEs saescope writes:
//! - transformers 5 (`Dinov2Embeddings.interpolate_pos_encoding`):
//!   `interpolate(size=(h, w), mode="bicubic", align_corners=False)`;
//! - facebookresearch/dinov2 (`DinoVisionTransformer.interpolate_pos_encoding`, torch.hub, saev):
//!   `interpolate(scale_factor=((h + 0.1) / H, (w + 0.1) / W), mode="bicubic")`, its
//!   `interpolate_offset` of 0.1 and `interpolate_antialias=False` defaults.
//!
//! Both are PyTorch's `upsample_bicubic2d` (A = −0.75, borders clamped); they differ only in
//! the scale that maps output to source coordinates. DINOv2 *with registers* is resized with
//! `antialias=True` by both references (transformers' `Dinov2WithRegistersEmbeddings`, and the
//! original's `interpolate_antialias=True, interpolate_offset=0` for the `_reg` models): PyTorch's
//! `_upsample_bicubic2d_aa`, a Keys cubic (A = −0.5) widened by the downscale factor and
//! normalised, like Pillow's resize.

use crate::error::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PosInterpolation {
    /// Hugging Face transformers 5: `size = (h, w)`, source step H / h.
    Transformers,
    /// The original DINOv2 code: `scale_factor = (h + 0.1) / H`, source step H / (h + 0.1).
    Original,
}

crate::str_choices!(PosInterpolation: "transformers" => PosInterpolation::Transformers, "original" => PosInterpolation::Original);

impl PosInterpolation {
    pub fn as_str(self) -> &'static str {
        match self {
            PosInterpolation::Transformers => "transformers",
            PosInterpolation::Original => "original",
        }
    }

    /// Source pixels per output pixel along an axis of `inp` → `out` positions.
    fn step(self, inp: usize, out: usize) -> f64 {
        match self {
            PosInterpolation::Transformers => inp as f64 / out as f64,
            // PyTorch uses 1 / scale_factor when a scale factor is given.
            PosInterpolation::Original => 1.0 / ((out as f64 + 0.1) / inp as f64),
        }
    }
}

/// (source index, weight) taps of one output position.
type Taps = Vec<(usize, f32)>;

/// PyTorch's `upsample_bicubic2d` taps (align_corners=False): four per output, borders clamped.
fn bicubic_taps(inp: usize, out: usize, step: f64) -> Vec<Taps> {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    (0..out)
        .map(|o| {
            let x = (o as f64 + 0.5) * step - 0.5;
            let x0 = x.floor();
            let t = x - x0;
            let w = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
            (0..4)
                .map(|k| {
                    let idx = (x0 as i64 - 1 + k as i64).clamp(0, inp as i64 - 1) as usize;
                    (idx, w[k] as f32)
                })
                .collect()
        })
        .collect()
}

/// PyTorch's `_upsample_bicubic2d_aa` taps (`_compute_index_ranges_weights`): Keys cubic with
/// A = −0.5 stretched by the scale when downsampling, truncated to the input, normalised.
fn bicubic_aa_taps(inp: usize, out: usize) -> Vec<Taps> {
    const A: f64 = -0.5;
    let filter = |x: f64| {
        let x = x.abs();
        if x < 1.0 {
            ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
        } else {
            0.0
        }
    };
    let scale = inp as f64 / out as f64;
    let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
    let inv = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    (0..out)
        .map(|o| {
            let center = scale * (o as f64 + 0.5);
            // C++ casts truncate toward zero.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(inp as i64) as usize;
            let w: Vec<f64> = (lo..hi)
                .map(|j| filter((j as f64 - center + 0.5) * inv))
                .collect();
            let total: f64 = w.iter().sum();
            (lo..hi)
                .zip(w)
                .map(|(j, v)| (j, if total != 0.0 { v / total } else { v } as f32))
                .collect()
        })
        .collect()
}

/// Resizes a [gh·gw, D] position table from the `from` grid to the `to` grid. `antialias` is
/// the registers models' form (where both references agree, so `how` does not apply).
pub fn interpolate_pos(
    pos: &Tensor,
    from: (usize, usize),
    to: (usize, usize),
    how: PosInterpolation,
    antialias: bool,
) -> Result<Tensor> {
    let d = pos.dim(1)?;
    let src: Vec<f32> = pos.flatten_all()?.to_vec1()?;
    let (wy, wx) = if antialias {
        (bicubic_aa_taps(from.0, to.0), bicubic_aa_taps(from.1, to.1))
    } else {
        (
            bicubic_taps(from.0, to.0, how.step(from.0, to.0)),
            bicubic_taps(from.1, to.1, how.step(from.1, to.1)),
        )
    };
    let mut out = vec![0f32; to.0 * to.1 * d];
    for (oy, ky) in wy.iter().enumerate() {
        for (ox, kx) in wx.iter().enumerate() {
            let dst = &mut out[(oy * to.1 + ox) * d..][..d];
            for &(iy, fy) in ky {
                for &(ix, fx) in kx {
                    let f = fy * fx;
                    let s = &src[(iy * from.1 + ix) * d..][..d];
                    for (o, v) in dst.iter_mut().zip(s) {
                        *o += f * v;
                    }
                }
            }
        }
    }
    Ok(Tensor::from_vec(out, (to.0 * to.1, d), pos.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn ramp_rows(how: PosInterpolation) -> Vec<f32> {
        // A 4×4 table whose value is its column index, resized to 8×8.
        let v: Vec<f32> = (0..16).map(|i| (i % 4) as f32).collect();
        let t = Tensor::from_vec(v, (16, 1), &Device::Cpu).unwrap();
        interpolate_pos(&t, (4, 4), (8, 8), how, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn constants_stay_constant_and_ramps_stay_monotone() {
        for how in [PosInterpolation::Transformers, PosInterpolation::Original] {
            let ones = Tensor::ones((16, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
            let up = interpolate_pos(&ones, (4, 4), (6, 5), how, false).unwrap();
            let v: Vec<f32> = up.flatten_all().unwrap().to_vec1().unwrap();
            assert!(v.iter().all(|x| (x - 1.0).abs() < 1e-5));
            for row in ramp_rows(how).chunks(8) {
                assert!(row.windows(2).all(|w| w[1] >= w[0] - 1e-6), "{row:?}");
            }
        }
    }

    /// All three forms against `torch.nn.functional.interpolate` (PyTorch 2.15) on a 5×5 table
    /// of i^1.5 resized to 3×2: `size` with and without antialias, and the original code's
    /// `scale_factor=(3.1/5, 2.1/5)`.
    #[test]
    fn matches_pytorch_interpolate() {
        let v: Vec<f32> = (0..25).map(|i| (i as f32).powf(1.5)).collect();
        let t = Tensor::from_vec(v, (25, 1), &Device::Cpu).unwrap();
        let run = |how, aa| -> Vec<f32> {
            interpolate_pos(&t, (5, 5), (3, 2), how, aa)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let cases = [
            (
                run(PosInterpolation::Transformers, true),
                [4.98944, 11.31021, 36.3273, 48.17279, 83.45509, 98.88493],
            ),
            (
                run(PosInterpolation::Transformers, false),
                [3.46085, 10.37013, 34.84531, 48.68005, 85.4156, 103.58798],
            ),
            (
                run(PosInterpolation::Original, false),
                [3.1146, 9.30765, 31.80226, 44.4123, 81.08287, 97.85641],
            ),
        ];
        for (got, want) in cases {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-3, "{got:?} vs {want:?}");
            }
        }
    }
}
