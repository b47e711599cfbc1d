//! Ontology trees from a feature index: a hierarchy over features (average linkage on a mix of
//! decoder-direction cosine distance and co-activation distance) and a class tree from per-class
//! feature profiles, compared with a taxonomy such as WordNet (cophenetic correlation against
//! LCA path distances, purity of the top split) — for the SAE profiles and, as the baseline, the
//! same construction on raw activations.

use super::index::FeatureIndex;
use super::tree::{
    Dendrogram, Taxonomy, average_linkage, cophenetic_correlation, cosine_distances, split_purity,
};
use crate::error::{Error, Result};
use crate::sae::Sae;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where a workspace keeps its ontology.
pub fn ontology_path(home: &Path) -> PathBuf {
    home.join("ontology.json")
}

/// How the feature tree weighs decoder geometry against co-activation (0..=1).
pub const DECODER_WEIGHT: f32 = 0.5;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaxonomyComparison {
    pub cophenetic_correlation: f64,
    pub top_split_purity: f64,
    /// Class names on each side of the tree's top split.
    pub top_split: (Vec<String>, Vec<String>),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassTree {
    pub classes: Vec<String>,
    pub tree: Dendrogram,
    pub comparison: Option<TaxonomyComparison>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ontology {
    pub format: String,
    /// Features in the tree (alive ones); leaf i of `feature_tree` is feature `features[i]`.
    pub features: Vec<u32>,
    pub feature_tree: Dendrogram,
    pub class_tree_sae: Option<ClassTree>,
    pub class_tree_raw: Option<ClassTree>,
    /// The taxonomy's own top split of the classes, when one was given.
    pub taxonomy_top_split: Option<(Vec<String>, Vec<String>)>,
    /// The taxonomy restricted to the classes, as a dendrogram (average linkage on LCA path
    /// distances), to show beside the class trees.
    #[serde(default)]
    pub taxonomy_tree: Option<ClassTree>,
}

/// Co-activation similarity of features from the per-image top lists: cosine of their binary
/// image-occurrence vectors, c_ij / √(c_i c_j).
fn coactivation(
    features: &[u32],
    image_top: &HashMap<u32, Vec<(u32, f32)>>,
    d_sae: usize,
) -> Vec<f32> {
    let n = features.len();
    let mut pos = vec![usize::MAX; d_sae];
    for (i, &f) in features.iter().enumerate() {
        pos[f as usize] = i;
    }
    let mut co = vec![0u32; n * n];
    let mut count = vec![0u32; n];
    for list in image_top.values() {
        let ids: Vec<usize> = list
            .iter()
            .map(|&(j, _)| pos[j as usize])
            .filter(|&p| p != usize::MAX)
            .collect();
        for (a, &i) in ids.iter().enumerate() {
            count[i] += 1;
            for &j in &ids[a + 1..] {
                co[i * n + j] += 1;
                co[j * n + i] += 1;
            }
        }
    }
    let mut sim = vec![0f32; n * n];
    for i in 0..n {
        sim[i * n + i] = 1.0;
        for j in 0..n {
            if i != j && count[i] > 0 && count[j] > 0 {
                sim[i * n + j] =
                    co[i * n + j] as f32 / ((count[i] as f32) * (count[j] as f32)).sqrt();
            }
        }
    }
    sim
}

/// The feature tree over alive features.
pub fn feature_tree(
    sae: &Sae,
    index: &FeatureIndex,
    image_top: &HashMap<u32, Vec<(u32, f32)>>,
) -> Result<(Vec<u32>, Dendrogram)> {
    let features: Vec<u32> = (0..sae.d_sae as u32)
        .filter(|&j| index.token_count[j as usize] > 0)
        .collect();
    if features.len() < 2 {
        return Err(Error::Invalid(
            "fewer than two features ever fire: nothing to build a tree from".into(),
        ));
    }
    let n = features.len();
    let d = sae.d_in;
    let dirs: Vec<f32> = features
        .iter()
        .flat_map(|&j| {
            sae.w_dec[j as usize * d..(j as usize + 1) * d]
                .iter()
                .copied()
        })
        .collect();
    let mut dist = cosine_distances(&dirs, n, d);
    let co = coactivation(&features, image_top, sae.d_sae);
    for (x, c) in dist.iter_mut().zip(&co) {
        *x = DECODER_WEIGHT * *x + (1.0 - DECODER_WEIGHT) * (1.0 - c);
    }
    for i in 0..n {
        dist[i * n + i] = 0.0;
    }
    Ok((features, average_linkage(&dist, n)?))
}

/// Rows centred across classes (what distinguishes each class, not what all share), as
/// cosine distances.
fn centred_cosine(profiles: &[f64], n: usize, d: usize) -> Vec<f32> {
    let mut mean = vec![0f64; d];
    for r in profiles.chunks(d) {
        mean.iter_mut().zip(r).for_each(|(m, v)| *m += v / n as f64);
    }
    let centred: Vec<f32> = profiles
        .chunks(d)
        .flat_map(|r| {
            r.iter()
                .zip(&mean)
                .map(|(v, m)| (v - m) as f32)
                .collect::<Vec<_>>()
        })
        .collect();
    cosine_distances(&centred, n, d)
}

fn class_tree(
    classes: &[String],
    profiles: &[f64],
    d: usize,
    taxonomy: Option<(&Taxonomy, &[String], &[usize])>,
) -> Result<ClassTree> {
    let n = classes.len();
    let tree = average_linkage(&centred_cosine(profiles, n, d), n)?;
    let comparison = match taxonomy {
        Some((tax, ids, truth)) => {
            let split = tree.top_split();
            let names = |s: &[usize]| s.iter().map(|&i| classes[i].clone()).collect::<Vec<_>>();
            Some(TaxonomyComparison {
                cophenetic_correlation: cophenetic_correlation(&tree, ids, tax)?,
                top_split_purity: split_purity(&split, truth),
                top_split: (names(&split.0), names(&split.1)),
            })
        }
        None => None,
    };
    Ok(ClassTree {
        classes: classes.to_vec(),
        tree,
        comparison,
    })
}

/// A taxonomy file: networkx node-link JSON (`.json`) or "parent child" lines.
pub fn load_taxonomy(path: &Path) -> Result<Taxonomy> {
    if path.extension().is_some_and(|e| e == "json") {
        Taxonomy::from_node_link_json(path)
    } else {
        Taxonomy::from_parent_child_lines(path)
    }
}

/// Class ids (e.g. WordNet ids), one per line, in the order of the sorted class folder names.
pub fn load_class_ids(path: &Path, n_classes: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let ids: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if ids.len() != n_classes {
        return Err(Error::Invalid(format!(
            "{}: {} ids but the dataset has {n_classes} classes; give one id per class, in the sorted order of the class folder names",
            path.display(),
            ids.len()
        )));
    }
    Ok(ids)
}

#[derive(Clone, Debug)]
pub struct TaxonomyInput {
    pub taxonomy: PathBuf,
    pub class_ids: PathBuf,
}

pub fn build(
    sae: &Sae,
    index: &FeatureIndex,
    image_top: &HashMap<u32, Vec<(u32, f32)>>,
    classes: &[String],
    taxonomy: Option<&TaxonomyInput>,
) -> Result<Ontology> {
    let (features, feature_tree) = feature_tree(sae, index, image_top)?;
    let nc = classes.len();
    let tax = match taxonomy {
        Some(t) => {
            let tax = load_taxonomy(&t.taxonomy)?;
            let ids = load_class_ids(&t.class_ids, nc)?;
            let groups = tax.top_groups(&ids)?;
            Some((tax, ids, groups))
        }
        None => None,
    };
    let tax_ref = tax
        .as_ref()
        .map(|(t, i, g)| (t, i.as_slice(), g.as_slice()));
    let (class_tree_sae, class_tree_raw) = if nc >= 2 && index.class_sizes.iter().all(|&s| s > 0) {
        // SAE profile: mean over the class's images of each feature's max activation.
        let d_sae = index.d_sae;
        let mut sae_prof = vec![0f64; nc * d_sae];
        for j in 0..d_sae {
            for c in 0..nc {
                sae_prof[c * d_sae + j] =
                    index.class_act.get(j * nc + c) / index.class_sizes[c] as f64;
            }
        }
        let d_in = index.d_in;
        let raw_prof: Vec<f64> = (0..nc)
            .flat_map(|c| {
                (c * d_in..(c + 1) * d_in)
                    .map(move |i| index.class_raw.get(i) / index.class_sizes[c] as f64)
            })
            .collect();
        (
            Some(class_tree(classes, &sae_prof, d_sae, tax_ref)?),
            Some(class_tree(classes, &raw_prof, d_in, tax_ref)?),
        )
    } else {
        (None, None)
    };
    let taxonomy_top_split = tax.as_ref().map(|(_, _, g)| {
        let side = |k: usize| {
            (0..nc)
                .filter(|&i| g[i] == k)
                .map(|i| classes[i].clone())
                .collect::<Vec<_>>()
        };
        (
            side(0),
            (0..nc)
                .filter(|&i| g[i] != 0)
                .map(|i| classes[i].clone())
                .collect(),
        )
    });
    let taxonomy_tree = match &tax {
        Some((t, ids, _)) if nc >= 2 => {
            let mut dist = vec![0f32; nc * nc];
            for i in 0..nc {
                for j in 0..nc {
                    dist[i * nc + j] = t.lca_distance(&ids[i], &ids[j]).unwrap_or(0) as f32;
                }
            }
            Some(ClassTree {
                classes: classes.to_vec(),
                tree: average_linkage(&dist, nc)?,
                comparison: None,
            })
        }
        _ => None,
    };
    Ok(Ontology {
        format: "saescope-ontology-v1".into(),
        taxonomy_tree,
        features,
        feature_tree,
        class_tree_sae,
        class_tree_raw,
        taxonomy_top_split,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Classes with a known two-level structure: profiles built from group + subgroup signals.
    #[test]
    fn class_tree_recovers_a_planted_hierarchy_and_scores_it() {
        let mut rng = crate::rng::Rng::new(7);
        let d = 40;
        let group: Vec<Vec<f64>> = (0..2)
            .map(|_| (0..d).map(|_| rng.normal() as f64).collect())
            .collect();
        let classes: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
        let profiles: Vec<f64> = (0..6)
            .flat_map(|c| {
                let g = &group[c / 3];
                let noise: Vec<f64> = (0..d).map(|_| 0.4 * rng.normal() as f64).collect();
                g.iter()
                    .zip(noise)
                    .map(|(a, b)| 3.0 + a + b)
                    .collect::<Vec<_>>()
            })
            .collect();
        let tax = Taxonomy::from_pairs([
            ("root", "A"),
            ("root", "B"),
            ("A", "c0"),
            ("A", "c1"),
            ("A", "c2"),
            ("B", "c3"),
            ("B", "c4"),
            ("B", "c5"),
        ]);
        let truth = [0, 0, 0, 1, 1, 1];
        let t = class_tree(&classes, &profiles, d, Some((&tax, &classes, &truth))).unwrap();
        let c = t.comparison.unwrap();
        assert_eq!(c.top_split_purity, 1.0, "{:?}", c.top_split);
        assert!(
            c.cophenetic_correlation > 0.9,
            "{}",
            c.cophenetic_correlation
        );
    }

    #[test]
    fn coactivation_is_cosine_of_occurrence() {
        let mut tops = HashMap::new();
        tops.insert(0, vec![(1, 1.0), (2, 1.0)]);
        tops.insert(1, vec![(1, 1.0)]);
        tops.insert(2, vec![(2, 1.0), (3, 1.0)]);
        let s = coactivation(&[1, 2, 3], &tops, 4);
        // 1 in {0,1}, 2 in {0,2}, 3 in {2}: cos(1,2) = 1/2, cos(2,3) = 1/√2, cos(1,3) = 0.
        assert!((s[1] - 0.5).abs() < 1e-6);
        assert!((s[5] - 0.5f32.sqrt()).abs() < 1e-6);
        assert_eq!(s[2], 0.0);
    }
}
