//! Where a model comes from — a Hugging Face id (through the hf-hub cache), a local folder in
//! Hugging Face layout (`config.json` + `*.safetensors`), or a PyTorch `.pth` file — and which
//! family's loader builds it.

use super::torch_vit::TorchVitConfig;
use super::weights::Weights;
use super::{PosInterpolation, VisionTransformer, clip, dinov2, preprocess, siglip, torch_vit};
use crate::error::{Error, Result};
use crate::fix::{Advice, Opt, Part};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a user typed to name a model, plus the extra config a `.pth` ViT needs. Stored in
/// `workspace.json` so later commands reload the same model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Hugging Face id (`org/name`), folder or `.pth` path.
    pub source: String,
    /// Config for PyTorch ViTs (inline so the workspace is self-contained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_vit: Option<TorchVitConfig>,
    /// DINOv2 position interpolation chosen by the user (None = the family's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos_interpolation: Option<PosInterpolation>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Resolved {
    /// A folder with `config.json` and safetensors weights.
    Folder(PathBuf),
    /// A PyTorch checkpoint file (or a bare `.safetensors` state_dict of a torch ViT).
    TorchFile(PathBuf),
}

impl ModelSpec {
    /// Builds a spec from the CLI: `source` plus an optional JSON model config. A `.pth` without
    /// `--model-config` looks for `<name>.json` beside it.
    pub fn from_cli(source: &str, model_config: Option<&Path>) -> Result<Self> {
        let mut spec = ModelSpec {
            source: source.to_string(),
            torch_vit: None,
            pos_interpolation: None,
        };
        let config_path = match model_config {
            Some(p) => Some(p.to_path_buf()),
            None => {
                let side = Path::new(source).with_extension("json");
                (is_torch_file(Path::new(source)) && side.is_file()).then_some(side)
            }
        };
        if let Some(p) = config_path {
            let cfg: TorchVitConfig = crate::fsutil::read_json(&p).map_err(|e| {
                Error::Model(format!("{e}\nthe model config is JSON like {{\"heads\": 8, \"mean\": [0.49, 0.48, 0.45], \"std\": [0.2, 0.2, 0.2], \"class_names\": [...]}}"))
            })?;
            spec.torch_vit = Some(cfg);
        }
        Ok(spec)
    }

    pub fn resolve(&self) -> Result<Resolved> {
        let p = Path::new(&self.source);
        if p.is_dir() {
            return Ok(Resolved::Folder(p.to_path_buf()));
        }
        if p.is_file() {
            if is_torch_file(p) || p.extension().is_some_and(|e| e == "safetensors") {
                return Ok(Resolved::TorchFile(p.to_path_buf()));
            }
            return Err(Error::Model(format!(
                "{}: not a model file; pass a .pth/.pt checkpoint, a folder with config.json, or a Hugging Face id",
                p.display()
            )));
        }
        if looks_like_hub_id(&self.source) {
            return fetch_from_hub(&self.source).map(Resolved::Folder);
        }
        Err(Error::Model(format!(
            "model `{}` not found: no such file or folder, and it is not a Hugging Face id (org/name)",
            self.source
        )))
    }

    /// A short display name.
    pub fn display_name(&self) -> String {
        let p = Path::new(&self.source);
        if p.exists() {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.source.clone())
        } else {
            self.source.clone()
        }
    }
}

fn is_torch_file(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e == "pth" || e == "pt" || e == "bin" || e == "ckpt")
}

pub fn looks_like_hub_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| !p.is_empty() && !p.starts_with('.'))
        && !s.contains('\\')
}

/// Files of a Hugging Face vision model: (alternatives separated by `|`, required).
const HUB_FILES: [(&str, bool); 3] = [
    ("config.json", true),
    ("model.safetensors", true),
    ("preprocessor_config.json", false),
];

/// Returns the snapshot folder of a hub model, from the local cache or by downloading.
fn fetch_from_hub(id: &str) -> Result<PathBuf> {
    fetch_hub_files(id, &HUB_FILES, Opt::Model)
}

/// Fetches `files` of hub repository `id` (the first must sit at the repository's top level;
/// `a|b` tries `a` then `b`; optional files may be missing) and returns the snapshot folder.
/// Uses the local cache when it holds every required file; honours `HF_HUB_OFFLINE`. `flag`
/// names the CLI option a local folder can be passed with instead.
pub fn fetch_hub_files(id: &str, files: &[(&str, bool)], flag: Opt) -> Result<PathBuf> {
    let offline =
        std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    fetch_with_cache(id, &hf_hub::Cache::from_env(), offline, files, flag)
}

fn fetch_with_cache(
    id: &str,
    cache: &hf_hub::Cache,
    offline: bool,
    files: &[(&str, bool)],
    flag: Opt,
) -> Result<PathBuf> {
    let top = |p: PathBuf| p.parent().map(Path::to_path_buf).unwrap_or_default();
    let cached = cache.model(id.to_string());
    let in_cache = |alts: &str| alts.split('|').find_map(|f| cached.get(f));
    if files
        .iter()
        .all(|(f, required)| !required || in_cache(f).is_some())
        && let Some(first) = files.first().and_then(|(f, _)| in_cache(f))
    {
        return Ok(top(first));
    }
    let hint = crate::parts![
        format!(
            "download it where you have network (`huggingface-cli download {id}`) and pass the folder with "
        ),
        flag,
        " /path/to/folder",
    ];
    if offline {
        return Err(Error::Fixable(Advice {
            problem: crate::parts![
                format!("`{id}` is not in the Hugging Face cache ("),
                cache.path(),
                ") and HF_HUB_OFFLINE=1 forbids downloading",
            ],
            fix: hint,
        }));
    }
    download(id, files, hint)
}

/// Downloads `files` of hub repository `id` (see [`fetch_hub_files`]).
#[cfg(feature = "hub-download")]
fn download(id: &str, files: &[(&str, bool)], hint: Vec<Part>) -> Result<PathBuf> {
    let top = |p: PathBuf| p.parent().map(Path::to_path_buf).unwrap_or_default();
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(|e| {
            Error::Fixable(Advice {
                problem: crate::parts![format!("cannot start the Hugging Face client ({e})")],
                fix: hint.clone(),
            })
        })?;
    let repo = api.model(id.to_string());
    let mut folder = None;
    for (i, (alts, required)) in files.iter().enumerate() {
        let mut last_err = None;
        let got = alts.split('|').find_map(|f| match repo.get(f) {
            Ok(p) => Some(p),
            Err(e) => {
                last_err = Some(e.to_string());
                None
            }
        });
        match got {
            Some(p) if i == 0 => folder = Some(top(p)),
            Some(_) => {}
            None if !required => {}
            None => {
                return Err(Error::Fixable(Advice {
                    problem: crate::parts![format!(
                        "could not download {alts} of `{id}` from the Hugging Face Hub ({})",
                        last_err.unwrap_or_default()
                    )],
                    fix: hint,
                }));
            }
        }
    }
    folder.ok_or_else(|| Error::Model(format!("`{id}`: nothing downloaded")))
}

#[cfg(not(feature = "hub-download"))]
fn download(id: &str, _files: &[(&str, bool)], hint: Vec<Part>) -> Result<PathBuf> {
    Err(Error::Fixable(Advice {
        problem: crate::parts![format!(
            "`{id}` is not in the Hugging Face cache, and this build cannot download (the core \
             without its hub-download feature)"
        )],
        fix: hint,
    }))
}

/// The families a Hugging Face `config.json` can name.
fn hf_model_type(config: &serde_json::Value) -> String {
    config
        .get("model_type")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string()
}

fn folder_weights(dir: &Path, device: &Device) -> Result<Weights> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Weights::load_safetensors(&[single], device);
    }
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    shards.sort();
    if shards.is_empty() {
        return Err(Error::Model(format!(
            "{}: no .safetensors weights. saescope reads safetensors only from model folders; \
             convert pytorch_model.bin with `safetensors` or download the safetensors revision",
            dir.display()
        )));
    }
    Weights::load_safetensors(&shards, device)
}

fn processor_for(
    dir: &Path,
    defaults: preprocess::Preprocessor,
) -> Result<preprocess::Preprocessor> {
    let p = dir.join("preprocessor_config.json");
    if !p.is_file() {
        return Ok(defaults);
    }
    let json: serde_json::Value = crate::fsutil::read_json(&p)?;
    preprocess::from_hf_processor_config(&json, defaults)
}

/// Loads the vision backbone a spec names.
pub fn load_backbone(spec: &ModelSpec, device: &Device) -> Result<VisionTransformer> {
    let name = spec.display_name();
    match spec.resolve()? {
        Resolved::TorchFile(path) => {
            let cfg = spec.torch_vit.clone().ok_or_else(|| {
                crate::fixable!(
                    [
                        path.as_path(),
                        ": a PyTorch ViT needs a small config the weights cannot tell (at least the number of heads)"
                    ],
                    [
                        "pass ",
                        Opt::ModelConfig.with("FILE.json"),
                        " or put ",
                        path.with_extension("json"),
                        " beside the checkpoint, e.g. {\"heads\": 8}"
                    ]
                )
            })?;
            let w = if path.extension().is_some_and(|e| e == "safetensors") {
                Weights::load_safetensors(&[&path], device)?
            } else {
                Weights::load_pth(&path, device)?
            };
            torch_vit::load(&w, &cfg, &name)
        }
        Resolved::Folder(dir) => {
            let config: serde_json::Value = crate::fsutil::read_json(&dir.join("config.json"))?;
            let w = folder_weights(&dir, device)?;
            match hf_model_type(&config).as_str() {
                "clip" | "clip_vision_model" => {
                    let (vision, _) = clip::tower_configs(&config)?;
                    let vc = vision.ok_or_else(|| {
                        Error::Model(format!(
                            "{}: config.json has no vision_config",
                            dir.display()
                        ))
                    })?;
                    let pre = processor_for(&dir, clip::default_preprocessor(vc.image_size))?;
                    clip::load_vision(&w, &vc, pre, &name)
                }
                "dinov2" | "dinov2_with_registers" => {
                    let c: dinov2::Config = serde_json::from_value(config).map_err(|e| {
                        Error::Model(format!("{}: bad DINOv2 config: {e}", dir.display()))
                    })?;
                    let pre = processor_for(&dir, dinov2::default_preprocessor())?;
                    dinov2::load(&w, &c, pre, &name, spec.pos_interpolation)
                }
                "siglip" | "siglip_vision_model" => {
                    let vc = config.get("vision_config").cloned().unwrap_or(config);
                    let c: siglip::Config = serde_json::from_value(vc).map_err(|e| {
                        Error::Model(format!("{}: bad SigLIP config: {e}", dir.display()))
                    })?;
                    let pre = processor_for(&dir, siglip::default_preprocessor(c.image_size))?;
                    siglip::load(&w, &c, pre, &name)
                }
                other => Err(Error::Model(format!(
                    "{}: model_type `{other}` is not supported; saescope loads clip, dinov2, dinov2_with_registers, siglip \
                     (Hugging Face layout) and nn.TransformerEncoder ViTs from .pth files",
                    dir.display()
                ))),
            }
        }
    }
}

/// Loads the CLIP text tower of a CLIP model folder or id.
pub fn load_clip_text(spec: &ModelSpec, device: &Device) -> Result<clip::TextTransformer> {
    let Resolved::Folder(dir) = spec.resolve()? else {
        return Err(Error::Model(format!(
            "{}: the CLIP text tower is read from a Hugging Face CLIP folder or id",
            spec.source
        )));
    };
    let config: serde_json::Value = crate::fsutil::read_json(&dir.join("config.json"))?;
    let (_, text) = clip::tower_configs(&config)?;
    let tc = text.ok_or_else(|| {
        Error::Model(format!(
            "{}: not a CLIP model with a text tower (no text_config)",
            dir.display()
        ))
    })?;
    clip::TextTransformer::load(&folder_weights(&dir, device)?, &tc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_and_paths_are_told_apart() {
        assert!(looks_like_hub_id("openai/clip-vit-base-patch32"));
        assert!(!looks_like_hub_id("./model.pth"));
        assert!(!looks_like_hub_id("a/b/c"));
        let err = ModelSpec {
            source: "no/such/file.pth".into(),
            torch_vit: None,
            pos_interpolation: None,
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[test]
    fn offline_hub_miss_says_how_to_use_a_local_folder() {
        let empty = tempfile::tempdir().unwrap();
        let cache = hf_hub::Cache::new(empty.path().to_path_buf());
        let err = fetch_with_cache(
            "openai/clip-vit-base-patch32",
            &cache,
            true,
            &HUB_FILES,
            Opt::Model,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("HF_HUB_OFFLINE") && err.contains("--model /path/to/folder"),
            "{err}"
        );
    }
}
