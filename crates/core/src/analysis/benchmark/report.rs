//! The benchmark's results: per SAE its figures beside its controls' and, per metric, whether
//! it separates from them; written as JSON (per SAE and for all) and as one CSV.

use super::estimate::{Estimate, separates};
use super::recon::ReconScores;
use crate::analysis::export::csv_field;
use crate::sae::{Sae, SaeActivation};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariantScores {
    /// Latents in this variant's dictionary (2·d_in for the PCA control).
    pub width: usize,
    pub reconstruction: ReconScores,
    /// The linear probe's accuracy with the tapped layer replaced by the reconstruction.
    pub spliced_accuracy: Option<Estimate>,
    /// Clean probe accuracy minus the spliced one (points lost, as a fraction).
    pub spliced_drop: Option<f64>,
    /// Accuracy of the probe on the top latents alone.
    pub sparse_probe: Estimate,
    pub sparse_probe_latents: Vec<u32>,
    /// Mean monosemanticity over latents that fired on two images or more.
    pub monosemanticity: Option<Estimate>,
    /// Mean Moran's I over latents with a patch map on two images or more.
    pub morans_i: Option<Estimate>,
}

/// Whether the trained SAE beats both controls on one metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub metric: String,
    /// True when the trained figure is better than each control's by more than two standard
    /// errors of the difference.
    pub separates: bool,
    /// The controls it does not beat that way.
    pub not_beaten: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaeBenchmark {
    pub name: String,
    pub architecture: String,
    pub d_sae: usize,
    /// The sparsity both controls keep: the SAE's own L0 on the training sample, rounded.
    pub matched_k: usize,
    pub trained: VariantScores,
    pub untrained: VariantScores,
    pub pca: VariantScores,
    pub verdicts: Vec<Verdict>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkReport {
    pub layer: usize,
    /// The folder the probes were fit on, and the one everything was scored on.
    pub fit_images: std::path::PathBuf,
    pub eval_images: std::path::PathBuf,
    pub classes: Vec<String>,
    pub n_fit: usize,
    pub n_eval: usize,
    pub n_eval_labelled: usize,
    /// The image embedding the monosemanticity score measures similarity in.
    pub embedding: String,
    /// The majority class's share of the labelled evaluation images.
    pub chance: f64,
    /// The linear probe on the unspliced model.
    pub clean_accuracy: Estimate,
    /// Training rows the controls' sparsity and the PCA basis came from.
    pub sample_rows: usize,
    pub saes: Vec<SaeBenchmark>,
    pub seconds: f64,
}

/// (metric, higher is better, its estimate in a variant).
type Metric = (&'static str, fn(&VariantScores) -> Option<Estimate>);

const METRICS: [Metric; 5] = [
    ("fve", |v| Some(v.reconstruction.fve)),
    ("spliced_accuracy", |v| v.spliced_accuracy),
    ("sparse_probe", |v| Some(v.sparse_probe)),
    ("monosemanticity", |v| v.monosemanticity),
    ("morans_i", |v| v.morans_i),
];

impl SaeBenchmark {
    /// The metrics on which it does not beat both controls.
    pub fn not_separating(&self) -> Vec<&str> {
        self.verdicts
            .iter()
            .filter(|v| !v.separates)
            .map(|v| v.metric.as_str())
            .collect()
    }

    pub fn new(
        name: &str,
        sae: &Sae,
        matched_k: usize,
        trained: VariantScores,
        untrained: VariantScores,
        pca: VariantScores,
    ) -> Self {
        let verdicts = METRICS
            .iter()
            .filter_map(|(metric, get)| {
                let t = get(&trained)?;
                let not_beaten: Vec<String> = [("untrained", &untrained), ("pca", &pca)]
                    .into_iter()
                    .filter(|(_, c)| get(c).is_none_or(|c| !separates(&t, &c, true)))
                    .map(|(n, _)| n.to_string())
                    .collect();
                Some(Verdict {
                    metric: metric.to_string(),
                    separates: not_beaten.is_empty(),
                    not_beaten,
                })
            })
            .collect();
        SaeBenchmark {
            name: name.to_string(),
            architecture: sae
                .meta
                .training_architecture
                .clone()
                .unwrap_or_else(|| activation_name(&sae.activation).into()),
            d_sae: sae.d_sae,
            matched_k,
            trained,
            untrained,
            pca,
            verdicts,
        }
    }
}

fn activation_name(a: &SaeActivation) -> &'static str {
    match a {
        SaeActivation::Relu => "relu",
        SaeActivation::TopK { .. } => "topk",
        SaeActivation::BatchTopK { .. } => "batchtopk",
        SaeActivation::JumpRelu => "jumprelu",
    }
}

/// One row per SAE and variant: the figures, their standard errors and the verdicts.
pub fn csv(report: &BenchmarkReport) -> String {
    let mut out = String::from(
        "sae,variant,architecture,width,matched_k,fve,fve_se,nmse,l0,dead_fraction,\
         dense_fraction,spliced_accuracy,spliced_drop,sparse_probe,monosemanticity,\
         monosemanticity_se,morans_i,morans_i_se,not_separating\n",
    );
    let opt = |e: Option<Estimate>, f: fn(&Estimate) -> f64| e.map(|e| f(&e).to_string());
    for s in &report.saes {
        let failing = s.not_separating();
        for (variant, v) in [
            ("trained", &s.trained),
            ("untrained", &s.untrained),
            ("pca", &s.pca),
        ] {
            let r = &v.reconstruction;
            let cells = [
                csv_field(&s.name),
                variant.to_string(),
                csv_field(&s.architecture),
                v.width.to_string(),
                s.matched_k.to_string(),
                r.fve.value.to_string(),
                r.fve.se.to_string(),
                r.nmse.value.to_string(),
                r.l0.value.to_string(),
                r.dead_fraction.to_string(),
                r.dense_fraction.to_string(),
                opt(v.spliced_accuracy, |e| e.value).unwrap_or_default(),
                v.spliced_drop.map(|d| d.to_string()).unwrap_or_default(),
                v.sparse_probe.value.to_string(),
                opt(v.monosemanticity, |e| e.value).unwrap_or_default(),
                opt(v.monosemanticity, |e| e.se).unwrap_or_default(),
                opt(v.morans_i, |e| e.value).unwrap_or_default(),
                opt(v.morans_i, |e| e.se).unwrap_or_default(),
                if variant == "trained" {
                    failing.join(" ")
                } else {
                    String::new()
                },
            ];
            out.push_str(&cells.join(","));
            out.push('\n');
        }
    }
    out
}
