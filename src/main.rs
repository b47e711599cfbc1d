//! The `saescope` binary: no subcommand opens the desktop app; subcommands run the same library
//! headless. With `--json`, the last line of stdout is one JSON object (an `error` key on failure).

mod cli_steer;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use saescope::backbone::{self, Backbone, ModelSpec, TokenSelection};
use saescope::job::Job;
use saescope::store::workspace::StoreDType;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[derive(Parser)]
#[command(
    name = "saescope",
    version,
    about = "Look inside vision models with sparse autoencoders"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Open the desktop app (the default).
    Gui {
        /// Open this workspace right away.
        #[arg(long)]
        workspace: Option<PathBuf>,
    },
    /// Describe a model: layers, width, token geometry, preprocessing.
    Info {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        json: bool,
    },
    /// Extract activations of one layer over an image folder into a workspace (resumable).
    Extract {
        #[command(flatten)]
        model: ModelArgs,
        /// Residual stream after this block (0-based).
        #[arg(long)]
        layer: usize,
        /// Image folder (class = sub-folder).
        #[arg(long)]
        images: PathBuf,
        #[arg(long)]
        workspace: PathBuf,
        #[arg(long, value_enum, default_value = "all")]
        tokens: TokenSelection,
        #[arg(long, value_enum, default_value = "f16")]
        dtype: StoreDType,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Images per shard (default: about 64 MiB per shard).
        #[arg(long)]
        shard_images: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Accuracy of a model's classifier head on a folder of class sub-folders.
    Classify {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        images: PathBuf,
        #[arg(long, default_value_t = 500)]
        batch: usize,
        #[arg(long)]
        json: bool,
    },
    /// Linear probe: multinomial logistic regression on the pooled output, fit on one folder's
    /// images and scored on another's (classes = sub-folder names). With --spliced, also with
    /// the tapped layer replaced by the workspace SAE's reconstruction.
    Probe {
        #[command(flatten)]
        model: ModelArgs,
        /// Folder the probe is fit on (the L2 strength is chosen on every fifth image of it).
        #[arg(long)]
        fit: PathBuf,
        /// Folder the probe is scored on.
        #[arg(long)]
        eval: PathBuf,
        /// Also probe with the workspace's layer replaced by its SAE's reconstruction.
        #[arg(long)]
        spliced: bool,
        /// Workspace whose layer and SAE --spliced uses.
        #[arg(long, required_if_eq("spliced", "true"))]
        workspace: Option<PathBuf>,
        /// Fixed L2 strength instead of the held-out choice.
        #[arg(long)]
        l2: Option<f64>,
        /// Other workspaces (same model and layer) whose stored activations are read for the
        /// images they hold (repeatable; --workspace is always read).
        #[arg(long, requires = "workspace")]
        reuse: Vec<PathBuf>,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long)]
        json: bool,
    },
    /// List a workspace's SAEs (WS/saes/<name>/) with their training figures and analyses.
    Saes {
        #[arg(long)]
        workspace: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Make one of a workspace's SAEs the active one (used when --sae is not given).
    UseSae {
        #[arg(long)]
        workspace: PathBuf,
        /// Its name under WS/saes/ (see `saescope saes`).
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Train an SAE on a workspace's activations, saved to WS/saes/<name>/ in SAELens format
    /// (never over another SAE) and made the workspace's active SAE.
    /// An interrupted run (crash, Ctrl-C, cancel) resumes from its last checkpoint when re-run
    /// with the same settings.
    Train {
        #[arg(long)]
        workspace: PathBuf,
        /// The SAE's folder name under WS/saes/ (default: from the settings, e.g. topk-1536-k32).
        /// A finished SAE of that name with the same settings is reported, not trained again.
        #[arg(long)]
        name: Option<String>,
        /// topk, batchtopk or relu (L1 penalty weighted by decoder norms).
        #[arg(long, default_value = "topk")]
        arch: String,
        #[arg(long)]
        d_sae: usize,
        /// Active latents per token (topk; batchtopk on average). Ignored by relu.
        #[arg(long, default_value_t = 32)]
        k: usize,
        /// L1 coefficient (relu), on normalised activations if --normalize.
        #[arg(long, default_value_t = 5.0)]
        l1: f32,
        /// Scale activations to mean norm √d_in before training (folded into the saved SAE).
        #[arg(long)]
        normalize: bool,
        /// Checkpoint every N steps (default: every 60 s).
        #[arg(long)]
        checkpoint_every: Option<u64>,
        /// Discard an unfinished run's checkpoint instead of resuming it.
        #[arg(long)]
        restart: bool,
        /// Draw each CLS row this many times as often as a patch row (1 to 1024; default 1).
        /// The store holds one CLS row per image, so without it the SAE spends little on the
        /// token that pooled read-outs (probes, classifier heads) depend on.
        #[arg(long, default_value_t = 1)]
        cls_weight: u32,
        /// Training tokens (default: 10 passes over the store).
        #[arg(long)]
        tokens: Option<u64>,
        #[arg(long, default_value_t = 4096)]
        batch: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a workspace's SAE on an image folder: FVE, MSE, L0, dead/dense, spliced accuracy.
    EvalSae {
        #[arg(long)]
        workspace: PathBuf,
        /// Images to evaluate on (e.g. the test split).
        #[arg(long)]
        images: PathBuf,
        /// The SAE: a name under WS/saes/ or an SAE folder/file (one from elsewhere is imported
        /// into WS/saes/ when analyses are written for it). Default: the workspace's active SAE.
        #[arg(long)]
        sae: Option<PathBuf>,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long)]
        json: bool,
    },
    /// Build the feature index (top images per feature, frequencies, histograms, per-image top
    /// features) into the SAE's folder (WS/saes/<name>/index); resumes an interrupted build.
    Index {
        #[arg(long)]
        workspace: PathBuf,
        /// The SAE: a name under WS/saes/ or an SAE folder/file (one from elsewhere is imported
        /// into WS/saes/ when analyses are written for it). Default: the workspace's active SAE.
        #[arg(long)]
        sae: Option<PathBuf>,
        /// Top images kept per feature.
        #[arg(long, default_value_t = 64)]
        top_n: usize,
        /// Rebuild from scratch.
        #[arg(long)]
        rebuild: bool,
        #[arg(long)]
        json: bool,
    },
    /// OOD detection: fit on in-distribution images, score the in-distribution folder and each
    /// OOD folder with SAE and baseline methods (AUROC, FPR at 95% TPR). Full per-image results
    /// go to WS/saes/<name>/ood/results.json.
    Ood {
        #[arg(long)]
        workspace: PathBuf,
        /// The SAE: a name under WS/saes/ or an SAE folder/file (one from elsewhere is imported
        /// into WS/saes/ when analyses are written for it). Default: the workspace's active SAE.
        #[arg(long)]
        sae: Option<PathBuf>,
        /// In-distribution images to fit on (e.g. the train split).
        #[arg(long)]
        fit: PathBuf,
        /// In-distribution images to score (e.g. the test split).
        #[arg(long)]
        id: PathBuf,
        /// Out-of-distribution folders (repeatable).
        #[arg(long, required = true)]
        ood: Vec<PathBuf>,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Covariance ridge for SAE-code Mahalanobis, relative to the mean variance
        /// (default: chosen by held-out likelihood on every fifth fit image, never on --id/--ood).
        #[arg(long)]
        ridge: Option<f64>,
        /// Other workspaces (same model and layer) whose stored activations are read for the
        /// images they hold instead of recomputing them (repeatable; --workspace is always read).
        #[arg(long)]
        reuse: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Ontology: a tree over features and class trees (SAE profiles and raw activations),
    /// compared with a taxonomy (e.g. WordNet) when given. Written to WS/saes/<name>/ontology.json.
    Tree {
        #[arg(long)]
        workspace: PathBuf,
        /// The SAE: a name under WS/saes/ or an SAE folder/file (one from elsewhere is imported
        /// into WS/saes/ when analyses are written for it). Default: the workspace's active SAE.
        #[arg(long)]
        sae: Option<PathBuf>,
        /// Taxonomy: networkx node-link JSON or "parent child" lines (e.g. WordNet).
        #[arg(long, requires = "class_ids")]
        taxonomy: Option<PathBuf>,
        /// One taxonomy id per class, in sorted class-folder order (e.g. cifar10-wnids.txt).
        #[arg(long, requires = "taxonomy")]
        class_ids: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Feature labels: automatic ones from class folders, and manual ones (which always win).
    Label {
        #[arg(long)]
        workspace: PathBuf,
        /// The SAE: a name under WS/saes/ or an SAE folder/file (one from elsewhere is imported
        /// into WS/saes/ when analyses are written for it). Default: the workspace's active SAE.
        #[arg(long)]
        sae: Option<PathBuf>,
        /// Label every feature with its most precise class among its top images.
        #[arg(long)]
        from_classes: bool,
        /// Label features by CLIP zero-shot against a concept vocabulary (CLIP workspaces).
        #[arg(long)]
        clip: bool,
        /// Extra concepts for --clip, one per line (added to the built-in list).
        #[arg(long, requires = "clip")]
        vocab: Option<PathBuf>,
        /// Top images per feature that --clip looks at.
        #[arg(long, default_value_t = 8)]
        examples: usize,
        /// Manual label, e.g. --set "12=striped fur" (an empty text removes the label).
        #[arg(long = "set")]
        set: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Heatmap of features over any image (in the dataset or not): JSON grid and a PNG overlay.
    Heatmap {
        #[arg(long)]
        workspace: PathBuf,
        /// The SAE: a name under WS/saes/ or an SAE folder/file (one from elsewhere is imported
        /// into WS/saes/ when analyses are written for it). Default: the workspace's active SAE.
        #[arg(long)]
        sae: Option<PathBuf>,
        #[arg(long)]
        image: PathBuf,
        /// Feature ids, e.g. 3,10-12.
        #[arg(long)]
        features: String,
        /// Write overlays here (one PNG per feature: <out>/heatmap-<feature>.png).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Export features (JSON + CSV + PNGs) to share; see docs/FORMATS.md.
    Export {
        #[arg(long)]
        workspace: PathBuf,
        /// The SAE: a name under WS/saes/ or an SAE folder/file (one from elsewhere is imported
        /// into WS/saes/ when analyses are written for it). Default: the workspace's active SAE.
        #[arg(long)]
        sae: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Feature ids, e.g. 3,10-12 (default: every feature that fired).
        #[arg(long, conflicts_with = "labelled")]
        features: Option<String>,
        /// Only labelled features.
        #[arg(long)]
        labelled: bool,
        /// Skip the per-feature PNGs.
        #[arg(long)]
        no_png: bool,
        #[arg(long)]
        json: bool,
    },
    /// Import the labels of an export (features.json or its folder) into a workspace.
    ImportLabels {
        #[arg(long)]
        workspace: PathBuf,
        /// The SAE: a name under WS/saes/ or an SAE folder/file (one from elsewhere is imported
        /// into WS/saes/ when analyses are written for it). Default: the workspace's active SAE.
        #[arg(long)]
        sae: Option<PathBuf>,
        #[arg(long)]
        from: PathBuf,
        /// Import even if the export was made with another SAE.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Diffusion steering: text-encoder SAEs, steered generation, attribute discovery.
    Steer {
        #[command(subcommand)]
        which: cli_steer::SteerCommand,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// CPU time per frame of the app's feature grid with many items (headless, while scrolling).
    Gui {
        #[arg(long)]
        workspace: PathBuf,
        #[arg(long, default_value_t = 20_000)]
        items: usize,
        #[arg(long, default_value_t = 300)]
        frames: usize,
        #[arg(long)]
        json: bool,
    },
    /// The index's encode step against the bare dense GEMM on the same rows (first shard).
    Index {
        #[arg(long)]
        workspace: PathBuf,
        /// The SAE: a name under WS/saes/ or an SAE folder/file (one from elsewhere is imported
        /// into WS/saes/ when analyses are written for it). Default: the workspace's active SAE.
        #[arg(long)]
        sae: Option<PathBuf>,
        #[arg(long, default_value_t = 65_000)]
        rows: usize,
        #[arg(long)]
        json: bool,
    },
    /// Steering: slider change → preview latency (tiny pipeline) and per-step UNet time at
    /// 256×256 with SD-Turbo-sized random weights.
    Steer {
        /// Image size for the tiny pipeline's slider latency.
        #[arg(long, default_value_t = 256)]
        tiny_size: usize,
        /// Image size for the SD-Turbo-sized UNet step (0 skips it).
        #[arg(long, default_value_t = 256)]
        unet_size: usize,
        /// CLIP tokenizer.json for the tiny pipeline (default: ../shared/data/clip/tokenizer.json).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        #[arg(long)]
        cpu: bool,
        #[arg(long)]
        json: bool,
    },
    /// TopK SAE training throughput on random data (tokens/s).
    SaeTrain {
        #[arg(long, default_value_t = 768)]
        d_in: usize,
        #[arg(long, default_value_t = 16384)]
        d_sae: usize,
        #[arg(long, default_value_t = 32)]
        k: usize,
        #[arg(long, default_value_t = 4096)]
        batch: usize,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// The PyTorch peer (e.g. ../shared/bench/peer_sae_train.py), run in the same command.
        #[arg(long)]
        peer: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Backbone throughput: forward-only and end to end (decode + preprocess + forward).
    Extract {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        images: PathBuf,
        /// Layer for the forward-to-layer figure (default: the middle block).
        #[arg(long)]
        layer: Option<usize>,
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// At most this many images.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
        /// A Python peer script printing `N img/s` (e.g. ../shared/bench/peer_vit_cifar10.py), run
        /// in the same command with the image folder as its first argument, by `$SAESCOPE_PYTHON`
        /// (default python3).
        #[arg(long)]
        peer: Option<PathBuf>,
        /// Extra argument for the peer (repeatable), e.g. `--peer-arg=--layer --peer-arg=9`. A
        /// peer told `--layer` is compared with our forward to that layer.
        #[arg(long, allow_hyphen_values = true)]
        peer_arg: Vec<String>,
        /// Rounds of (our passes, then the peer), reported as medians: on a shared machine both
        /// then see the same stretches of load (1 to 50).
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// Hugging Face id (org/name), a folder with config.json + *.safetensors, or a PyTorch .pth ViT.
    #[arg(long)]
    model: String,
    /// JSON config for a .pth ViT (heads, mean/std, class names); default: <checkpoint>.json beside it.
    #[arg(long)]
    model_config: Option<PathBuf>,
    /// DINOv2 position interpolation to non-native grids: `transformers` (Hugging Face
    /// transformers 5, the default) or `original` (facebookresearch/dinov2 via torch.hub, as saev
    /// uses). Recorded in the workspace and in trained SAEs.
    #[arg(long, value_enum)]
    pos_interpolation: Option<backbone::PosInterpolation>,
}

impl ModelArgs {
    fn spec(&self) -> Result<ModelSpec> {
        let mut spec = ModelSpec::from_cli(&self.model, self.model_config.as_deref())?;
        spec.pos_interpolation = self.pos_interpolation;
        Ok(spec)
    }

    fn load(&self) -> Result<(ModelSpec, backbone::VisionTransformer)> {
        let spec = self.spec()?;
        let b = backbone::load_backbone(&spec, &candle_core::Device::Cpu)
            .with_context(|| format!("loading model `{}`", self.model))?;
        Ok((spec, b))
    }
}

fn main() {
    // `--json` anywhere asks for a JSON object as the last stdout line, errors included (usage
    // errors too, which clap would otherwise only print to stderr).
    let json = std::env::args().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let usage = !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
            if json && usage {
                let msg = e.render().to_string();
                let first = msg.lines().next().unwrap_or("invalid arguments");
                let first = first.strip_prefix("error: ").unwrap_or(first);
                println!(
                    "{}",
                    serde_json::json!({ "error": format!("{first} (see --help)") })
                );
            }
            e.exit()
        }
    };
    if let Err(e) = run(cli) {
        let msg = format!("{e:#}");
        if json {
            println!("{}", serde_json::json!({ "error": msg }));
        }
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}

fn emit<T: Serialize>(json: bool, value: &T, human: impl FnOnce()) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(value)?);
    } else {
        human();
    }
    Ok(())
}

/// `emit` whose human form is the same report, pretty-printed.
fn emit_pretty<T: Serialize>(json: bool, value: &T) -> Result<()> {
    emit(json, value, || {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        )
    })
}

/// A progress bar on stderr (hidden when stderr is not a terminal) fed by a library [`Job`].
fn progress_job(label: &str) -> (Job, indicatif::ProgressBar) {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:40}] {pos}/{len} {msg} · {per_sec} · ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    let b = bar.clone();
    let job = Job::new(Arc::new(AtomicBool::new(false)), move |p| {
        b.set_length(p.total);
        b.set_position(p.done);
        b.set_message(p.message.clone());
    });
    (job, bar)
}

use saescope::store::lock::lock_writer;

#[cfg(feature = "gui")]
fn open_app(workspace: Option<PathBuf>) -> Result<()> {
    saescope::app::run_native_app(workspace)
}

#[cfg(not(feature = "gui"))]
fn open_app(_workspace: Option<PathBuf>) -> Result<()> {
    Err(no_gui())
}

#[cfg(not(feature = "gui"))]
fn no_gui() -> anyhow::Error {
    anyhow::anyhow!(
        "this saescope was built without the desktop app (cargo build --no-default-features): \
         run a subcommand (see saescope --help), or rebuild with the default features for the app"
    )
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => open_app(None),
        Some(Command::Gui { workspace }) => open_app(workspace),
        Some(Command::Info { model, json }) => {
            let (_, b) = model.load()?;
            let value = serde_json::json!({ "model": b.info(), "preprocessing": b.preprocessor() });
            emit_pretty(json, &value)
        }
        Some(Command::Extract {
            model,
            layer,
            images,
            workspace,
            tokens,
            dtype,
            batch,
            shard_images,
            json,
        }) => {
            let (spec, b) = model.load()?;
            let (job, bar) = progress_job("extract");
            let opts = saescope::store::extract::ExtractOptions {
                layer,
                tokens,
                dtype,
                batch_size: batch,
                images_per_shard: shard_images,
            };
            let report =
                saescope::store::extract::extract(&workspace, &spec, &b, &images, &opts, &job)?;
            bar.finish_and_clear();
            emit(json, &report, || {
                println!(
                    "{} images → {} rows × {} in {} shards ({} reused) at {:.0} images/s; {} skipped",
                    report.extracted_images,
                    report.rows,
                    report.d_model,
                    report.shards,
                    report.shards_reused,
                    report.images_per_s,
                    report.skipped.len()
                );
                for s in &report.skipped {
                    println!("  skipped {}: {}", s.path, s.reason);
                }
            })
        }
        Some(Command::Classify {
            model,
            images,
            batch,
            json,
        }) => {
            let (_, b) = model.load()?;
            let ds = saescope::store::Dataset::scan(&images)?;
            let (job, bar) = progress_job("classify");
            let report = saescope::analysis::classify::classify(&b, &ds, batch, &job)?;
            bar.finish_and_clear();
            emit(json, &report, || {
                println!(
                    "accuracy {:.4} on {} images ({:.0} images/s)",
                    report.accuracy, report.n, report.images_per_s
                );
                for (c, a) in &report.per_class {
                    println!("  {c:<16} {a:.4}");
                }
            })
        }
        Some(Command::Probe {
            model,
            fit,
            eval,
            spliced,
            workspace,
            l2,
            reuse,
            batch,
            json,
        }) => {
            if batch == 0 {
                anyhow::bail!("--batch must be at least 1");
            }
            if l2.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                anyhow::bail!("--l2 must be a finite number ≥ 0");
            }
            let (_, b) = model.load()?;
            // With a workspace, the model runs to its layer (or reads it from its store) and
            // finishes from there; the pooled output is the same.
            let (layer, sae) = match &workspace {
                Some(ws) => {
                    let ws = saescope::store::Workspace::open(ws)?;
                    let sae = spliced
                        .then(|| saescope::sae::workflow::workspace_sae(&ws, None))
                        .transpose()?;
                    (ws.config.layer, sae)
                }
                None => (b.info().n_layers - 1, None),
            };
            let opts = saescope::analysis::probe::ProbeOptions {
                batch,
                l2,
                reuse_stores: workspace.iter().cloned().chain(reuse).collect(),
                ..Default::default()
            };
            let (job, bar) = progress_job("probe");
            let report = saescope::analysis::probe::probe(
                &b,
                sae.as_ref(),
                layer,
                &fit,
                &eval,
                &opts,
                &job,
            )?;
            bar.finish_and_clear();
            emit(json, &report, || {
                println!(
                    "probe on {} classes: fit {} images, eval {} images",
                    report.classes.len(),
                    report.n_fit,
                    report.n_eval
                );
                println!(
                    "  clean   accuracy {:.4} (fit {:.4}, l2 {:e})",
                    report.clean.accuracy, report.clean.fit_accuracy, report.clean.l2
                );
                if let Some(s) = &report.spliced {
                    println!(
                        "  spliced accuracy {:.4} (fit {:.4}, l2 {:e}), layer {} replaced by the SAE reconstruction",
                        s.accuracy, s.fit_accuracy, s.l2, report.layer
                    );
                }
            })
        }
        Some(Command::Train {
            workspace,
            arch,
            d_sae,
            k,
            l1,
            normalize,
            checkpoint_every,
            restart,
            cls_weight,
            name,
            tokens,
            batch,
            lr,
            seed,
            json,
        }) => {
            let arch = saescope::sae::train::TrainArch::parse(&arch, l1)?;
            let ws = saescope::store::Workspace::open(&workspace)?;
            let (job, bar) = progress_job("train");
            let opts = saescope::sae::workflow::TrainOptions {
                arch,
                tokens,
                batch,
                lr,
                seed,
                normalize,
                checkpoint_every,
                restart,
                cls_weight,
                name,
                ..saescope::sae::workflow::TrainOptions::topk(d_sae, k)
            };
            let report = saescope::sae::workflow::train(&ws, &opts, &job)?;
            bar.finish_and_clear();
            emit_pretty(json, &report)
        }
        Some(Command::Saes { workspace, json }) => {
            let ws = saescope::store::Workspace::open(&workspace)?;
            let list = saescope::sae::workflow::list_saes(&ws);
            emit(json, &serde_json::json!({ "saes": list }), || {
                for s in &list {
                    println!(
                        "{} {:<28} d_sae {:<6} FVE {:<6} L0 {:<6} index {} labels {}",
                        if s.active { "*" } else { " " },
                        s.name,
                        s.d_sae,
                        s.final_fve.map_or("-".into(), |v| format!("{v:.3}")),
                        s.final_l0.map_or("-".into(), |v| format!("{v:.1}")),
                        if s.index { "yes" } else { "no" },
                        s.labels
                    );
                }
            })
        }
        Some(Command::UseSae {
            workspace,
            name,
            json,
        }) => {
            let ws = saescope::store::Workspace::open(&workspace)?;
            let _lock = lock_writer(
                &workspace,
                "use-sae",
                Some(std::time::Duration::from_secs(30)),
            )?;
            let home = ws.sae_home(Some(&name))?;
            ws.set_active_sae(&name)?;
            emit_pretty(json, &serde_json::json!({ "active": name, "folder": home }))
        }
        Some(Command::Index {
            workspace,
            sae,
            top_n,
            rebuild,
            json,
        }) => {
            let (job, bar) = progress_job("index");
            let report = saescope::ops::analyse::build_index(
                &saescope::ops::analyse::IndexRequest {
                    workspace,
                    sae,
                    options: saescope::analysis::index::IndexOptions {
                        top_n,
                        rebuild,
                        ..Default::default()
                    },
                },
                &job,
            )?;
            bar.finish_and_clear();
            emit_pretty(json, &report)
        }
        Some(Command::Ood {
            workspace,
            sae,
            fit,
            id,
            ood,
            batch,
            ridge,
            reuse,
            json,
        }) => {
            let (job, bar) = progress_job("ood");
            let (results, path) = saescope::ops::analyse::ood(
                &saescope::ops::analyse::OodRequest {
                    workspace,
                    sae,
                    fit,
                    id,
                    ood,
                    options: saescope::analysis::ood::OodOptions {
                        batch,
                        ridge_codes: ridge,
                        reuse_stores: reuse,
                        ..Default::default()
                    },
                },
                &job,
            )?;
            bar.finish_and_clear();
            let summary = saescope::analysis::ood::summary(&results, &path, 10);
            emit(json, &summary, || {
                println!(
                    "{:<22} {:<22} {:>7} {:>7}",
                    "method", "OOD set", "AUROC", "FPR95"
                );
                for r in &results.results {
                    println!(
                        "{:<22} {:<22} {:>7.4} {:>7.4}",
                        r.method, r.ood_set, r.auroc, r.fpr95
                    );
                }
                println!("per-image scores: {}", path.display());
            })
        }
        Some(Command::Tree {
            workspace,
            sae,
            taxonomy,
            class_ids,
            json,
        }) => {
            let taxonomy = taxonomy.zip(class_ids).map(|(taxonomy, class_ids)| {
                saescope::analysis::ontology::TaxonomyInput {
                    taxonomy,
                    class_ids,
                }
            });
            let (_, report) = saescope::ops::analyse::tree(
                &saescope::ops::analyse::TreeRequest {
                    workspace,
                    sae,
                    taxonomy,
                },
                &saescope::job::Job::default(),
            )?;
            emit_pretty(json, &report)
        }
        Some(Command::Label {
            workspace,
            sae,
            from_classes,
            clip,
            vocab,
            examples,
            set,
            json,
        }) => {
            let set =
                set.iter()
                    .map(|s| {
                        let (id, text) = s.split_once('=').ok_or_else(|| {
                            anyhow::anyhow!(
                                "--set `{s}`: expected FEATURE=TEXT, e.g. --set \"12=striped fur\""
                            )
                        })?;
                        let id: u32 = id.trim().parse().map_err(|_| {
                            anyhow::anyhow!("--set `{s}`: `{id}` is not a feature id")
                        })?;
                        Ok((id, text.to_string()))
                    })
                    .collect::<Result<Vec<_>>>()?;
            let (job, bar) = progress_job("labels");
            let report = saescope::ops::analyse::label(
                &saescope::ops::analyse::LabelRequest {
                    workspace,
                    sae,
                    from_classes,
                    clip: clip.then_some((vocab, examples)),
                    set,
                },
                &job,
            )?;
            bar.finish_and_clear();
            emit_pretty(json, &report)
        }
        Some(Command::Heatmap {
            workspace,
            sae,
            image,
            features,
            out,
            json,
        }) => {
            let ws = saescope::store::Workspace::open(&workspace)?;
            let sae = saescope::sae::workflow::workspace_sae(&ws, sae.as_deref())?;
            let b = backbone::load_backbone(&ws.config.model, &candle_core::Device::Cpu)?;
            let ids = saescope::analysis::export::parse_ids(&features)?;
            let maps = saescope::analysis::heatmap::heatmaps_for_image(
                &b,
                &sae,
                ws.config.layer,
                &image,
                &ids,
            )?;
            let mut files = Vec::new();
            if let Some(out) = &out {
                std::fs::create_dir_all(out)?;
                let img = saescope::store::dataset::load_rgb(&image)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", image.display()))?;
                let view = b.preprocessor().view(&img).0;
                for m in &maps {
                    let o =
                        saescope::analysis::heatmap::overlay(&view, m, m.zoom_for(256), 0.0, 0.75);
                    let p = out.join(format!("heatmap-{}.png", m.feature));
                    o.save(&p)?;
                    files.push(p);
                }
            }
            let report = serde_json::json!({"image": image, "heatmaps": maps, "png": files});
            emit_pretty(json, &report)
        }
        Some(Command::Export {
            workspace,
            sae,
            out,
            features,
            labelled,
            no_png,
            json,
        }) => {
            use saescope::analysis::export::{Selection, parse_ids};
            let selection = match (&features, labelled) {
                (Some(f), _) => Selection::Ids(parse_ids(f)?),
                (None, true) => Selection::Labelled,
                (None, false) => Selection::Alive,
            };
            let report = saescope::ops::share::export(&saescope::ops::share::ExportRequest {
                workspace,
                sae,
                selection,
                out,
                pngs: !no_png,
            })?;
            emit_pretty(json, &report)
        }
        Some(Command::ImportLabels {
            workspace,
            sae,
            from,
            force,
            json,
        }) => {
            let report =
                saescope::ops::share::import_labels(&saescope::ops::share::ImportLabelsRequest {
                    workspace,
                    sae,
                    from,
                    force,
                })?;
            emit_pretty(json, &report)
        }
        Some(Command::EvalSae {
            workspace,
            images,
            sae,
            batch,
            json,
        }) => {
            let ws = saescope::store::Workspace::open(&workspace)?;
            let sae = saescope::sae::workflow::workspace_sae(&ws, sae.as_deref())?;
            let b = backbone::load_backbone(&ws.config.model, &candle_core::Device::Cpu)?;
            let (job, bar) = progress_job("eval-sae");
            let report = saescope::sae::workflow::evaluate(&ws, &b, &sae, &images, batch, &job)?;
            bar.finish_and_clear();
            emit_pretty(json, &report)
        }
        Some(Command::Bench {
            which:
                BenchCommand::SaeTrain {
                    d_in,
                    d_sae,
                    k,
                    batch,
                    steps,
                    peer,
                    json,
                },
        }) => {
            let report =
                saescope::bench::bench_sae_train(d_in, d_sae, k, batch, steps, peer.as_deref())?;
            emit_pretty(json, &report)
        }
        Some(Command::Bench {
            which:
                BenchCommand::Extract {
                    model,
                    images,
                    layer,
                    batch,
                    limit,
                    peer,
                    peer_arg,
                    rounds,
                    json,
                },
        }) => {
            if batch == 0 || limit == 0 {
                anyhow::bail!("--batch and --limit must be at least 1");
            }
            if !(1..=50).contains(&rounds) {
                anyhow::bail!("--rounds must be between 1 and 50 (got {rounds})");
            }
            let (_, b) = model.load()?;
            let ds = saescope::store::Dataset::scan(&images)?;
            let layer = layer.unwrap_or(b.info().n_layers / 2);
            let report = saescope::bench::bench_extract(
                &b,
                &ds,
                layer,
                batch,
                limit,
                rounds,
                peer.as_deref().map(Path::new),
                &peer_arg,
            )?;
            emit_pretty(json, &report)
        }
        Some(Command::Steer { which }) => cli_steer::run(which),
        Some(Command::Bench {
            which:
                BenchCommand::Steer {
                    tiny_size,
                    unet_size,
                    tokenizer,
                    cpu,
                    json,
                },
        }) => {
            let tok = tokenizer
                .unwrap_or_else(|| saescope::shared::shared_path("data/clip/tokenizer.json"));
            let device = saescope::steer::session::default_device(cpu);
            let report = saescope::steer::bench::run(
                &tok,
                tiny_size,
                (unet_size > 0).then_some(unet_size),
                &device,
            )?;
            emit_pretty(json, &report)
        }
        Some(Command::Bench {
            which:
                BenchCommand::Gui {
                    workspace,
                    items,
                    frames,
                    json,
                },
        }) => {
            #[cfg(feature = "gui")]
            {
                let report = saescope::app::bench::bench_grid(&workspace, items, frames)?;
                emit_pretty(json, &report)
            }
            #[cfg(not(feature = "gui"))]
            {
                let _ = (workspace, items, frames, json);
                Err(no_gui())
            }
        }
        Some(Command::Bench {
            which:
                BenchCommand::Index {
                    workspace,
                    sae,
                    rows,
                    json,
                },
        }) => {
            let ws = saescope::store::Workspace::open(&workspace)?;
            let sae = saescope::sae::workflow::workspace_sae(&ws, sae.as_deref())?;
            let report = saescope::bench::bench_index(&ws, &sae, rows)?;
            emit_pretty(json, &report)
        }
    }
}
