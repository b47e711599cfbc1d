//! Diffusion steering on tiny random-weight SD-style pipelines written in diffusers layout:
//! determinism, zero steering = bit-identical output, and exact conditioning edits.

mod common;

use candle_core::Device;
use saescope::sae::{Sae, SaeActivation, SaeMeta};
use saescope::shared::shared_path;
use saescope::steer::edit::{self, EditMode, FeatureEdit, TokenScope};
use saescope::steer::pipeline::{GenerateOptions, Pipeline};
use saescope::steer::tiny::{TEXT_WIDTH, write_tiny_pipeline};

fn tiny(dir: &std::path::Path, turbo: bool) -> Pipeline {
    write_tiny_pipeline(dir, &shared_path("data/clip/tokenizer.json"), 7, turbo).unwrap();
    Pipeline::load(dir.to_str().unwrap(), None, &Device::Cpu).unwrap()
}

/// A random TopK SAE over the tiny text encoder's width (scale folded: none).
fn random_sae(d_in: usize, d_sae: usize, seed: u64) -> Sae {
    let mut rng = saescope::sae::train::Rng::new(seed);
    let mut v = |n: usize, s: f32| (0..n).map(|_| rng.normal() * s).collect::<Vec<f32>>();
    Sae {
        d_in,
        d_sae,
        w_enc: v(d_in * d_sae, 0.3),
        b_enc: vec![0.0; d_sae],
        w_dec: v(d_sae * d_in, 0.3),
        b_dec: vec![0.0; d_in],
        threshold: None,
        activation: SaeActivation::TopK { k: 4 },
        apply_b_dec_to_input: true,
        input_scale: None,
        meta: SaeMeta::default(),
    }
}

fn opts(pipe: &Pipeline, seed: u64) -> GenerateOptions {
    GenerateOptions {
        seed,
        width: 64,
        height: 64,
        ..pipe.default_options()
    }
}

fn generate(pipe: &Pipeline, cond: &saescope::steer::pipeline::Conditioning, o: &GenerateOptions) -> (Vec<f32>, image::RgbImage, image::RgbImage) {
    let lat = pipe.denoise(cond, o, &mut |_, _| true).unwrap();
    let full = pipe.decode(&lat).unwrap();
    let preview = pipe.decode_preview(&lat).unwrap();
    (lat.flatten_all().unwrap().to_vec1().unwrap(), full, preview)
}

#[test]
fn tiny_pipelines_are_deterministic_and_zero_steering_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    // 4 Euler-ancestral steps with guidance: the sampler draws noise at every step.
    let pipe = tiny(dir.path(), false);
    assert!(!pipe.is_turbo);
    assert_eq!(pipe.embedding_width(), TEXT_WIDTH);
    let cond = pipe.encode_prompt("a watercolor painting of a fox at sunset").unwrap();
    assert_eq!(cond.embedding.dims(), &[1, 77, TEXT_WIDTH]);
    let o = GenerateOptions {
        steps: 4,
        guidance: 3.0,
        ..opts(&pipe, 42)
    };
    let (lat_a, full_a, prev_a) = generate(&pipe, &cond, &o);
    let (lat_b, full_b, prev_b) = generate(&pipe, &cond, &o);
    assert_eq!(lat_a, lat_b, "same seed, same latents");
    assert_eq!(full_a.as_raw(), full_b.as_raw());
    assert_eq!(prev_a.as_raw(), prev_b.as_raw());
    assert_eq!(full_a.dimensions(), (64, 64));
    assert_eq!(prev_a.dimensions(), (64, 64), "TAESD preview has the VAE's 8× scale");
    let (lat_c, _, _) = generate(&pipe, &cond, &GenerateOptions { seed: 43, ..o.clone() });
    assert_ne!(lat_a, lat_c, "another seed, other latents");

    // A reload from disk gives the same images: the files fix the weights.
    let again = Pipeline::load(dir.path().to_str().unwrap(), None, &Device::Cpu).unwrap();
    let (lat_d, _, _) = generate(&again, &again.encode_prompt(&cond.prompt).unwrap(), &o);
    assert_eq!(lat_a, lat_d);

    // Sliders at zero: the same conditioning tensor and bit-identical images.
    let sae = random_sae(TEXT_WIDTH, 64, 3);
    let zero = [
        FeatureEdit { feature: 5, mode: EditMode::Add(0.0), tokens: TokenScope::All },
        FeatureEdit { feature: 9, mode: EditMode::Add(0.0), tokens: TokenScope::Prompt },
    ];
    let steered = edit::apply(&sae, &cond, &zero).unwrap();
    let (a, _) = cond.rows().unwrap();
    let (b, _) = steered.rows().unwrap();
    assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    let (lat_z, full_z, prev_z) = generate(&pipe, &steered, &o);
    assert_eq!(lat_z, lat_a);
    assert_eq!(full_z.as_raw(), full_a.as_raw());
    assert_eq!(prev_z.as_raw(), prev_a.as_raw());
}

#[test]
fn steering_changes_the_conditioning_by_exactly_alpha_times_the_decoder_row() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = tiny(dir.path(), true);
    assert!(pipe.is_turbo);
    assert_eq!(pipe.default_options().steps, 1);
    let cond = pipe.encode_prompt("a photo of a red car").unwrap();
    let (x, d) = cond.rows().unwrap();
    let sae = random_sae(TEXT_WIDTH, 64, 5);
    let (f, alpha) = (17usize, 2.5f32);
    let w = &sae.w_dec[f * d..(f + 1) * d];
    let positions = [1usize, 3, 4];
    let e = FeatureEdit {
        feature: f,
        mode: EditMode::Add(alpha),
        tokens: TokenScope::Positions(positions.to_vec()),
    };
    let (y, _) = edit::apply(&sae, &cond, &[e]).unwrap().rows().unwrap();
    for t in 0..77 {
        for j in 0..d {
            let (xi, yi) = (x[t * d + j], y[t * d + j]);
            if positions.contains(&t) {
                // The edit is x + α·W_dec[f], computed once: equal to the bit.
                assert_eq!(yi.to_bits(), (xi + alpha * w[j]).to_bits(), "token {t} dim {j}");
                assert!(((yi - xi) - alpha * w[j]).abs() <= 1e-5 * (1.0 + xi.abs()));
            } else {
                assert_eq!(yi.to_bits(), xi.to_bits(), "token {t} must be untouched");
            }
        }
    }
    // Prompt scope = positions 1..=EOS; All = every position.
    let prompt_len = cond.eos_position;
    assert_eq!(TokenScope::Prompt.positions(&cond, 77), (1..=prompt_len).collect::<Vec<_>>());
    assert_eq!(TokenScope::All.positions(&cond, 77).len(), 77);

    // Several sliders mix additively.
    let two = [
        FeatureEdit { feature: 3, mode: EditMode::Add(1.0), tokens: TokenScope::All },
        FeatureEdit { feature: 8, mode: EditMode::Add(-2.0), tokens: TokenScope::All },
    ];
    let (z, _) = edit::apply(&sae, &cond, &two).unwrap().rows().unwrap();
    for j in 0..d {
        let want = x[j] + sae.w_dec[3 * d + j] - 2.0 * sae.w_dec[8 * d + j];
        assert!((z[j] - want).abs() < 1e-5);
    }

    // Clamping sets the feature's activation: re-encoding the edited token reads the value back
    // (for a feature that stays in the top k).
    let token = 2;
    let codes = sae.encode(&x[token * d..(token + 1) * d]);
    let (top, top_val) = codes.iter().enumerate().fold((0, 0f32), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
    let c = FeatureEdit {
        feature: top,
        mode: EditMode::Clamp(top_val * 1.5),
        tokens: TokenScope::Positions(vec![token]),
    };
    let (y, _) = edit::apply(&sae, &cond, &[c]).unwrap().rows().unwrap();
    let dir_t: Vec<f32> = y[token * d..(token + 1) * d].iter().zip(&x[token * d..(token + 1) * d]).map(|(a, b)| a - b).collect();
    let scale = top_val * 0.5;
    for j in 0..d {
        assert!((dir_t[j] - scale * sae.w_dec[top * d + j]).abs() < 1e-4);
    }

    // A steered Turbo image differs from the unsteered one; an unknown feature is refused.
    let o = opts(&pipe, 1);
    let (plain, _, _) = generate(&pipe, &cond, &o);
    let steered = edit::apply(&sae, &cond, &[FeatureEdit { feature: f, mode: EditMode::Add(8.0), tokens: TokenScope::All }]).unwrap();
    let (moved, _, _) = generate(&pipe, &steered, &o);
    assert_ne!(plain, moved);
    let err = edit::apply(&sae, &cond, &[FeatureEdit { feature: 64, mode: EditMode::Add(1.0), tokens: TokenScope::All }])
        .unwrap_err()
        .to_string();
    assert!(err.contains("feature 64 does not exist"), "{err}");
}
