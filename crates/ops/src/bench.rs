//! Benchmarks behind `saescope bench …`: measured on real data, printed as JSON, optionally beside
//! a peer implementation run in the same process tree so the figures are comparable.

use crate::backbone::Backbone;
use crate::error::{Error, Result};
use crate::fix::Opt;
use crate::sae::train::DecoderKind;
use crate::store::Dataset;
use crate::store::extract::for_each_decoded;
use candle_core::Device;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct ExtractBench {
    pub model: String,
    pub images: usize,
    pub batch_size: usize,
    pub layer: usize,
    pub threads: usize,
    /// Full forward pass (all blocks and the head) on preprocessed tensors: the peer's measure.
    pub images_per_s: f64,
    /// Forward pass stopped after `layer`, as `extract` runs it.
    pub forward_to_layer_images_per_s: f64,
    /// Decode + preprocess + forward to `layer`.
    pub end_to_end_images_per_s: f64,
    /// Arithmetic of the forward pass to `layer` per image (GEMMs + attention), in GFLOP.
    pub gflop_per_image_to_layer: f64,
    /// What the forward to `layer` achieves: gflop_per_image_to_layer × its images/s.
    pub forward_to_layer_gflop_s: f64,
    /// A bare GEMM of the MLP's shape (batch·tokens × d → 4d) on this machine, in GFLOP/s.
    pub bare_gemm_gflop_s: f64,
    /// forward_to_layer_gflop_s / bare_gemm_gflop_s: how close the whole pass gets to its GEMMs.
    pub gemm_efficiency: f64,
    pub peer_images_per_s: Option<f64>,
    /// The peer's measure beside ours: images_per_s (all blocks) when the peer runs them all,
    /// forward_to_layer_images_per_s when the peer is told to stop at `layer` (`--peer-arg`).
    /// With several rounds: the median of the rounds' ratios.
    pub speedup_vs_peer: Option<f64>,
    /// Rounds run; each times our passes and then the peer, so both see the same stretch of a
    /// shared machine's load. The rates above are medians over the rounds.
    pub rounds: usize,
    /// Each round's (ours, peer) images/s for the compared measure.
    pub round_rates: Vec<(f64, Option<f64>)>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[allow(clippy::too_many_arguments)]
pub fn bench_extract(
    backbone: &dyn Backbone,
    ds: &Dataset,
    layer: usize,
    batch_size: usize,
    limit: usize,
    rounds: usize,
    peer: Option<&Path>,
    peer_args: &[String],
) -> Result<ExtractBench> {
    let rounds = rounds.max(1);
    let device = backbone.device().clone();
    let ids: Vec<usize> = (0..ds.len().min(limit)).collect();
    let n_layers = backbone.info().n_layers;
    if layer >= n_layers {
        return Err(Error::Invalid(format!(
            "layer {layer} does not exist (0..={})",
            n_layers - 1
        )));
    }

    // End to end as extraction runs it: decode (one batch ahead, on another thread),
    // preprocess, forward to the layer, and the copy back to the host.
    let t0 = Instant::now();
    let mut batches = Vec::new();
    let chunks: Vec<Vec<usize>> = ids.chunks(batch_size).map(<[usize]>::to_vec).collect();
    for_each_decoded(ds, chunks, |_, (images, _, _)| {
        let (pixels, _) = backbone.preprocessor().batch(&images, &device)?;
        backbone
            .forward_to(&pixels, layer)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        batches.push(pixels);
        Ok(())
    })?;
    let end_to_end = ids.len() as f64 / t0.elapsed().as_secs_f64();

    let time = |f: &dyn Fn(&candle_core::Tensor) -> Result<()>| -> Result<f64> {
        f(&batches[0])?; // warm-up
        device.synchronize()?;
        let t = Instant::now();
        for b in &batches {
            f(b)?;
        }
        // A GPU queues its work: the clock stops when it is done.
        device.synchronize()?;
        Ok(ids.len() as f64 / t.elapsed().as_secs_f64())
    };
    let gflop = backbone.forward_flops(layer) / 1e9;
    let gemm = bare_gemm_gflop_s(
        batch_size.min(ids.len()).max(1) * backbone.info().geometry.n_tokens(),
        backbone.info().d_model,
        &device,
    )?;
    // A peer told where to stop (`--layer`) is compared with our forward to that layer.
    let peer_stops_at_layer = peer_args.iter().any(|a| a == "--layer");
    let (mut fulls, mut to_layers, mut peers, mut round_rates) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let full = time(&|b| {
            backbone.outputs(b)?;
            Ok(())
        })?;
        let to_layer = time(&|b| {
            backbone.forward_to(b, layer)?;
            Ok(())
        })?;
        let peer_rate = peer
            .map(|p| {
                let mut args = vec![ds.root.display().to_string()];
                args.extend(peer_args.iter().cloned());
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run_peer_rate(p, &args, "img/s")
            })
            .transpose()?;
        let ours = if peer_stops_at_layer { to_layer } else { full };
        fulls.push(full);
        to_layers.push(to_layer);
        peers.extend(peer_rate);
        round_rates.push((ours, peer_rate));
    }
    let full = median(fulls);
    let to_layer = median(to_layers);
    let peer_rate = (!peers.is_empty()).then(|| median(peers));
    let speedup = peer_rate.map(|_| {
        median(
            round_rates
                .iter()
                .filter_map(|(o, p)| p.map(|p| o / p))
                .collect(),
        )
    });
    Ok(ExtractBench {
        model: backbone.info().name.clone(),
        images: ids.len(),
        batch_size,
        layer,
        threads: candle_core::utils::get_num_threads(),
        images_per_s: full,
        forward_to_layer_images_per_s: to_layer,
        end_to_end_images_per_s: end_to_end,
        gflop_per_image_to_layer: gflop,
        forward_to_layer_gflop_s: gflop * to_layer,
        bare_gemm_gflop_s: gemm,
        gemm_efficiency: gflop * to_layer / gemm,
        peer_images_per_s: peer_rate,
        speedup_vs_peer: speedup,
        rounds,
        round_rates,
    })
}

/// GFLOP/s of one `rows × d → 4d` GEMM (the MLP's first layer) through the backbone's GEMM path,
/// best of three.
/// The bare GEMM rate of the MLP's first layer shape: the CPU fast kernel on the CPU, candle's
/// matmul (cuBLAS on CUDA) on another device.
fn bare_gemm_gflop_s(rows: usize, d: usize, device: &candle_core::Device) -> Result<f64> {
    if device.is_cpu() {
        return Ok(bare_cpu_gemm_gflop_s(rows, d));
    }
    let x = candle_core::Tensor::randn(0f32, 1.0, (rows, d), device)?;
    let w = candle_core::Tensor::randn(0f32, 0.05, (d, 4 * d), device)?;
    let mut best = f64::MAX;
    for _ in 0..4 {
        device.synchronize()?;
        let t = Instant::now();
        std::hint::black_box(x.matmul(&w)?);
        device.synchronize()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * (rows * d * 4 * d) as f64 / best / 1e9)
}

fn bare_cpu_gemm_gflop_s(rows: usize, d: usize) -> f64 {
    let mut rng = crate::rng::Rng::new(1);
    let w: Vec<f32> = (0..d * 4 * d).map(|_| rng.normal() * 0.05).collect();
    let x: Vec<f32> = (0..rows * d).map(|_| rng.normal()).collect();
    let lin = crate::backbone::cpu_fast::FastLinear::from_parts(w, None, d, 4 * d);
    let mut best = f64::MAX;
    let mut out = Vec::new();
    for _ in 0..4 {
        // The output buffer is reused as the forward pass reuses it (first run: page faults).
        let t = Instant::now();
        lin.forward_into(&x, rows, None, &mut out);
        std::hint::black_box(&out);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (rows * d * 4 * d) as f64 / best / 1e9
}

/// The Python interpreter for peers: `SAESCOPE_PYTHON` (e.g. a venv's python) or `python3`.
fn python() -> String {
    std::env::var("SAESCOPE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs `$SAESCOPE_PYTHON script args…` and returns the number printed before `unit`.
fn run_peer_rate(script: &Path, args: &[&str], unit: &str) -> Result<f64> {
    let out = std::process::Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| {
            Error::Invalid(format!(
                "cannot run the peer `python3 {}`: {e}",
                script.display()
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[1] == unit)
        .and_then(|w| w[0].parse::<f64>().ok());
    rate.ok_or_else(|| {
        Error::Invalid(format!(
            "the peer `{}` printed no `N {unit}` figure (is PyTorch installed? `pip install torch pillow numpy`): {}{}",
            script.display(),
            text,
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ))
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct SaeTrainBench {
    pub arch: String,
    pub d_in: usize,
    pub d_sae: usize,
    pub k: usize,
    pub batch: usize,
    pub steps: usize,
    pub threads: usize,
    pub tokens_per_s: f64,
    pub peer_tokens_per_s: Option<f64>,
    pub speedup_vs_peer: Option<f64>,
    /// Where the steps ran (`cpu`, `cuda:0`, `metal:0`).
    pub device: String,
    /// The device trainer's decoder form; `None`: the CPU trainer's own sparse kernels.
    pub decoder: Option<DecoderKind>,
}

/// The architecture as the PyTorch peer (`peer_sae_train.py`) trains it: Matryoshka with its 5
/// geometric prefix ends, JumpReLU with an L0 coefficient of 1e-3, kernel width 1e-3 and θ₀ = e^−3.
/// `init_threshold` replaces JumpReLU's initial threshold (an error for the others).
pub fn peer_arch(
    name: &str,
    d_sae: usize,
    init_threshold: Option<f32>,
) -> Result<crate::sae::train::TrainArch> {
    use crate::sae::train::{Prefixes, TrainArch};
    let arch = TrainArch::parse(name, 0.0)?;
    if init_threshold.is_some() && !matches!(arch, TrainArch::JumpRelu { .. }) {
        return Err(crate::fixable!([
            "--init-threshold applies to ",
            Opt::Arch,
            " jumprelu only"
        ]));
    }
    Ok(match arch {
        TrainArch::Matryoshka { .. } => TrainArch::Matryoshka {
            prefixes: Prefixes::geometric(d_sae, 5),
        },
        TrainArch::JumpRelu {
            bandwidth,
            init_threshold: peer_threshold,
            ..
        } => TrainArch::JumpRelu {
            l0_coeff: 1e-3,
            l0_target: None,
            bandwidth,
            init_threshold: init_threshold.unwrap_or(peer_threshold),
        },
        TrainArch::Relu { .. } => {
            return Err(crate::fixable!(
                [Opt::Arch, " relu has no PyTorch peer to compare with"],
                ["use topk, batchtopk, matryoshka or jumprelu"]
            ));
        }
        other => other,
    })
}

/// What `bench sae-train` runs: the shapes, the decoder form, and the peer run beside it.
#[derive(Clone, Debug)]
pub struct SaeTrainBenchOptions {
    pub arch: crate::sae::train::TrainArch,
    pub d_in: usize,
    pub d_sae: usize,
    pub k: usize,
    pub batch: usize,
    pub steps: usize,
    /// None: the CPU trainer's own kernels on the CPU, the dense decoder elsewhere.
    pub decoder: Option<DecoderKind>,
    /// A PyTorch peer script printing `N tokens/s`, and extra arguments for it.
    pub peer: Option<std::path::PathBuf>,
    pub peer_args: Vec<String>,
}

/// TopK SAE training throughput on random data (the peer's setup: Adam, unit-norm decoder) on
/// `device`: the CPU trainer on the CPU when `decoder` is `None`, else the device trainer with
/// that decoder form. The clock stops after the device has finished the last step.
pub fn bench_sae_train(device: &Device, o: &SaeTrainBenchOptions) -> Result<SaeTrainBench> {
    let (d_in, d_sae, k, batch, steps, decoder) =
        (o.d_in, o.d_sae, o.k, o.batch, o.steps, o.decoder);
    use crate::rng::Rng;
    use crate::sae::train::{DeviceTrainer, TrainConfig, Trainer};
    if d_in == 0 || steps == 0 {
        return Err(crate::fixable!([
            Opt::DIn,
            " and ",
            Opt::Steps,
            format!(" must be at least 1 (got {d_in} and {steps})")
        ]));
    }
    crate::sae::workflow::TrainOptions {
        batch,
        ..crate::sae::workflow::TrainOptions::topk(d_sae, k)
    }
    .validate(d_in)?;
    // The random data: four batches.
    let data_bytes = (batch as f64) * 4.0 * (d_in as f64) * 4.0;
    if let Some(avail) = crate::memory::available_bytes()
        && data_bytes > 0.5 * avail as f64
    {
        return Err(crate::fixable!(
            [
                Opt::Batch,
                format!(" {batch} × "),
                Opt::DIn,
                format!(
                    " {d_in} needs {:.1} GB of data, more than half the {:.1} GB available",
                    data_bytes / 1e9,
                    avail as f64 / 1e9
                )
            ],
            ["lower them"]
        ));
    }
    let mut rng = Rng::new(0);
    let data: Vec<f32> = (0..batch * 4 * d_in).map(|_| rng.normal()).collect();
    let cfg = TrainConfig {
        arch: o.arch.clone(),
        d_in,
        d_sae,
        k,
        k_aux: 0,
        aux_coeff: 0.0,
        dead_after_tokens: u64::MAX,
        lr: 4e-4,
        warmup_steps: 1,
        total_steps: (steps + 3) as u64,
        l1_warmup_steps: 1,
        seed: 0,
    };
    let mut t = Trainer::new(cfg, &data[..batch * d_in]);
    let slice = |s: usize| &data[(s % 4) * batch * d_in..(s % 4 + 1) * batch * d_in];
    let decoder = match decoder {
        None if !device.is_cpu() => Some(DecoderKind::Dense),
        d => d,
    };
    let rate = match decoder {
        None => {
            for s in 0..3 {
                t.train_step(slice(s)); // warm-up, as the peer does
            }
            let start = Instant::now();
            for s in 0..steps {
                t.train_step(slice(s));
            }
            (batch * steps) as f64 / start.elapsed().as_secs_f64()
        }
        Some(kind) => {
            let mut dt = DeviceTrainer::new(&t, device, kind)?;
            let xs = (0..4)
                .map(|s| candle_core::Tensor::from_slice(slice(s), (batch, d_in), device))
                .collect::<candle_core::Result<Vec<_>>>()?;
            for x in xs.iter().take(3) {
                dt.train_step(x)?;
            }
            device.synchronize()?;
            let start = Instant::now();
            for s in 0..steps {
                dt.train_step(&xs[s % 4])?;
            }
            device.synchronize()?;
            (batch * steps) as f64 / start.elapsed().as_secs_f64()
        }
    };
    let peer_rate = match &o.peer {
        Some(p) => {
            let shape = [
                "--arch".to_string(),
                o.arch.name().to_string(),
                "--d-in".to_string(),
                d_in.to_string(),
                "--d-sae".into(),
                d_sae.to_string(),
                "--k".into(),
                k.to_string(),
                "--batch".into(),
                batch.to_string(),
            ];
            let args: Vec<&str> = shape
                .iter()
                .chain(&o.peer_args)
                .map(String::as_str)
                .collect();
            Some(run_peer_rate(p, &args, "tokens/s")?)
        }
        None => None,
    };
    Ok(SaeTrainBench {
        arch: o.arch.name().into(),
        d_in,
        d_sae,
        k,
        batch,
        steps,
        threads: candle_core::utils::get_num_threads(),
        tokens_per_s: rate,
        peer_tokens_per_s: peer_rate,
        speedup_vs_peer: peer_rate.map(|p| rate / p),
        device: crate::device::name(device),
        decoder,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct IndexBench {
    pub rows: usize,
    pub d_in: usize,
    pub d_sae: usize,
    pub threads: usize,
    /// The bare dense GEMM x·W_enc on the same rows (best of 3).
    pub gemm_tokens_per_s: f64,
    pub gemm_gflops: f64,
    /// The index's encode step: b_dec subtraction, GEMM, activation, sparse packing (best of 3).
    pub encode_tokens_per_s: f64,
    pub encode_vs_gemm: f64,
    /// The whole per-shard work of the index (encode + per-image summaries + statistics).
    pub index_tokens_per_s: f64,
}

/// Encode rate of the index against the dense GEMM rate, on the workspace's first shard.
pub fn bench_index(
    ws: &crate::store::Workspace,
    sae: &crate::sae::Sae,
    max_rows: usize,
) -> Result<IndexBench> {
    use crate::linalg::{RhsLayout, matmul};
    let store = crate::store::activations::ActivationStore::open(&ws.activations_dir())?;
    let shard = store.read_shard(0)?;
    let t = store.manifest.tokens_per_image();
    let rows = (shard.rows().min(max_rows) / t) * t;
    let x = &shard.activations[..rows * sae.d_in];
    let best = |f: &mut dyn FnMut()| {
        (0..3)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let mut c = vec![0f32; rows * sae.d_sae];
    let gemm_s = best(&mut || {
        matmul(
            &mut c,
            x,
            &sae.w_enc,
            (rows, sae.d_in, sae.d_sae),
            RhsLayout::RowMajor,
            false,
            true,
        )
    });
    drop(c);
    let encode_s = best(&mut || {
        std::hint::black_box(sae.encode_sparse(x));
    });
    let sub = crate::store::activations::ShardData {
        activations: x.to_vec(),
        image_ids: shard.image_ids[..rows / t].to_vec(),
        d_model: shard.d_model,
    };
    let index_s = best(&mut || {
        std::hint::black_box(crate::analysis::index::bench_summarise(&sub, sae, t));
    });
    Ok(IndexBench {
        rows,
        d_in: sae.d_in,
        d_sae: sae.d_sae,
        threads: candle_core::utils::get_num_threads(),
        gemm_tokens_per_s: rows as f64 / gemm_s,
        gemm_gflops: 2.0 * (rows * sae.d_in * sae.d_sae) as f64 / gemm_s / 1e9,
        encode_tokens_per_s: rows as f64 / encode_s,
        encode_vs_gemm: gemm_s / encode_s,
        index_tokens_per_s: rows as f64 / index_s,
    })
}
