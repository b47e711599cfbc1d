//! Training checkpoints: the trainer's weights, Adam moments and counters, so an interrupted
//! `train` resumes where it stopped. `state-<step>.safetensors` is written first, then
//! `checkpoint.json` (atomically) names it; that rename is the commit point, so a crash at any
//! moment leaves the previous checkpoint intact. Older state files are removed afterwards.

use super::train::{STATE_TENSORS, Trainer};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const CHECKPOINT_DIR: &str = "checkpoint";
const INDEX: &str = "checkpoint.json";

/// What a run was asked to do; a checkpoint only resumes a run with identical settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub arch: super::train::TrainArch,
    pub d_sae: usize,
    pub k: usize,
    pub tokens: u64,
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
    pub normalize: bool,
    /// Absent in checkpoints written before `--cls-weight` existed: those ran with 1.
    #[serde(default = "one")]
    pub cls_weight: u32,
    /// The images trained on, when not the whole store (`--images`): the folder and how many
    /// of its images the store holds. Absent: every stored image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointIndex {
    pub format: String,
    pub settings: RunSettings,
    pub config: super::train::TrainConfig,
    pub step: u64,
    pub tokens_seen: u64,
    pub threshold: f32,
    pub input_scale: Option<f32>,
    pub seconds: f64,
    pub state_file: String,
}

pub fn checkpoint_dir(sae_dir: &Path) -> PathBuf {
    sae_dir.join(CHECKPOINT_DIR)
}

/// The checkpoint in `sae_dir`, if a run left one.
pub fn read_index(sae_dir: &Path) -> Result<Option<CheckpointIndex>> {
    let p = checkpoint_dir(sae_dir).join(INDEX);
    if !p.exists() {
        return Ok(None);
    }
    fsutil::read_json(&p).map(Some)
}

pub fn save(
    sae_dir: &Path,
    trainer: &Trainer,
    settings: &RunSettings,
    input_scale: Option<f32>,
    seconds: f64,
) -> Result<()> {
    use safetensors::tensor::{Dtype, TensorView};
    let dir = checkpoint_dir(sae_dir);
    std::fs::create_dir_all(&dir).at(&dir)?;
    let bytes: Vec<(&str, Vec<u8>, usize)> = trainer
        .state()
        .into_iter()
        .map(|(name, v)| {
            let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (name, b, v.len())
        })
        .collect();
    let fired: Vec<u8> = trainer
        .last_fired
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let bad =
        |e: safetensors::SafeTensorError| Error::Invalid(format!("cannot encode checkpoint: {e}"));
    let mut views = Vec::new();
    for (name, b, n) in &bytes {
        views.push((
            name.to_string(),
            TensorView::new(Dtype::F32, vec![*n], b).map_err(bad)?,
        ));
    }
    views.push((
        "last_fired".to_string(),
        TensorView::new(Dtype::U64, vec![trainer.last_fired.len()], &fired).map_err(bad)?,
    ));
    let data = safetensors::serialize(views, None).map_err(bad)?;
    let state_file = format!("state-{:08}.safetensors", trainer.step);
    fsutil::write_atomic(&dir.join(&state_file), &data)?;
    let index = CheckpointIndex {
        format: "saescope-train-checkpoint-v1".into(),
        settings: settings.clone(),
        config: trainer.cfg.clone(),
        step: trainer.step,
        tokens_seen: trainer.tokens_seen,
        threshold: trainer.threshold,
        input_scale,
        seconds,
        state_file: state_file.clone(),
    };
    fsutil::write_json_atomic(&dir.join(INDEX), &index)?;
    // Only now is the old state unreferenced.
    for e in std::fs::read_dir(&dir).at(&dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("state-") && name != state_file {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

/// Restores `trainer` (built from `index.config`) from the checkpoint's state file.
pub fn restore(sae_dir: &Path, index: &CheckpointIndex, trainer: &mut Trainer) -> Result<()> {
    let path = checkpoint_dir(sae_dir).join(&index.state_file);
    let bytes = std::fs::read(&path).at(&path)?;
    let corrupt = |why: String| {
        crate::fixable!(
            [&path, format!(": unreadable training checkpoint ({why})")],
            ["pass ", crate::fix::Opt::Restart, " to train from scratch"]
        )
    };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let fired = st
        .tensor("last_fired")
        .map_err(|e| corrupt(e.to_string()))?
        .data();
    let fired = crate::pod::from_le_bytes::<u64>(fired)
        .ok_or_else(|| corrupt("last_fired is not a whole number of u64 values".into()))?;
    let get = |name: &str, len: usize| -> Result<Vec<f32>> {
        debug_assert!(STATE_TENSORS.contains(&name));
        let t = st.tensor(name).map_err(|e| corrupt(e.to_string()))?;
        let v: Vec<f32> = crate::pod::from_le_bytes(t.data())
            .ok_or_else(|| corrupt(format!("{name} is not a whole number of f32 values")))?;
        if v.len() != len {
            return Err(corrupt(format!(
                "{name} has {} values, expected {len}",
                v.len()
            )));
        }
        Ok(v)
    };
    trainer.restore(get, index.step, index.tokens_seen, fired, index.threshold)
}

pub fn remove(sae_dir: &Path) -> Result<()> {
    let dir = checkpoint_dir(sae_dir);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).at(&dir)?;
    }
    Ok(())
}
