use super::*;

/// An image in which feature 0 fires at `value` on token 1 (a single class-less image).
fn one_feature_image(image: u32, value: f32) -> ImageSummary {
    ImageSummary {
        image,
        class: None,
        mean_raw: vec![0.0; 2],
        features: vec![FeatureInImage {
            feature: 0,
            max: value,
            argmax: 1,
            hits: vec![(1, value)],
        }],
        top: vec![(0, value)],
    }
}

#[test]
fn feature_samples_are_uniform_and_independent_of_image_order() {
    let images: Vec<u32> = (0..500).collect();
    let value = |i: u32| (i % 97) as f32 + 0.5;
    let build = |order: &[u32]| {
        let mut ix = FeatureIndex::new(1, 2, 4, 3, 0);
        for &i in order {
            ix.add_image(one_feature_image(i, value(i)));
        }
        ix
    };
    let forward = build(&images);
    let reversed: Vec<u32> = images.iter().rev().copied().collect();
    let backward = build(&reversed);
    assert_eq!(forward.samples[0].len(), SAMPLES);
    assert_eq!(forward.samples[0], backward.samples[0]);
    // The sample is the SAMPLES images of smallest key (bottom-k), with their values.
    let mut by_key = images.clone();
    by_key.sort_by_key(|&i| sample_key(0, i));
    let want: Vec<u32> = by_key[..SAMPLES].to_vec();
    let got: Vec<u32> = forward.samples[0].iter().map(|e| e.image).collect();
    assert_eq!(got, want);
    assert!(
        forward.samples[0]
            .iter()
            .all(|e| e.value == value(e.image) && e.token == 1)
    );
    // Not the first or the strongest images: a sample from the whole range.
    assert!(got.iter().any(|&i| i >= 250) && got.iter().any(|&i| i < 250));

    // Quantile examples: weakest first, spread over the sample.
    let q = forward.quantile_examples(0, 8);
    assert_eq!(q.len(), 8);
    let values: Vec<f32> = q
        .iter()
        .map(|&(_, i)| forward.samples[0][i].value)
        .collect();
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    assert!(values[7] > values[0]);
    assert!((q[0].0 - 0.0625).abs() < 1e-12 && (q[7].0 - 0.9375).abs() < 1e-12);
    let mut sorted: Vec<f32> = forward.samples[0].iter().map(|e| e.value).collect();
    sorted.sort_by(f32::total_cmp);
    assert_eq!(values[0], sorted[2]);
    assert_eq!(values[7], sorted[30]);
    // A feature that never fired has none; asking for more than the sample gives the sample.
    assert!(
        FeatureIndex::new(2, 2, 4, 3, 0)
            .quantile_examples(1, 8)
            .is_empty()
    );
    assert_eq!(forward.quantile_examples(0, 100).len(), SAMPLES);
}

#[test]
fn feature_samples_survive_the_state_file() {
    let mut ix = FeatureIndex::new(1, 2, 4, 3, 0);
    for i in 0..50 {
        ix.add_image(one_feature_image(i, i as f32));
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("state.safetensors");
    write_state(&p, &ix).unwrap();
    let back = read_state(&p).unwrap();
    assert!(back.has_samples);
    assert_eq!(back.samples, ix.samples);
}

#[test]
fn histogram_bins_are_log_spaced() {
    assert_eq!(hist_bin(0.0005), 0);
    assert_eq!(hist_bin(0.001), 1);
    // 40 bins per decade: 1.1e-3 is 1.66 bins above 1e-3, 1.3e-3 is 4.56.
    assert_eq!(hist_bin(0.0011), 2);
    assert_eq!(hist_bin(0.0013), 5);
    assert_eq!(hist_bin(1.0), 121);
    assert_eq!(hist_bin(1e6), HIST_BINS - 1);
    assert!((hist_edge(121) - 1.0).abs() < 1e-5);
    for b in 1..HIST_BINS - 1 {
        assert_eq!(hist_bin(hist_edge(b) * 1.0001), b, "bin {b}");
    }
}

#[test]
fn top_lists_keep_the_best_images_in_order() {
    let mut ix = FeatureIndex::new(2, 1, 3, 2, 1);
    for (img, v) in [
        (0u32, 1.0f32),
        (1, 3.0),
        (2, 2.0),
        (3, 0.5),
        (4, 2.5),
        (5, 2.0),
    ] {
        ix.add_image(ImageSummary {
            image: img,
            class: Some(0),
            mean_raw: vec![1.0],
            features: vec![FeatureInImage {
                feature: 1,
                max: v,
                argmax: 1,
                hits: vec![(1, v)],
            }],
            top: vec![],
        });
    }
    let got: Vec<(u32, f32)> = ix.top[1].iter().map(|e| (e.image, e.value)).collect();
    assert_eq!(got, [(1, 3.0), (4, 2.5), (2, 2.0)]);
    assert_eq!(ix.image_count, [0, 6]);
    assert_eq!(ix.class_images, [0, 6]);
    assert!(ix.top[0].is_empty());
    // State files round-trip exactly.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.safetensors");
    write_state(&p, &ix).unwrap();
    let back = read_state(&p).unwrap();
    assert_eq!(back.top, ix.top);
    assert_eq!(back.class_raw, ix.class_raw);
    assert_eq!(back.n_images, 6);
}

/// A random image: up to 6 of 12 features fire, on random tokens, with values from a small set
/// (so top lists see many ties), in one of 3 classes or none.
fn random_image(rng: &mut crate::rng::Rng, image: u32) -> ImageSummary {
    let tokens = 4;
    let mut features = Vec::new();
    for feature in 0..12u32 {
        if rng.uniform() < 0.5 {
            continue;
        }
        let mut hits: Vec<(u32, f32)> = Vec::new();
        for t in 0..tokens {
            if rng.uniform() < 0.6 {
                hits.push((t, 0.25 * (1 + (rng.next_u64() % 6)) as f32));
            }
        }
        if let Some(&(argmax, max)) = hits.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
            features.push(FeatureInImage {
                feature,
                max,
                argmax,
                hits,
            });
        }
    }
    let class = match rng.next_u64() % 4 {
        3 => None,
        c => Some(c as usize),
    };
    let mean_raw = (0..2).map(|_| rng.normal()).collect();
    let top = features.iter().map(|f| (f.feature, f.max)).collect();
    ImageSummary {
        image,
        class,
        mean_raw,
        features,
        top,
    }
}

/// The property behind `saescope merge`: any partition of the images into consecutive parts,
/// each indexed alone and merged in order, gives exactly the one-pass index — top lists (with
/// their tie-break), samples, counts, histograms, class tables and exact sums.
#[test]
fn merged_parts_equal_one_pass_for_random_partitions() {
    let mut rng = crate::rng::Rng::new(11);
    for trial in 0..40 {
        let n_images = 1 + (rng.next_u64() % 120) as u32;
        let images: Vec<ImageSummary> = (0..n_images).map(|i| random_image(&mut rng, i)).collect();
        let fresh = || FeatureIndex::new(12, 2, 5, 4, 3);
        let mut whole = fresh();
        images
            .iter()
            .for_each(|s| whole.add_image(clone_summary(s)));
        // Random cut points (some parts empty).
        let parts = 1 + (rng.next_u64() % 6) as usize;
        let mut cuts: Vec<u32> = (0..parts - 1)
            .map(|_| (rng.next_u64() % (n_images as u64 + 1)) as u32)
            .collect();
        cuts.sort_unstable();
        cuts.insert(0, 0);
        cuts.push(n_images);
        let mut merged = fresh();
        for w in cuts.windows(2) {
            let mut part = fresh();
            images[w[0] as usize..w[1] as usize]
                .iter()
                .for_each(|s| part.add_image(clone_summary(s)));
            merged.merge(&part).unwrap();
        }
        assert_eq!(merged, whole, "trial {trial}: cuts {cuts:?}");
    }
    // Parts of another shape are refused.
    let mut a = FeatureIndex::new(12, 2, 5, 4, 3);
    assert!(a.merge(&FeatureIndex::new(12, 2, 6, 4, 3)).is_err());
}

fn clone_summary(s: &ImageSummary) -> ImageSummary {
    ImageSummary {
        image: s.image,
        class: s.class,
        mean_raw: s.mean_raw.clone(),
        features: s
            .features
            .iter()
            .map(|f| FeatureInImage {
                feature: f.feature,
                max: f.max,
                argmax: f.argmax,
                hits: f.hits.clone(),
            })
            .collect(),
        top: s.top.clone(),
    }
}

/// An index of the older format (ten histogram bins per decade) is refused with the command
/// that rebuilds it, not read with the wrong bins.
#[test]
fn an_index_of_the_older_format_says_to_rebuild_it() {
    let home = tempfile::tempdir().unwrap();
    let dir = index_dir(home.path());
    std::fs::create_dir_all(&dir).unwrap();
    crate::fsutil::write_json_atomic(
        &dir.join(PROGRESS),
        &serde_json::json!({
            "format": "saescope-index-v3",
            "settings": {"top_n": 64, "sae_fingerprint": "d_sae=8 fnv=0"},
            "shards_done": 1,
            "complete": true,
            "state_file": "state-00000.safetensors",
            "seconds": 1.0
        }),
    )
    .unwrap();
    let e = load_index(home.path()).unwrap_err().to_string();
    assert!(
        e.contains("older saescope") && e.contains("--rebuild"),
        "{e}"
    );
}
