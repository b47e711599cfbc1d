//! Tests of `sae::run`: the device branch of the steps, and sweeps equal to lone runs.

use super::*;
use crate::rng::Rng;
use std::path::Path;

/// A one-shard store under `dir/acts` of (d, images, tokens per image) normal rows, × scale + shift.
fn random_store(
    dir: &Path,
    (d, images, tokens): (usize, usize, usize),
    seed: u64,
    scale: f32,
    shift: f32,
) -> ActivationStore {
    let mut rng = Rng::new(seed);
    let rows: Vec<f32> = (0..images * tokens * d)
        .map(|_| rng.normal() * scale + shift)
        .collect();
    let ids: Vec<u32> = (0..images * tokens).map(|r| (r / tokens) as u32).collect();
    crate::store::activations::write_single_shard_store(&dir.join("acts"), &rows, d, &ids, images)
        .unwrap()
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

/// Four SAEs of different architectures, widths, k and learning rates trained as one sweep end
/// with the same bytes as each trained alone (same seed, so the same batches), and a second
/// run reports them trained.
#[test]
fn a_sweep_equals_its_members_trained_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = random_store(dir.path(), (12, 64, 8), 9, 1.0, 0.0);
    let opts = |arch: &str, d_sae: usize, k: usize, lr: f32| TrainOptions {
        arch: TrainArch::parse(arch, 0.0)
            .unwrap()
            .with_options(None, None, k)
            .unwrap(),
        tokens: Some(40 * 64),
        batch: 64,
        lr,
        buffer_rows: 256,
        checkpoint_every: Some(7),
        ..TrainOptions::topk(d_sae, k)
    };
    let grid = [
        opts("topk", 32, 4, 1e-3),
        opts("batchtopk", 48, 3, 2e-3),
        opts("matryoshka", 32, 4, 1e-3),
        opts("jumprelu", 24, 4, 1e-3),
    ];
    let job = Job::default();
    let member = |root: &str, i: usize| Member {
        dir: dir.path().join(root).join(format!("sae{i}")),
        meta: SaeMeta::default(),
        opts: &grid[i],
    };
    let alone: Vec<TrainReport> = (0..4)
        .map(|i| {
            train_members(&store, &[member("alone", i)], None, None, &job)
                .unwrap()
                .remove(0)
        })
        .collect();
    let members: Vec<Member> = (0..4).map(|i| member("sweep", i)).collect();
    let swept = train_members(&store, &members, None, None, &job).unwrap();
    for i in 0..4 {
        let read = |root: &str, f: &str| {
            std::fs::read(dir.path().join(root).join(format!("sae{i}")).join(f)).unwrap()
        };
        assert_eq!(
            read("alone", "sae_weights.safetensors"),
            read("sweep", "sae_weights.safetensors"),
            "{}: the sweep's weights differ from a lone run's",
            grid[i].arch.name()
        );
        assert_eq!(read("alone", METRICS_FILE), read("sweep", METRICS_FILE));
        assert_eq!(alone[i].final_fve, swept[i].final_fve);
        assert!(
            swept[i].final_fve > 0.0,
            "{}: {}",
            grid[i].arch.name(),
            swept[i].final_fve
        );
    }
    let again = train_members(&store, &members, None, None, &job).unwrap();
    assert!(again.iter().all(|r| r.already_trained));
}

/// Matryoshka and JumpReLU resume from a checkpoint file: a trainer restored from one takes the
/// same next step as the trainer that wrote it (JumpReLU's thresholds and their Adam state
/// included).
#[test]
fn matryoshka_and_jumprelu_resume_from_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(3);
    let (d_in, d_sae, rows) = (8, 32, 64);
    let data: Vec<f32> = (0..rows * d_in * 4).map(|_| rng.normal()).collect();
    for arch in ["matryoshka", "jumprelu"] {
        let arch = TrainArch::parse(arch, 0.0)
            .unwrap()
            .with_options(None, None, 3)
            .unwrap();
        let cfg = TrainConfig {
            arch: resolved_arch(&arch, d_sae, &data, d_in).unwrap(),
            d_in,
            d_sae,
            k: 3,
            k_aux: 4,
            aux_coeff: 1.0 / 32.0,
            dead_after_tokens: 100,
            lr: 1e-2,
            warmup_steps: 1,
            total_steps: 10,
            l1_warmup_steps: 1,
            seed: 5,
        };
        let mut a = Trainer::new(cfg.clone(), &data);
        for b in data.chunks(rows * d_in).take(3) {
            a.train_step(b);
        }
        let settings = RunSettings {
            arch: arch.clone(),
            d_sae,
            k: 3,
            tokens: 640,
            batch: rows,
            lr: 1e-2,
            seed: 5,
            normalize: false,
            cls_weight: 1,
            images: None,
        };
        checkpoint::save(dir.path(), &a, &settings, None, 1.0).unwrap();
        let index = checkpoint::read_index(dir.path()).unwrap().unwrap();
        let mut b = Trainer::new(index.config.clone(), &data);
        checkpoint::restore(dir.path(), &index, &mut b).unwrap();
        let last = &data[3 * rows * d_in..];
        a.train_step(last);
        b.train_step(last);
        assert_eq!(a.w_dec, b.w_dec, "{}", arch.name());
        assert_eq!(a.log_threshold, b.log_threshold, "{}", arch.name());
        assert_eq!(a.threshold, b.threshold, "{}", arch.name());
    }
}

/// D9: a run stopped after it saved its SAE but before the rest is never stuck. A finished SAE
/// with its checkpoint still beside it is reported as trained and the checkpoint removed; an
/// SAE without its report but with its run's checkpoint (the order before this fix) is refused
/// with `--restart` as the fix, and `--restart` trains it again.
#[test]
fn a_run_stopped_while_finishing_is_never_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let store = random_store(dir.path(), (6, 16, 4), 2, 1.0, 0.0);
    let opts = TrainOptions {
        tokens: Some(20 * 32),
        batch: 32,
        buffer_rows: 64,
        checkpoint_every: Some(5),
        ..TrainOptions::topk(12, 2)
    };
    let run = |home: &Path, o: &TrainOptions| {
        let m = Member {
            dir: home.to_path_buf(),
            meta: SaeMeta::default(),
            opts: o,
        };
        train_members(&store, &[m], None, None, &Job::default())
    };
    // A checkpoint of the run: cancel it after its first checkpoint.
    let stopped = dir.path().join("stopped");
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = cancel.clone();
    let job = Job::new(cancel.clone(), move |p| {
        if p.done >= 1 {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let m = Member {
        dir: stopped.clone(),
        meta: SaeMeta::default(),
        opts: &opts,
    };
    assert!(train_members(&store, &[m], None, None, &job).is_err());
    assert!(checkpoint::read_index(&stopped).unwrap().is_some());
    // The finished files of the same run, as its end would have written them.
    let done = dir.path().join("done");
    run(&done, &opts).unwrap();
    for f in ["cfg.json", "sae_weights.safetensors", "train.json"] {
        std::fs::copy(done.join(f), stopped.join(f)).unwrap();
    }
    let r = run(&stopped, &opts).unwrap();
    assert!(r[0].already_trained);
    assert!(
        checkpoint::read_index(&stopped).unwrap().is_none(),
        "the checkpoint stays behind"
    );
    // The older order's stop: the SAE is there, its report is not, its checkpoint is.
    let older = dir.path().join("older");
    let m = Member {
        dir: older.clone(),
        meta: SaeMeta::default(),
        opts: &opts,
    };
    cancel.store(false, std::sync::atomic::Ordering::SeqCst);
    let job = Job::new(cancel.clone(), {
        let flag = cancel.clone();
        move |p| {
            if p.done >= 1 {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    assert!(train_members(&store, &[m], None, None, &job).is_err());
    for f in ["cfg.json", "sae_weights.safetensors"] {
        std::fs::copy(done.join(f), older.join(f)).unwrap();
    }
    let err = run(&older, &opts).unwrap_err().to_string();
    assert!(
        err.contains("--restart") && err.contains("train.json"),
        "{err}"
    );
    let again = TrainOptions {
        restart: true,
        ..opts.clone()
    };
    let r = run(&older, &again).unwrap();
    assert!(!r[0].already_trained && older.join("train.json").is_file());
}

/// D11: a run that diverges is an error naming the learning rate and batch, saves no SAE, and in
/// a sweep the members that did not diverge are saved.
#[test]
fn a_diverged_run_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = random_store(dir.path(), (12, 32, 8), 6, 3.0, 1.0);
    let with_lr = |lr: f32| TrainOptions {
        arch: TrainArch::Relu { l1: 0.0 },
        tokens: Some(60 * 32),
        batch: 32,
        buffer_rows: 64,
        lr,
        ..TrainOptions::topk(24, 4)
    };
    // lr 1e-2 reaches FVE 0.89 here; 1e4 blows up.
    let (good, bad) = (with_lr(1e-2), with_lr(1e4));
    let member = |name: &str, o| Member {
        dir: dir.path().join(name),
        meta: SaeMeta::default(),
        opts: o,
    };
    let err = train_members(&store, &[member("bad", &bad)], None, None, &Job::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("diverged") && err.contains("--lr"), "{err}");
    assert!(!dir.path().join("bad/cfg.json").exists());
    let both = [member("good", &good), member("bad2", &bad)];
    let err = train_members(&store, &both, None, None, &Job::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 of the 2 SAEs diverged"), "{err}");
    assert!(dir.path().join("good/cfg.json").exists());
    assert!(!dir.path().join("bad2/cfg.json").exists());
}

/// D12: a run longer than --max-hours allows is refused after its first steps, naming the
/// estimate and both fixes, with its progress checkpointed.
#[test]
fn a_run_over_its_time_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = random_store(dir.path(), (8, 16, 4), 1, 1.0, 0.0);
    let opts = TrainOptions {
        tokens: Some(99_999_999_999_999_999),
        batch: 16,
        buffer_rows: 64,
        ..TrainOptions::topk(16, 2)
    };
    let m = Member {
        dir: dir.path().join("huge"),
        meta: SaeMeta::default(),
        opts: &opts,
    };
    let err = train_members(&store, &[m], None, None, &Job::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("would take about")
            && err.contains("--max-hours 72")
            && err.contains("--tokens"),
        "{err}"
    );
    assert!(
        checkpoint::read_index(&dir.path().join("huge"))
            .unwrap()
            .is_some()
    );
}
