//! Activation shards: `activations/shard-NNNNN.safetensors` holding `activations` [rows, d_model]
//! (f16 or f32) and `image_ids` [images] (u32, indices into `dataset.json`), plus a
//! `manifest.json` listing the complete shards. Row r of a shard belongs to image
//! `image_ids[r / tokens_per_image]`, token `token_indices[r % tokens_per_image]`.
//!
//! Shard k always covers dataset images [k·S, (k+1)·S); a shard is listed in the manifest only
//! after its file was written atomically, so a killed run resumes at the first missing shard.

use super::dataset::Skipped;
use super::workspace::StoreDType;
use crate::error::{Error, IoContext, Result};
use crate::fix::Command;
use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: usize,
    pub file: String,
    /// Dataset images [first_image, first_image + planned_images) were attempted.
    pub first_image: usize,
    pub planned_images: usize,
    /// Images actually stored (the others were skipped).
    pub images: usize,
    pub rows: usize,
    pub bytes: u64,
    pub skipped: Vec<Skipped>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub d_model: usize,
    pub dtype: StoreDType,
    /// Sequence positions stored for each image, in order.
    pub token_indices: Vec<usize>,
    pub images_per_shard: usize,
    /// Dataset size when extraction started.
    pub dataset_images: usize,
    pub shards: Vec<ShardInfo>,
}

impl Manifest {
    pub fn tokens_per_image(&self) -> usize {
        self.token_indices.len()
    }

    pub fn planned_shards(&self) -> usize {
        self.dataset_images.div_ceil(self.images_per_shard)
    }

    pub fn is_complete(&self) -> bool {
        self.shards.len() == self.planned_shards()
    }

    pub fn rows(&self) -> usize {
        self.shards.iter().map(|s| s.rows).sum()
    }

    pub fn skipped(&self) -> Vec<Skipped> {
        self.shards
            .iter()
            .flat_map(|s| s.skipped.iter().cloned())
            .collect()
    }
}

/// One shard in memory.
pub struct ShardData {
    /// [rows, d_model] row-major, as f32.
    pub activations: Vec<f32>,
    pub image_ids: Vec<u32>,
    pub d_model: usize,
}

impl ShardData {
    pub fn rows(&self) -> usize {
        self.activations.len() / self.d_model.max(1)
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.activations[r * self.d_model..(r + 1) * self.d_model]
    }
}

pub fn shard_file_name(index: usize) -> String {
    format!("shard-{index:05}.safetensors")
}

/// Serialises a shard to safetensors bytes.
pub fn encode_shard(
    activations: &[f32],
    d_model: usize,
    image_ids: &[u32],
    dtype: StoreDType,
) -> Result<Vec<u8>> {
    use safetensors::tensor::{Dtype, TensorView};
    let rows = activations.len() / d_model.max(1);
    if let Some(i) = activations
        .iter()
        .position(|v| !v.is_finite() || (dtype == StoreDType::F16 && v.abs() > 65504.0))
    {
        return Err(crate::fixable!(
            [format!(
                "activation {} (row {}) is {}, which the {dtype:?} store cannot hold",
                i,
                i / d_model.max(1),
                activations[i]
            )],
            [
                "extract with ",
                crate::fix::Opt::Dtype.with("f32"),
                " (or check the model: its activations should be finite)"
            ]
        ));
    }
    let act_bytes: Vec<u8> = match dtype {
        StoreDType::F32 => activations.iter().flat_map(|v| v.to_le_bytes()).collect(),
        StoreDType::F16 => activations
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
    };
    let id_bytes: Vec<u8> = image_ids.iter().flat_map(|v| v.to_le_bytes()).collect();
    let st_dtype = match dtype {
        StoreDType::F32 => Dtype::F32,
        StoreDType::F16 => Dtype::F16,
    };
    let bad = |e: safetensors::SafeTensorError| Error::Invalid(format!("cannot encode shard: {e}"));
    let views = vec![
        (
            "activations".to_string(),
            TensorView::new(st_dtype, vec![rows, d_model], &act_bytes).map_err(bad)?,
        ),
        (
            "image_ids".to_string(),
            TensorView::new(Dtype::U32, vec![image_ids.len()], &id_bytes).map_err(bad)?,
        ),
    ];
    let meta: HashMap<String, String> =
        [("format".to_string(), "saescope-activations-v1".to_string())].into();
    safetensors::serialize(views, Some(meta)).map_err(bad)
}

pub fn decode_shard(path: &Path) -> Result<ShardData> {
    let bytes = std::fs::read(path).at(path)?;
    let corrupt = |why: String| {
        crate::fixable!(
            [path, format!(": corrupt activation shard ({why})")],
            [
                "delete it and re-run ",
                Command::Extract(None),
                " to redo it"
            ]
        )
    };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let acts = st
        .tensor("activations")
        .map_err(|e| corrupt(e.to_string()))?;
    let ids = st.tensor("image_ids").map_err(|e| corrupt(e.to_string()))?;
    let shape = acts.shape();
    if shape.len() != 2 {
        return Err(corrupt(format!("activations have shape {shape:?}")));
    }
    let d_model = shape[1];
    if d_model == 0 {
        return Err(corrupt("activations have width 0".into()));
    }
    let activations: Vec<f32> = match acts.dtype() {
        safetensors::Dtype::F32 => acts
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        safetensors::Dtype::F16 => acts
            .data()
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => return Err(corrupt(format!("unexpected dtype {other:?}"))),
    };
    // A model's activations are finite, and extraction never stores others: a NaN or an
    // infinity is damage (bytes overwritten), not data.
    if let Some(i) = activations.iter().position(|v| !v.is_finite()) {
        return Err(corrupt(format!(
            "value {i} (row {}) is {}, which extraction never writes",
            i / d_model,
            activations[i]
        )));
    }
    let image_ids = ids
        .data()
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(ShardData {
        activations,
        image_ids,
        d_model,
    })
}

/// Read access to a workspace's activations.
pub struct ActivationStore {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl ActivationStore {
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        if !path.is_file() {
            return Err(crate::fixable!(
                [dir, ": no activations yet"],
                ["run ", Command::Extract(None), " for this workspace first"]
            ));
        }
        Ok(ActivationStore {
            dir: dir.to_path_buf(),
            manifest: fsutil::read_json(&path)?,
        })
    }

    pub fn read_shard(&self, i: usize) -> Result<ShardData> {
        let info = &self.manifest.shards[i];
        let data = decode_shard(&self.dir.join(&info.file))?;
        if data.rows() != info.rows || data.d_model != self.manifest.d_model {
            return Err(crate::fixable!(
                [format!(
                    "{}: holds {} rows × {} but the manifest says {} × {}",
                    info.file,
                    data.rows(),
                    data.d_model,
                    info.rows,
                    self.manifest.d_model
                )],
                ["delete the shard and re-run ", Command::Extract(None)]
            ));
        }
        Ok(data)
    }
}

/// Writes a complete one-shard store of `rows` (row-major, `d_model` wide) whose rows come from
/// `items` sources (`item_ids[r]` names each row's source) — for activations that are not a
/// fixed number of tokens per image, such as the tokens of text prompts.
pub fn write_single_shard_store(
    dir: &Path,
    rows: &[f32],
    d_model: usize,
    item_ids: &[u32],
    items: usize,
) -> Result<ActivationStore> {
    std::fs::create_dir_all(dir).at(dir)?;
    let file = shard_file_name(0);
    let bytes = encode_shard(rows, d_model, item_ids, StoreDType::F32)?;
    fsutil::write_atomic(&dir.join(&file), &bytes)?;
    let manifest = Manifest {
        d_model,
        dtype: StoreDType::F32,
        token_indices: Vec::new(),
        images_per_shard: items.max(1),
        dataset_images: items.max(1),
        shards: vec![ShardInfo {
            index: 0,
            file,
            first_image: 0,
            planned_images: items,
            images: items,
            rows: rows.len() / d_model.max(1),
            bytes: bytes.len() as u64,
            skipped: Vec::new(),
        }],
    };
    fsutil::write_json_atomic(&dir.join(MANIFEST_FILE), &manifest)?;
    ActivationStore::open(dir)
}

/// The error for a workspace whose extraction stopped before the end.
pub fn unfinished(ws_dir: &Path) -> Error {
    crate::fixable!(
        [ws_dir, ": extraction is not finished"],
        ["re-run ", Command::Extract(None), " to complete it"]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_round_trip_in_both_dtypes() {
        let d = tempfile::tempdir().unwrap();
        let acts: Vec<f32> = (0..24).map(|i| i as f32 * 0.25 - 3.0).collect();
        for dtype in [StoreDType::F32, StoreDType::F16] {
            let p = d.path().join("s.safetensors");
            std::fs::write(&p, encode_shard(&acts, 4, &[7, 9], dtype).unwrap()).unwrap();
            let back = decode_shard(&p).unwrap();
            assert_eq!(back.d_model, 4);
            assert_eq!(back.rows(), 6);
            assert_eq!(back.image_ids, vec![7, 9]);
            assert_eq!(
                back.activations, acts,
                "{dtype:?}: these values are exact in f16 too"
            );
        }
    }

    #[test]
    fn truncated_shards_are_reported_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.safetensors");
        let bytes = encode_shard(&[1.0; 8], 4, &[0], StoreDType::F32).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        let err = decode_shard(&p).err().unwrap().to_string();
        assert!(err.contains("corrupt") && err.contains("re-run"), "{err}");
    }
}
