//! Tests of `sae::workflow` (training over a workspace, and naming, import and evaluation).

use super::super::shuffle::ShuffleStream;
use super::*;

/// A store of 10 images × 4 tokens (row = [image id, token]; the CLS row, token 0, holds
/// 100 + id) and 10,000 rows drawn from it by the shuffle stream.
fn draws(
    cls_extra: Option<(usize, usize)>,
    subset: Option<&HashSet<u32>>,
) -> Result<Vec<[f32; 2]>> {
    let dir = tempfile::tempdir().unwrap();
    let (d, images, tokens) = (2, 10, 4);
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    for i in 0..images {
        for t in 0..tokens {
            rows.extend([if t == 0 { 100.0 + i as f32 } else { i as f32 }, t as f32]);
        }
        ids.push(i as u32);
    }
    let store_dir = dir.path().join("acts");
    crate::store::activations::write_single_shard_store(&store_dir, &rows, d, &ids, images)
        .unwrap();
    let manifest = store_dir.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["token_indices"] = serde_json::json!([0, 1, 2, 3]);
    std::fs::write(&manifest, m.to_string()).unwrap();
    let store = ActivationStore::open(&store_dir).unwrap();
    let mut stream = ShuffleStream::new(&store, 1, 64, cls_extra, subset);
    let mut out = Vec::new();
    let mut drawn = Vec::new();
    for _ in 0..200 {
        stream.batch(50, &mut out)?;
        drawn.extend(out.chunks(d).map(|r| [r[0], r[1]]));
    }
    Ok(drawn)
}

fn cls_share(cls_extra: Option<(usize, usize)>) -> f64 {
    let drawn = draws(cls_extra, None).unwrap();
    drawn.iter().filter(|r| r[0] >= 100.0).count() as f64 / drawn.len() as f64
}

#[test]
fn cls_weight_draws_cls_rows_that_many_times_as_often() {
    let plain = cls_share(None);
    assert!((plain - 0.25).abs() < 0.03, "1 CLS row in 4: {plain}");
    // Weight 4: 4 CLS draws for every 3 patch rows of an image.
    let weighted = cls_share(Some((0, 3)));
    assert!((weighted - 4.0 / 7.0).abs() < 0.03, "4 in 7: {weighted}");
}

#[test]
fn an_image_subset_draws_only_its_images_rows() {
    let subset: HashSet<u32> = [2, 7].into();
    let drawn = draws(Some((0, 1)), Some(&subset)).unwrap();
    let image = |r: &[f32; 2]| (r[0] as u32) % 100;
    assert!(drawn.iter().all(|r| subset.contains(&image(r))));
    for id in [2, 7] {
        let n = drawn.iter().filter(|r| image(r) == id).count();
        assert!(
            (n as f64 / drawn.len() as f64 - 0.5).abs() < 0.05,
            "{id}: {n}"
        );
    }
    // Weight 2 on the subset: 2 CLS draws for every 3 patch rows.
    let cls = drawn.iter().filter(|r| r[0] >= 100.0).count() as f64 / drawn.len() as f64;
    assert!((cls - 0.4).abs() < 0.03, "{cls}");
    // A subset the store does not hold is an error, not an endless loop.
    let absent: HashSet<u32> = [42].into();
    let err = draws(None, Some(&absent)).unwrap_err().to_string();
    assert!(err.contains("none of the images"), "{err}");
}

#[test]
fn cls_weight_is_range_checked() {
    let mut opts = TrainOptions::topk(8, 2);
    opts.cls_weight = 0;
    let err = opts.validate(4).unwrap_err().to_string();
    assert!(
        err.contains("--cls-weight") && err.contains("1 and 1024"),
        "{err}"
    );
}
