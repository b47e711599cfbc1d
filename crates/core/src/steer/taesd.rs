//! The TAESD family of tiny autoencoders (TAESD, TAESDXL, TAEF1/TAEF2): a fast preview decoder
//! (and encoder) for diffusion latents. Images are RGB in [0, 1]; latents are the ones the UNet
//! sees (already multiplied by the VAE's scaling factor).
//!
//! Weights are read in either layout users have:
//! - the original `taesd_encoder.pth` / `taesd_decoder.pth` pair (`nn.Sequential` indices; the
//!   decoder's index 0 is the soft clamp), or
//! - diffusers' `AutoencoderTiny` (`encoder.layers.N…`, `decoder.layers.N…`, where the decoder's
//!   indices are one lower because the clamp is not a layer).
//!
//! The "mid-block GN" variant (TAEF2) adds `x + pool(x)` inside the blocks nearest the latent; it
//! is detected from the weights.

use super::conv::Conv3x3;
use crate::backbone::weights::Weights;
use crate::error::{Error, Result};
use candle_core::{Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, GroupNorm};
use std::path::{Path, PathBuf};

/// A 3×3 convolution (padding 1) by name.
fn conv3(w: &Weights, name: &str, stride: usize, bias: bool) -> Result<Conv3x3> {
    let weight = w.get(&format!("{name}.weight"))?;
    let bias = if bias {
        Some(w.get(&format!("{name}.bias"))?)
    } else {
        None
    };
    Conv3x3::new(weight, bias, stride)
}

fn conv(w: &Weights, name: &str, stride: usize, bias: bool) -> Result<Conv2d> {
    let weight = w.get(&format!("{name}.weight"))?;
    let k = weight.dims().last().copied().unwrap_or(1);
    let bias = if bias {
        Some(w.get(&format!("{name}.bias"))?)
    } else {
        None
    };
    Ok(Conv2d::new(
        weight,
        bias,
        Conv2dConfig {
            padding: k / 2,
            stride,
            ..Default::default()
        },
    ))
}

/// conv → ReLU → conv → ReLU → conv, plus the input, then ReLU; optionally `x + pool(x)` first.
struct Block {
    convs: [Conv3x3; 3],
    pool: Option<(Conv2d, GroupNorm, Conv2d)>,
}

impl Block {
    fn load(w: &Weights, name: &str) -> Result<Self> {
        let w = w.sub(name);
        let pool = if w.contains("pool.0.weight") {
            let gn_w = w.get("pool.1.weight")?;
            let channels = gn_w.dims1()?;
            let gn = GroupNorm::new(gn_w, w.get("pool.1.bias")?, channels, 4, 1e-5)?;
            Some((
                conv(&w, "pool.0", 1, false)?,
                gn,
                conv(&w, "pool.3", 1, false)?,
            ))
        } else {
            None
        };
        Ok(Block {
            convs: [
                conv3(&w, "conv.0", 1, true)?,
                conv3(&w, "conv.2", 1, true)?,
                conv3(&w, "conv.4", 1, true)?,
            ],
            pool,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = match &self.pool {
            Some((a, gn, b)) => {
                let p = b.forward(&gn.forward(&a.forward(x)?)?.relu()?)?;
                (x + p)?
            }
            None => x.clone(),
        };
        let h = self.convs[0].forward(&x)?.relu()?;
        let h = self.convs[1].forward(&h)?.relu()?;
        let h = self.convs[2].forward(&h)?;
        Ok((h + x)?.relu()?)
    }
}

enum Layer {
    Conv(Conv3x3),
    ConvRelu(Conv3x3),
    Block(Box<Block>),
    Upsample,
}

fn run(layers: &[Layer], x: &Tensor) -> Result<Tensor> {
    let mut x = x.clone();
    for layer in layers {
        x = match layer {
            Layer::Conv(c) => c.forward(&x)?,
            Layer::ConvRelu(c) => c.forward(&x)?.relu()?,
            Layer::Block(b) => b.forward(&x)?,
            Layer::Upsample => {
                let (_, _, h, w) = x.dims4()?;
                x.upsample_nearest2d(h * 2, w * 2)?
            }
        };
    }
    Ok(x)
}

pub struct TinyEncoder {
    layers: Vec<Layer>,
    pub latent_channels: usize,
}

impl TinyEncoder {
    /// `w` is rooted at the encoder's `nn.Sequential` (original indices).
    pub fn load(w: &Weights) -> Result<Self> {
        let mut layers = vec![Layer::Conv(conv3(w, "0", 1, true)?)];
        let mut i = 1;
        for stage in 0..4 {
            if stage > 0 {
                layers.push(Layer::Conv(conv3(w, &i.to_string(), 2, false)?));
                i += 1;
            }
            for _ in 0..if stage == 0 { 1 } else { 3 } {
                layers.push(Layer::Block(Box::new(Block::load(w, &i.to_string())?)));
                i += 1;
            }
        }
        let out = conv3(w, &i.to_string(), 1, true)?;
        let latent_channels = out.out_channels();
        layers.push(Layer::Conv(out));
        Ok(TinyEncoder {
            layers,
            latent_channels,
        })
    }

    /// image [B, 3, H, W] in [0, 1] → latent [B, C, H/8, W/8].
    pub fn forward(&self, image: &Tensor) -> Result<Tensor> {
        run(&self.layers, image)
    }
}

pub struct TinyDecoder {
    layers: Vec<Layer>,
    pub latent_channels: usize,
}

impl TinyDecoder {
    /// `w` is rooted at the decoder's `nn.Sequential`; `offset` is 0 for the original layout
    /// (index 0 = clamp) and -1 for diffusers' (no clamp layer).
    pub fn load(w: &Weights, offset: i64) -> Result<Self> {
        let name = |i: i64| (i + offset).to_string();
        let first = conv3(w, &name(1), 1, true)?;
        let latent_channels = first.in_channels();
        let mut layers = vec![Layer::ConvRelu(first)];
        let mut i = 3;
        for stage in 0..4 {
            for _ in 0..if stage == 3 { 1 } else { 3 } {
                layers.push(Layer::Block(Box::new(Block::load(w, &name(i))?)));
                i += 1;
            }
            if stage < 3 {
                layers.push(Layer::Upsample);
                layers.push(Layer::Conv(conv3(w, &name(i + 1), 1, false)?));
                i += 2;
            }
        }
        layers.push(Layer::Conv(conv3(w, &name(i), 1, true)?));
        Ok(TinyDecoder {
            layers,
            latent_channels,
        })
    }

    /// latent [B, C, h, w] → image [B, 3, 8h, 8w], unclamped (clamp to [0, 1] for display).
    pub fn forward(&self, latent: &Tensor) -> Result<Tensor> {
        let x = ((latent / 3.0)?.tanh()? * 3.0)?;
        run(&self.layers, &x)
    }
}

/// Encoder and/or decoder of one tiny autoencoder.
pub struct TinyAutoencoder {
    pub encoder: Option<TinyEncoder>,
    pub decoder: Option<TinyDecoder>,
    pub origin: String,
}

impl TinyAutoencoder {
    pub fn latent_channels(&self) -> usize {
        self.decoder
            .as_ref()
            .map(|d| d.latent_channels)
            .or(self.encoder.as_ref().map(|e| e.latent_channels))
            .unwrap_or(0)
    }

    /// From a file or folder:
    /// - a folder with `*_encoder.pth` / `*_decoder.pth` (or `.safetensors`) in the original layout,
    /// - a folder or file in diffusers `AutoencoderTiny` layout (`diffusion_pytorch_model.safetensors`),
    /// - a single `*_decoder.*` or `*_encoder.*` file.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let origin = path.display().to_string();
        let files = candidate_files(path)?;
        let mut encoder = None;
        let mut decoder = None;
        for f in &files {
            let w = load_weights(f, device)?;
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            if w.keys().any(|k| k.starts_with("decoder.layers.")) {
                decoder = Some(TinyDecoder::load(&w.sub("decoder.layers"), -1)?);
                if w.keys().any(|k| k.starts_with("encoder.layers.")) {
                    encoder = Some(TinyEncoder::load(&w.sub("encoder.layers"))?);
                }
            } else if name.contains("decoder") {
                decoder = Some(TinyDecoder::load(&w, 0)?);
            } else if name.contains("encoder") {
                encoder = Some(TinyEncoder::load(&w)?);
            }
        }
        if encoder.is_none() && decoder.is_none() {
            return Err(Error::Model(format!(
                "{origin}: no TAESD-family weights found; pass a folder with taesd_decoder.pth (and taesd_encoder.pth), \
                 or an AutoencoderTiny folder/file such as madebyollin/taesd's diffusion_pytorch_model.safetensors"
            )));
        }
        Ok(TinyAutoencoder {
            encoder,
            decoder,
            origin,
        })
    }

    pub fn decode(&self, latent: &Tensor) -> Result<Tensor> {
        self.decoder
            .as_ref()
            .ok_or_else(|| {
                Error::Model(format!(
                    "{}: no decoder weights loaded (add the *_decoder.pth file)",
                    self.origin
                ))
            })?
            .forward(latent)
    }

    pub fn encode(&self, image: &Tensor) -> Result<Tensor> {
        self.encoder
            .as_ref()
            .ok_or_else(|| {
                Error::Model(format!(
                    "{}: no encoder weights loaded (add the *_encoder.pth file)",
                    self.origin
                ))
            })?
            .forward(image)
    }
}

fn is_weight_file(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e == "pth" || e == "pt" || e == "safetensors")
}

fn candidate_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(Error::Model(format!(
            "{}: no such preview-decoder file or folder",
            path.display()
        )));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_weight_file(p))
        .collect();
    files.sort();
    // A diffusers folder may hold fp16 and fp32 copies of one model: read one.
    if let Some(p) = files.iter().find(|p| {
        p.file_name()
            .is_some_and(|n| n == "diffusion_pytorch_model.safetensors")
    }) {
        return Ok(vec![p.clone()]);
    }
    Ok(files)
}

fn load_weights(path: &Path, device: &Device) -> Result<Weights> {
    if path.extension().is_some_and(|e| e == "safetensors") {
        Weights::load_safetensors(&[path], device)
    } else {
        Weights::load_pth(path, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::shared_path;

    fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
        crate::linalg::max_abs_diff(a, b).unwrap()
    }

    /// The real TAEF2 weights (fp16, mid-block GN, 32 channels) against PyTorch's round trip.
    #[test]
    fn taef2_matches_the_pytorch_round_trip() {
        let dir = shared_path("models/taef2");
        let ae = TinyAutoencoder::load(&dir, &Device::Cpu).unwrap();
        assert_eq!(ae.latent_channels(), 32);
        let r = candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu)
            .unwrap();
        let latent = ae.encode(&r["image"]).unwrap();
        assert_eq!(latent.dims(), &[2, 32, 8, 8]);
        let e = max_abs(&latent, &r["latent"]);
        assert!(e < 2e-3, "encoder max abs diff {e}");
        let decoded = ae.decode(&r["latent"]).unwrap();
        let d = max_abs(&decoded, &r["decoded"]);
        assert!(d < 2e-3, "decoder max abs diff {d}");
        // The reference's own round-trip error, after clamping.
        let rt = (ae.decode(&latent).unwrap().clamp(0f32, 1f32).unwrap() - &r["image"])
            .unwrap()
            .abs()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        eprintln!("taef2: encoder max|Δ| {e:.2e}, decoder max|Δ| {d:.2e}, round-trip MAE {rt:.4}");
        assert!((rt - 0.027).abs() < 0.002, "round-trip MAE {rt}");
    }
}
