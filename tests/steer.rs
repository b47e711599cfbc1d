//! Diffusion steering on tiny random-weight SD-style pipelines written in diffusers layout:
//! determinism, zero steering = bit-identical output, and exact conditioning edits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests make fixtures and fail loudly

mod common;

use candle_core::Device;
use saescope_core::sae::Sae;
use saescope_core::shared::shared_path;
use saescope_core::steer::edit::{self, EditMode, FeatureEdit, TokenScope};
use saescope_core::steer::pipeline::{GenerateOptions, Pipeline};
use saescope_core::steer::tiny::{TEXT_WIDTH, write_tiny_pipeline};

fn tiny(dir: &std::path::Path, turbo: bool) -> Pipeline {
    write_tiny_pipeline(dir, &shared_path("data/clip/tokenizer.json"), 7, turbo).unwrap();
    Pipeline::load(dir.to_str().unwrap(), None, &Device::Cpu).unwrap()
}

/// A random TopK SAE (k 4) over the tiny text encoder's width (scale folded: none).
fn random_sae(d_in: usize, d_sae: usize, seed: u64) -> Sae {
    Sae::random_topk(d_in, d_sae, 4, 0.3, seed)
}

fn opts(pipe: &Pipeline, seed: u64) -> GenerateOptions {
    GenerateOptions {
        seed,
        width: 64,
        height: 64,
        ..pipe.default_options()
    }
}

fn generate(
    pipe: &Pipeline,
    cond: &saescope_core::steer::pipeline::Conditioning,
    o: &GenerateOptions,
) -> (Vec<f32>, image::RgbImage, image::RgbImage) {
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
    let cond = pipe
        .encode_prompt("a watercolor painting of a fox at sunset")
        .unwrap();
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
    assert_eq!(
        prev_a.dimensions(),
        (64, 64),
        "TAESD preview has the VAE's 8× scale"
    );
    let (lat_c, _, _) = generate(
        &pipe,
        &cond,
        &GenerateOptions {
            seed: 43,
            ..o.clone()
        },
    );
    assert_ne!(lat_a, lat_c, "another seed, other latents");

    // A reload from disk gives the same images: the files fix the weights.
    let again = Pipeline::load(dir.path().to_str().unwrap(), None, &Device::Cpu).unwrap();
    let (lat_d, _, _) = generate(&again, &again.encode_prompt(&cond.prompt).unwrap(), &o);
    assert_eq!(lat_a, lat_d);

    // Sliders at zero: the same conditioning tensor and bit-identical images.
    let sae = random_sae(TEXT_WIDTH, 64, 3);
    let zero = [
        FeatureEdit {
            feature: 5,
            mode: EditMode::Add(0.0),
            tokens: TokenScope::All,
        },
        FeatureEdit {
            feature: 9,
            mode: EditMode::Add(0.0),
            tokens: TokenScope::Prompt,
        },
    ];
    let steered = edit::apply(&sae, &cond, &zero).unwrap();
    let (a, _) = cond.rows().unwrap();
    let (b, _) = steered.rows().unwrap();
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
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
                assert_eq!(
                    yi.to_bits(),
                    (xi + alpha * w[j]).to_bits(),
                    "token {t} dim {j}"
                );
                assert!(((yi - xi) - alpha * w[j]).abs() <= 1e-5 * (1.0 + xi.abs()));
            } else {
                assert_eq!(yi.to_bits(), xi.to_bits(), "token {t} must be untouched");
            }
        }
    }
    // Prompt scope = positions 1..=EOS; All = every position.
    let prompt_len = cond.eos_position;
    assert_eq!(
        TokenScope::Prompt.positions(&cond, 77),
        (1..=prompt_len).collect::<Vec<_>>()
    );
    assert_eq!(TokenScope::All.positions(&cond, 77).len(), 77);

    // Several sliders mix additively.
    let two = [
        FeatureEdit {
            feature: 3,
            mode: EditMode::Add(1.0),
            tokens: TokenScope::All,
        },
        FeatureEdit {
            feature: 8,
            mode: EditMode::Add(-2.0),
            tokens: TokenScope::All,
        },
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
    let (top, top_val) = codes
        .iter()
        .enumerate()
        .fold((0, 0f32), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
    let c = FeatureEdit {
        feature: top,
        mode: EditMode::Clamp(top_val * 1.5),
        tokens: TokenScope::Positions(vec![token]),
    };
    let (y, _) = edit::apply(&sae, &cond, &[c]).unwrap().rows().unwrap();
    let dir_t: Vec<f32> = y[token * d..(token + 1) * d]
        .iter()
        .zip(&x[token * d..(token + 1) * d])
        .map(|(a, b)| a - b)
        .collect();
    let scale = top_val * 0.5;
    for (moved, w) in dir_t.iter().zip(&sae.w_dec[top * d..(top + 1) * d]) {
        assert!((moved - scale * w).abs() < 1e-4);
    }

    // A steered Turbo image differs from the unsteered one; an unknown feature is refused.
    let o = opts(&pipe, 1);
    let (plain, _, _) = generate(&pipe, &cond, &o);
    let steered = edit::apply(
        &sae,
        &cond,
        &[FeatureEdit {
            feature: f,
            mode: EditMode::Add(8.0),
            tokens: TokenScope::All,
        }],
    )
    .unwrap();
    let (moved, _, _) = generate(&pipe, &steered, &o);
    assert_ne!(plain, moved);
    let err = edit::apply(
        &sae,
        &cond,
        &[FeatureEdit {
            feature: 64,
            mode: EditMode::Add(1.0),
            tokens: TokenScope::All,
        }],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("feature 64 does not exist"), "{err}");
}

/// The CLI end to end on a tiny pipeline: write it, train a text-encoder SAE over the built-in
/// corpus, generate steered images, and discover attributes with the tiny CLIP.
#[test]
fn steer_cli_trains_generates_and_discovers() {
    use common::run_json;
    use std::process::Command;
    let bin = env!("CARGO_BIN_EXE_saescope");
    let tmp = tempfile::tempdir().unwrap();
    let pipe = tmp.path().join("pipe");
    let folder = tmp.path().join("text-sae");
    run_json(
        Command::new(bin)
            .args(["steer", "make-tiny", "--turbo", "--out"])
            .arg(&pipe),
    );
    let r = run_json(
        Command::new(bin)
            .args([
                "steer",
                "train-sae",
                "--d-sae",
                "256",
                "--k",
                "8",
                "--pipeline",
            ])
            .arg(&pipe)
            .arg("--out")
            .arg(&folder),
    );
    assert!(r["prompts"].as_u64().unwrap() >= 1000, "{r}");
    assert!(r["tokens"].as_u64().unwrap() > 10_000, "{r}");
    let fve = r["heldout_fve"].as_f64().unwrap();
    assert!(fve > 0.5, "text SAE FVE on held-out prompts {fve}");
    assert!(r["heldout_tokens"].as_u64().unwrap() > 1000, "{r}");
    let sae = saescope_core::sae::formats::load_sae(&folder.join("sae")).unwrap();
    assert_eq!((sae.d_in, sae.d_sae), (TEXT_WIDTH, 256));
    // The train-sae output folder itself is accepted wherever an SAE is asked for.
    assert_eq!(saescope_core::sae::formats::load_sae(&folder).unwrap(), sae);
    // Each feature's strongest corpus prompts are written beside it (strongest first).
    let top = saescope_core::steer::corpus::read_top_prompts(&folder.join("sae"))
        .unwrap()
        .expect("top_prompts.json");
    assert_eq!(top.features.len(), 256);
    let listed = top.features.iter().filter(|f| !f.is_empty()).count();
    assert!(listed > 128, "{listed} of 256 features have top prompts");
    for f in &top.features {
        assert!(f.len() <= 5);
        assert!(f.windows(2).all(|w| w[0].activation >= w[1].activation));
        assert!(f.iter().all(|p| !p.prompt.is_empty() && p.activation > 0.0));
    }

    let out = tmp.path().join("gen");
    let generate_with = |features: &[&str]| {
        let mut c = Command::new(bin);
        c.args([
            "steer",
            "generate",
            "--prompt",
            "a red car in the snow",
            "--size",
            "64",
            "--pipeline",
        ])
        .arg(&pipe)
        .arg("--sae")
        .arg(folder.join("sae"))
        .arg("--out")
        .arg(&out);
        for f in features {
            c.args(["--feature", f]);
        }
        run_json(&mut c)
    };
    let zero = generate_with(&["5=0"]);
    assert_eq!(zero["mean_abs_pixel_diff"].as_f64(), Some(0.0), "{zero}");
    let moved = generate_with(&["5=6", "9=clamp:0"]);
    assert!(
        moved["mean_abs_pixel_diff"].as_f64().unwrap() > 0.0,
        "{moved}"
    );
    assert!(out.join("side_by_side.png").is_file());
    let bad = Command::new(bin)
        .args([
            "steer",
            "generate",
            "--prompt",
            "x",
            "--feature",
            "5",
            "--json",
            "--pipeline",
        ])
        .arg(&pipe)
        .arg("--sae")
        .arg(folder.join("sae"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).contains("FEATURE=ALPHA"));
    // D5, D10: sizes past 2,048 px (100,000 took 20 GB), a NaN guidance and non-finite or huge
    // edit values are refused by name before anything runs.
    for (args, flag) in [
        (&["--size", "100000"][..], "--size"),
        (&["--guidance", "nan"][..], "--guidance"),
        (&["--feature", "5=nan"][..], "--feature"),
        (&["--feature", "5=clamp:inf"][..], "--feature"),
        (&["--feature", "5=1e38"][..], "--feature"),
    ] {
        let out = Command::new(bin)
            .args(["steer", "generate", "--prompt", "x", "--json", "--pipeline"])
            .arg(&pipe)
            .arg("--sae")
            .arg(folder.join("sae"))
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}");
        assert!(stdout.contains(flag), "{args:?}: {stdout}");
    }
    // D12: a text SAE run of 10^14 tokens is refused with its estimate, not started.
    let out = Command::new(bin)
        .args(["steer", "train-sae", "--tokens", "99999999999999", "--json"])
        .args(["--max-hours", "1", "--pipeline"])
        .arg(&pipe)
        .arg("--out")
        .arg(tmp.path().join("huge"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("would take about") && stdout.contains("--max-hours"),
        "{stdout}"
    );

    let disc = tmp.path().join("disc");
    let d = run_json(
        Command::new(bin)
            .args([
                "steer",
                "discover",
                "--candidates",
                "3",
                "--seeds",
                "0,1",
                "--size",
                "64",
                "--clip",
            ])
            .arg(shared_path("models/tiny-random/clip"))
            .arg("--clip-tokenizer")
            .arg(shared_path("data/clip/tokenizer.json"))
            .arg("--pipeline")
            .arg(&pipe)
            .arg("--sae")
            .arg(folder.join("sae"))
            .arg("--out")
            .arg(&disc),
    );
    let ranking = d["ranking"].as_array().unwrap();
    assert_eq!(ranking.len(), 3);
    let scores: Vec<f64> = ranking
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "ranked by score: {scores:?}"
    );
    assert_eq!(
        ranking[0]["strips"].as_array().unwrap().len(),
        6,
        "3 prompts × 2 seeds"
    );
    let export =
        saescope_core::analysis::export::read_export(&disc.join("discovery-export.json")).unwrap();
    assert_eq!(export.features.len(), 3);
    assert_eq!(
        export.sae_fingerprint,
        saescope_core::analysis::index::sae_fingerprint(&sae)
    );
    let label = export.features[0].label.as_ref().unwrap();
    assert_eq!(
        label.source,
        saescope_core::analysis::labels::LabelSource::Steering
    );
    assert!(
        label.text.starts_with("more: ") || label.text.starts_with("less: "),
        "{}",
        label.text
    );
    let strip = image::open(disc.join(export.features[0].png.as_ref().unwrap())).unwrap();
    assert_eq!((strip.width(), strip.height()), (192, 64), "−α | 0 | +α");
}

/// SDXL layout: two text encoders (the second pads with "!"), penultimate states concatenated;
/// seeded, and zero steering leaves it bit-identical too.
#[test]
fn tiny_sdxl_pipeline_concatenates_two_encoders_and_steers() {
    use saescope_core::steer::pipeline::PipelineKind;
    use saescope_core::steer::tiny::{TinyKind, write_tiny};
    let dir = tempfile::tempdir().unwrap();
    write_tiny(
        dir.path(),
        &shared_path("data/clip/tokenizer.json"),
        9,
        TinyKind::SdxlTurbo,
    )
    .unwrap();
    let pipe = Pipeline::load(dir.path().to_str().unwrap(), None, &Device::Cpu).unwrap();
    assert_eq!(pipe.kind, PipelineKind::Sdxl);
    assert!(pipe.is_turbo);
    assert!(
        pipe.missing_added_conditioning,
        "SDXL's added conditioning is reported as missing"
    );
    assert_eq!(pipe.embedding_width(), 2 * TEXT_WIDTH);
    let cond = pipe.encode_prompt("a cabin in the snow").unwrap();
    assert_eq!(cond.embedding.dims(), &[1, 77, 2 * TEXT_WIDTH]);
    let o = opts(&pipe, 3);
    let (a, _, _) = generate(&pipe, &cond, &o);
    let (b, _, _) = generate(&pipe, &cond, &o);
    assert_eq!(a, b);
    let sae = random_sae(2 * TEXT_WIDTH, 32, 1);
    let zero = edit::apply(
        &sae,
        &cond,
        &[FeatureEdit {
            feature: 2,
            mode: EditMode::Add(0.0),
            tokens: TokenScope::All,
        }],
    )
    .unwrap();
    let (z, _, _) = generate(&pipe, &zero, &o);
    assert_eq!(z, a);
    let moved = edit::apply(
        &sae,
        &cond,
        &[FeatureEdit {
            feature: 2,
            mode: EditMode::Add(5.0),
            tokens: TokenScope::Prompt,
        }],
    )
    .unwrap();
    let (m, _, _) = generate(&pipe, &moved, &o);
    assert_ne!(m, a);
}

/// The features listed as active on a prompt are exactly the SAE's codes on the prompt's own
/// tokens (BOS and padding left out): strongest first, with where and how often each fires.
#[test]
fn prompt_features_are_the_sae_codes_on_the_prompt_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let pipe = tiny(tmp.path(), true);
    let sae = random_sae(TEXT_WIDTH, 64, 9);
    let prompt = "a red lighthouse by the sea";
    let listed = saescope_core::steer::session::prompt_features(&pipe, &sae, prompt, 1000).unwrap();
    let cond = pipe.encode_prompt(prompt).unwrap();
    let (x, d) = cond.rows().unwrap();
    let mut want: std::collections::BTreeMap<u32, (f32, usize, usize)> = Default::default();
    for pos in 1..=cond.eos_position {
        for (j, v) in sae
            .encode(&x[pos * d..(pos + 1) * d])
            .into_iter()
            .enumerate()
        {
            if v > 0.0 {
                let e = want.entry(j as u32).or_insert((v, pos, 0));
                e.2 += 1;
                if v > e.0 {
                    (e.0, e.1) = (v, pos);
                }
            }
        }
    }
    assert!(!listed.is_empty());
    assert_eq!(listed.len(), want.len());
    for p in &listed {
        let (max, pos, n) = want[&p.feature];
        assert!((p.max - max).abs() < 1e-5, "feature {}", p.feature);
        assert_eq!((p.position, p.tokens), (pos, n), "feature {}", p.feature);
    }
    assert!(listed.windows(2).all(|w| w[0].max >= w[1].max));
    let top3 = saescope_core::steer::session::prompt_features(&pipe, &sae, prompt, 3).unwrap();
    assert_eq!(top3[..], listed[..3]);
}
