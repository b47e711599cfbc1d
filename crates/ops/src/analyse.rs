//! The feature analyses of a workspace's SAE: index, OOD, ontology and labels.

use super::{device_of, sae_of};
use crate::analysis::{index, labels, ontology, ood};
use crate::device::DeviceChoice;
use crate::error::Result;
use crate::fix::Opt;
use crate::job::Job;
use crate::lock::{Hold, writer};
use crate::store::Workspace;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Clone, Debug, Default)]
pub struct IndexRequest {
    pub workspace: PathBuf,
    pub sae: Option<PathBuf>,
    pub device: DeviceChoice,
    pub options: index::IndexOptions,
}

/// Builds (or resumes) the SAE's feature index, or one task's part of it.
pub fn build_index(r: &IndexRequest, job: &Job) -> Result<index::IndexReport> {
    let ws = Workspace::open(&r.workspace)?;
    let (_lock, (home, sae)) = match r.options.task {
        // A task takes its own claim (in `build_index`), never the workspace lock, so it
        // cannot import an SAE from elsewhere: it indexes one of the workspace's own.
        Some(_) => (None, own_sae(&ws, r.sae.as_deref())?),
        None => {
            let lock = writer(&ws.dir, "index", Hold::Job)?;
            (Some(lock), sae_of(&ws, r.sae.as_deref())?)
        }
    };
    let sae = sae.on_device(&device_of(r.device)?)?;
    let report = index::build_index(&ws, &home, &sae, &r.options, job)?;
    if r.options.task.is_none() {
        // An SAE loaded from elsewhere gets its FVE, L0 and dead share on this workspace.
        crate::saes::measure_loaded_sae(&ws, &home, &sae)?;
    }
    Ok(report)
}

/// The workspace's own SAE that `sae` names (or the active one), without importing.
pub(crate) fn own_sae(
    ws: &Workspace,
    sae: Option<&std::path::Path>,
) -> Result<(PathBuf, crate::sae::Sae)> {
    let home = crate::sae::catalog::own_sae_dir(ws, sae)?.ok_or_else(|| {
        crate::fixable!(
            [format!(
                "{}: a task works on one of the workspace's own SAEs, by name",
                sae.map_or(String::new(), |p| p.display().to_string())
            )],
            [
                "give the name of an SAE under the workspace's saes/ (any command without ",
                Opt::Task,
                " imports an SAE folder from elsewhere there)"
            ]
        )
    })?;
    let sae = crate::sae::catalog::workspace_sae(ws, Some(&home))?;
    Ok((home, sae))
}

#[derive(Clone, Debug)]
pub struct OodRequest {
    pub workspace: PathBuf,
    pub sae: Option<PathBuf>,
    pub device: DeviceChoice,
    pub fit: PathBuf,
    pub id: PathBuf,
    pub ood: Vec<PathBuf>,
    pub options: ood::OodOptions,
}

/// Fits, scores and saves OOD results beside the SAE (the workspace's own store is reused for
/// its images); returns them and where they were saved.
pub fn ood(r: &OodRequest, job: &Job) -> Result<(ood::OodResults, PathBuf)> {
    check_ood_options(&r.options)?;
    let ws = Workspace::open(&r.workspace)?;
    let _lock = writer(&ws.dir, "ood", Hold::Job)?;
    let device = device_of(r.device)?;
    let (home, sae) = sae_of(&ws, r.sae.as_deref())?;
    let sae = sae.on_device(&device)?;
    let b = crate::backbone::load_backbone(&ws.config.model, &device)?;
    let options = with_own_store(r);
    let results = ood::run(
        &b,
        &sae,
        ws.config.layer,
        &r.fit,
        &r.id,
        &r.ood,
        &options,
        job,
    )?;
    let path = ood::save_results(&home, &results)?;
    Ok((results, path))
}

/// One task of a split OOD run: the model and SAE over its part of every folder, stored for
/// `saescope merge`, which fits and scores. Takes the task's claim, not the workspace lock.
pub fn ood_task(
    r: &OodRequest,
    task: crate::store::tasks::TaskSpec,
    job: &Job,
) -> Result<ood::split::OodTaskReport> {
    check_ood_options(&r.options)?;
    let ws = Workspace::open(&r.workspace)?;
    let device = device_of(r.device)?;
    let (home, sae) = own_sae(&ws, r.sae.as_deref())?;
    let sae = sae.on_device(&device)?;
    let b = crate::backbone::load_backbone(&ws.config.model, &device)?;
    ood::split::run_task(
        &b,
        &sae,
        ws.config.layer,
        &home,
        &r.fit,
        &r.id,
        &r.ood,
        &with_own_store(r),
        task,
        job,
    )
}

/// The options with the workspace's own store read first for the images it holds.
fn with_own_store(r: &OodRequest) -> ood::OodOptions {
    let mut options = r.options.clone();
    if !options.reuse_stores.contains(&r.workspace) {
        options.reuse_stores.insert(0, r.workspace.clone());
    }
    options
}

fn check_ood_options(options: &ood::OodOptions) -> Result<()> {
    if options.batch == 0 {
        return Err(crate::fix::at_least_one(Opt::Batch));
    }
    for (what, v) in [
        (crate::fix::Part::Opt(Opt::Ridge), options.ridge_codes),
        ("the raw ridge".into(), options.ridge_raw),
    ] {
        if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            return Err(crate::fixable!([
                what,
                format!(
                    " must be a finite number above 0 (got {})",
                    v.unwrap_or_default()
                )
            ]));
        }
    }
    Ok(())
}

#[derive(Clone, Debug, Default)]
pub struct TreeRequest {
    pub workspace: PathBuf,
    pub sae: Option<PathBuf>,
    /// A taxonomy graph and the class ids in it, to compare the class trees with.
    pub taxonomy: Option<ontology::TaxonomyInput>,
}

#[derive(Debug, Serialize)]
pub struct TreeReport {
    pub ontology_file: PathBuf,
    pub features_in_tree: usize,
    pub class_tree_sae: Option<ontology::TaxonomyComparison>,
    pub class_tree_raw: Option<ontology::TaxonomyComparison>,
    pub taxonomy_top_split: Option<(Vec<String>, Vec<String>)>,
}

/// Builds the ontology of the SAE's features and saves it beside the SAE.
pub fn tree(r: &TreeRequest, _job: &Job) -> Result<(ontology::Ontology, TreeReport)> {
    let ws = Workspace::open(&r.workspace)?;
    let _lock = writer(&ws.dir, "tree", Hold::Job)?;
    let (home, sae) = sae_of(&ws, r.sae.as_deref())?;
    let idx = index::load_index(&home)?;
    let tops = index::load_image_top(&home)?;
    let classes = ws.dataset()?.classes;
    let onto = ontology::build(&sae, &idx, &tops, &classes, r.taxonomy.as_ref())?;
    let path = ontology::ontology_path(&home);
    crate::fsutil::write_json_atomic(&path, &onto)?;
    let report = TreeReport {
        ontology_file: path,
        features_in_tree: onto.features.len(),
        class_tree_sae: onto
            .class_tree_sae
            .as_ref()
            .and_then(|t| t.comparison.clone()),
        class_tree_raw: onto
            .class_tree_raw
            .as_ref()
            .and_then(|t| t.comparison.clone()),
        taxonomy_top_split: onto.taxonomy_top_split.clone(),
    };
    Ok((onto, report))
}

#[derive(Clone, Debug, Default)]
pub struct LabelRequest {
    pub workspace: PathBuf,
    pub device: DeviceChoice,
    pub sae: Option<PathBuf>,
    /// Label every feature with its most precise class among its top images.
    pub from_classes: bool,
    /// CLIP zero-shot labels: (extra vocabulary file, top images looked at per feature).
    pub clip: Option<(Option<PathBuf>, usize)>,
    /// Manual labels (always win).
    pub set: Vec<(u32, String)>,
}

#[derive(Debug, Serialize)]
pub struct LabelReport {
    pub labels_file: PathBuf,
    pub labels: usize,
    pub from_classes: usize,
    pub from_clip: usize,
    pub manual_set: usize,
}

/// Adds automatic and manual labels to the SAE's labels. Label edits are short, so a busy
/// workspace is waited for (the edit policy of [`crate::lock`]) rather than refused; the lock is
/// held across load → edit → save so concurrent edits are never lost.
pub fn label(r: &LabelRequest, job: &Job) -> Result<LabelReport> {
    let ws = Workspace::open(&r.workspace)?;
    // The class-label null takes a pass over the activations (the first time), so it is
    // computed before the lock, which edits wait for only briefly; it only reads the store.
    let class_null = if r.from_classes {
        let (home, _) = sae_of(&ws, r.sae.as_deref())?;
        let idx = index::load_index(&home)?;
        let null = crate::analysis::label_null::class_null(&ws, idx.top_n, job)?;
        Some((idx, null))
    } else {
        None
    };
    let _lock = writer(&ws.dir, "label", Hold::Edit)?;
    let (home, sae) = sae_of(&ws, r.sae.as_deref())?;
    // D13: a label for a feature the SAE does not have is refused before anything is written.
    if let Some((id, _)) = r.set.iter().find(|(id, _)| *id as usize >= sae.d_sae) {
        return Err(crate::fixable!(
            [format!(
                "feature {id} does not exist: this SAE has features 0 to {}",
                sae.d_sae.saturating_sub(1)
            )],
            ["label one of those"]
        ));
    }
    let mut l = labels::Labels::load(&home)?;
    let mut from_classes = 0;
    if let Some((idx, null)) = &class_null {
        from_classes = labels::label_from_classes(&mut l, idx, &ws.dataset()?, null)?;
    }
    let mut from_clip = 0;
    if let Some((vocab, examples)) = &r.clip {
        let idx = index::load_index(&home)?;
        let b = crate::backbone::load_backbone(&ws.config.model, &device_of(r.device)?)?;
        let vocab = crate::analysis::zero_shot::vocabulary(vocab.as_deref())?;
        from_clip = crate::analysis::zero_shot::label_with_clip(
            &mut l,
            &idx,
            &ws.dataset()?,
            &ws.config.model,
            &b,
            &vocab,
            *examples,
            job,
        )?;
    }
    for (id, text) in &r.set {
        l.set_manual(*id, text);
    }
    l.save(&home)?;
    Ok(LabelReport {
        labels_file: labels::Labels::path(&home),
        labels: l.labels.len(),
        from_classes,
        from_clip,
        manual_set: r.set.len(),
    })
}

/// Sets manual labels (empty text removes one) of the SAE in `sae_home` as one load → edit →
/// save under the writer lock, and returns the labels as saved: with whatever another process
/// (`saescope label`, another window) wrote meanwhile, so an editor never saves a stale copy.
pub fn set_labels(
    workspace: &std::path::Path,
    sae_home: &std::path::Path,
    edits: &[(u32, String)],
) -> Result<labels::Labels> {
    let ws = Workspace::open(workspace)?;
    let _lock = writer(&ws.dir, "labels", Hold::Edit)?;
    let mut l = labels::Labels::load(sae_home)?;
    for (id, text) in edits {
        l.set_manual(*id, text);
    }
    l.save(sae_home)?;
    Ok(l)
}
