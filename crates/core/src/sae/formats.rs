//! SAE files. Native format = SAELens (`cfg.json` + `sae_weights.safetensors`), read and
//! written, so files move both ways with SAELens / Neuronpedia. Also read: saev `sae.pt`
//! (a JSON header line, then a torch state_dict), dictionary_learning (`ae.pt` + `config.json`),
//! EleutherAI sparsify (`cfg.json` + `sae.safetensors`) and the OpenAI layout
//! (`encoder.weight`, `pre_bias`, `latent_bias`, `decoder.weight`). Pickles are read for
//! tensors only.

use super::{Engine, Sae, SaeActivation, SaeMeta};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use candle_core::{DType, Device, Tensor};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

pub const SAELENS_CFG: &str = "cfg.json";
pub const SAELENS_WEIGHTS: &str = "sae_weights.safetensors";

type Tensors = HashMap<String, Tensor>;

fn vec1(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)
}

fn get<'a>(t: &'a Tensors, key: &str, file: &Path) -> Result<&'a Tensor> {
    t.get(key).ok_or_else(|| {
        let mut keys: Vec<&String> = t.keys().collect();
        keys.sort();
        Error::Invalid(format!(
            "{}: missing tensor `{key}` (found: {keys:?}); is this the SAE layout it claims to be?",
            file.display()
        ))
    })
}

/// [rows, cols] tensor → row-major values, checking the shape.
fn matrix(t: &Tensor, rows: usize, cols: usize, key: &str, file: &Path) -> Result<Vec<f32>> {
    if !t.dtype().is_float() {
        return Err(Error::Invalid(format!(
            "{}: `{key}` has dtype {:?}: SAE weights must be floating point (f32, f16, bf16 or \
             f64); was the file written by an SAE library?",
            file.display(),
            t.dtype()
        )));
    }
    if t.dims() != [rows, cols] {
        return Err(Error::Invalid(format!(
            "{}: `{key}` has shape {:?}, expected [{rows}, {cols}]",
            file.display(),
            t.dims()
        )));
    }
    vec1(t)
}

fn transpose(t: &Tensor) -> Result<Tensor> {
    Ok(t.t()?.contiguous()?)
}

/// Loads an SAE from a folder or file in any supported layout.
pub fn load_sae(path: &Path) -> Result<Sae> {
    if path.is_dir() {
        if path.join(SAELENS_WEIGHTS).is_file() {
            return load_saelens(path);
        }
        if path.join("sae.safetensors").is_file() {
            return load_sparsify(path);
        }
        if path.join("ae.pt").is_file() {
            return load_state_dict_file(
                &path.join("ae.pt"),
                read_json_opt(&path.join("config.json"))?,
            );
        }
        // A folder that holds its SAE one level down: `steer train-sae --out DIR` writes DIR/sae.
        if path.join("sae").join(SAELENS_WEIGHTS).is_file() {
            return load_saelens(&path.join("sae"));
        }
        return Err(Error::Invalid(format!(
            "{}: no SAE found (looked for {SAELENS_WEIGHTS}, sae.safetensors, ae.pt, and \
             sae/{SAELENS_WEIGHTS})",
            path.display()
        )));
    }
    if !path.is_file() {
        return Err(Error::Invalid(format!(
            "{}: no such SAE file or folder",
            path.display()
        )));
    }
    if let Some(folder) = saelens_folder_of(path) {
        return load_saelens(&folder);
    }
    let head = std::fs::read(path)
        .at(path)?
        .into_iter()
        .take(1)
        .collect::<Vec<_>>();
    if head == b"{" {
        return load_saev(path);
    }
    let cfg = path
        .parent()
        .map(|p| p.join("config.json"))
        .filter(|p| p.is_file())
        .map(|p| fsutil::read_json(&p))
        .transpose()?;
    load_state_dict_file(path, cfg)
}

/// The SAELens folder a weights file belongs to (`DIR/sae_weights.safetensors` with
/// `DIR/cfg.json` beside it): people pick the file, the format is the folder.
pub fn saelens_folder_of(file: &Path) -> Option<std::path::PathBuf> {
    let dir = file.parent()?;
    (file.file_name()? == SAELENS_WEIGHTS && dir.join(SAELENS_CFG).is_file()).then(|| dir.into())
}

fn read_json_opt(p: &Path) -> Result<Option<Value>> {
    if p.is_file() {
        Ok(Some(fsutil::read_json(p)?))
    } else {
        Ok(None)
    }
}

fn read_tensors(path: &Path) -> Result<Tensors> {
    let bad = |e: candle_core::Error| {
        Error::Invalid(format!(
            "{}: cannot read tensors ({e}); the file is truncated or not an SAE",
            path.display()
        ))
    };
    if path.extension().is_some_and(|e| e == "safetensors") {
        candle_core::safetensors::load(path, &Device::Cpu).map_err(bad)
    } else {
        let list = candle_core::pickle::read_all(path).map_err(bad)?;
        Ok(list
            .into_iter()
            .map(|(k, t)| (k.strip_prefix("module.").unwrap_or(&k).to_string(), t))
            .collect())
    }
}

fn cfg_usize(cfg: &Value, keys: &[&str]) -> Option<usize> {
    keys.iter()
        .find_map(|k| {
            cfg.pointer(k)
                .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
        })
        .map(|v| v as usize)
}

// ---- SAELens (native) ----

pub fn load_saelens(dir: &Path) -> Result<Sae> {
    let cfg: Value = fsutil::read_json(&dir.join(SAELENS_CFG))?;
    let file = dir.join(SAELENS_WEIGHTS);
    let t = read_tensors(&file)?;
    let w_enc = get(&t, "W_enc", &file)?;
    let (d_in, d_sae) = w_enc.dims2().map_err(|_| {
        Error::Invalid(format!(
            "{}: W_enc must be 2-D [d_in, d_sae]",
            file.display()
        ))
    })?;
    if let (Some(ci), Some(cs)) = (cfg_usize(&cfg, &["/d_in"]), cfg_usize(&cfg, &["/d_sae"]))
        && (ci, cs) != (d_in, d_sae)
    {
        return Err(Error::Invalid(format!(
            "{}: cfg says d_in={ci}, d_sae={cs} but W_enc is [{d_in}, {d_sae}]",
            dir.display()
        )));
    }
    let arch = saelens_architecture(&cfg, dir)?;
    let k = cfg_usize(&cfg, &["/k", "/activation_fn_kwargs/k"]);
    let threshold = t.get("threshold").map(vec1).transpose()?;
    let activation = match arch {
        "standard" | "relu" => SaeActivation::Relu,
        "topk" => SaeActivation::TopK {
            k: k.ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: topk SAE without `k` in cfg.json",
                    dir.display()
                ))
            })?,
        },
        // saescope writes BatchTopK and Matryoshka SAEs as SAELens does for inference: a
        // jumprelu whose thresholds are all the learned batch threshold, k in the metadata.
        "jumprelu" => match (
            cfg.pointer("/metadata/saescope_architecture")
                .and_then(|v| v.as_str()),
            cfg_usize(&cfg, &["/metadata/saescope_k"]),
            threshold.as_deref(),
        ) {
            (Some("batchtopk" | "matryoshka"), Some(k), Some([t, rest @ ..]))
                if rest.iter().all(|r| r == t) =>
            {
                SaeActivation::BatchTopK {
                    k: k as f32,
                    threshold: *t,
                }
            }
            _ => SaeActivation::JumpRelu,
        },
        "batchtopk" => {
            let th = threshold
                .as_ref()
                .and_then(|t| t.first().copied())
                .unwrap_or(0.0);
            SaeActivation::BatchTopK {
                k: k.unwrap_or(0) as f32,
                threshold: th,
            }
        }
        other => {
            return Err(Error::Invalid(format!(
                "{}: SAE architecture `{other}` is not supported (standard, topk, batchtopk, jumprelu)",
                dir.display()
            )));
        }
    };
    match cfg
        .get("normalize_activations")
        .and_then(|v| v.as_str())
        .unwrap_or("none")
    {
        "none" => {}
        other => {
            return Err(Error::Invalid(format!(
                "{}: normalize_activations = `{other}` needs the training-time scale, which the file does not hold; \
                 fold the scale into the weights in SAELens (fold_activation_norm_scaling_factor) and save again",
                dir.display()
            )));
        }
    }
    let sae = Sae {
        d_in,
        d_sae,
        w_enc: vec1(w_enc)?,
        b_enc: vec1(get(&t, "b_enc", &file)?)?,
        w_dec: matrix(get(&t, "W_dec", &file)?, d_sae, d_in, "W_dec", &file)?,
        b_dec: vec1(get(&t, "b_dec", &file)?)?,
        threshold: if activation == SaeActivation::JumpRelu {
            threshold
        } else {
            None
        },
        activation,
        apply_b_dec_to_input: cfg
            .get("apply_b_dec_to_input")
            .and_then(|v| v.as_bool())
            .unwrap_or(true),
        input_scale: None,
        engine: Engine::default(),
        meta: SaeMeta {
            model_name: cfg
                .pointer("/metadata/model_name")
                .or_else(|| cfg.get("model_name"))
                .and_then(|v| v.as_str())
                .map(String::from),
            hook_name: cfg
                .pointer("/metadata/hook_name")
                .or_else(|| cfg.get("hook_name"))
                .and_then(|v| v.as_str())
                .map(String::from),
            source_format: Some("saelens".into()),
            pos_interpolation: cfg
                .pointer("/metadata/saescope_pos_interpolation")
                .and_then(|v| v.as_str())
                .map(String::from),
            cls_weight: cfg
                .pointer("/metadata/saescope_cls_weight")
                .and_then(|v| v.as_u64())
                .and_then(|v| u32::try_from(v).ok()),
            training_images: cfg
                .pointer("/metadata/saescope_training_images")
                .and_then(|v| v.as_str())
                .map(String::from),
            training_architecture: cfg
                .pointer("/metadata/saescope_architecture")
                .and_then(|v| v.as_str())
                .map(String::from),
            prefixes: cfg
                .pointer("/metadata/saescope_matryoshka_prefixes")
                .and_then(|v| serde_json::from_value(v.clone()).ok()),
        },
    };
    sae.validate()?;
    Ok(sae)
}

/// The architecture a SAELens cfg.json names. A cfg that is not an object, or whose
/// architecture is missing or not text, is refused by name (D7: such files loaded a TopK SAE as
/// a ReLU one, 8,009 codes instead of 512, and were then saved back as `standard`).
fn saelens_architecture<'a>(cfg: &'a Value, dir: &Path) -> Result<&'a str> {
    let file = dir.join(SAELENS_CFG);
    let Some(obj) = cfg.as_object() else {
        return Err(Error::Invalid(format!(
            "{}: must be a JSON object with the SAE's settings (architecture, d_in, d_sae, k, …)",
            file.display()
        )));
    };
    for field in ["architecture", "activation_fn_str"] {
        match obj.get(field) {
            Some(Value::String(a)) => return Ok(a),
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "{}: `{field}` must be text (standard, topk, batchtopk or jumprelu), not {other}",
                    file.display()
                )));
            }
            None => {}
        }
    }
    Err(Error::Invalid(format!(
        "{}: no `architecture`; add the one the SAE was trained with (standard, topk, batchtopk \
         or jumprelu) so that its codes are computed as they were in training",
        file.display()
    )))
}

/// The block a SAELens hook name taps (`blocks.5.hook_resid_post` → 5), when it names one.
pub fn hook_block(hook_name: &str) -> Option<usize> {
    hook_name
        .strip_prefix("blocks.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Writes the SAELens layout (input scale folded into the weights), atomically.
pub fn save_saelens(sae: &Sae, dir: &Path) -> Result<()> {
    sae.validate()?;
    let s = sae.with_scale_folded();
    // SAELens's `k` is an int (its TopK calls `torch.topk(x, k)`, which refuses 8.0).
    let (architecture, k) = match s.activation {
        SaeActivation::Relu => ("standard", None),
        SaeActivation::TopK { k } => ("topk", Some(json!(k))),
        // D21: SAELens has no inference `batchtopk`; it saves BatchTopK as jumprelu with its
        // threshold, and so do we (k goes in the metadata).
        SaeActivation::BatchTopK { .. } | SaeActivation::JumpRelu => ("jumprelu", None),
    };
    let batch_k = match s.activation {
        SaeActivation::BatchTopK { k, .. } if k.fract() == 0.0 && k >= 0.0 => Some(json!(k as u64)),
        SaeActivation::BatchTopK { k, .. } => Some(json!(k)),
        _ => None,
    };
    let trained_as = match s.activation {
        SaeActivation::BatchTopK { .. } => Some(
            s.meta
                .training_architecture
                .clone()
                .unwrap_or_else(|| "batchtopk".into()),
        ),
        _ => s.meta.training_architecture.clone(),
    };
    let mut cfg = json!({
        "architecture": architecture,
        "d_in": s.d_in,
        "d_sae": s.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": s.apply_b_dec_to_input,
        "normalize_activations": "none",
        "metadata": {
            "model_name": s.meta.model_name,
            "hook_name": s.meta.hook_name,
            "saescope_version": env!("CARGO_PKG_VERSION"),
            "saescope_pos_interpolation": s.meta.pos_interpolation,
            "saescope_cls_weight": s.meta.cls_weight,
            "saescope_training_images": s.meta.training_images,
            "saescope_architecture": trained_as,
            "saescope_k": batch_k,
            "saescope_matryoshka_prefixes": s.meta.prefixes,
            // Training-time input normalisation, already folded into the weights above.
            "saescope_input_scale_folded": sae.input_scale,
        },
    });
    if let Some(k) = k {
        cfg["k"] = k;
    }
    let dev = Device::Cpu;
    let mut tensors: Vec<(String, Tensor)> = vec![
        (
            "W_enc".into(),
            Tensor::from_slice(&s.w_enc, (s.d_in, s.d_sae), &dev)?,
        ),
        ("b_enc".into(), Tensor::from_slice(&s.b_enc, s.d_sae, &dev)?),
        (
            "W_dec".into(),
            Tensor::from_slice(&s.w_dec, (s.d_sae, s.d_in), &dev)?,
        ),
        ("b_dec".into(), Tensor::from_slice(&s.b_dec, s.d_in, &dev)?),
    ];
    match s.activation {
        SaeActivation::JumpRelu => tensors.push((
            "threshold".into(),
            Tensor::from_slice(s.threshold.as_deref().unwrap_or(&[]), s.d_sae, &dev)?,
        )),
        SaeActivation::BatchTopK { threshold, .. } => tensors.push((
            "threshold".into(),
            Tensor::from_vec(vec![threshold; s.d_sae], s.d_sae, &dev)?,
        )),
        _ => {}
    }
    std::fs::create_dir_all(dir).at(dir)?;
    let tmp = dir.join(format!(".{SAELENS_WEIGHTS}.tmp-{}", std::process::id()));
    candle_core::safetensors::save(&tensors.into_iter().collect::<HashMap<_, _>>(), &tmp)?;
    let bytes = std::fs::read(&tmp).at(&tmp)?;
    std::fs::remove_file(&tmp).at(&tmp)?;
    fsutil::write_atomic(&dir.join(SAELENS_WEIGHTS), &bytes)?;
    fsutil::write_json_atomic(&dir.join(SAELENS_CFG), &cfg)
}

/// Removes an SAE written by [`save_saelens`]: `cfg.json` first, so a crash in between never
/// leaves a config over missing weights.
pub fn remove_saelens(dir: &Path) -> Result<()> {
    for f in [SAELENS_CFG, SAELENS_WEIGHTS] {
        let p = dir.join(f);
        if p.exists() {
            std::fs::remove_file(&p).at(&p)?;
        }
    }
    Ok(())
}

// ---- saev ----

/// saev's `sae.pt`: one JSON line (the config), then a torch state_dict. Its encoder does not
/// subtract `b_dec` from the input.
pub fn load_saev(path: &Path) -> Result<Sae> {
    let bytes = std::fs::read(path).at(path)?;
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| Error::Invalid(format!("{}: no JSON header line", path.display())))?;
    // A JSON file that is not a saev checkpoint (a config, a dataset list) is not an SAE.
    let header: Value = serde_json::from_slice(&bytes[..nl]).map_err(|_| {
        Error::Invalid(format!(
            "{}: not an SAE file (a JSON file, but not the one JSON-header format that holds \
             SAE weights, saev's). Pick an SAE's weights file or its folder",
            path.display()
        ))
    })?;
    let tmp = tempfile_beside(path)?;
    crate::fsutil::write_atomic(&tmp, &bytes[nl + 1..])?;
    let t = read_tensors(&tmp);
    let _ = std::fs::remove_file(&tmp);
    let t = t?;
    let w_enc = get(&t, "W_enc", path)?;
    let (d_in, d_sae) = w_enc.dims2()?;
    let k = cfg_usize(
        &header,
        &["/k", "/cfg/k", "/activation/top_k", "/cfg/activation/top_k"],
    );
    let sae = Sae {
        d_in,
        d_sae,
        w_enc: vec1(w_enc)?,
        b_enc: vec1(get(&t, "b_enc", path)?)?,
        w_dec: matrix(get(&t, "W_dec", path)?, d_sae, d_in, "W_dec", path)?,
        b_dec: vec1(get(&t, "b_dec", path)?)?,
        threshold: None,
        activation: k
            .map(|k| SaeActivation::TopK { k })
            .unwrap_or(SaeActivation::Relu),
        apply_b_dec_to_input: false,
        input_scale: None,
        engine: Engine::default(),
        meta: SaeMeta {
            source_format: Some("saev".into()),
            ..Default::default()
        },
    };
    sae.validate()?;
    Ok(sae)
}

fn tempfile_beside(path: &Path) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(dir.join(format!("saescope-{}-{name}.pt", std::process::id())))
}

// ---- sparsify / dictionary_learning / OpenAI ----

pub fn load_sparsify(dir: &Path) -> Result<Sae> {
    let cfg: Value = fsutil::read_json(&dir.join("cfg.json"))?;
    let file = dir.join("sae.safetensors");
    let t = read_tensors(&file)?;
    let enc = get(&t, "encoder.weight", &file)?; // [d_sae, d_in]
    let (d_sae, d_in) = enc.dims2()?;
    let k = cfg_usize(&cfg, &["/k"]).ok_or_else(|| {
        Error::Invalid(format!("{}: sparsify cfg.json has no `k`", dir.display()))
    })?;
    let sae = Sae {
        d_in,
        d_sae,
        w_enc: vec1(&transpose(enc)?)?,
        b_enc: vec1(get(&t, "encoder.bias", &file)?)?,
        w_dec: matrix(get(&t, "W_dec", &file)?, d_sae, d_in, "W_dec", &file)?,
        b_dec: vec1(get(&t, "b_dec", &file)?)?,
        threshold: None,
        activation: SaeActivation::TopK { k },
        apply_b_dec_to_input: true,
        input_scale: None,
        engine: Engine::default(),
        meta: SaeMeta {
            source_format: Some("sparsify".into()),
            ..Default::default()
        },
    };
    sae.validate()?;
    Ok(sae)
}

/// A torch state_dict (or safetensors) in the dictionary_learning or OpenAI layout.
fn load_state_dict_file(path: &Path, cfg: Option<Value>) -> Result<Sae> {
    let t = read_tensors(path)?;
    let cfg = cfg.unwrap_or(Value::Null);
    if t.contains_key("pre_bias") && t.contains_key("latent_bias") {
        return load_openai(&t, &cfg, path);
    }
    if t.contains_key("encoder.weight") && t.contains_key("decoder.weight") {
        return load_dictionary_learning(&t, &cfg, path);
    }
    if t.contains_key("W_enc") && t.contains_key("W_dec") {
        return Err(Error::Invalid(format!(
            "{}: SAELens weights without their cfg.json (it holds the architecture and k): \
             put cfg.json beside the file, or pick the folder that has both",
            path.display()
        )));
    }
    let mut keys: Vec<&String> = t.keys().collect();
    keys.sort();
    // A model checkpoint has hundreds of tensors: a few names say enough.
    let shown: Vec<&String> = keys.iter().take(8).copied().collect();
    let more = match keys.len() {
        n if n > shown.len() => format!(" and {} more", n - shown.len()),
        _ => String::new(),
    };
    Err(Error::Invalid(format!(
        "{}: unknown SAE layout (tensors {shown:?}{more}). Supported: SAELens (W_enc, b_enc, W_dec, b_dec), saev, \
         dictionary_learning (encoder.weight, decoder.weight, b_dec), sparsify, OpenAI (pre_bias, latent_bias)",
        path.display()
    )))
}

fn scalar(t: &Tensor) -> Result<f32> {
    Ok(vec1(t)?.first().copied().unwrap_or(0.0))
}

/// dictionary_learning: `encoder.weight [dict, act]`, `encoder.bias`, `decoder.weight [act, dict]`,
/// `b_dec` (or `bias`); `k` and `threshold` buffers select TopK / BatchTopK / JumpReLU.
fn load_dictionary_learning(t: &Tensors, cfg: &Value, path: &Path) -> Result<Sae> {
    let enc = get(t, "encoder.weight", path)?;
    let (d_sae, d_in) = enc.dims2()?;
    let dec = get(t, "decoder.weight", path)?;
    if dec.dims() != [d_in, d_sae] {
        return Err(Error::Invalid(format!(
            "{}: decoder.weight is {:?}, expected [{d_in}, {d_sae}]",
            path.display(),
            dec.dims()
        )));
    }
    let b_dec = t
        .get("b_dec")
        .or_else(|| t.get("bias"))
        .ok_or_else(|| Error::Invalid(format!("{}: no b_dec (or bias) tensor", path.display())))?;
    let k = match t.get("k") {
        Some(k) => Some(scalar(k)? as usize),
        None => cfg_usize(cfg, &["/trainer/k", "/k"]),
    };
    let threshold = t.get("threshold");
    let (activation, thr) = match (k, threshold) {
        (Some(k), Some(th)) if th.elem_count() == 1 && scalar(th)? > 0.0 => (
            SaeActivation::BatchTopK {
                k: k as f32,
                threshold: scalar(th)?,
            },
            None,
        ),
        (Some(k), _) => (SaeActivation::TopK { k }, None),
        (None, Some(th)) if th.elem_count() == d_sae => (SaeActivation::JumpRelu, Some(vec1(th)?)),
        _ => (SaeActivation::Relu, None),
    };
    let b_enc = match t.get("encoder.bias") {
        Some(b) => vec1(b)?,
        None => vec![0.0; d_sae],
    };
    let sae = Sae {
        d_in,
        d_sae,
        w_enc: vec1(&transpose(enc)?)?,
        b_enc,
        w_dec: vec1(&transpose(dec)?)?,
        b_dec: vec1(b_dec)?,
        threshold: thr,
        activation,
        apply_b_dec_to_input: true,
        input_scale: None,
        engine: Engine::default(),
        meta: SaeMeta {
            source_format: Some("dictionary_learning".into()),
            ..Default::default()
        },
    };
    sae.validate()?;
    Ok(sae)
}

/// OpenAI sparse_autoencoder: f = act(encoder(x − pre_bias) + latent_bias), x̂ = decoder(f) + pre_bias.
fn load_openai(t: &Tensors, cfg: &Value, path: &Path) -> Result<Sae> {
    let enc = get(t, "encoder.weight", path)?;
    let (d_sae, d_in) = enc.dims2()?;
    let mut b_enc = vec1(get(t, "latent_bias", path)?)?;
    if let Some(eb) = t.get("encoder.bias") {
        b_enc.iter_mut().zip(vec1(eb)?).for_each(|(a, b)| *a += b);
    }
    let w_dec = match (t.get("decoder.weight"), t.get("W_dec")) {
        (Some(d), _) => vec1(&transpose(d)?)?,
        (None, Some(w)) => matrix(w, d_sae, d_in, "W_dec", path)?,
        _ => {
            return Err(Error::Invalid(format!(
                "{}: no decoder.weight or W_dec",
                path.display()
            )));
        }
    };
    let k = t
        .get("k")
        .map(|k| scalar(k).map(|v| v as usize))
        .transpose()?
        .or_else(|| cfg_usize(cfg, &["/k", "/activation_state_dict/k"]));
    let sae = Sae {
        d_in,
        d_sae,
        w_enc: vec1(&transpose(enc)?)?,
        b_enc,
        w_dec,
        b_dec: vec1(get(t, "pre_bias", path)?)?,
        threshold: None,
        activation: k
            .map(|k| SaeActivation::TopK { k })
            .unwrap_or(SaeActivation::Relu),
        apply_b_dec_to_input: true,
        input_scale: None,
        engine: Engine::default(),
        meta: SaeMeta {
            source_format: Some("openai".into()),
            ..Default::default()
        },
    };
    sae.validate()?;
    Ok(sae)
}
