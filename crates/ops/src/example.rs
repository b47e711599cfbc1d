//! The built-in example: a complete workspace that needs no download, for a first run. saescope
//! draws 160 images of four synthetic classes itself (checks, discs, squares, stripes) and writes
//! a small DINOv2-layout model with random weights (a Hugging Face folder, so it loads like any
//! other), then runs [`super::create::create`] on them: extract, train an SAE, index, class
//! labels. It shows how the tool works; a random model's features say nothing about what a
//! trained model learns.

use super::create::{CreateReport, CreateRequest, create};
use crate::backbone::ModelSpec;
use crate::device::DeviceChoice;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::job::{Job, Progress};
use crate::rng::Rng;
use crate::sae::workflow::TrainOptions;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The classes, one sub-folder each under `images/`.
pub const CLASSES: [&str; 4] = ["checks", "discs", "squares", "stripes"];
pub const IMAGES_PER_CLASS: usize = 40;
/// Side of the drawn images; the model sees them at 56 px (4×4 patches of 14 px).
const IMAGE_SIZE: u32 = 64;
const MODEL_INPUT: usize = 56;
const WIDTH: usize = 64;
const BLOCKS: usize = 3;
/// The tapped layer: the residual stream after the last block.
pub const LAYER: usize = BLOCKS - 1;
/// Marks a folder as the example (re-running it resumes or reports the finished workspace).
const MARKER: &str = "saescope-example.json";

#[derive(Clone, Debug)]
pub struct ExampleRequest {
    /// Where the example goes: `images/`, `model/` and `workspace/` inside. New or empty, or an
    /// earlier example's folder.
    pub folder: PathBuf,
    pub device: DeviceChoice,
}

/// The example's workspace folder inside `folder`.
pub fn workspace_of(folder: &Path) -> PathBuf {
    folder.join("workspace")
}

/// Whether the workspace in `ws_dir` is the built-in example's (its folder holds the marker).
pub fn is_example(ws_dir: &Path) -> bool {
    ws_dir.parent().is_some_and(|f| f.join(MARKER).is_file())
}

/// Makes (or finishes, or reports) the example. A failed first run leaves nothing behind.
pub fn example(r: &ExampleRequest, job: &Job) -> Result<CreateReport> {
    let folder = &r.folder;
    let fresh = !folder.join(MARKER).is_file();
    if fresh
        && std::fs::read_dir(folder)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        return Err(Error::Invalid(format!(
            "{}: the folder is not empty; choose a new or empty folder for the example",
            folder.display()
        )));
    }
    let created_folder = !folder.exists();
    let result = make(r, fresh, job);
    if result.is_err() && fresh {
        // Nothing half-made stays: the folder was new or empty, and goes back to that.
        let _ = std::fs::remove_dir_all(folder);
        if !created_folder {
            let _ = std::fs::create_dir(folder);
        }
    }
    result
}

fn make(r: &ExampleRequest, fresh: bool, job: &Job) -> Result<CreateReport> {
    let folder = &r.folder;
    let images = folder.join("images");
    let model = folder.join("model");
    if fresh {
        std::fs::create_dir_all(folder).at(folder)?;
        draw_images(&images, job)?;
        write_model(&model, 0)?;
        fsutil::write_json_atomic(
            &folder.join(MARKER),
            &serde_json::json!({
                "format": "saescope-example-v1",
                "classes": CLASSES,
                "images_per_class": IMAGES_PER_CLASS,
                "model": "random-weight DINOv2 layout, seed 0",
            }),
        )?;
    }
    create(
        &CreateRequest {
            model: ModelSpec::from_cli(&model.to_string_lossy(), None)?,
            device: r.device,
            layer: LAYER,
            images,
            workspace: workspace_of(folder),
            sae_file: None,
            // 4× expansion, k 8: 17 tokens per image, 2,720 in all, seen about 40 times.
            train: TrainOptions {
                tokens: Some(100_000),
                batch: 512,
                ..TrainOptions::topk(4 * WIDTH, 8)
            },
        },
        job,
    )
}

/// Draws the images: each class a shape or texture in a colour of its own (with jitter), at a
/// random place and size, on a dark background with pixel noise. Deterministic (seeded).
fn draw_images(dir: &Path, job: &Job) -> Result<()> {
    let mut rng = Rng::new(2026);
    let total = (CLASSES.len() * IMAGES_PER_CLASS) as u64;
    for (c, class) in CLASSES.iter().enumerate() {
        let sub = dir.join(class);
        std::fs::create_dir_all(&sub).at(&sub)?;
        for i in 0..IMAGES_PER_CLASS {
            job.check()?;
            let img = draw(c, &mut rng);
            let p = sub.join(format!("{i:03}.png"));
            img.save(&p)
                .map_err(|e| Error::Invalid(format!("{}: {e}", p.display())))?;
            job.report(Progress {
                done: (c * IMAGES_PER_CLASS + i + 1) as u64,
                total,
                unit: "images drawn",
                message: class.to_string(),
            });
        }
    }
    Ok(())
}

fn draw(class: usize, rng: &mut Rng) -> image::RgbImage {
    const BASE: [[f32; 3]; 4] = [
        [220.0, 200.0, 60.0],
        [210.0, 60.0, 50.0],
        [50.0, 90.0, 210.0],
        [60.0, 180.0, 70.0],
    ];
    let mut jitter = |v: f32, by: f32| (v + (rng.uniform() * 2.0 - 1.0) * by).clamp(0.0, 255.0);
    let fg = BASE[class].map(|v| jitter(v, 40.0));
    let bg = [jitter(30.0, 25.0), jitter(30.0, 25.0), jitter(30.0, 25.0)];
    let (cx, cy) = (16.0 + rng.uniform() * 32.0, 16.0 + rng.uniform() * 32.0);
    let size = 8.0 + rng.uniform() * 10.0;
    let period = 6.0 + (rng.uniform() * 7.0).floor();
    let vertical = rng.uniform() < 0.5;
    let mut img = image::RgbImage::new(IMAGE_SIZE, IMAGE_SIZE);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let (xf, yf) = (x as f32 + 0.5, y as f32 + 0.5);
        let on = match class {
            0 => ((xf / period).floor() + (yf / period).floor()) as i64 % 2 == 0,
            1 => (xf - cx).powi(2) + (yf - cy).powi(2) <= size * size,
            2 => (xf - cx).abs() <= size && (yf - cy).abs() <= size,
            _ => ((if vertical { xf } else { yf }) / (period / 2.0)).floor() as i64 % 2 == 0,
        };
        let c = if on { fg } else { bg };
        let noise = (rng.uniform() * 2.0 - 1.0) * 12.0;
        *px = image::Rgb(c.map(|v| (v + noise).clamp(0.0, 255.0) as u8));
    }
    img
}

/// Writes a Hugging Face `Dinov2Model` folder (config, preprocessor config, weights) with
/// random weights drawn as transformers initialises them (normal, std 0.02; LayerNorms at 1 and
/// 0; layer scale 1).
pub fn write_model(dir: &Path, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).at(dir)?;
    let (h, mlp) = (WIDTH, 2 * WIDTH);
    let grid = MODEL_INPUT / 14;
    let mut rng = Rng::new(seed);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut put = |name: &str, shape: &[usize], values: Vec<f32>| -> Result<()> {
        let t = Tensor::from_vec(values, shape, &Device::Cpu)?;
        tensors.insert(name.to_string(), t);
        Ok(())
    };
    let mut normal = |shape: &[usize]| -> Vec<f32> {
        let n: usize = shape.iter().product();
        (0..n).map(|_| 0.02 * rng.normal()).collect()
    };
    let ones = |n: usize| vec![1f32; n];
    let zeros = |n: usize| vec![0f32; n];
    put("embeddings.cls_token", &[1, 1, h], normal(&[h]))?;
    put("embeddings.mask_token", &[1, h], zeros(h))?;
    let pos = grid * grid + 1;
    put(
        "embeddings.position_embeddings",
        &[1, pos, h],
        normal(&[pos, h]),
    )?;
    put(
        "embeddings.patch_embeddings.projection.weight",
        &[h, 3, 14, 14],
        normal(&[h, 3, 14, 14]),
    )?;
    put(
        "embeddings.patch_embeddings.projection.bias",
        &[h],
        zeros(h),
    )?;
    for l in 0..BLOCKS {
        let p = format!("encoder.layer.{l}.");
        for q in ["query", "key", "value"] {
            put(
                &format!("{p}attention.attention.{q}.weight"),
                &[h, h],
                normal(&[h, h]),
            )?;
            put(&format!("{p}attention.attention.{q}.bias"), &[h], zeros(h))?;
        }
        put(
            &format!("{p}attention.output.dense.weight"),
            &[h, h],
            normal(&[h, h]),
        )?;
        put(&format!("{p}attention.output.dense.bias"), &[h], zeros(h))?;
        for norm in ["norm1", "norm2"] {
            put(&format!("{p}{norm}.weight"), &[h], ones(h))?;
            put(&format!("{p}{norm}.bias"), &[h], zeros(h))?;
        }
        put(&format!("{p}layer_scale1.lambda1"), &[h], ones(h))?;
        put(&format!("{p}layer_scale2.lambda1"), &[h], ones(h))?;
        put(&format!("{p}mlp.fc1.weight"), &[mlp, h], normal(&[mlp, h]))?;
        put(&format!("{p}mlp.fc1.bias"), &[mlp], zeros(mlp))?;
        put(&format!("{p}mlp.fc2.weight"), &[h, mlp], normal(&[h, mlp]))?;
        put(&format!("{p}mlp.fc2.bias"), &[h], zeros(h))?;
    }
    put("layernorm.weight", &[h], ones(h))?;
    put("layernorm.bias", &[h], zeros(h))?;
    let weights = dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &weights)?;
    fsutil::write_json_atomic(
        &dir.join("config.json"),
        &serde_json::json!({
            "architectures": ["Dinov2Model"],
            "model_type": "dinov2",
            "hidden_size": h,
            "num_attention_heads": 4,
            "num_hidden_layers": BLOCKS,
            "mlp_ratio": 2,
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-6,
            "layerscale_value": 1.0,
            "image_size": MODEL_INPUT,
            "patch_size": 14,
            "num_channels": 3,
            "qkv_bias": true,
            "use_swiglu_ffn": false,
            "saescope_note": format!("random weights (seed {seed}), written by saescope's built-in example"),
        }),
    )?;
    fsutil::write_json_atomic(
        &dir.join("preprocessor_config.json"),
        &serde_json::json!({
            "image_processor_type": "BitImageProcessor",
            "do_resize": true,
            "size": {"shortest_edge": MODEL_INPUT},
            "resample": 3,
            "do_center_crop": true,
            "crop_size": {"height": MODEL_INPUT, "width": MODEL_INPUT},
            "do_normalize": true,
            "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225],
        }),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example builds end to end: images per class, a model that loads, a workspace with an
    /// SAE, an index and class labels; a second run reports it; a non-empty folder is refused.
    #[test]
    fn example_workspace_builds_and_reruns() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = tmp.path().join("example");
        let r = ExampleRequest {
            folder: folder.clone(),
            device: DeviceChoice::Cpu,
        };
        let report = example(&r, &Job::default()).unwrap();
        assert_eq!(report.extracted_images, CLASSES.len() * IMAGES_PER_CLASS);
        assert_eq!(report.features, 4 * WIDTH);
        let ws = crate::store::Workspace::open(&workspace_of(&folder)).unwrap();
        assert_eq!(ws.config.layer, LAYER);
        let home = crate::sae::workflow::sae_home(&ws, None).unwrap();
        let ix = crate::analysis::index::load_index(&home).unwrap();
        assert_eq!(ix.n_images as usize, CLASSES.len() * IMAGES_PER_CLASS);
        assert_eq!(ix.n_classes, CLASSES.len());
        assert!(report.labelled_from_classes > 0);
        // Classes differ in colour and shape, so some feature prefers one class clearly.
        let best = (0..ix.d_sae)
            .filter_map(|j| ix.best_lift(j))
            .map(|(_, l)| l)
            .fold(0.0, f64::max);
        assert!(best > 2.0, "best class lift {best}");
        // A second run finds everything done.
        let again = example(&r, &Job::default()).unwrap();
        assert_eq!(again.sae, report.sae);
        // A folder with other things in it is refused, and left as it was.
        let other = tmp.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("notes.txt"), "mine").unwrap();
        let err = example(
            &ExampleRequest {
                folder: other.clone(),
                device: DeviceChoice::Cpu,
            },
            &Job::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not empty"), "{err}");
        assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);
    }

    /// A cancelled first run leaves no folder behind.
    #[test]
    fn a_cancelled_example_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = tmp.path().join("example");
        let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let job = Job::new(cancel, |_| {});
        let r = ExampleRequest {
            folder: folder.clone(),
            device: DeviceChoice::Cpu,
        };
        assert!(matches!(example(&r, &job), Err(Error::Cancelled)));
        assert!(!folder.exists());
    }
}
