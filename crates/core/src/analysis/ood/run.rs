//! One OOD run: every folder checked first, then the fit, the scores of the in-distribution
//! folder and of each OOD folder, and AUROC / FPR95 per method and OOD set. The per-batch
//! outputs come from a feed: the model run now ([`run`]), or a split run's stored outputs
//! ([`super::split::merge_ood`]), which then gives exactly the same results.

use super::*;

/// The folders of a run, scanned before any work so a bad one is named at once: the fit
/// folder, the in-distribution folder, then the OOD folders, with the names results use.
pub struct Folders {
    pub dirs: Vec<PathBuf>,
    pub sets: Vec<Dataset>,
    /// The scored sets' names (`names[k]` for folder k ≥ 1; `names[0]` is "fit").
    pub names: Vec<String>,
}

impl Folders {
    pub fn scan(fit_dir: &Path, id_dir: &Path, ood_dirs: &[PathBuf]) -> Result<Self> {
        if ood_dirs.is_empty() {
            return Err(crate::fixable!(
                ["no out-of-distribution folder given"],
                ["pass at least one with ", crate::fix::Opt::Ood]
            ));
        }
        let mut dirs = vec![fit_dir.to_path_buf(), id_dir.to_path_buf()];
        dirs.extend(ood_dirs.iter().cloned());
        let sets = dirs
            .iter()
            .map(|d| Dataset::scan(d))
            .collect::<Result<Vec<_>>>()?;
        let name_of = |p: &Path, i: usize| {
            let base = p
                .components()
                .rev()
                .take(2)
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>();
            let n = base.into_iter().rev().collect::<Vec<_>>().join("/");
            if i == 0 { n } else { format!("{n}#{i}") }
        };
        let mut names = vec!["fit".to_string(), name_of(id_dir, 0)];
        for (i, d) in ood_dirs.iter().enumerate() {
            let mut name = name_of(d, 0);
            if names[1..].contains(&name) {
                name = name_of(d, i + 1);
            }
            names.push(name);
        }
        Ok(Folders { dirs, sets, names })
    }
}

/// Feeds folder k's per-batch outputs to the sink; returns how many images it fed.
pub(super) type FolderFeed<'f> = dyn FnMut(usize, &Dataset, &mut BatchSink) -> Result<usize> + 'f;

/// Fits, scores the in-distribution folder and every OOD folder, and computes AUROC / FPR95
/// per method and OOD set.
#[allow(clippy::too_many_arguments)]
pub fn run(
    backbone: &dyn Backbone,
    sae: &Sae,
    layer: usize,
    fit_dir: &Path,
    id_dir: &Path,
    ood_dirs: &[PathBuf],
    opts: &OodOptions,
    job: &Job,
) -> Result<OodResults> {
    let folders = Folders::scan(fit_dir, id_dir, ood_dirs)?;
    sae.check_fits(
        backbone.info().d_model,
        &format!("layer {layer} of {}", backbone.info().name),
    )?;
    let names = folders.names.clone();
    run_from(
        sae,
        Dims::of(backbone, sae),
        &folders,
        opts,
        job,
        &mut |k, ds, sink| {
            let reuse = &opts.reuse_stores;
            let (what, msp) = (names[k].as_str(), k > 0);
            for_each_batch(
                backbone, sae, ds, layer, opts.batch, None, job, what, msp, reuse, sink,
            )
        },
    )
}

/// The run from its folders' per-batch outputs.
pub(super) fn run_from(
    sae: &Sae,
    dims: Dims,
    folders: &Folders,
    opts: &OodOptions,
    job: &Job,
    feed: &mut FolderFeed,
) -> Result<OodResults> {
    let fit_dir = &folders.dirs[0];
    let model = fit_from(dims, fit_dir, opts, job, &mut |sink| {
        feed(0, &folders.sets[0], sink)
    })?;
    let mut sets = Vec::new();
    for k in 1..folders.dirs.len() {
        let ds = &folders.sets[k];
        sets.push(score_from(
            sae,
            &model,
            ds,
            &folders.dirs[k],
            &folders.names[k],
            k == 1,
            &mut |sink| feed(k, ds, sink),
        )?);
    }
    let mut results = Vec::new();
    #[allow(clippy::needless_range_loop)] // m indexes each image's scores too
    for m in 0..METHODS.len() {
        let id = sets[0]
            .images
            .iter()
            .filter_map(|i| i.scores[m])
            .collect::<Vec<_>>();
        if id.is_empty() {
            continue;
        }
        for s in &sets[1..] {
            let ood: Vec<f64> = s.images.iter().filter_map(|i| i.scores[m]).collect();
            if ood.is_empty() {
                continue;
            }
            results.push(MethodResult {
                method: METHODS[m].to_string(),
                ood_set: s.name.clone(),
                auroc: auroc(&id, &ood),
                fpr95: fpr_at_95_tpr(&id, &ood),
                roc: roc_curve(&id, &ood, 201),
            });
        }
    }
    Ok(OodResults {
        format: "saescope-ood-v1".into(),
        fit_dir: fit_dir.to_path_buf(),
        n_fit: model.n_fit,
        ridge_codes: model.ridge_codes.clone(),
        ridge_raw: model.ridge_raw.clone(),
        ridge_cls_codes: model.ridge_cls_codes.clone(),
        methods: METHODS.iter().map(|s| s.to_string()).collect(),
        sets,
        results,
    })
}
