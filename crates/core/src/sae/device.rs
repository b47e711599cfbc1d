//! The SAE's encode and decode as candle tensor ops, so they run on whatever device the tensors
//! live on (CUDA, Metal or the CPU). The CPU path stays [`Sae::encode_sparse`] and
//! [`Sae::decode`] (cache-blocked, sparse); tests hold this one equal to it on the CPU device,
//! so a GPU run only changes where the same ops execute.
//!
//! TopK selects within chunks of at most [`SORT_CHUNK`] columns and then among the chunks'
//! winners: candle's CUDA `arg_sort_last_dim` fails on rows longer than 8,192 (candle issue
//! #2361), and SAEs have 16k latents and more.

use super::{Sae, SaeActivation, SparseCodes};
use crate::error::Result;
use candle_core::{D, Device, Tensor};

/// The longest row one `arg_sort_last_dim` is asked to sort.
pub const SORT_CHUNK: usize = 8192;

/// Rows sent to the device per encode step (with 16k latents, 4,096 rows of pre-activations
/// are 256 MiB).
pub const ENCODE_ROWS: usize = 4096;

/// An SAE's weights on a device.
pub struct DeviceSae {
    w_enc: Tensor,
    b_enc: Tensor,
    w_dec: Tensor,
    b_dec: Tensor,
    threshold: Option<Tensor>,
    activation: SaeActivation,
    apply_b_dec_to_input: bool,
    input_scale: Option<f32>,
    d_sae: usize,
}

impl DeviceSae {
    pub fn new(sae: &Sae, device: &Device) -> Result<DeviceSae> {
        let (i, s) = (sae.d_in, sae.d_sae);
        Ok(DeviceSae {
            w_enc: Tensor::from_slice(&sae.w_enc, (i, s), device)?,
            b_enc: Tensor::from_slice(&sae.b_enc, s, device)?,
            w_dec: Tensor::from_slice(&sae.w_dec, (s, i), device)?,
            b_dec: Tensor::from_slice(&sae.b_dec, i, device)?,
            threshold: sae
                .threshold
                .as_ref()
                .map(|t| Tensor::from_slice(t, s, device))
                .transpose()?,
            activation: sae.activation,
            apply_b_dec_to_input: sae.apply_b_dec_to_input,
            input_scale: sae.input_scale,
            d_sae: s,
        })
    }

    /// Pre-activations [rows, d_sae] of inputs x [rows, d_in].
    fn pre(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        if let Some(s) = self.input_scale {
            x = (x * s as f64)?;
        }
        if self.apply_b_dec_to_input {
            x = x.broadcast_sub(&self.b_dec)?;
        }
        Ok(x.matmul(&self.w_enc)?.broadcast_add(&self.b_enc)?)
    }

    /// Dense codes [rows, d_sae], zero where a feature is off: the selection rule of
    /// [`Sae::encode_sparse`].
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let pre = self.pre(x)?;
        Ok(match self.activation {
            SaeActivation::TopK { k } => {
                let (idx, vals) = top_k(&pre, k.min(self.d_sae))?;
                pre.zeros_like()?.scatter_add(&idx, &vals.relu()?, 1)?
            }
            SaeActivation::Relu => pre.relu()?,
            SaeActivation::BatchTopK { threshold, .. } => {
                let t = Tensor::new(threshold, pre.device())?.broadcast_as(pre.shape())?;
                keep_above(&pre, &t)?
            }
            SaeActivation::JumpRelu => match &self.threshold {
                Some(t) => keep_above(&pre, &t.broadcast_as(pre.shape())?)?,
                None => pre.relu()?,
            },
        })
    }

    /// The active features of rows x [rows, d_in] (host memory), in the CPU path's sparse form
    /// (by feature within a row, zeros dropped). Rows go to the device in blocks of
    /// [`ENCODE_ROWS`]; a TopK SAE brings back only its k winners per row, the others their
    /// dense codes.
    pub fn encode_sparse(&self, x: &[f32]) -> Result<SparseCodes> {
        let d_in = self.b_dec.dim(0)?;
        let device = self.w_enc.device();
        let mut codes = SparseCodes {
            row_start: vec![0],
            ids: Vec::new(),
            vals: Vec::new(),
        };
        for block in x.chunks(ENCODE_ROWS * d_in) {
            let rows = block.len() / d_in;
            let xt = Tensor::from_slice(block, (rows, d_in), device)?;
            let lists: Vec<Vec<(u32, f32)>> = match self.activation {
                SaeActivation::TopK { k } => {
                    let (idx, vals) = top_k(&self.pre(&xt)?, k.min(self.d_sae))?;
                    let idx: Vec<Vec<u32>> = idx.to_device(&Device::Cpu)?.to_vec2()?;
                    let vals: Vec<Vec<f32>> = vals.to_device(&Device::Cpu)?.to_vec2()?;
                    idx.into_iter()
                        .zip(vals)
                        .map(|(i, v)| i.into_iter().zip(v).collect())
                        .collect()
                }
                _ => {
                    let dense: Vec<Vec<f32>> =
                        self.encode(&xt)?.to_device(&Device::Cpu)?.to_vec2()?;
                    dense
                        .into_iter()
                        .map(|r| (0u32..).zip(r).collect())
                        .collect()
                }
            };
            for mut list in lists {
                list.retain(|&(_, v)| v > 0.0);
                list.sort_unstable_by_key(|&(j, _)| j);
                for (j, v) in list {
                    codes.ids.push(j);
                    codes.vals.push(v);
                }
                codes.row_start.push(codes.ids.len());
            }
        }
        Ok(codes)
    }

    /// Reconstructions [rows, d_in] of codes [rows, d_sae].
    pub fn decode(&self, f: &Tensor) -> Result<Tensor> {
        let out = f.matmul(&self.w_dec)?.broadcast_add(&self.b_dec)?;
        Ok(match self.input_scale {
            Some(s) => (out / s as f64)?,
            None => out,
        })
    }
}

/// `pre` where it is above `threshold` and above 0, else 0.
fn keep_above(pre: &Tensor, threshold: &Tensor) -> Result<Tensor> {
    let on = pre.gt(threshold)?;
    Ok(on.where_cond(&pre.relu()?, &pre.zeros_like()?)?)
}

/// The `k` largest values of each row of x [rows, n] and their columns (u32), largest first,
/// sorting at most [`SORT_CHUNK`] columns at a time.
pub fn top_k(x: &Tensor, k: usize) -> Result<(Tensor, Tensor)> {
    let (_, n) = x.dims2()?;
    let mut idx = Vec::new();
    let mut vals = Vec::new();
    for start in (0..n).step_by(SORT_CHUNK) {
        let width = SORT_CHUNK.min(n - start);
        let chunk = x.narrow(1, start, width)?.contiguous()?;
        let order = chunk
            .arg_sort_last_dim(false)?
            .narrow(1, 0, k.min(width))?
            .contiguous()?;
        vals.push(chunk.gather(&order, 1)?);
        let offset = Tensor::new(start as u32, x.device())?;
        idx.push(order.broadcast_add(&offset)?);
    }
    if idx.len() == 1 {
        return Ok((idx.remove(0), vals.remove(0)));
    }
    // Among the chunks' winners (k per chunk, far fewer than SORT_CHUNK for real k).
    let (idx, vals) = (Tensor::cat(&idx, 1)?, Tensor::cat(&vals, 1)?);
    let order = vals
        .arg_sort_last_dim(false)?
        .narrow(1, 0, k.min(vals.dim(D::Minus1)?))?
        .contiguous()?;
    Ok((idx.gather(&order, 1)?, vals.gather(&order, 1)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU unless `SAESCOPE_TEST_DEVICE` names another (see `crate::device::test_device`).
    fn dev_under_test() -> Device {
        crate::device::test_device().unwrap()
    }

    /// Codes as the CPU path's sparse form would list them, for comparisons: per row, the
    /// (feature, value) pairs that are not zero, by feature.
    fn dense_to_rows(codes: &Tensor) -> Result<Vec<Vec<(u32, f32)>>> {
        let codes = codes
            .to_dtype(candle_core::DType::F32)?
            .to_device(&Device::Cpu)?;
        let rows: Vec<Vec<f32>> = codes.to_vec2()?;
        Ok(rows
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .enumerate()
                    .filter(|&(_, v)| v != 0.0)
                    .map(|(j, v)| (j as u32, v))
                    .collect()
            })
            .collect())
    }

    fn inputs(rows: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..rows * d).map(|_| rng.normal()).collect()
    }

    /// `Sae::encode_sparse` with a device engine (here the CPU device) brings back the same
    /// sparse codes as the CPU path, across more rows than one device block, for TopK wider than
    /// a sort chunk and for a thresholded activation.
    #[test]
    fn encode_sparse_through_a_device_engine_equals_the_cpu_path() {
        let d_in = 12;
        let rows = ENCODE_ROWS + 37;
        let x = inputs(rows, d_in, 21);
        let wide = Sae::random_topk(d_in, 9_000, 8, 0.3, 3);
        let mut relu = Sae::random_topk(d_in, 200, 8, 0.3, 4);
        relu.activation = SaeActivation::Relu;
        relu.b_enc = vec![-0.4; 200];
        for sae in [wide, relu] {
            let want = sae.encode_sparse(&x);
            let on_dev = sae.clone().with_device_engine(&dev_under_test()).unwrap();
            assert!(format!("{:?}", on_dev.engine) == "device");
            let got = on_dev.encode_sparse(&x);
            assert_eq!(got.row_start, want.row_start, "{:?}", sae.activation);
            assert_eq!(got.ids, want.ids, "{:?}", sae.activation);
            for (a, b) in got.vals.iter().zip(&want.vals) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
            }
            // On the CPU device `on_device` keeps the CPU path.
            let cpu = sae.on_device(&Device::Cpu).unwrap();
            assert!(format!("{:?}", cpu.engine) == "cpu");
        }
    }

    /// Encode and decode as tensor ops on the CPU device equal the CPU fast path, for every
    /// activation, with an input scale and b_dec subtraction, and for a TopK wider than one
    /// sort chunk (20,000 latents: three chunks, then a choice among their winners).
    #[test]
    fn device_ops_equal_the_cpu_path() {
        let (d_in, rows) = (24, 40);
        let mut cases = Vec::new();
        let mut wide = Sae::random_topk(d_in, 20_000, 16, 0.3, 5);
        wide.b_dec = (0..d_in).map(|i| (i as f32 * 0.37).sin()).collect();
        cases.push(wide);
        let mut scaled = Sae::random_topk(d_in, 300, 8, 0.3, 6);
        scaled.input_scale = Some(1.7);
        cases.push(scaled.clone());
        let mut relu = scaled.clone();
        relu.activation = SaeActivation::Relu;
        relu.b_enc = vec![-0.5; 300];
        cases.push(relu.clone());
        let mut batch = relu.clone();
        batch.activation = SaeActivation::BatchTopK {
            k: 8.0,
            threshold: 0.4,
        };
        cases.push(batch);
        let mut jump = relu;
        jump.activation = SaeActivation::JumpRelu;
        jump.threshold = Some((0..300).map(|j| (j % 7) as f32 * 0.1).collect());
        cases.push(jump);
        let x = inputs(rows, d_in, 9);
        for sae in &cases {
            let dev = DeviceSae::new(sae, &dev_under_test()).unwrap();
            let xt = Tensor::from_slice(&x, (rows, d_in), &dev_under_test()).unwrap();
            let codes = dev.encode(&xt).unwrap();
            let got = dense_to_rows(&codes).unwrap();
            let want = sae.encode_sparse(&x);
            for (r, g) in got.iter().enumerate() {
                let w: Vec<(u32, f32)> = want.row(r).collect();
                let ids = |v: &[(u32, f32)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
                assert_eq!(
                    ids(g),
                    ids(&w),
                    "{:?} row {r}: other features",
                    sae.activation
                );
                for (a, b) in g.iter().zip(&w) {
                    assert!(
                        (a.1 - b.1).abs() <= 1e-4 * (1.0 + b.1.abs()),
                        "{a:?} vs {b:?}"
                    );
                }
            }
            let rec: Vec<f32> = dev
                .decode(&codes)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let want_rec = sae.decode(&want.to_dense(sae.d_sae));
            for (a, b) in rec.iter().zip(&want_rec) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "decode {a} vs {b}");
            }
        }
    }

    #[test]
    fn chunked_top_k_equals_one_sort() {
        let (rows, n, k) = (5, 3 * SORT_CHUNK + 123, 40);
        let x = inputs(rows, n, 2);
        let xt = Tensor::from_slice(&x, (rows, n), &dev_under_test()).unwrap();
        let (idx, vals) = top_k(&xt, k).unwrap();
        let idx: Vec<Vec<u32>> = idx.to_vec2().unwrap();
        let vals: Vec<Vec<f32>> = vals.to_vec2().unwrap();
        for r in 0..rows {
            let mut order: Vec<usize> = (0..n).collect();
            let row = &x[r * n..(r + 1) * n];
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let want: Vec<u32> = order[..k].iter().map(|&j| j as u32).collect();
            assert_eq!(idx[r], want, "row {r}");
            assert!(
                vals[r]
                    .iter()
                    .zip(&want)
                    .all(|(v, &j)| *v == row[j as usize])
            );
        }
    }
}
