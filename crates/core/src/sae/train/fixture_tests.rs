//! The Matryoshka and JumpReLU gradients against PyTorch autograd on the PyTorch peer's losses
//! (`../shared/bench/peer_sae_train.py`): fixtures written by
//! `scripts/make-sae-grad-fixtures.py` in f64, compared with saescope's f32 sparse kernels.

use super::*;
use serde_json::Value;

fn floats(c: &Value, key: &str) -> Vec<f32> {
    c[key]
        .as_array()
        .unwrap_or_else(|| panic!("fixture lacks {key}"))
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn trainer_for(c: &Value) -> (Trainer, Vec<f32>) {
    let u = |k: &str| c[k].as_u64().unwrap() as usize;
    let f = |k: &str| c[k].as_f64().unwrap() as f32;
    let arch = match c["arch"].as_str().unwrap() {
        "matryoshka" => TrainArch::Matryoshka {
            prefixes: Prefixes::Ends {
                ends: c["ends"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect(),
            },
        },
        _ => TrainArch::JumpRelu {
            l0_coeff: f("l0_coeff"),
            l0_target: c["l0_target"].as_f64().map(|t| t as f32),
            bandwidth: f("bandwidth"),
            init_threshold: 0.5,
        },
    };
    let x = floats(c, "x");
    let cfg = TrainConfig {
        arch,
        d_in: u("d_in"),
        d_sae: u("d_sae"),
        k: u("k"),
        k_aux: 0,
        aux_coeff: 0.0,
        dead_after_tokens: u64::MAX,
        lr: 1e-3,
        warmup_steps: 1,
        total_steps: 10,
        l1_warmup_steps: 1,
        seed: 0,
    };
    let mut t = Trainer::new(cfg, &x);
    t.w_enc_t = floats(c, "w_enc_t");
    t.b_enc = floats(c, "b_enc");
    t.w_dec = floats(c, "w_dec");
    t.b_dec = floats(c, "b_dec");
    if c.get("log_threshold").is_some() {
        t.log_threshold = floats(c, "log_threshold");
    }
    (t, x)
}

#[test]
fn matryoshka_and_jumprelu_gradients_equal_pytorch_autograd() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/sae_grads.json");
    let all: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = all["cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    // Each case through both forms: the sparse kernels and, for JumpReLU, the dense GEMMs.
    for (i, c, dense) in cases
        .iter()
        .enumerate()
        .flat_map(|(i, c)| [(i, c, false), (i, c, true)])
    {
        let (mut t, x) = trainer_for(c);
        t.dense_above = if dense { 0.0 } else { f64::INFINITY };
        let what = format!("case {i} ({}, dense form {dense})", c["arch"]);
        let g = t.grads(&x, &vec![false; t.cfg.d_sae]);
        let close = |a: f32, b: f32| (a - b).abs() <= 2e-5 + 2e-4 * b.abs();
        assert!(
            close(g.loss, c["loss"].as_f64().unwrap() as f32),
            "{what}: loss {} vs {}",
            g.loss,
            c["loss"]
        );
        assert!(
            close(g.sparsity_loss, c["sparsity_loss"].as_f64().unwrap() as f32),
            "{what}: L0 term {} vs {}",
            g.sparsity_loss,
            c["sparsity_loss"]
        );
        let mut pairs = vec![
            ("W_enc", &g.w_enc_t, floats(c, "grad_w_enc_t")),
            ("b_enc", &g.b_enc, floats(c, "grad_b_enc")),
            ("W_dec", &g.w_dec, floats(c, "grad_w_dec")),
            ("b_dec", &g.b_dec, floats(c, "grad_b_dec")),
        ];
        if c.get("grad_log_threshold").is_some() {
            pairs.push(("log θ", &g.log_threshold, floats(c, "grad_log_threshold")));
        }
        for (name, mine, torch) in pairs {
            assert_eq!(mine.len(), torch.len(), "{what} {name}");
            let scale = torch.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(
                scale > 1e-4,
                "{what} {name}: the reference gradient is all zero"
            );
            for (j, (a, b)) in mine.iter().zip(&torch).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * scale.max(1.0),
                    "{what} {name}[{j}]: saescope {a} vs PyTorch {b}"
                );
            }
        }
    }
}
