//! The device trainer against the CPU trainer: gradients of one batch and three full steps.
use super::*;
use crate::rng::Rng;

const D_IN: usize = 24;

fn matryoshka() -> TrainArch {
    TrainArch::Matryoshka {
        prefixes: crate::sae::train::Prefixes::Sampled { n: 4 },
    }
}

fn jumprelu() -> TrainArch {
    TrainArch::JumpRelu {
        l0_coeff: 0.3,
        l0_target: Some(8.0),
        bandwidth: 0.4,
        init_threshold: 0.5,
    }
}
const ROWS: usize = 64;

fn config(arch: TrainArch, d_sae: usize, k_aux: usize) -> TrainConfig {
    TrainConfig {
        arch,
        d_in: D_IN,
        d_sae,
        k: 8,
        k_aux,
        aux_coeff: 0.25,
        dead_after_tokens: ROWS as u64,
        lr: 1e-3,
        warmup_steps: 2,
        total_steps: 5,
        l1_warmup_steps: 2,
        seed: 7,
    }
}

fn batch(seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..ROWS * D_IN).map(|_| rng.normal()).collect()
}

/// The CPU unless `SAESCOPE_TEST_DEVICE` names another (see `crate::device::test_device`).
fn dev_under_test() -> Device {
    crate::device::test_device().unwrap()
}

fn tensor(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, &dev_under_test()).unwrap()
}

fn host(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// max |got − want| ≤ tol·max(1e-3, max |want|): relative to the tensor's scale.
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        err <= tol * scale,
        "{what}: max |device − cpu| = {err} (scale {scale})"
    );
}

/// A trainer away from its symmetric initial state: biases, encoder ≠ decoder, decoder rows
/// of several norms (what the L1 term and its gradient weigh).
fn trainer(cfg: TrainConfig) -> Trainer {
    let mut rng = Rng::new(11);
    let mut t = Trainer::new(cfg, &batch(1));
    t.b_enc.iter_mut().for_each(|b| *b = rng.normal() * 0.3);
    t.b_dec.iter_mut().for_each(|b| *b += rng.normal() * 0.1);
    t.w_enc_t.iter_mut().for_each(|w| *w += rng.normal() * 0.2);
    t.w_dec.iter_mut().for_each(|w| *w *= 1.0 + rng.uniform());
    t
}

/// One batch's losses, statistics and four gradients equal the CPU trainer's, for TopK with
/// dead latents (AuxK) at 96 latents and at 20,000 (wider than one sort chunk), BatchTopK
/// and Matryoshka (four sampled prefixes) with AuxK, ReLU after its L1 warm-up and JumpReLU
/// (thresholds spread so that many entries sit near them), in both decoder forms.
#[test]
fn grads_equal_the_cpu_trainer() {
    let cases = [
        (TrainArch::TopK, 96, 12),
        (TrainArch::TopK, 20_000, 12),
        (TrainArch::BatchTopK, 96, 12),
        (TrainArch::Relu { l1: 0.5 }, 96, 0),
        (matryoshka(), 96, 12),
        (jumprelu(), 96, 0),
    ];
    for (arch, d_sae, k_aux) in cases {
        let mut cpu = trainer(config(arch.clone(), d_sae, k_aux));
        cpu.step = 10; // past the L1 warm-up
        let mut rng = Rng::new(5);
        cpu.log_threshold
            .iter_mut()
            .for_each(|l| *l = (0.2 + rng.uniform()).ln());
        let x = batch(2);
        let dead: Vec<bool> = (0..d_sae).map(|j| j % 3 == 0).collect();
        let want = cpu.grads(&x, &dead);
        for kind in [DecoderKind::Sparse, DecoderKind::Dense] {
            let what = format!("{arch:?} d_sae {d_sae} {kind:?}");
            let dev = DeviceTrainer::new(&cpu, &dev_under_test(), kind).unwrap();
            let got = dev.grads(&tensor(&x, &[ROWS, D_IN]), &dead).unwrap();
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * b.abs().max(1e-3);
            assert!(
                close(got.loss, want.loss),
                "{what}: loss {} vs {}",
                got.loss,
                want.loss
            );
            assert!(
                close(got.aux_loss, want.aux_loss),
                "{what}: aux {} vs {}",
                got.aux_loss,
                want.aux_loss
            );
            assert!(
                close(got.sparsity_loss, want.sparsity_loss),
                "{what}: l1 {} vs {}",
                got.sparsity_loss,
                want.sparsity_loss
            );
            assert_eq!(k_aux > 0, want.aux_loss > 0.0, "{what}: AuxK runs");
            assert_eq!(
                matches!(arch, TrainArch::Relu { .. } | TrainArch::JumpRelu { .. }),
                want.sparsity_loss > 0.0,
                "{what}: the sparsity term runs"
            );
            assert!(
                (got.sq_err - want.sq_err).abs() <= 1e-4 * want.sq_err,
                "{what}"
            );
            match (got.min_kept, want.min_kept) {
                (Some(a), Some(b)) => assert!(close(a, b), "{what}: min kept {a} vs {b}"),
                (a, b) => assert_eq!(a, b, "{what}: min kept"),
            }
            assert_eq!(got.fired, want.fired, "{what}: fired latents");
            assert_eq!(got.l0, want.l0, "{what}: L0");
            for (name, g, w) in [
                ("W_enc", &got.w_enc_t, &want.w_enc_t),
                ("b_enc", &got.b_enc, &want.b_enc),
                ("W_dec", &got.w_dec, &want.w_dec),
                ("b_dec", &got.b_dec, &want.b_dec),
            ] {
                assert!(w.iter().any(|v| v.abs() > 1e-4), "{what} {name}: all zero");
                assert_close(&format!("{what} {name}"), &host(g), w, 1e-4);
            }
            match &got.log_threshold {
                Some(g) => {
                    assert!(
                        want.log_threshold.iter().any(|v| v.abs() > 1e-4),
                        "{what}: θ"
                    );
                    assert_close(
                        &format!("{what} log θ"),
                        &host(g),
                        &want.log_threshold,
                        1e-4,
                    );
                }
                None => assert!(want.log_threshold.is_empty(), "{what}: θ gradient missing"),
            }
        }
    }
}

/// Three steps on the device leave the same weights, Adam moments and counters as three
/// steps of the CPU trainer: warm-up learning rates, the L1 ramp, latents that die (a
/// negative bias keeps a quarter from firing) and are then trained by AuxK, the BatchTopK
/// threshold, unit-norm decoder rows, Matryoshka's prefixes drawn per step, JumpReLU's
/// thresholds and their Adam state.
#[test]
fn three_steps_equal_the_cpu_trainer() {
    for arch in [
        TrainArch::TopK,
        TrainArch::BatchTopK,
        TrainArch::Relu { l1: 0.5 },
        matryoshka(),
        jumprelu(),
    ] {
        let k_aux = if matches!(arch, TrainArch::Relu { .. } | TrainArch::JumpRelu { .. }) {
            0
        } else {
            12
        };
        for kind in [DecoderKind::Sparse, DecoderKind::Dense] {
            let what = format!("{arch:?} {kind:?}");
            let mut cpu = Trainer::new(config(arch.clone(), 96, k_aux), &batch(1));
            for j in (0..96).step_by(4) {
                cpu.b_enc[j] = -2.0;
            }
            let mut dev = DeviceTrainer::new(&cpu, &dev_under_test(), kind).unwrap();
            let mut aux_steps = 0;
            for s in 0..3 {
                let x = batch(20 + s);
                let want = cpu.train_step(&x);
                let got = dev.train_step(&tensor(&x, &[ROWS, D_IN])).unwrap();
                aux_steps += (want.aux_loss > 0.0) as usize;
                for (name, g, w) in [
                    ("loss", got.loss, want.loss),
                    ("aux loss", got.aux_loss, want.aux_loss),
                    ("l1 loss", got.sparsity_loss, want.sparsity_loss),
                ] {
                    assert!(
                        (g - w).abs() <= 1e-4 * w,
                        "{what} step {s}: {name} {g} vs {w}"
                    );
                }
            }
            if k_aux > 0 {
                assert_eq!(aux_steps, 2, "{what}: dead latents after the first step");
            }
            let mut back = Trainer::new(config(arch.clone(), 96, k_aux), &batch(3));
            dev.write_back(&mut back).unwrap();
            for ((name, got), (_, want)) in back.state().into_iter().zip(cpu.state()) {
                assert_close(&format!("{what} {name}"), got, want, 1e-4);
            }
            assert_eq!(back.step, 3, "{what}");
            assert_eq!(back.tokens_seen, cpu.tokens_seen, "{what}");
            assert_eq!(back.last_fired, cpu.last_fired, "{what}");
            assert!(
                (back.threshold - cpu.threshold).abs() <= 1e-5 * cpu.threshold.abs(),
                "{what}: threshold {} vs {}",
                back.threshold,
                cpu.threshold
            );
            if arch == TrainArch::BatchTopK {
                assert!(cpu.threshold > 0.0, "{what}: threshold learned");
            }
        }
    }
}
