//! Tiny random-weight text-to-image pipelines in diffusers layout, for tests and benchmarks:
//! every component has the real architecture and file layout, only small (a 2-layer 32-wide
//! CLIP text encoder, a 2-block UNet, a 4-block VAE with the real 8× scale, a TAESD preview
//! decoder). Weights come from a seeded generator, so a seed always writes the same files.

use crate::error::{Error, Result};
use crate::fsutil;
use crate::rng::Rng;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::stable_diffusion::{unet_2d, vae};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const TEXT_WIDTH: usize = 32;
const TEXT_LAYERS: usize = 2;
const VOCAB: usize = 49408;

/// Seeded values for one tensor: norm gains near 1, biases near 0, weights ~ N(0, 1/fan_in).
fn values(rng: &mut Rng, name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let is_norm_gain = shape.len() == 1 && name.ends_with("weight");
    let (mean, std) = if is_norm_gain {
        (1.0, 0.02)
    } else if shape.len() == 1 {
        (0.0, 0.02)
    } else {
        let fan_in: usize = shape[1..].iter().product();
        (0.0, 1.0 / (fan_in as f32).sqrt())
    };
    (0..n).map(|_| mean + std * rng.normal()).collect()
}

fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    candle_core::safetensors::save(tensors, path)?;
    Ok(())
}

/// Builds `make(vb)` on a VarMap (which records every tensor the model asks for, by its
/// diffusers name), refills each tensor from the seeded generator, and saves them.
fn save_model<T>(
    path: &Path,
    seed: u64,
    make: impl FnOnce(VarBuilder) -> candle_core::Result<T>,
) -> Result<()> {
    let map = VarMap::new();
    make(VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu))?;
    let vars = map
        .data()
        .lock()
        .map_err(|_| Error::Invalid("poisoned".into()))?;
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut out = HashMap::new();
    for name in names {
        let v = &vars[name];
        let mut rng = Rng::new(seed ^ fxhash(name));
        let shape = v.dims().to_vec();
        let t = Tensor::from_vec(values(&mut rng, name, &shape), shape, &Device::Cpu)?;
        out.insert(name.clone(), t);
    }
    save_tensors(path, &out)
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn tensor(rng: &mut Rng, name: &str, shape: &[usize]) -> Result<Tensor> {
    Ok(Tensor::from_vec(
        values(rng, name, shape),
        shape,
        &Device::Cpu,
    )?)
}

pub fn unet_config() -> unet_2d::UNet2DConditionModelConfig {
    let bc = |out_channels, use_cross_attn, attention_head_dim| unet_2d::BlockConfig {
        out_channels,
        use_cross_attn,
        attention_head_dim,
    };
    unet_2d::UNet2DConditionModelConfig {
        center_input_sample: false,
        flip_sin_to_cos: true,
        freq_shift: 0.0,
        blocks: vec![bc(32, Some(1), 2), bc(64, None, 2)],
        layers_per_block: 1,
        downsample_padding: 1,
        mid_block_scale_factor: 1.0,
        norm_num_groups: 32,
        norm_eps: 1e-5,
        cross_attention_dim: TEXT_WIDTH,
        sliced_attention_size: None,
        use_linear_projection: false,
    }
}

fn vae_config() -> vae::AutoEncoderKLConfig {
    vae::AutoEncoderKLConfig {
        block_out_channels: vec![32, 32, 32, 32],
        layers_per_block: 1,
        latent_channels: 4,
        norm_num_groups: 32,
        use_quant_conv: true,
        use_post_quant_conv: true,
    }
}

/// Which tiny pipeline to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TinyKind {
    /// SD 1.x/2.x style: leading timesteps, guidance.
    Sd,
    /// SD-Turbo style: trailing timesteps; 1 step, no guidance.
    SdTurbo,
    /// SDXL(-Turbo) style: two text encoders whose penultimate states are concatenated, and
    /// SDXL's `addition_embed_type` in the UNet config (which candle's UNet does not apply).
    SdxlTurbo,
}

/// The real CLIP `tokenizer.json` of the shared material: the one a tiny pipeline gets when
/// none is given, and the one attribute discovery uses for a CLIP folder that has no tokenizer
/// of its own (the shared tiny random CLIP is config and weights only).
pub fn shared_clip_tokenizer() -> PathBuf {
    crate::shared::shared_path("data/clip/tokenizer.json")
}

/// Writes a tiny SD-style pipeline into `dir`. `tokenizer_json` is a CLIP `tokenizer.json`
/// (the tokenizer is real; only the weights are random). `turbo` picks SD-Turbo over SD style.
pub fn write_tiny_pipeline(
    dir: &Path,
    tokenizer_json: &Path,
    seed: u64,
    turbo: bool,
) -> Result<()> {
    let kind = if turbo {
        TinyKind::SdTurbo
    } else {
        TinyKind::Sd
    };
    write_tiny(dir, tokenizer_json, seed, kind)
}

pub fn write_tiny(dir: &Path, tokenizer_json: &Path, seed: u64, kind: TinyKind) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let (name, class) = match kind {
        TinyKind::Sd => ("saescope/tiny-random-sd", "StableDiffusionPipeline"),
        TinyKind::SdTurbo => ("saescope/tiny-random-sd-turbo", "StableDiffusionPipeline"),
        TinyKind::SdxlTurbo => (
            "saescope/tiny-random-sdxl-turbo",
            "StableDiffusionXLPipeline",
        ),
    };
    let xl = kind == TinyKind::SdxlTurbo;
    let write = |rel: &str, v: serde_json::Value| -> Result<()> {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        fsutil::write_json_atomic(&p, &v)
    };
    let mut index = json!({
        "_class_name": class,
        "_diffusers_version": "0.30.0",
        "_name_or_path": name,
        "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]
    });
    if xl {
        index["text_encoder_2"] = json!(["transformers", "CLIPTextModelWithProjection"]);
        index["tokenizer_2"] = json!(["transformers", "CLIPTokenizer"]);
    }
    write("model_index.json", index)?;
    write(
        "scheduler/scheduler_config.json",
        json!({
            "_class_name": "EulerAncestralDiscreteScheduler",
            "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "num_train_timesteps": 1000, "prediction_type": "epsilon",
            "timestep_spacing": if kind == TinyKind::Sd { "leading" } else { "trailing" }, "steps_offset": 1
        }),
    )?;
    write_text_encoder(
        dir,
        "text_encoder",
        "tokenizer",
        tokenizer_json,
        seed ^ 0x7e47,
    )?;
    let mut cross = TEXT_WIDTH;
    if xl {
        write_text_encoder(
            dir,
            "text_encoder_2",
            "tokenizer_2",
            tokenizer_json,
            seed ^ 0x7e48,
        )?;
        cross += TEXT_WIDTH;
    }
    // UNet
    let u = unet_2d::UNet2DConditionModelConfig {
        cross_attention_dim: cross,
        ..unet_config()
    };
    let mut unet = json!({
        "_class_name": "UNet2DConditionModel", "sample_size": 8, "in_channels": 4, "out_channels": 4,
        "block_out_channels": [32, 64], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "layers_per_block": 1,
        "attention_head_dim": 2, "cross_attention_dim": cross, "norm_num_groups": 32,
        "norm_eps": 1e-5, "flip_sin_to_cos": true, "freq_shift": 0, "use_linear_projection": xl,
        "downsample_padding": 1, "mid_block_scale_factor": 1, "center_input_sample": false
    });
    if xl {
        unet["addition_embed_type"] = json!("text_time");
        unet["transformer_layers_per_block"] = json!([1, 1]);
    }
    let u = unet_2d::UNet2DConditionModelConfig {
        use_linear_projection: xl,
        ..u
    };
    write("unet/config.json", unet)?;
    save_model(
        &dir.join("unet/diffusion_pytorch_model.safetensors"),
        seed ^ 1,
        |vb| unet_2d::UNet2DConditionModel::new(vb, 4, 4, false, u),
    )?;
    // VAE
    write(
        "vae/config.json",
        json!({
            "_class_name": "AutoencoderKL", "block_out_channels": [32, 32, 32, 32], "layers_per_block": 1,
            "latent_channels": 4, "norm_num_groups": 32,
            "scaling_factor": if xl { 0.13025 } else { 0.18215 }, "sample_size": 64,
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
        }),
    )?;
    save_model(
        &dir.join("vae/diffusion_pytorch_model.safetensors"),
        seed ^ 2,
        |vb| vae::AutoEncoderKL::new(vb, 3, 3, vae_config()),
    )?;
    write_tiny_taesd(&dir.join("taesd"), seed ^ 3)
}

/// A 2-layer, 32-wide CLIPTextModel (written tensor by tensor in transformers' naming) and the
/// real CLIP tokenizer beside it.
fn write_text_encoder(
    dir: &Path,
    sub: &str,
    tok_sub: &str,
    tokenizer_json: &Path,
    seed: u64,
) -> Result<()> {
    let enc = dir.join(sub);
    std::fs::create_dir_all(&enc).map_err(|e| Error::io(&enc, e))?;
    fsutil::write_json_atomic(
        &enc.join("config.json"),
        &json!({
            "architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
            "hidden_size": TEXT_WIDTH, "intermediate_size": 64, "num_attention_heads": 4,
            "num_hidden_layers": TEXT_LAYERS, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
            "vocab_size": VOCAB, "max_position_embeddings": 77, "projection_dim": TEXT_WIDTH,
            "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1
        }),
    )?;
    let mut rng = Rng::new(seed);
    let d = TEXT_WIDTH;
    let mut t = HashMap::new();
    let mut add = |name: String, shape: &[usize]| -> Result<()> {
        let v = tensor(&mut rng, &name, shape)?;
        t.insert(name, v);
        Ok(())
    };
    add(
        "text_model.embeddings.token_embedding.weight".into(),
        &[VOCAB, d],
    )?;
    add(
        "text_model.embeddings.position_embedding.weight".into(),
        &[77, d],
    )?;
    for l in 0..TEXT_LAYERS {
        let p = format!("text_model.encoder.layers.{l}");
        for n in ["layer_norm1", "layer_norm2"] {
            add(format!("{p}.{n}.weight"), &[d])?;
            add(format!("{p}.{n}.bias"), &[d])?;
        }
        for n in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            add(format!("{p}.self_attn.{n}.weight"), &[d, d])?;
            add(format!("{p}.self_attn.{n}.bias"), &[d])?;
        }
        add(format!("{p}.mlp.fc1.weight"), &[64, d])?;
        add(format!("{p}.mlp.fc1.bias"), &[64])?;
        add(format!("{p}.mlp.fc2.weight"), &[d, 64])?;
        add(format!("{p}.mlp.fc2.bias"), &[d])?;
    }
    add("text_model.final_layer_norm.weight".into(), &[d])?;
    add("text_model.final_layer_norm.bias".into(), &[d])?;
    save_tensors(&enc.join("model.safetensors"), &t)?;
    let tok_dir = dir.join(tok_sub);
    std::fs::create_dir_all(&tok_dir).map_err(|e| Error::io(&tok_dir, e))?;
    std::fs::copy(tokenizer_json, tok_dir.join("tokenizer.json"))
        .map_err(|e| Error::io(tokenizer_json, e))?;
    fsutil::write_json_atomic(
        &tok_dir.join("tokenizer_config.json"),
        &json!({"pad_token": if tok_sub == "tokenizer_2" { "!" } else { "<|endoftext|>" }, "model_max_length": 77}),
    )
}

/// Adds a 3×3 conv's weights (and bias) by name, with in/out channels.
type AddConv<'a> =
    dyn FnMut(&mut HashMap<String, Tensor>, String, usize, usize, bool) -> Result<()> + 'a;

/// A TAESD (4 latent channels) decoder and encoder in the original `.pth` layout, as safetensors.
pub fn write_tiny_taesd(dir: &Path, seed: u64) -> Result<()> {
    let mut rng = Rng::new(seed);
    let mut conv = |t: &mut HashMap<String, Tensor>,
                    name: String,
                    cin: usize,
                    cout: usize,
                    bias: bool|
     -> Result<()> {
        let w = format!("{name}.weight");
        t.insert(w.clone(), tensor(&mut rng, &w, &[cout, cin, 3, 3])?);
        if bias {
            let b = format!("{name}.bias");
            t.insert(b.clone(), tensor(&mut rng, &b, &[cout])?);
        }
        Ok(())
    };
    let block = |t: &mut HashMap<String, Tensor>, i: usize, conv: &mut AddConv| -> Result<()> {
        for k in [0, 2, 4] {
            conv(t, format!("{i}.conv.{k}"), 64, 64, true)?;
        }
        Ok(())
    };
    let mut enc = HashMap::new();
    conv(&mut enc, "0".into(), 3, 64, true)?;
    for i in 1..14 {
        if [2, 6, 10].contains(&i) {
            conv(&mut enc, i.to_string(), 64, 64, false)?;
        } else {
            block(&mut enc, i, &mut conv)?;
        }
    }
    conv(&mut enc, "14".into(), 64, 4, true)?;
    let mut dec = HashMap::new();
    conv(&mut dec, "1".into(), 4, 64, true)?;
    for i in 3..19 {
        match i {
            6 | 11 | 16 => {}
            7 | 12 | 17 => conv(&mut dec, i.to_string(), 64, 64, false)?,
            _ => block(&mut dec, i, &mut conv)?,
        }
    }
    conv(&mut dec, "19".into(), 64, 3, true)?;
    save_tensors(&dir.join("taesd_encoder.safetensors"), &enc)?;
    save_tensors(&dir.join("taesd_decoder.safetensors"), &dec)
}
