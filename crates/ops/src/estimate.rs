//! Before an extraction: how many images, how much disk the activation store takes, and roughly
//! how long extracting takes, from a forward pass timed here on the folder's first images.

use crate::backbone::{Backbone, ModelSpec, load_backbone};
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::store::Dataset;
use crate::store::dataset::Skipped;
use crate::store::extract::{ExtractOptions, activations_for, decode_images};
use crate::store::workspace::StoreDType;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// How many of the folder's first images the forward pass is timed on.
pub const TIMED_IMAGES: usize = 8;

#[derive(Clone, Debug)]
pub struct EstimateRequest {
    pub model: ModelSpec,
    pub device: DeviceChoice,
    pub images: PathBuf,
    pub options: ExtractOptions,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExtractEstimate {
    pub images: usize,
    pub tokens_per_image: usize,
    pub d_model: usize,
    pub dtype: StoreDType,
    pub bytes_per_value: usize,
    /// images × tokens per image × d_model × bytes per value: the shards' size on disk.
    pub store_bytes: u64,
    /// The device the forward pass was timed on.
    pub device: String,
    /// Images the forward pass was timed on (those of the first [`TIMED_IMAGES`] that decode).
    pub timed_images: usize,
    /// Images per second of the forward pass to the layer, timed here; None when none of the
    /// first images could be read (the time is then unknown until the first shard).
    pub images_per_s: Option<f64>,
    /// images ÷ images_per_s: extraction's time, roughly (decoding and writing overlap it).
    pub seconds: Option<f64>,
    /// The first images that could not be read, with why (extraction will skip them).
    pub unreadable: Vec<Skipped>,
}

/// The activation store's size on disk: images × tokens per image × d_model × bytes per value.
pub fn store_bytes(
    images: usize,
    tokens_per_image: usize,
    d_model: usize,
    dtype: StoreDType,
) -> u64 {
    images as u64 * tokens_per_image as u64 * d_model as u64 * dtype.bytes() as u64
}

/// Counts the images, sizes the store and times the model's forward pass to the layer on the
/// first images, on the request's device. Loads the model; reads only a few images.
pub fn estimate(r: &EstimateRequest) -> Result<ExtractEstimate> {
    r.options.validate()?;
    let ds = Dataset::scan(&r.images)?;
    let device = super::device_of(r.device)?;
    let backbone = load_backbone(&r.model, &device)?;
    let info = backbone.info().clone();
    if r.options.layer >= info.n_layers {
        return Err(Error::Invalid(format!(
            "layer {} does not exist: {} has layers 0..={}",
            r.options.layer,
            info.name,
            info.n_layers - 1
        )));
    }
    let token_indices = info.geometry.select(r.options.tokens)?;
    let ids: Vec<usize> = (0..ds.len().min(TIMED_IMAGES)).collect();
    let (images, _, unreadable) = decode_images(&ds, &ids);
    let images_per_s = match images.first() {
        None => None,
        Some(first) => {
            let layer = r.options.layer;
            // The first pass pays for allocations (and a GPU's kernel loading): not timed.
            activations_for(
                &backbone,
                std::slice::from_ref(first),
                layer,
                &token_indices,
                &device,
            )?;
            device.synchronize()?;
            let t = Instant::now();
            // Copied back to the host, as extraction does with every batch.
            activations_for(&backbone, &images, layer, &token_indices, &device)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            Some(images.len() as f64 / t.elapsed().as_secs_f64().max(1e-9))
        }
    };
    Ok(ExtractEstimate {
        images: ds.len(),
        tokens_per_image: token_indices.len(),
        d_model: info.d_model,
        dtype: r.options.dtype,
        bytes_per_value: r.options.dtype.bytes(),
        store_bytes: store_bytes(ds.len(), token_indices.len(), info.d_model, r.options.dtype),
        device: crate::device::name(&device),
        timed_images: images.len(),
        images_per_s,
        seconds: images_per_s.map(|rate| ds.len() as f64 / rate),
        unreadable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_images_by_tokens_by_width_by_value_size() {
        // ViT-B/16 at 224 px, all 197 tokens of width 768, 50,000 images in F16: 15.1 GB.
        assert_eq!(
            store_bytes(50_000, 197, 768, StoreDType::F16),
            50_000 * 197 * 768 * 2
        );
        assert_eq!(store_bytes(3, 17, 64, StoreDType::F32), 3 * 17 * 64 * 4);
        // No overflow where a usize product of 32 bits would.
        assert_eq!(
            store_bytes(10_000_000, 257, 1024, StoreDType::F32),
            10_000_000u64 * 257 * 1024 * 4
        );
    }

    /// A real estimate: the example's random-weight model (17 tokens of width 64) over five
    /// images, two of them unreadable.
    #[test]
    fn estimate_counts_sizes_and_times_the_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("model");
        crate::example::write_model(&model, 0).unwrap();
        let images = tmp.path().join("images/a");
        std::fs::create_dir_all(&images).unwrap();
        for i in 0..3 {
            image::RgbImage::from_pixel(64, 64, image::Rgb([i * 40, 80, 120]))
                .save(images.join(format!("{i}.png")))
                .unwrap();
        }
        for i in 3..5 {
            std::fs::write(images.join(format!("{i}.png")), b"not a png").unwrap();
        }
        let e = estimate(&EstimateRequest {
            model: ModelSpec::from_cli(&model.to_string_lossy(), None).unwrap(),
            device: DeviceChoice::Cpu,
            images: tmp.path().join("images"),
            options: crate::create::extract_options(1),
        })
        .unwrap();
        assert_eq!(e.images, 5);
        assert_eq!(
            (e.tokens_per_image, e.d_model, e.bytes_per_value),
            (17, 64, 2)
        );
        assert_eq!(e.store_bytes, 5 * 17 * 64 * 2);
        assert_eq!(e.timed_images, 3);
        assert_eq!(e.unreadable.len(), 2);
        let rate = e.images_per_s.unwrap();
        assert!(rate > 0.0 && rate.is_finite(), "{rate}");
        assert!((e.seconds.unwrap() - 5.0 / rate).abs() < 1e-9);
        // A layer the model lacks is refused, as extraction refuses it.
        let err = estimate(&EstimateRequest {
            model: ModelSpec::from_cli(&model.to_string_lossy(), None).unwrap(),
            device: DeviceChoice::Cpu,
            images: tmp.path().join("images"),
            options: crate::create::extract_options(9),
        })
        .unwrap_err();
        assert!(err.to_string().contains("layer 9 does not exist"), "{err}");
    }
}
