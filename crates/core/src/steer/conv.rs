//! A 3×3 convolution (padding 1, stride 1 or 2) for f32 on the CPU, as one GEMM per block of
//! output rows over an im2col buffer small enough to stay in cache. The TAESD decoder is nearly
//! all such convolutions at full image size, where this runs about twice as fast as candle's
//! CPU kernel (see docs/BENCHMARKS.md). Other devices and dtypes use candle's convolution.

use crate::error::Result;
use crate::linalg::{RhsLayout, matmul};
use candle_core::{DType, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig};
use rayon::prelude::*;

/// Output columns (rows × width) per GEMM: keeps the im2col block (9·c_in × this) near 2 MB.
const BLOCK_COLUMNS: usize = 1024;

pub struct Conv3x3 {
    /// [c_out, c_in·9], PyTorch's weight layout flattened.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    c_in: usize,
    c_out: usize,
    stride: usize,
    fallback: Conv2d,
}

impl Conv3x3 {
    pub fn new(weight: Tensor, bias: Option<Tensor>, stride: usize) -> Result<Self> {
        let (c_out, c_in, kh, kw) = weight.dims4()?;
        assert!(kh == 3 && kw == 3, "Conv3x3 needs a 3×3 kernel");
        let fallback = Conv2d::new(
            weight.clone(),
            bias.clone(),
            Conv2dConfig {
                padding: 1,
                stride,
                ..Default::default()
            },
        );
        Ok(Conv3x3 {
            weight: weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
            bias: bias
                .map(|b| b.to_dtype(DType::F32)?.to_vec1())
                .transpose()?,
            c_in,
            c_out,
            stride,
            fallback,
        })
    }

    pub fn out_channels(&self) -> usize {
        self.c_out
    }

    pub fn in_channels(&self) -> usize {
        self.c_in
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !x.device().is_cpu() || x.dtype() != DType::F32 {
            return Ok(self.fallback.forward(x)?);
        }
        let (b, c, h, w) = x.dims4()?;
        assert_eq!(
            c, self.c_in,
            "Conv3x3: input has {c} channels, expected {}",
            self.c_in
        );
        let s = self.stride;
        let (ho, wo) = ((h + 2 - 3) / s + 1, (w + 2 - 3) / s + 1);
        let input: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let rows_per_block = (BLOCK_COLUMNS / wo).max(1);
        let k = self.c_in * 9;
        let plane = ho * wo;
        let mut out = vec![0f32; b * self.c_out * plane];
        for bi in 0..b {
            let img = &input[bi * c * h * w..(bi + 1) * c * h * w];
            let starts: Vec<usize> = (0..ho).step_by(rows_per_block).collect();
            let blocks: Vec<(usize, usize, Vec<f32>)> = starts
                .par_iter()
                .map(|&r0| {
                    let r1 = (r0 + rows_per_block).min(ho);
                    let n = (r1 - r0) * wo;
                    let mut col = vec![0f32; k * n];
                    for ci in 0..self.c_in {
                        let src = &img[ci * h * w..(ci + 1) * h * w];
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let dst = &mut col[(ci * 9 + ky * 3 + kx) * n..][..n];
                                for r in r0..r1 {
                                    let iy = (r * s + ky) as isize - 1;
                                    if iy < 0 || iy >= h as isize {
                                        continue; // stays zero (padding)
                                    }
                                    let row = &src[iy as usize * w..][..w];
                                    let d = &mut dst[(r - r0) * wo..][..wo];
                                    for (xo, v) in d.iter_mut().enumerate() {
                                        let ix = (xo * s + kx) as isize - 1;
                                        if ix >= 0 && ix < w as isize {
                                            *v = row[ix as usize];
                                        }
                                    }
                                }
                            }
                        }
                    }
                    let mut y = vec![0f32; self.c_out * n];
                    matmul(
                        &mut y,
                        &self.weight,
                        &col,
                        (self.c_out, k, n),
                        RhsLayout::RowMajor,
                        false,
                        false,
                    );
                    (r0, n, y)
                })
                .collect();
            let dst = &mut out[bi * self.c_out * plane..(bi + 1) * self.c_out * plane];
            for (r0, n, y) in blocks {
                for co in 0..self.c_out {
                    let bias = self.bias.as_ref().map_or(0.0, |b| b[co]);
                    let o = &mut dst[co * plane + r0 * wo..][..n];
                    for (d, v) in o.iter_mut().zip(&y[co * n..(co + 1) * n]) {
                        *d = v + bias;
                    }
                }
            }
        }
        Ok(Tensor::from_vec(out, (b, self.c_out, ho, wo), x.device())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_candles_convolution() {
        let dev = Device::Cpu;
        for (stride, h, w) in [(1, 13, 9), (2, 16, 12), (2, 7, 5), (1, 40, 33)] {
            let x = Tensor::randn(0f32, 1.0, (2, 5, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 0.3, (7, 5, 3, 3), &dev).unwrap();
            let b = Tensor::randn(0f32, 0.3, 7, &dev).unwrap();
            let ours = Conv3x3::new(wt.clone(), Some(b.clone()), stride).unwrap();
            let theirs = Conv2d::new(
                wt,
                Some(b),
                Conv2dConfig {
                    padding: 1,
                    stride,
                    ..Default::default()
                },
            );
            let (a, e) = (ours.forward(&x).unwrap(), theirs.forward(&x).unwrap());
            assert_eq!(a.dims(), e.dims());
            let d = crate::linalg::max_abs_diff(&a, &e).unwrap();
            assert!(d < 1e-4, "stride {stride} {h}×{w}: {d}");
        }
    }
}
