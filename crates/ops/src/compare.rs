//! The compare page's data: every SAE of a workspace with its training settings and its
//! benchmark figures (from `saescope eval`), and, for a feature of one SAE, the closest features
//! of the others by decoder cosine, with their top images when they have an index.

use crate::analysis::benchmark::SaeBenchmark;
use crate::analysis::index::load_top_images;
use crate::error::{Error, Result};
use crate::job::{Job, Progress};
use crate::sae::Sae;
use crate::saes::{SaeSummary, list_saes};
use crate::store::Workspace;
use std::path::PathBuf;
use std::sync::Arc;

/// One SAE on the compare page.
#[derive(Clone, Debug)]
pub struct CompareRow {
    pub summary: SaeSummary,
    /// Its figures from the last `saescope eval` that included it.
    pub benchmark: Option<SaeBenchmark>,
    /// The images those figures were scored on.
    pub eval_images: Option<PathBuf>,
    /// Why its benchmark file could not be read, when it could not.
    pub problem: Option<Arc<Error>>,
}

pub fn compare_rows(ws: &Workspace) -> Vec<CompareRow> {
    list_saes(ws)
        .into_iter()
        .map(|summary| {
            let home = ws.sae_dir(&summary.name);
            let (benchmark, eval_images, problem) = match crate::benchmark::saved(&home) {
                Ok(Some(r)) => {
                    let own = r.saes.into_iter().find(|s| s.name == summary.name);
                    (own, Some(r.eval_images), None)
                }
                Ok(None) => (None, None, None),
                Err(e) => (None, None, Some(Arc::new(e))),
            };
            CompareRow {
                summary,
                benchmark,
                eval_images,
                problem,
            }
        })
        .collect()
}

/// Another SAE of the workspace, as far as the comparison needs it.
pub struct OtherSae {
    pub name: String,
    sae: Sae,
    /// Top images per feature, when it has a finished index.
    pub top_images: Option<Vec<Vec<u32>>>,
}

/// A feature of another SAE close to the one asked about.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    pub sae: String,
    pub feature: u32,
    pub cosine: f32,
    /// Its top images (dataset ids, strongest first), when that SAE has an index.
    pub top_images: Vec<u32>,
}

/// Loads every SAE of the workspace but `except` (their decoders and top images); an SAE that
/// cannot be read is skipped and named in the second list.
pub fn load_others(
    ws: &Workspace,
    except: &str,
    job: &Job,
) -> Result<(Vec<OtherSae>, Vec<String>)> {
    let names: Vec<String> = ws.sae_names().into_iter().filter(|n| n != except).collect();
    let (mut others, mut unreadable) = (Vec::new(), Vec::new());
    for (i, name) in names.iter().enumerate() {
        job.check()?;
        let home = ws.sae_dir(name);
        match crate::sae::workflow::workspace_sae(ws, Some(&home)) {
            Ok(sae) => others.push(OtherSae {
                name: name.clone(),
                sae,
                top_images: load_top_images(&home).ok(),
            }),
            Err(e) => unreadable.push(format!("{name}: {e}")),
        }
        job.report(Progress {
            done: i as u64 + 1,
            total: names.len() as u64,
            unit: "SAEs",
            message: name.clone(),
        });
    }
    Ok((others, unreadable))
}

/// The `per_sae` features of each other SAE whose decoder direction is closest (cosine) to
/// `direction` (any norm), best first within each SAE.
pub fn closest(direction: &[f32], others: &[OtherSae], per_sae: usize) -> Vec<Match> {
    others
        .iter()
        .filter(|o| o.sae.d_in == direction.len())
        .flat_map(|o| {
            o.sae
                .closest_to(direction, per_sae, None)
                .into_iter()
                .map(|(feature, cosine)| Match {
                    sae: o.name.clone(),
                    feature,
                    cosine,
                    top_images: o
                        .top_images
                        .as_ref()
                        .and_then(|t| t.get(feature as usize))
                        .cloned()
                        .unwrap_or_default(),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closest_feature_is_the_same_direction() {
        let mut sae = Sae::random_topk(2, 3, 1, 1.0, 0);
        sae.w_dec = vec![1.0, 0.0, 0.0, 2.0, 3.0, 3.1];
        let other = OtherSae {
            name: "b".into(),
            sae,
            top_images: Some(vec![vec![4], vec![5, 6], vec![]]),
        };
        let m = closest(&[0.0, -5.0], std::slice::from_ref(&other), 1);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].feature, m[0].top_images.clone()), (0, vec![4]));
        assert!(m[0].cosine.abs() < 1e-6);
        let m = closest(&[1.0, 1.0], &[other], 2);
        assert_eq!(m.iter().map(|x| x.feature).collect::<Vec<_>>(), vec![2, 0]);
    }
}
