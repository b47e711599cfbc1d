//! Transformer building blocks shared by every backbone family: linear layers that run as one GEMM
//! over all tokens, fused QKV attention, MLPs, pre-/post-norm blocks and the patch embedding.

use super::weights::Weights;
use crate::error::Result;
use candle_core::Tensor;

/// `y = x·Wᵀ + b` over the last dimension, computed as one 2-D GEMM for any leading shape.
#[derive(Clone)]
pub struct Linear {
    /// [in, out], stored transposed once so the forward GEMM reads it row-major.
    w_t: Tensor,
    b: Option<Tensor>,
}

impl Linear {
    /// Where the weights live (and so where this layer runs).
    pub fn device(&self) -> &candle_core::Device {
        self.w_t.device()
    }

    /// From PyTorch layout: `weight` [out, in], `bias` [out].
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Ok(Linear {
            w_t: weight.t()?.contiguous()?,
            b: bias,
        })
    }

    pub fn load(w: &Weights, name: &str, d_in: usize, d_out: usize) -> Result<Self> {
        let weight = w.get_shape(&format!("{name}.weight"), &[d_out, d_in])?;
        let bias = match w.get_opt(&format!("{name}.bias")) {
            Some(_) => Some(w.get_shape(&format!("{name}.bias"), &[d_out])?),
            None => None,
        };
        Self::new(weight, bias)
    }

    /// [in, out] weight and optional bias, for the CPU fast path.
    pub fn weight_t(&self) -> &Tensor {
        &self.w_t
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.b.as_ref()
    }

    pub fn out_dim(&self) -> usize {
        self.w_t.dim(1).unwrap_or(0)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let d_in = *dims.last().unwrap_or(&0);
        let x2 = x.contiguous()?.reshape(((), d_in))?;
        let mut y = x2.matmul(&self.w_t)?;
        if let Some(b) = &self.b {
            y = y.broadcast_add(b)?;
        }
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = self.out_dim();
        }
        Ok(y.reshape(out_dims)?)
    }
}

#[derive(Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub fn load(w: &Weights, name: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(LayerNorm {
            weight: w.get_shape(&format!("{name}.weight"), &[dim])?,
            bias: w.get_shape(&format!("{name}.bias"), &[dim])?,
            eps: eps as f32,
        })
    }

    pub fn parts(&self) -> (&Tensor, &Tensor, f32) {
        (&self.weight, &self.bias, self.eps)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(
            &x.contiguous()?,
            &self.weight,
            &self.bias,
            self.eps,
        )?)
    }
}

/// Hidden activations as named in Hugging Face configs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    /// Exact GELU (erf), HF `gelu`.
    Gelu,
    /// Tanh approximation, HF `gelu_pytorch_tanh` / `gelu_new`.
    GeluTanh,
    /// `x·σ(1.702x)`, HF `quick_gelu` (OpenAI CLIP).
    QuickGelu,
}

impl Activation {
    pub fn from_hf(name: &str) -> Result<Self> {
        Ok(match name {
            "relu" => Activation::Relu,
            "gelu" => Activation::Gelu,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Activation::GeluTanh,
            "quick_gelu" => Activation::QuickGelu,
            other => {
                return Err(crate::Error::Model(format!(
                    "hidden_act `{other}` is not supported; supported: relu, gelu, gelu_pytorch_tanh, quick_gelu"
                )));
            }
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Relu => x.relu()?,
            Activation::Gelu => x.gelu_erf()?,
            Activation::GeluTanh => x.gelu()?,
            Activation::QuickGelu => (x * candle_nn::ops::sigmoid(&(x * 1.702)?)?)?,
        })
    }
}

/// Multi-head self-attention with Q, K and V fused into one projection.
#[derive(Clone)]
pub struct SelfAttention {
    qkv: Linear,
    out: Linear,
    heads: usize,
}

impl SelfAttention {
    /// From separate q/k/v projections (HF layout).
    pub fn from_separate(
        q: (Tensor, Tensor),
        k: (Tensor, Tensor),
        v: (Tensor, Tensor),
        out: Linear,
        heads: usize,
    ) -> Result<Self> {
        let weight = Tensor::cat(&[&q.0, &k.0, &v.0], 0)?;
        let bias = Tensor::cat(&[&q.1, &k.1, &v.1], 0)?;
        Ok(SelfAttention {
            qkv: Linear::new(weight, Some(bias))?,
            out,
            heads,
        })
    }

    /// From PyTorch `nn.MultiheadAttention`'s packed `in_proj_weight` [3D, D].
    pub fn from_packed(in_proj: Linear, out: Linear, heads: usize) -> Self {
        SelfAttention {
            qkv: in_proj,
            out,
            heads,
        }
    }

    /// (fused qkv projection, output projection, heads), for the CPU fast path.
    pub fn parts(&self) -> (&Linear, &Linear, usize) {
        (&self.qkv, &self.out, self.heads)
    }

    /// Loads `{prefix}.{q,k,v}_name` projections with weight and bias.
    pub fn load_separate(w: &Weights, names: [&str; 4], dim: usize, heads: usize) -> Result<Self> {
        let get = |n: &str| -> Result<(Tensor, Tensor)> {
            Ok((
                w.get_shape(&format!("{n}.weight"), &[dim, dim])?,
                w.get_shape(&format!("{n}.bias"), &[dim])?,
            ))
        };
        let out = Linear::load(w, names[3], dim, dim)?;
        Self::from_separate(get(names[0])?, get(names[1])?, get(names[2])?, out, heads)
    }

    /// x: [batch, tokens, dim]; mask (optional): additive, broadcast to [batch, heads, tokens, tokens].
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let hd = d / self.heads;
        // [3, batch, heads, tokens, head_dim]
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, t, 3, self.heads, hd))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let scale = 1.0 / (hd as f64).sqrt();
        let q = (qkv.get(0)? * scale)?;
        let k = qkv.get(1)?;
        let v = qkv.get(2)?;
        let mut att = q.matmul(&k.t()?)?; // [batch, heads, tokens, tokens]
        if let Some(m) = mask {
            att = att.broadcast_add(m)?;
        }
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
        self.out.forward(&y)
    }
}

/// Attention where a few query tokens attend over the full sequence (SigLIP's pooling head).
/// `proj` holds the q, k and v projections (rows of a packed `in_proj_weight`).
pub fn cross_attention(
    q_in: &Tensor,
    kv_in: &Tensor,
    proj: &[Linear; 3],
    out: &Linear,
    heads: usize,
) -> Result<Tensor> {
    let (b, tq, d) = q_in.dims3()?;
    let tk = kv_in.dim(1)?;
    let hd = d / heads;
    let lin = |x: &Tensor, i: usize| proj[i].forward(x);
    let split = |x: Tensor, t: usize| -> Result<Tensor> {
        Ok(x.reshape((b, t, heads, hd))?
            .transpose(1, 2)?
            .contiguous()?)
    };
    let q = (split(lin(q_in, 0)?, tq)? * (1.0 / (hd as f64).sqrt()))?;
    let k = split(lin(kv_in, 1)?, tk)?;
    let v = split(lin(kv_in, 2)?, tk)?;
    let att = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
    let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, tq, d))?;
    out.forward(&y)
}

#[derive(Clone)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    pub act: Activation,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.act.forward(&self.fc1.forward(x)?)?)
    }
}

/// One transformer encoder layer. `norm_first` selects pre-norm (CLIP, DINOv2, SigLIP, timm) or
/// post-norm (PyTorch `nn.TransformerEncoderLayer` default). DINOv2's LayerScale is optional.
#[derive(Clone)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: SelfAttention,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
    pub layer_scale: Option<(Tensor, Tensor)>,
    pub norm_first: bool,
}

impl Block {
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        if self.norm_first {
            let mut h = self.attn.forward(&self.norm1.forward(x)?, mask)?;
            if let Some((g1, _)) = &self.layer_scale {
                h = h.broadcast_mul(g1)?;
            }
            let x = (x + h)?;
            let mut h = self.mlp.forward(&self.norm2.forward(&x)?)?;
            if let Some((_, g2)) = &self.layer_scale {
                h = h.broadcast_mul(g2)?;
            }
            Ok((x + h)?)
        } else {
            let x = self.norm1.forward(&(x + self.attn.forward(x, mask)?)?)?;
            let h = self.mlp.forward(&x)?;
            self.norm2.forward(&(x + h)?)
        }
    }
}

/// Non-overlapping patch embedding (a Conv2d with stride = kernel), done as one GEMM:
/// pixels [B, C, H, W] → tokens [B, gh·gw, D], row-major over the patch grid.
#[derive(Clone)]
pub struct PatchEmbed {
    proj: Linear,
    pub patch: usize,
    channels: usize,
}

impl PatchEmbed {
    pub fn device(&self) -> &candle_core::Device {
        self.proj.device()
    }

    /// `weight` [D, C, p, p] as PyTorch's Conv2d stores it.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (d, c, p, p2) = weight.dims4()?;
        if p != p2 {
            return Err(crate::Error::Model(format!(
                "patch embedding kernel {p}×{p2} is not square"
            )));
        }
        Ok(PatchEmbed {
            proj: Linear::new(weight.reshape((d, c * p * p))?, bias)?,
            patch: p,
            channels: c,
        })
    }

    pub fn grid(&self, h: usize, w: usize) -> (usize, usize) {
        (h / self.patch, w / self.patch)
    }

    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = pixels.dims4()?;
        if c != self.channels {
            return Err(crate::Error::Invalid(format!(
                "the model expects {} colour channels, got {c}",
                self.channels
            )));
        }
        let p = self.patch;
        let (gh, gw) = self.grid(h, w);
        let x = pixels.narrow(2, 0, gh * p)?.narrow(3, 0, gw * p)?;
        // [B, C, gh, p, gw, p] → [B, gh, gw, C, p, p]
        let x = x
            .reshape((b, c, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?;
        let x = x.reshape((b, gh * gw, c * p * p))?;
        self.proj.forward(&x)
    }
}
