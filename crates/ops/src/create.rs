//! A workspace from nothing: extract a layer over an image folder, train an SAE (or import one),
//! and index it; the app's "new workspace" form runs this.

use crate::backbone::{ModelSpec, TokenSelection, load_backbone};
use crate::error::{Error, Result};
use crate::fix::Opt;
use crate::job::Job;
use crate::lock::{Hold, writer};
use crate::sae::workflow::{TrainOptions, sae_home, train, workspace_sae};
use crate::store::Workspace;
use crate::store::dataset::Skipped;
use crate::store::extract::ExtractOptions;
use crate::store::lock::LOCK_FILE;
use crate::store::workspace::StoreDType;
use serde::Serialize;
use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct CreateRequest {
    pub model: ModelSpec,
    /// Where the backbone, the training and the index run (`train.device` is replaced by it).
    pub device: crate::device::DeviceChoice,
    pub layer: usize,
    pub images: PathBuf,
    pub workspace: PathBuf,
    /// An SAE to import instead of training one.
    pub sae_file: Option<PathBuf>,
    pub train: TrainOptions,
}

#[derive(Debug, Serialize)]
pub struct CreateReport {
    pub extracted_images: usize,
    pub skipped_images: usize,
    pub sae: String,
    pub features: usize,
    /// Features labelled with their most precise class (class sub-folders only), so search by
    /// class name works from the start.
    pub labelled_from_classes: usize,
}

/// How a new workspace's activations are extracted (the form has no fields for these); what
/// [`crate::estimate`] sizes before a creation.
pub fn extract_options(layer: usize) -> ExtractOptions {
    ExtractOptions {
        layer,
        tokens: TokenSelection::All,
        dtype: StoreDType::F16,
        batch_size: 64,
        images_per_shard: None,
    }
}

/// Extracts, trains (or imports) and indexes; each stage resumes what an earlier run left. A
/// run that fails before any image is stored takes back what it wrote (see [`Before::undo`]).
pub fn create(r: &CreateRequest, job: &Job) -> Result<CreateReport> {
    let before = Before::of(&r.workspace);
    let result = build(r, job);
    if result.is_err() {
        before.undo(&r.workspace);
    }
    result
}

fn build(r: &CreateRequest, job: &Job) -> Result<CreateReport> {
    let device = super::device_of(r.device)?;
    let backbone = load_backbone(&r.model, &device)?;
    let opts = extract_options(r.layer);
    let ex =
        crate::build::extract_locked(&r.workspace, &r.model, &backbone, &r.images, &opts, job)?;
    drop(backbone);
    if ex.extracted_images == 0 {
        return Err(nothing_readable(&r.images, &ex.skipped));
    }
    let s = add_sae(
        &SaeRequest {
            device: r.device,
            workspace: r.workspace.clone(),
            sae_file: r.sae_file.clone(),
            train: r.train.clone(),
        },
        job,
    )?;
    Ok(CreateReport {
        labelled_from_classes: s.labelled_from_classes,
        extracted_images: ex.extracted_images,
        skipped_images: ex.skipped.len(),
        sae: s.sae,
        features: s.features,
    })
}

/// Whether a creation into `workspace` got to its end: every shard of the store extracted and an
/// active SAE with its index, as [`create`] leaves it. A missing or unreadable workspace has not.
pub fn finished(workspace: &Path) -> bool {
    crate::session::summary(workspace).is_ok_and(|s| {
        s.activations
            .is_some_and(|a| a.shards > 0 && a.shards == a.planned_shards)
            && s.saes.iter().any(|sae| sae.active && sae.index)
    })
}

/// How many unreadable files a message names before it says how many more there are.
const NAMED_SKIPPED: usize = 3;

/// Why an image folder gave nothing to train on: the first few unreadable files with their
/// reasons, and how many in all.
pub fn nothing_readable(images: &Path, skipped: &[Skipped]) -> Error {
    let mut named: Vec<String> = skipped
        .iter()
        .take(NAMED_SKIPPED)
        .map(|s| format!("{}: {}", s.path, s.reason))
        .collect();
    if skipped.len() > NAMED_SKIPPED {
        named.push(format!("and {} more", skipped.len() - NAMED_SKIPPED));
    }
    crate::fixable!(
        [
            format!("none of the {} images in ", skipped.len()),
            images,
            format!(" could be read ({})", named.join("; ")),
        ],
        [
            "replace or remove the unreadable files, or give another folder with ",
            Opt::Images
        ]
    )
}

/// What a workspace folder held before a creation, so that a failed run can take back what it
/// wrote and nothing else.
struct Before {
    existed: bool,
    entries: HashSet<OsString>,
}

impl Before {
    fn of(dir: &Path) -> Self {
        Before {
            existed: dir.exists(),
            entries: std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name())
                .collect(),
        }
    }

    /// After a failed run that stored no image (nothing to resume): removes what the run wrote
    /// at the top of the folder, by saescope's own names only and never an entry that was there
    /// before, then the folder itself when this run made it and nothing else is in it. Best
    /// effort under the writer lock: the run's error is the one that matters, and a folder
    /// another process is writing is left alone.
    fn undo(&self, dir: &Path) {
        if stored_images(dir) > 0 {
            return;
        }
        let Ok(lock) = writer(dir, "undo a failed creation", Hold::Job) else {
            return;
        };
        let ours: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !self.entries.contains(&e.file_name()))
            .filter(|e| written_by_saescope(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect();
        for path in ours.iter().filter(|p| !p.ends_with(LOCK_FILE)) {
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
        }
        drop(lock);
        if ours.iter().any(|p| p.ends_with(LOCK_FILE)) {
            let _ = std::fs::remove_file(dir.join(LOCK_FILE));
        }
        if !self.existed {
            // Fails, and so keeps the folder, when anything else is in it.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Whether a name at the top of a workspace is one saescope writes there.
fn written_by_saescope(name: &str) -> bool {
    use crate::store::workspace::{ACTIVATIONS_DIR, DATASET_FILE, SAES_DIR, WORKSPACE_FILE};
    [WORKSPACE_FILE, DATASET_FILE, ACTIVATIONS_DIR, SAES_DIR, LOCK_FILE]
        .contains(&name)
        // The active SAE's name (store::workspace) and the label calibration (label_null).
        || name == "active.json"
        || name.starts_with("label-null-")
        // A write cut short (fsutil::write_atomic's `.name.tmp-PID-HOST`).
        || (name.starts_with('.') && name.contains(".tmp-"))
}

/// Images the workspace's activation store holds (0 when it has none or cannot be read).
fn stored_images(dir: &Path) -> usize {
    let manifest = dir
        .join(crate::store::workspace::ACTIVATIONS_DIR)
        .join(crate::store::activations::MANIFEST_FILE);
    crate::fsutil::read_json::<crate::store::activations::Manifest>(&manifest)
        .map_or(0, |m| m.shards.iter().map(|s| s.images).sum())
}

/// The SAE half of a new workspace, also offered by the explorer for a workspace that has
/// activations but no SAE yet (e.g. made by `saescope extract` alone).
#[derive(Clone, Debug)]
pub struct SaeRequest {
    pub device: crate::device::DeviceChoice,
    pub workspace: PathBuf,
    /// An SAE to import instead of training one.
    pub sae_file: Option<PathBuf>,
    pub train: TrainOptions,
}

#[derive(Debug, Serialize)]
pub struct SaeReport {
    pub sae: String,
    /// An SAE of these settings was there already: reported and explored, not trained again.
    pub already_trained: bool,
    pub features: usize,
    pub labelled_from_classes: usize,
}

/// Trains (or imports) the workspace's SAE, makes it active, indexes it and labels its features
/// with their most precise class.
pub fn add_sae(r: &SaeRequest, job: &Job) -> Result<SaeReport> {
    let device = super::device_of(r.device)?;
    let ws = Workspace::open(&r.workspace)?;
    let mut already_trained = false;
    let home = match &r.sae_file {
        // A finished SAE of these settings is reported, not trained again.
        None => {
            let options = TrainOptions {
                device: device.clone(),
                ..r.train.clone()
            };
            let lock = writer(&ws.dir, "train", Hold::Job)?;
            let report = train(&ws, &lock, &options, job)?;
            already_trained = report.already_trained;
            ws.sae_dir(&report.name)
        }
        Some(from) => {
            // Kept as a copy in the workspace (SAELens layout) so it is self-contained.
            let _lock = writer(&ws.dir, "import SAE", Hold::Edit)?;
            let home = sae_home(&ws, Some(from))?;
            let name = home
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            ws.set_active_sae(&name)?;
            home
        }
    };
    let sae = workspace_sae(&ws, Some(&home))?.on_device(&device)?;
    let _lock = writer(&ws.dir, "index", Hold::Job)?;
    let ix = crate::analysis::index::build_index(
        &ws,
        &home,
        &sae,
        &crate::analysis::index::IndexOptions::default(),
        job,
    )?;
    // A loaded SAE has no training figures: measure them on the workspace's stored rows.
    crate::saes::measure_loaded_sae(&ws, &home, &sae)?;
    let ds = ws.dataset()?;
    let labelled_from_classes = if ds.classes.is_empty() {
        0
    } else {
        let idx = crate::analysis::index::load_index(&home)?;
        let null = crate::analysis::label_null::class_null(&ws, idx.top_n, job)?;
        let mut l = crate::analysis::labels::Labels::load(&home)?;
        let n = crate::analysis::labels::label_from_classes(&mut l, &idx, &ds, &null)?;
        l.save(&home)?;
        n
    };
    Ok(SaeReport {
        already_trained,
        labelled_from_classes,
        sae: home
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        features: ix.features,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder of files named like images that are not (`n` of them, in class `a`).
    fn broken_images(dir: &std::path::Path, n: usize) {
        std::fs::create_dir_all(dir.join("a")).unwrap();
        for i in 0..n {
            std::fs::write(dir.join("a").join(format!("{i:04}.jpg")), b"not a jpeg").unwrap();
        }
    }

    fn request(tmp: &std::path::Path, workspace: PathBuf) -> CreateRequest {
        let model = tmp.join("model");
        if !model.exists() {
            crate::example::write_model(&model, 0).unwrap();
        }
        CreateRequest {
            model: ModelSpec::from_cli(&model.to_string_lossy(), None).unwrap(),
            device: crate::device::DeviceChoice::Cpu,
            layer: 1,
            images: tmp.join("images"),
            workspace,
            sae_file: None,
            train: TrainOptions {
                tokens: Some(10_000),
                batch: 64,
                ..TrainOptions::topk(64, 4)
            },
        }
    }

    /// Only a creation that got to its end counts as finished (the app's "did not finish" and
    /// its Resume rest on it).
    #[test]
    fn a_finished_creation_is_told_from_an_unfinished_one() {
        let tmp = tempfile::tempdir().unwrap();
        let images = tmp.path().join("images/a");
        std::fs::create_dir_all(&images).unwrap();
        for i in 0..6 {
            image::RgbImage::from_pixel(64, 64, image::Rgb([i * 40, 80, 120]))
                .save(images.join(format!("{i}.png")))
                .unwrap();
        }
        let ws = tmp.path().join("ws");
        assert!(!finished(&ws), "missing");
        let r = request(tmp.path(), ws.clone());
        let device = crate::device_of(r.device).unwrap();
        let backbone = load_backbone(&r.model, &device).unwrap();
        crate::build::extract_locked(
            &ws,
            &r.model,
            &backbone,
            &r.images,
            &extract_options(r.layer),
            &Job::default(),
        )
        .unwrap();
        assert!(!finished(&ws), "extracted, no SAE yet");
        let report = create(&r, &Job::default()).unwrap();
        assert_eq!(report.extracted_images, 6);
        assert!(finished(&ws));
    }

    /// A folder of unreadable images fails with the files and their reasons (the first few and
    /// how many in all), and leaves no half-made workspace: the folder this run made goes, a
    /// folder the user made stays with what the user put in it.
    #[test]
    fn unreadable_images_fail_with_reasons_and_leave_nothing_half_made() {
        let tmp = tempfile::tempdir().unwrap();
        broken_images(&tmp.path().join("images"), 7);
        let ws = tmp.path().join("ws");
        let err = create(&request(tmp.path(), ws.clone()), &Job::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("none of the 7 images in"), "{err}");
        assert!(err.contains("a/0000.jpg: "), "{err}");
        assert!(err.contains("and 4 more"), "{err}");
        assert!(err.contains("--images"), "{err}");
        assert!(!ws.exists(), "the workspace this run made is removed");

        let mine = tmp.path().join("mine");
        std::fs::create_dir_all(&mine).unwrap();
        std::fs::write(mine.join("notes.txt"), "mine").unwrap();
        let err = create(&request(tmp.path(), mine.clone()), &Job::default()).unwrap_err();
        assert!(err.to_string().contains("none of the 7 images"), "{err}");
        let left: Vec<String> = std::fs::read_dir(&mine)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["notes.txt"], "only the user's file is left");
    }
}
