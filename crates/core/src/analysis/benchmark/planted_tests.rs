//! The monosemanticity and Moran's I metrics on synthetic images built from a planted sparse
//! dictionary: each image holds two concepts, each a contiguous blob of patches along one atom,
//! and its embedding is the sum of its concepts' own embedding vectors. The planted dictionary
//! itself must score above both controls (untrained, PCA) at the same sparsity, by the same
//! two-standard-error rule the benchmark reports with.

use super::controls;
use super::estimate::{Estimate, separates};
use super::mono::Monosemanticity;
use super::spatial::Spatial;
use crate::rng::Rng;
use crate::sae::{Engine, Sae, SaeActivation, SaeMeta};

const GRID: usize = 8;
const D_IN: usize = 32;
const ATOMS: usize = 24;
const D_EMB: usize = 16;
const IMAGES: usize = 600;

struct Planted {
    atoms: Vec<f32>,
    /// Per image: patch rows [GRID², D_IN].
    images: Vec<Vec<f32>>,
    embeddings: Vec<Vec<f32>>,
}

fn unit_rows(rng: &mut Rng, rows: usize, d: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..rows * d).map(|_| rng.normal()).collect();
    for r in v.chunks_mut(d) {
        let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        r.iter_mut().for_each(|x| *x /= n);
    }
    v
}

fn planted(seed: u64) -> Planted {
    let mut rng = Rng::new(seed);
    let atoms = unit_rows(&mut rng, ATOMS, D_IN);
    let concept_emb = unit_rows(&mut rng, ATOMS, D_EMB);
    let (mut images, mut embeddings) = (Vec::new(), Vec::new());
    for _ in 0..IMAGES {
        let a = rng.below(ATOMS);
        let b = (a + 1 + rng.below(ATOMS - 1)) % ATOMS;
        let mut x: Vec<f32> = (0..GRID * GRID * D_IN)
            .map(|_| 0.02 * rng.normal())
            .collect();
        let mut e: Vec<f32> = (0..D_EMB).map(|_| 0.3 * rng.normal()).collect();
        for atom in [a, b] {
            // A 3×3 blob at a random place, with one amplitude per image and concept.
            let (r0, c0) = (rng.below(GRID - 2), rng.below(GRID - 2));
            let amp = 1.0 + rng.uniform();
            for r in r0..r0 + 3 {
                for c in c0..c0 + 3 {
                    let row = &mut x[(r * GRID + c) * D_IN..][..D_IN];
                    row.iter_mut()
                        .zip(&atoms[atom * D_IN..][..D_IN])
                        .for_each(|(v, &w)| *v += amp * w);
                }
            }
            e.iter_mut()
                .zip(&concept_emb[atom * D_EMB..][..D_EMB])
                .for_each(|(v, &w)| *v += w);
        }
        images.push(x);
        embeddings.push(e);
    }
    Planted {
        atoms,
        images,
        embeddings,
    }
}

/// The planted dictionary as a TopK SAE: decoder = the atoms, encoder = their transpose.
fn planted_sae(atoms: &[f32], k: usize) -> Sae {
    let mut w_enc = vec![0f32; D_IN * ATOMS];
    for j in 0..ATOMS {
        for i in 0..D_IN {
            w_enc[i * ATOMS + j] = atoms[j * D_IN + i];
        }
    }
    Sae {
        d_in: D_IN,
        d_sae: ATOMS,
        w_enc,
        b_enc: vec![0.0; ATOMS],
        w_dec: atoms.to_vec(),
        b_dec: vec![0.0; D_IN],
        threshold: None,
        activation: SaeActivation::TopK { k },
        apply_b_dec_to_input: true,
        input_scale: None,
        meta: SaeMeta::default(),
        engine: Engine::default(),
    }
}

/// (monosemanticity, Moran's I) of `sae` over the planted images.
fn scores(sae: &Sae, data: &Planted) -> (Estimate, Estimate) {
    let mut mono = Monosemanticity::new(sae.d_sae, D_EMB);
    let mut spatial = Spatial::new(sae.d_sae, GRID, GRID);
    for (x, e) in data.images.iter().zip(&data.embeddings) {
        let codes = sae.encode_sparse(x);
        let mut max = vec![0f32; sae.d_sae];
        let mut entries = Vec::new();
        for p in 0..codes.rows() {
            for (j, v) in codes.row(p) {
                max[j as usize] = max[j as usize].max(v);
                entries.push((p as u32, j, v));
            }
        }
        let active: Vec<(u32, f32)> = max
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0.0)
            .map(|(j, &v)| (j as u32, v))
            .collect();
        mono.add_image(e, &active);
        spatial.add_image(entries);
    }
    (mono.finish().unwrap(), spatial.finish().unwrap())
}

#[test]
fn the_planted_dictionary_scores_above_its_controls() {
    let data = planted(11);
    let sample: Vec<f32> = data.images.iter().flatten().copied().collect();
    // Each patch inside a blob holds one or two atoms: k 2 keeps both.
    let sae = planted_sae(&data.atoms, 2);
    let k = controls::matched_k(&sae, &sample);
    let untrained = controls::untrained(&sae, k, &sample, 3);
    let pca = controls::pca(&sample, D_IN, k).unwrap();
    let (mono, moran) = scores(&sae, &data);
    for (name, control) in [("untrained", &untrained), ("pca", &pca)] {
        let (c_mono, c_moran) = scores(control, &data);
        assert!(
            separates(&mono, &c_mono, true),
            "monosemanticity: planted {mono:?} vs {name} {c_mono:?}"
        );
        assert!(
            separates(&moran, &c_moran, true),
            "Moran's I: planted {moran:?} vs {name} {c_moran:?}"
        );
    }
}
