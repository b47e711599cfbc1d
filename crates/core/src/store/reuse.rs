//! Activations at a workspace's layer for the images of any folder: read from the workspace's
//! activation store when it already holds that image file (all tokens), computed by the backbone
//! otherwise. At full size a forward pass is the cost (DINOv2-small: a few images/s on two
//! cores), so OOD, probes and evaluation over images the workspace has seen read them back
//! instead of recomputing them. Stored rows are the store's dtype (f16 by default) widened to
//! f32; recomputed rows are exact f32.

use super::activations::{ActivationStore, ShardData};
use super::dataset::{Dataset, Skipped};
use super::extract::decode_images;
use super::workspace::Workspace;
use crate::backbone::Backbone;
use crate::error::{Error, Result};
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// A shard index, its data and, per image id in it, its first row.
type CachedShard = (usize, ShardData, HashMap<u32, usize>);

struct Stored {
    store: ActivationStore,
    /// Canonical image path → (shard, dataset image id).
    by_path: HashMap<PathBuf, (usize, u32)>,
    /// The last shard read and, per image id in it, its first row.
    cache: Mutex<Option<CachedShard>>,
}

pub struct LayerActivations<'a> {
    backbone: &'a dyn Backbone,
    layer: usize,
    stored: Vec<Stored>,
    reused: std::sync::atomic::AtomicUsize,
}

/// One batch: hidden states [B, T, D] of the readable images, their dataset ids, the others.
pub struct HiddenBatch {
    pub hidden: Option<Tensor>,
    pub ok: Vec<usize>,
    pub skipped: Vec<Skipped>,
}

impl<'a> LayerActivations<'a> {
    /// Reads from each workspace's store that is complete, holds every token and was extracted
    /// at `layer` of a model with this backbone's geometry; computes everything else. A store
    /// that does not fit is passed over; one that fits but cannot be read (a corrupt manifest or
    /// `dataset.json`) is an error naming it, not a silent recomputation.
    pub fn new(backbone: &'a dyn Backbone, layer: usize, workspaces: &[Workspace]) -> Result<Self> {
        let mut stored = Vec::new();
        for ws in workspaces {
            if let Some(s) = Self::open_store(backbone, layer, ws)? {
                stored.push(s);
            }
        }
        Ok(LayerActivations {
            backbone,
            layer,
            stored,
            reused: Default::default(),
        })
    }

    fn open_store(backbone: &dyn Backbone, layer: usize, ws: &Workspace) -> Result<Option<Stored>> {
        let info = backbone.info();
        let geometry = &ws.config.backbone.geometry;
        if ws.config.layer != layer
            || ws.config.backbone.d_model != info.d_model
            || *geometry != info.geometry
            || ws.config.backbone.pos_interpolation != info.pos_interpolation
        {
            return Ok(None);
        }
        let reuse_error = |e: Error| {
            crate::fixable!(
                [
                    &ws.dir,
                    format!(": its stored activations cannot be reused ({e})")
                ],
                [
                    "repair it with ",
                    crate::fix::Command::Extract(Some(ws.dir.clone())),
                    ", or leave it out of the reused stores"
                ]
            )
        };
        let store = ActivationStore::open(&ws.activations_dir()).map_err(reuse_error)?;
        if !store.manifest.is_complete() || store.manifest.tokens_per_image() != geometry.n_tokens()
        {
            return Ok(None);
        }
        let ds = ws.dataset().map_err(reuse_error)?;
        let mut by_path = HashMap::new();
        for (s, shard) in store.manifest.shards.iter().enumerate() {
            for id in shard.first_image..shard.first_image + shard.planned_images {
                if let Some(p) = ds
                    .images
                    .get(id)
                    .and_then(|_| ds.abs_path(id).canonicalize().ok())
                {
                    by_path.insert(p, (s, id as u32));
                }
            }
        }
        Ok(Some(Stored {
            store,
            by_path,
            cache: Mutex::new(None),
        }))
    }

    /// Images answered from the store so far.
    pub fn reused(&self) -> usize {
        self.reused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many workspace stores are being read.
    pub fn stores(&self) -> usize {
        self.stored.len()
    }

    /// The rows [T·D] of a stored image, or None when no store holds it.
    fn stored_rows(&self, path: &std::path::Path) -> Result<Option<Vec<f32>>> {
        let Some(key) = path.canonicalize().ok() else {
            return Ok(None);
        };
        let Some((st, &(shard, id))) = self
            .stored
            .iter()
            .find_map(|st| st.by_path.get(&key).map(|v| (st, v)))
        else {
            return Ok(None);
        };
        let mut cache = st.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.as_ref().is_none_or(|c| c.0 != shard) {
            let data = st.store.read_shard(shard)?;
            // `image_ids` has one entry per stored image; its rows are T consecutive rows.
            let t = st.store.manifest.tokens_per_image();
            let first: HashMap<u32, usize> = data
                .image_ids
                .iter()
                .enumerate()
                .map(|(k, &img)| (img, k * t))
                .collect();
            *cache = Some((shard, data, first));
        }
        let Some((_, data, first)) = cache.as_ref() else {
            return Ok(None);
        };
        let t = st.store.manifest.tokens_per_image();
        Ok(first.get(&id).map(|&r| {
            let d = data.d_model;
            data.activations[r * d..(r + t) * d].to_vec()
        }))
    }

    /// Hidden states for dataset images `ids`: stored rows where the store has the file, one
    /// forward pass for the rest; unreadable images are skipped with their reason.
    pub fn batch(&self, ds: &Dataset, ids: &[usize]) -> Result<HiddenBatch> {
        let mut rows: Vec<Option<Vec<f32>>> = Vec::with_capacity(ids.len());
        for &i in ids {
            rows.push(self.stored_rows(&ds.abs_path(i))?);
        }
        let missing: Vec<usize> = ids
            .iter()
            .zip(&rows)
            .filter(|(_, r)| r.is_none())
            .map(|(&i, _)| i)
            .collect();
        let (images, computed_ok, skipped) = decode_images(ds, &missing);
        let mut computed: HashMap<usize, Vec<f32>> = HashMap::new();
        if !images.is_empty() {
            let (pixels, _) = self
                .backbone
                .preprocessor()
                .batch(&images, self.backbone.device())?;
            let h = self.backbone.forward_to(&pixels, self.layer)?;
            let per = h.elem_count() / images.len();
            let flat: Vec<f32> = h.flatten_all()?.to_vec1()?;
            for (k, &i) in computed_ok.iter().enumerate() {
                computed.insert(i, flat[k * per..(k + 1) * per].to_vec());
            }
        }
        let (t, d) = (
            self.backbone.info().geometry.n_tokens(),
            self.backbone.info().d_model,
        );
        let mut data = Vec::with_capacity(ids.len() * t * d);
        let mut ok = Vec::with_capacity(ids.len());
        for (&i, r) in ids.iter().zip(rows) {
            if let Some(v) = r.or_else(|| computed.remove(&i)) {
                data.extend_from_slice(&v);
                ok.push(i);
            }
        }
        // Every id not in `missing` was answered from a store.
        self.reused.fetch_add(
            ids.len() - missing.len(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let hidden = if ok.is_empty() {
            None
        } else {
            Some(Tensor::from_vec(
                data,
                (ok.len(), t, d),
                self.backbone.device(),
            )?)
        };
        Ok(HiddenBatch {
            hidden,
            ok,
            skipped,
        })
    }
}
