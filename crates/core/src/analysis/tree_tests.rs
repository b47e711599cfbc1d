//! Tests of `analysis::tree`.

use super::*;
use crate::rng::Rng;
use crate::shared::shared_path;

/// The classic UPGMA example (Wikipedia): points a..e.
fn five_points() -> Vec<f32> {
    let pairs = [
        (0, 1, 17.0),
        (0, 2, 21.0),
        (0, 3, 31.0),
        (0, 4, 23.0),
        (1, 2, 30.0),
        (1, 3, 34.0),
        (1, 4, 21.0),
        (2, 3, 28.0),
        (2, 4, 39.0),
        (3, 4, 43.0),
    ];
    let mut d = vec![0f32; 25];
    for (i, j, v) in pairs {
        d[i * 5 + j] = v;
        d[j * 5 + i] = v;
    }
    d
}

fn euclidean(points: &[f32], n: usize, dim: usize) -> Vec<f32> {
    let mut d = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            let s: f32 = (0..dim)
                .map(|k| (points[i * dim + k] - points[j * dim + k]).powi(2))
                .sum();
            d[i * n + j] = s.sqrt();
        }
    }
    d
}

fn random_points(rng: &mut Rng, n: usize, dim: usize) -> Vec<f32> {
    (0..n * dim).map(|_| rng.normal()).collect()
}

fn merge(a: usize, b: usize, height: f32, size: usize) -> Merge {
    Merge { a, b, height, size }
}

#[test]
fn average_linkage_matches_hand_computed_upgma() {
    let tree = average_linkage(&five_points(), 5).unwrap();
    // a+b at 17 → 5; e joins at (23+21)/2 = 22 → 6; c+d at 28 → 7;
    // then (abe, cd) at ((2·25.5+39)/3 + (2·32.5+43)/3)/2 = (30+36)/2 = 33.
    let expected = vec![
        merge(0, 1, 17.0, 2),
        merge(4, 5, 22.0, 3),
        merge(2, 3, 28.0, 2),
        merge(6, 7, 33.0, 5),
    ];
    assert_eq!(tree.merges, expected);
    tree.validate().unwrap();
    assert_eq!(tree.root(), 8);
    assert_eq!(tree.children(8), Some((6, 7)));
    assert_eq!(tree.children(3), None);
    assert_eq!(tree.leaves(6), vec![4, 0, 1]);
    assert_eq!(tree.top_split(), (vec![4, 0, 1], vec![2, 3]));
}

#[test]
fn cophenetic_matrix_on_the_hand_example() {
    let tree = average_linkage(&five_points(), 5).unwrap();
    let c = tree.cophenetic();
    let expected = [
        [0.0, 17.0, 33.0, 33.0, 22.0],
        [17.0, 0.0, 33.0, 33.0, 22.0],
        [33.0, 33.0, 0.0, 28.0, 33.0],
        [33.0, 33.0, 28.0, 0.0, 33.0],
        [22.0, 22.0, 33.0, 33.0, 0.0],
    ];
    assert_eq!(c, expected.concat());
}

#[test]
fn average_linkage_edge_cases() {
    let one = average_linkage(&[0.0], 1).unwrap();
    assert!(one.merges.is_empty());
    assert_eq!(one.root(), 0);
    assert_eq!(one.top_split(), (vec![0], vec![]));
    assert_eq!(one.cophenetic(), vec![0.0]);
    assert!(average_linkage(&[], 0).is_err());
    assert!(average_linkage(&[0.0, 1.0, 1.0], 2).is_err());
    assert!(average_linkage(&[0.0, 1.0, 2.0, 0.0], 2).is_err());
    assert!(average_linkage(&[0.0, f32::NAN, f32::NAN, 0.0], 2).is_err());
    // All distances equal: ties everywhere must still give a valid, deterministic tree.
    let n = 6;
    let flat: Vec<f32> = (0..n * n)
        .map(|i| if i / n == i % n { 0.0 } else { 1.0 })
        .collect();
    let t = average_linkage(&flat, n).unwrap();
    t.validate().unwrap();
    assert_eq!(t, average_linkage(&flat, n).unwrap());
    assert!(t.merges.iter().all(|m| m.height == 1.0));
}

/// Textbook O(n³) average linkage: recompute every cluster-pair mean from the original
/// distances and merge the closest pair. Returns (height, sorted leaves of the new cluster).
fn naive_average_linkage(d: &[f32], n: usize) -> Vec<(f64, Vec<usize>)> {
    let mut clusters: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    let mut out = Vec::new();
    while clusters.len() > 1 {
        let mut best = (f64::INFINITY, 0, 0);
        for i in 0..clusters.len() {
            for j in i + 1..clusters.len() {
                let mut s = 0.0;
                for &x in &clusters[i] {
                    for &y in &clusters[j] {
                        s += d[x * n + y] as f64;
                    }
                }
                let mean = s / (clusters[i].len() * clusters[j].len()) as f64;
                if mean < best.0 {
                    best = (mean, i, j);
                }
            }
        }
        let (h, i, j) = best;
        let right = clusters.remove(j);
        clusters[i].extend(right);
        clusters[i].sort();
        out.push((h, clusters[i].clone()));
    }
    out
}

#[test]
fn nn_chain_matches_naive_average_linkage_on_random_points() {
    let mut rng = Rng::new(7);
    let (n, dim) = (40, 5);
    let d = euclidean(&random_points(&mut rng, n, dim), n, dim);
    let tree = average_linkage(&d, n).unwrap();
    tree.validate().unwrap();
    let naive = naive_average_linkage(&d, n);
    assert_eq!(tree.merges.len(), naive.len());
    for (i, (m, (h, leaves))) in tree.merges.iter().zip(&naive).enumerate() {
        assert!(
            (m.height as f64 - h).abs() < 1e-4 * h.max(1.0),
            "height {} vs naive {h}",
            m.height
        );
        // Same clusters in the same order (random distances have no ties).
        let mut ours = tree.leaves(n + i);
        ours.sort();
        assert_eq!(&ours, leaves);
    }
}

#[test]
fn recovers_a_planted_hierarchy() {
    // 2 top groups × 3 subgroups × 6 points: far-apart top centres, nearer subgroup centres,
    // small noise.
    let mut rng = Rng::new(42);
    let dim = 16;
    let mut points = Vec::new();
    let (mut top, mut sub) = (Vec::new(), Vec::new());
    for g in 0..2 {
        let centre: Vec<f32> = (0..dim).map(|_| 8.0 * rng.normal()).collect();
        for s in 0..3 {
            let sub_centre: Vec<f32> = centre.iter().map(|c| c + 3.0 * rng.normal()).collect();
            for _ in 0..6 {
                points.extend(sub_centre.iter().map(|c| c + 0.3 * rng.normal()));
                top.push(g);
                sub.push(g * 3 + s);
            }
        }
    }
    let n = top.len();
    let tree = average_linkage(&euclidean(&points, n, dim), n).unwrap();
    assert_eq!(split_purity(&tree.top_split(), &top), 1.0);

    // The true tree as a taxonomy: root → group → subgroup → point.
    let mut links = vec![];
    for i in 0..n {
        links.push((format!("s{}", sub[i]), format!("p{i}")));
        links.push((format!("g{}", top[i]), format!("s{}", sub[i])));
    }
    links.push(("root".into(), "g0".into()));
    links.push(("root".into(), "g1".into()));
    let tax = Taxonomy::from_pairs(links);
    let ids: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    let r = cophenetic_correlation(&tree, &ids, &tax).unwrap();
    assert!(r > 0.9, "cophenetic correlation {r}");
    assert_eq!(tax.top_groups(&ids).unwrap(), top);

    // A shuffled labelling must do much worse, so the test can fail.
    let mut shuffled = ids.clone();
    for i in (1..n).rev() {
        shuffled.swap(i, rng.below(i + 1));
    }
    let r_bad = cophenetic_correlation(&tree, &shuffled, &tax).unwrap();
    assert!(r_bad < 0.5, "shuffled correlation {r_bad}");
}

#[test]
fn cosine_distances_known_values() {
    let v = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, -2.0, 0.0];
    let d = cosine_distances(&v, 5, 2);
    let at = |i: usize, j: usize| d[i * 5 + j];
    assert!((at(0, 1) - 1.0).abs() < 1e-6);
    assert!((at(0, 2) - (1.0 - std::f32::consts::FRAC_1_SQRT_2)).abs() < 1e-6);
    assert!((at(0, 4) - 2.0).abs() < 1e-6);
    assert_eq!(at(3, 3), 0.0);
    assert_eq!(at(3, 0), 1.0);
    assert_eq!(at(4, 3), 1.0);
    for i in 0..5 {
        assert_eq!(at(i, i), 0.0);
        for j in 0..5 {
            assert_eq!(at(i, j), at(j, i));
        }
    }
}

#[test]
fn pearson_known_values() {
    let a = [1.0, 2.0, 3.0, 4.0];
    assert!((pearson(&a, &[2.0, 4.0, 6.0, 8.0]) - 1.0).abs() < 1e-12);
    assert!((pearson(&a, &[8.0, 6.0, 4.0, 2.0]) + 1.0).abs() < 1e-12);
    // Hand-computed: deviations (−1.5, −.5, .5, 1.5) and (−1.5, .5, −.5, 1.5):
    // Σxy = 4, Σx² = Σy² = 5, so r = 4/5.
    let r = pearson(&a, &[1.0, 3.0, 2.0, 4.0]);
    assert!((r - 0.8).abs() < 1e-12, "{r}");
    assert!(pearson(&a, &[1.0, 1.0, 1.0, 1.0]).is_nan());
    assert!(pearson(&a, &[1.0]).is_nan());
}

#[test]
fn split_purity_hand_computed() {
    let truth = [0, 0, 0, 1, 1, 1];
    // Left {0,1,3}: majority 0 (2). Right {2,4,5}: majority 1 (2). (2+2)/6.
    let p = split_purity(&(vec![0, 1, 3], vec![2, 4, 5]), &truth);
    assert!((p - 4.0 / 6.0).abs() < 1e-12);
    assert_eq!(split_purity(&(vec![0, 1, 2], vec![3, 4, 5]), &truth), 1.0);
    assert!((split_purity(&(vec![0, 1, 2, 3, 4], vec![5]), &truth) - 4.0 / 6.0).abs() < 1e-12);
}

#[test]
fn lca_distance_on_a_tiny_taxonomy() {
    //        root
    //       /    \
    //   animal   vehicle
    //    /  \       \
    //  cat  dog     car
    let tax = Taxonomy::from_pairs([
        ("root", "animal"),
        ("root", "vehicle"),
        ("animal", "cat"),
        ("animal", "dog"),
        ("vehicle", "car"),
    ]);
    assert_eq!(tax.ancestors("cat"), vec!["cat", "animal", "root"]);
    assert_eq!(tax.lca_distance("cat", "dog"), Some(2));
    assert_eq!(tax.lca_distance("cat", "car"), Some(4));
    assert_eq!(tax.lca_distance("cat", "animal"), Some(1));
    assert_eq!(tax.lca_distance("cat", "cat"), Some(0));
    assert_eq!(tax.lca_distance("cat", "unicorn"), None);
    assert!(tax.ancestors("unicorn").is_empty());
    let ids: Vec<String> = ["cat", "car", "dog"].map(String::from).to_vec();
    assert_eq!(tax.top_groups(&ids).unwrap(), vec![0, 1, 0]);
    assert!(
        tax.top_groups(&["cat".to_string(), "animal".to_string()])
            .is_err()
    );
    assert!(
        tax.top_groups(&["cat".to_string(), "unicorn".to_string()])
            .is_err()
    );

    // Two separate trees share no ancestor.
    let forest = Taxonomy::from_pairs([("a", "b"), ("c", "d")]);
    assert_eq!(forest.lca_distance("b", "d"), None);
    assert!(
        forest
            .top_groups(&["b".to_string(), "d".to_string()])
            .is_err()
    );
}

fn cifar10_ids() -> Vec<String> {
    let text = std::fs::read_to_string(shared_path("data/wordnet/cifar10-wnids.txt")).unwrap();
    text.split_whitespace().map(String::from).collect()
}

#[test]
fn cifar10_wordnet_splits_vehicles_from_animals() {
    let tax =
        Taxonomy::from_node_link_json(&shared_path("data/wordnet/cifar10-graph-wordnet.json"))
            .unwrap();
    let ids = cifar10_ids();
    assert_eq!(ids.len(), 10);
    let labels: Vec<&str> = ids.iter().map(|id| tax.label(id).unwrap()).collect();
    assert_eq!(labels[0], "airplane");
    assert_eq!(labels[3], "cat");
    assert_eq!(labels[9], "truck");
    // airplane, automobile, ship, truck vs the six animals.
    assert_eq!(
        tax.top_groups(&ids).unwrap(),
        vec![0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
    );
    let (cat, dog, truck) = (&ids[3], &ids[5], &ids[9]);
    // cat → carnivore ← dog; cat → … → whole ← … ← truck.
    assert_eq!(tax.lca_distance(cat, dog), Some(2));
    assert_eq!(tax.lca_distance(cat, truck), Some(7));

    // A dendrogram built from the taxonomy's own distances correlates strongly with it.
    let n = ids.len();
    let d: Vec<f32> = (0..n * n)
        .map(|k| tax.lca_distance(&ids[k / n], &ids[k % n]).unwrap() as f32)
        .collect();
    let tree = average_linkage(&d, n).unwrap();
    assert!(cophenetic_correlation(&tree, &ids, &tax).unwrap() > 0.8);
    let truth = tax.top_groups(&ids).unwrap();
    assert_eq!(split_purity(&tree.top_split(), &truth), 1.0);
}

#[test]
fn imagenet_class_hierarchy_reaches_entity() {
    let tax = Taxonomy::from_parent_child_lines(&shared_path("data/wordnet/class_hierarchy.txt"))
        .unwrap();
    let info: Vec<(usize, String, String)> = serde_json::from_str(
        &std::fs::read_to_string(shared_path("data/wordnet/dataset_class_info.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(info.len(), 1000);
    for (_, wnid, name) in &info {
        let up = tax.ancestors(wnid);
        assert!(up.len() > 2, "{wnid} ({name}) has ancestors {up:?}");
        assert_eq!(
            up.last().unwrap(),
            "n00001740",
            "{wnid} ({name}) is not under entity"
        );
    }
    // tench → tinca → cyprinid → … → fish → … → vertebrate.
    assert!(
        tax.ancestors("n01440764")
            .contains(&"n01471682".to_string())
    );
    // goldfish is closer to tench than to toilet tissue.
    let near = tax.lca_distance("n01440764", "n01443537").unwrap();
    let far = tax.lca_distance("n01440764", "n15075141").unwrap();
    assert!(near < far, "{near} vs {far}");
}

/// `cargo test --lib analysis::tree::tests::time_average_linkage_n2048 -- --ignored --nocapture`
#[test]
#[ignore]
fn time_average_linkage_n2048() {
    let mut rng = Rng::new(1);
    let (n, dim) = (2048, 64);
    let d = cosine_distances(&random_points(&mut rng, n, dim), n, dim);
    let start = std::time::Instant::now();
    let tree = average_linkage(&d, n).unwrap();
    let took = start.elapsed();
    tree.validate().unwrap();
    println!("average_linkage n={n}: {took:?}");
}
