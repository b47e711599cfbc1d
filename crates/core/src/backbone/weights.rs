//! A named set of tensors loaded from `.safetensors` or a PyTorch `.pth` (read for tensors only —
//! candle's pickle reader never executes code), with lookups that fail with the key and the fix.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub struct Weights {
    tensors: Arc<HashMap<String, Tensor>>,
    /// File name used in error messages.
    origin: String,
    /// Key prefix applied by `get` (e.g. `vision_model.`).
    prefix: String,
}

impl Weights {
    pub fn from_map(tensors: HashMap<String, Tensor>, origin: impl Into<String>) -> Self {
        Weights {
            tensors: Arc::new(tensors),
            origin: origin.into(),
            prefix: String::new(),
        }
    }

    /// Loads every tensor of a safetensors file (or several shards) as f32 on `device`.
    pub fn load_safetensors(paths: &[impl AsRef<Path>], device: &Device) -> Result<Self> {
        let mut tensors = HashMap::new();
        let mut origin = String::new();
        for p in paths {
            let p = p.as_ref();
            origin = p.display().to_string();
            let map = candle_core::safetensors::load(p, &Device::Cpu).map_err(|e| {
                Error::Model(format!(
                    "{}: not a readable safetensors file ({e}); re-download it or check the path",
                    p.display()
                ))
            })?;
            for (k, t) in map {
                tensors.insert(k, to_f32(t, device)?);
            }
        }
        Ok(Self::from_map(tensors, origin))
    }

    /// Loads a PyTorch checkpoint. Accepts a plain state_dict or one nested under
    /// `state_dict` / `model`; strips a DataParallel `module.` prefix.
    pub fn load_pth(path: &Path, device: &Device) -> Result<Self> {
        let origin = path.display().to_string();
        let mut last_err = None;
        for key in [None, Some("state_dict"), Some("model")] {
            match candle_core::pickle::read_all_with_key(path, key) {
                Ok(list) if !list.is_empty() => {
                    let mut tensors = HashMap::new();
                    for (k, t) in list {
                        let k = k.strip_prefix("module.").unwrap_or(&k).to_string();
                        tensors.insert(k, to_f32(t, device)?);
                    }
                    return Ok(Self::from_map(tensors, origin));
                }
                Ok(_) => {}
                Err(e) => last_err = Some(e),
            }
        }
        Err(Error::Model(format!(
            "{origin}: no tensors found in this PyTorch file ({}). saescope reads zip-format state_dicts \
             (torch.save(model.state_dict(), path)); re-save the checkpoint that way",
            last_err
                .map(|e| e.to_string())
                .unwrap_or_else(|| "empty state_dict".into())
        )))
    }

    /// A view whose lookups are relative to `prefix` (joined with a dot).
    pub fn sub(&self, prefix: &str) -> Weights {
        let prefix = if prefix.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}{prefix}.", self.prefix)
        };
        Weights {
            tensors: self.tensors.clone(),
            origin: self.origin.clone(),
            prefix,
        }
    }

    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(&self.full(name))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn get_opt(&self, name: &str) -> Option<Tensor> {
        self.tensors.get(&self.full(name)).cloned()
    }

    pub fn get(&self, name: &str) -> Result<Tensor> {
        self.get_opt(name).ok_or_else(|| Error::MissingWeight {
            file: self.origin.clone(),
            key: self.full(name),
            hint: "the file does not match the architecture its config names; check the model family and that the download is complete".into(),
        })
    }

    /// Fetches a tensor and checks its shape.
    pub fn get_shape(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.get(name)?;
        if t.dims() != shape {
            return Err(Error::WeightShape {
                file: self.origin.clone(),
                key: self.full(name),
                found: t.dims().to_vec(),
                expected: format!("{shape:?}"),
            });
        }
        Ok(t)
    }
}

fn to_f32(t: Tensor, device: &Device) -> Result<Tensor> {
    let t = if t.dtype() == DType::F32 || !t.dtype().is_float() {
        t
    } else {
        t.to_dtype(DType::F32)?
    };
    Ok(t.to_device(device)?)
}
