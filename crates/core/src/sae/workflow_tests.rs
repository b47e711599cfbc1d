//! Tests of `sae::workflow` (training over a workspace, and naming, import and evaluation).

use super::*;
use crate::rng::Rng;

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

/// The training loop's device branch (here a device trainer on the CPU device) reports the
/// same step statistics as the CPU branch, and `synced` hands checkpoints the same state.
#[test]
fn steps_on_a_device_trainer_match_the_cpu_trainer() {
    let cfg = TrainConfig {
        arch: TrainArch::TopK,
        d_in: 16,
        d_sae: 64,
        k: 4,
        k_aux: 8,
        aux_coeff: 1.0 / 32.0,
        dead_after_tokens: 32,
        lr: 1e-3,
        warmup_steps: 1,
        total_steps: 4,
        l1_warmup_steps: 1,
        seed: 2,
    };
    let mut rng = Rng::new(4);
    let data: Vec<f32> = (0..4 * 32 * 16).map(|_| rng.normal()).collect();
    let mut cpu = Steps::new(Trainer::new(cfg.clone(), &data), &Device::Cpu).unwrap();
    let start = Trainer::new(cfg, &data);
    let device = DeviceTrainer::new(&start, &Device::Cpu, DecoderKind::Dense).unwrap();
    let mut dev = Steps {
        cpu: start,
        device: Some(device),
    };
    for batch in data.chunks(32 * 16) {
        let (a, b) = (
            cpu.train_step(batch).unwrap(),
            dev.train_step(batch).unwrap(),
        );
        assert!((a.loss - b.loss).abs() <= 1e-4 * a.loss);
        assert!((a.aux_loss - b.aux_loss).abs() <= 1e-4 * a.aux_loss);
        assert!((a.sq_err - b.sq_err).abs() <= 1e-4 * a.sq_err);
        assert_eq!(a.l0, b.l0);
        assert_eq!(cpu.dead_mask(), dev.dead_mask());
    }
    assert_eq!((dev.step(), dev.tokens_seen()), (4, 128));
    // Before `synced` the CPU copy still holds the initial state.
    assert_eq!(dev.cpu.step, 0);
    let (a, b) = (cpu.synced().unwrap(), dev.synced().unwrap());
    assert_eq!((a.step, a.tokens_seen), (b.step, b.tokens_seen));
    assert_eq!(a.last_fired, b.last_fired);
    for ((name, x), (_, y)) in a.state().into_iter().zip(b.state()) {
        let scale = x.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        let err = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(err <= 1e-4 * scale, "{name}: {err}");
    }
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
