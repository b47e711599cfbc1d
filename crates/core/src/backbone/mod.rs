//! Vision backbones behind one trait. Every family (PyTorch `nn.TransformerEncoder` ViTs, CLIP,
//! DINOv2, SigLIP) is assembled from the same parts into a [`VisionTransformer`], which can stop
//! after any block and return the residual stream `[batch, tokens, d_model]` together with the
//! token geometry that maps each patch token to a box on the original image.

pub mod clip;
pub mod cpu_fast;
pub mod dinov2;
pub mod layers;
pub mod pos_interp;
pub mod preprocess;
pub mod sgemm;
pub mod siglip;
pub mod source;
pub mod tokenizer;
pub mod torch_vit;
pub mod weights;

use crate::error::{Error, Result};
use crate::fix::Opt;
use candle_core::{D, Device, Tensor};
use layers::{Block, LayerNorm, Linear, PatchEmbed};
use preprocess::Preprocessor;
use serde::{Deserialize, Serialize};

pub use pos_interp::PosInterpolation;
pub use source::{ModelSpec, load_backbone};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    TorchVit,
    Clip,
    Dinov2,
    Siglip,
}

/// Which tokens of the sequence an analysis keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSelection {
    All,
    Patch,
    Cls,
}

crate::str_choices!(TokenSelection: "all" => TokenSelection::All, "patch" => TokenSelection::Patch, "cls" => TokenSelection::Cls);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Cls,
    Register(usize),
    Patch { row: usize, col: usize },
}

/// Layout of the token sequence: `[CLS?] [registers…] [patches, row-major]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenGeometry {
    pub has_cls: bool,
    pub registers: usize,
    pub grid_h: usize,
    pub grid_w: usize,
    pub patch_size: usize,
}

impl TokenGeometry {
    pub fn prefix_tokens(&self) -> usize {
        self.has_cls as usize + self.registers
    }

    pub fn n_tokens(&self) -> usize {
        self.prefix_tokens() + self.grid_h * self.grid_w
    }

    pub fn kind(&self, token: usize) -> TokenKind {
        let p = self.prefix_tokens();
        if self.has_cls && token == 0 {
            TokenKind::Cls
        } else if token < p {
            TokenKind::Register(token - self.has_cls as usize)
        } else {
            let i = token - p;
            TokenKind::Patch {
                row: i / self.grid_w,
                col: i % self.grid_w,
            }
        }
    }

    /// The model-input pixel box [x0, y0, x1, y1] a patch token covers (None for CLS/registers).
    pub fn patch_box(&self, token: usize) -> Option<[f32; 4]> {
        match self.kind(token) {
            TokenKind::Patch { row, col } => {
                let s = self.patch_size as f32;
                Some([
                    col as f32 * s,
                    row as f32 * s,
                    (col + 1) as f32 * s,
                    (row + 1) as f32 * s,
                ])
            }
            _ => None,
        }
    }

    /// Token indices kept by a selection, in sequence order.
    pub fn select(&self, sel: TokenSelection) -> Result<Vec<usize>> {
        Ok(match sel {
            TokenSelection::All => (0..self.n_tokens()).collect(),
            TokenSelection::Patch => (self.prefix_tokens()..self.n_tokens()).collect(),
            TokenSelection::Cls => {
                if !self.has_cls {
                    return Err(crate::fixable!(
                        ["this model has no CLS token"],
                        [
                            "use ",
                            Opt::Tokens.with("patch"),
                            " or ",
                            Opt::Tokens.with("all")
                        ]
                    ));
                }
                vec![0]
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackboneInfo {
    pub name: String,
    pub family: Family,
    pub n_layers: usize,
    pub d_model: usize,
    pub geometry: TokenGeometry,
    /// Class names of the classifier head, in logit order (None without a head).
    pub class_names: Option<Vec<String>>,
    /// How the position table was resized to the input grid, when it was (DINOv2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos_interpolation: Option<PosInterpolation>,
}

/// A vision model that can be tapped at any layer. Layer `l` means the residual stream after
/// block `l` (0-based), i.e. Hugging Face `hidden_states[l + 1]` and SAELens `blocks.l.hook_resid_post`.
pub trait Backbone: Send + Sync {
    fn info(&self) -> &BackboneInfo;
    fn preprocessor(&self) -> &Preprocessor;
    /// The device the weights live on: inputs are made there and the forward runs there.
    fn device(&self) -> &Device;
    /// pixels [B, 3, H, W] → residual stream after block `layer` [B, T, D]; later blocks are not run.
    fn forward_to(&self, pixels: &Tensor, layer: usize) -> Result<Tensor>;
    /// The embeddings (index 0) and the output of every block, like HF's `hidden_states`.
    fn hidden_states(&self, pixels: &Tensor) -> Result<Vec<Tensor>>;
    /// Runs blocks after `layer` on a (possibly edited) residual stream and returns the head's outputs.
    fn finish_from(&self, hidden: &Tensor, layer: usize) -> Result<HeadOutputs>;

    /// Floating-point operations of one image's forward pass through block `layer` (GEMMs and
    /// attention; norms and activations are negligible), for benchmarks.
    fn forward_flops(&self, layer: usize) -> f64;

    fn outputs(&self, pixels: &Tensor) -> Result<HeadOutputs> {
        let n = self.info().n_layers;
        self.finish_from(&self.forward_to(pixels, n - 1)?, n - 1)
    }
}

/// What a model computes after its last block.
#[derive(Debug)]
pub struct HeadOutputs {
    /// The last hidden state after the final norm (HF `last_hidden_state`) [B, T, D].
    pub last: Tensor,
    /// Pooled representation (HF `pooler_output`) [B, D].
    pub pooled: Tensor,
    /// Classifier logits [B, classes], when the model has a classifier.
    pub logits: Option<Tensor>,
    /// Joint-space embedding (CLIP `image_embeds`), when the model has a projection.
    pub embeds: Option<Tensor>,
}

/// Patch embedding plus CLS/register tokens and learned positions: pixels → the token sequence.
#[derive(Clone)]
pub struct Embeddings {
    pub patch: PatchEmbed,
    /// [D] learned class token.
    pub cls: Option<Tensor>,
    /// [R, D] register tokens (DINOv2 with registers), inserted after CLS without position.
    pub registers: Option<Tensor>,
    /// [1 (if cls) + gh·gw, D] learned absolute positions.
    pub pos: Tensor,
    /// The patch grid the position table was trained for.
    pub pos_grid: (usize, usize),
    /// CLIP's `pre_layrnorm`.
    pub pre_norm: Option<LayerNorm>,
    /// How the position table is resized to other grids (DINOv2); None = other grids are refused.
    pub interpolate: Option<PosInterpolation>,
}

impl Embeddings {
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = pixels.dims4()?;
        let grid = self.patch.grid(h, w);
        let x = self.patch.forward(pixels)?; // [B, N, D]
        let b = x.dim(0)?;
        let d = x.dim(2)?;
        let n_cls = self.cls.is_some() as usize;
        let patch_pos = self.pos.narrow(0, n_cls, self.pos.dim(0)? - n_cls)?;
        let patch_pos = if grid == self.pos_grid {
            patch_pos
        } else if let Some(how) = self.interpolate {
            // Registers models are resized with antialias by both references.
            let antialias = self.registers.is_some();
            pos_interp::interpolate_pos(&patch_pos, self.pos_grid, grid, how, antialias)?
        } else {
            return Err(Error::Invalid(format!(
                "input of {h}×{w} pixels gives a {}×{} patch grid but this model's position embeddings are for {}×{}; \
                 use the model's preprocessing (it resizes to the right size)",
                grid.0, grid.1, self.pos_grid.0, self.pos_grid.1
            )));
        };
        let mut x = x.broadcast_add(&patch_pos)?;
        if let Some(cls) = &self.cls {
            let cls = (cls + self.pos.get(0)?)?
                .reshape((1, 1, d))?
                .broadcast_as((b, 1, d))?;
            let mut parts = vec![cls];
            if let Some(r) = &self.registers {
                parts.push(r.unsqueeze(0)?.broadcast_as((b, r.dim(0)?, d))?);
            }
            parts.push(x);
            x = Tensor::cat(&parts, 1)?;
        }
        match &self.pre_norm {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
    }
}

/// How the final representation is pooled and what heads follow it.
#[derive(Clone)]
pub enum Pool {
    /// The CLS token.
    Cls,
    /// SigLIP's multi-head attention pooling.
    Map(Box<siglip::MapHead>),
}

#[derive(Clone)]
pub struct Classifier {
    /// Norm applied to the pooled token before the linear layer (e.g. `mlp_head.0`).
    pub norm: Option<LayerNorm>,
    pub linear: Linear,
}

/// The one implementation of [`Backbone`] all families share.
pub struct VisionTransformer {
    pub info: BackboneInfo,
    pub preprocessor: Preprocessor,
    pub embeddings: Embeddings,
    pub blocks: Vec<Block>,
    pub final_norm: Option<LayerNorm>,
    /// Norm applied to the pooled vector only (CLIP's `post_layernorm`).
    pub pooled_norm: Option<LayerNorm>,
    pub pool: Pool,
    pub classifier: Option<Classifier>,
    pub projection: Option<Linear>,
    /// Run blocks through [`cpu_fast`] when tensors are f32 on the CPU (on by default).
    pub use_fast_path: bool,
    fast_blocks: std::sync::OnceLock<Vec<cpu_fast::FastBlock>>,
}

impl VisionTransformer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        info: BackboneInfo,
        preprocessor: Preprocessor,
        embeddings: Embeddings,
        blocks: Vec<Block>,
        final_norm: Option<LayerNorm>,
        pooled_norm: Option<LayerNorm>,
        pool: Pool,
        classifier: Option<Classifier>,
        projection: Option<Linear>,
    ) -> Self {
        VisionTransformer {
            info,
            preprocessor,
            embeddings,
            blocks,
            final_norm,
            pooled_norm,
            pool,
            classifier,
            projection,
            use_fast_path: true,
            fast_blocks: std::sync::OnceLock::new(),
        }
    }

    /// Runs blocks `range` on x [B, T, D]; with `collect`, also returns each block's output.
    fn run_blocks(
        &self,
        x: Tensor,
        range: std::ops::Range<usize>,
        collect: bool,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut outs = Vec::new();
        if self.use_fast_path && x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
            let fast = match self.fast_blocks.get() {
                Some(f) => f,
                None => {
                    let built = self
                        .blocks
                        .iter()
                        .map(cpu_fast::FastBlock::from_block)
                        .collect::<Result<Vec<_>>>()?;
                    self.fast_blocks.get_or_init(|| built)
                }
            };
            let (b, t, d) = x.dims3()?;
            let mut buf: Vec<f32> = x.flatten_all()?.to_vec1()?;
            let mut scratch = cpu_fast::Scratch::default();
            if collect {
                for fb in &fast[range] {
                    fb.forward(&mut buf, b, t, false, &mut scratch);
                    outs.push(Tensor::from_slice(&buf, (b, t, d), x.device())?);
                }
            } else {
                // Sub-batches keep each block's intermediates in cache instead of streaming
                // hundreds of MB through memory per layer.
                let per_chunk = (cpu_fast::CHUNK_ROWS / t).max(1);
                for chunk in buf.chunks_mut(per_chunk * t * d) {
                    let n = chunk.len() / (t * d);
                    for fb in &fast[range.clone()] {
                        fb.forward(chunk, n, t, false, &mut scratch);
                    }
                }
            }
            return Ok((Tensor::from_vec(buf, (b, t, d), x.device())?, outs));
        }
        let mut x = x;
        for block in &self.blocks[range] {
            x = block.forward(&x, None)?;
            if collect {
                outs.push(x.clone());
            }
        }
        Ok((x, outs))
    }

    fn check_layer(&self, layer: usize) -> Result<()> {
        if layer >= self.blocks.len() {
            return Err(Error::Invalid(format!(
                "layer {layer} does not exist: {} has layers 0..={} (layer l = output of block l)",
                self.info.name,
                self.blocks.len() - 1
            )));
        }
        Ok(())
    }
}

impl Backbone for VisionTransformer {
    fn info(&self) -> &BackboneInfo {
        &self.info
    }

    fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    fn device(&self) -> &Device {
        self.embeddings.patch.device()
    }

    fn forward_to(&self, pixels: &Tensor, layer: usize) -> Result<Tensor> {
        self.check_layer(layer)?;
        let x = self.embeddings.forward(pixels)?;
        Ok(self.run_blocks(x, 0..layer + 1, false)?.0)
    }

    fn forward_flops(&self, layer: usize) -> f64 {
        let t = self.info.geometry.n_tokens() as f64;
        let d = self.info.d_model as f64;
        let patch = 2.0 * t * d * (3 * self.info.geometry.patch_size.pow(2)) as f64;
        let blocks: f64 = self.blocks[..(layer + 1).min(self.blocks.len())]
            .iter()
            .map(|b| {
                let (qkv, out, _) = b.attn.parts();
                let linear = qkv.out_dim() + out.out_dim() + 2 * b.mlp.fc1.out_dim();
                // Linear layers: 2·t·d·out each (fc2 has fc1's size); attention: QKᵀ and AV.
                2.0 * t * d * linear as f64 + 4.0 * t * t * d
            })
            .sum();
        patch + blocks
    }

    fn hidden_states(&self, pixels: &Tensor) -> Result<Vec<Tensor>> {
        let x = self.embeddings.forward(pixels)?;
        let mut out = vec![x.clone()];
        out.extend(self.run_blocks(x, 0..self.blocks.len(), true)?.1);
        Ok(out)
    }

    fn finish_from(&self, hidden: &Tensor, layer: usize) -> Result<HeadOutputs> {
        self.check_layer(layer)?;
        let x = self
            .run_blocks(hidden.clone(), layer + 1..self.blocks.len(), false)?
            .0;
        let last = match &self.final_norm {
            Some(n) => n.forward(&x)?,
            None => x,
        };
        let mut pooled = match &self.pool {
            Pool::Cls => last.narrow(1, 0, 1)?.squeeze(1)?,
            Pool::Map(head) => head.forward(&last)?,
        };
        if let Some(n) = &self.pooled_norm {
            pooled = n.forward(&pooled)?;
        }
        let logits = match &self.classifier {
            Some(c) => {
                let z = match &c.norm {
                    Some(n) => n.forward(&pooled)?,
                    None => pooled.clone(),
                };
                Some(c.linear.forward(&z)?)
            }
            None => None,
        };
        let embeds = match &self.projection {
            Some(p) => Some(p.forward(&pooled)?),
            None => None,
        };
        Ok(HeadOutputs {
            last,
            pooled,
            logits,
            embeds,
        })
    }
}

/// Index of the largest value along the last dimension.
pub fn argmax_last(t: &Tensor) -> Result<Vec<u32>> {
    Ok(t.argmax(D::Minus1)?.to_vec1()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_maps_tokens_to_boxes() {
        let g = TokenGeometry {
            has_cls: true,
            registers: 4,
            grid_h: 2,
            grid_w: 3,
            patch_size: 14,
        };
        assert_eq!(g.n_tokens(), 11);
        assert_eq!(g.kind(0), TokenKind::Cls);
        assert_eq!(g.kind(3), TokenKind::Register(2));
        assert_eq!(g.kind(5), TokenKind::Patch { row: 0, col: 0 });
        assert_eq!(g.kind(10), TokenKind::Patch { row: 1, col: 2 });
        assert_eq!(g.patch_box(10), Some([28.0, 14.0, 42.0, 28.0]));
        assert_eq!(g.patch_box(2), None);
        assert_eq!(
            g.select(TokenSelection::Patch).unwrap(),
            (5..11).collect::<Vec<_>>()
        );
        let no_cls = TokenGeometry {
            has_cls: false,
            ..g
        };
        assert!(no_cls.select(TokenSelection::Cls).is_err());
    }
}
