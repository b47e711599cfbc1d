//! The `saescope` binary: no subcommand opens the desktop app; subcommands run the same library
//! headless. With `--json`, the last line of stdout is one JSON object (an `error` key on failure).

mod cli;

/// The library, as the CLI may see it: use cases and what they re-export (never the store's
/// persistence or lock).
use saescope_ops as ops;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use ops::backbone::{self, Backbone, ModelSpec, TokenSelection};
use ops::job::Job;
use ops::workspace::StoreDType;
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
    /// Print one JSON object as the last line of stdout (errors too, as {"error": …}).
    #[arg(long, global = true)]
    json: bool,
    /// Where models and SAEs run: cpu, cuda, cuda:N, metal, or auto (the first of CUDA, Metal
    /// and the CPU that this build and machine offer). `saescope info --devices` lists them.
    #[arg(long, global = true, default_value = "auto")]
    device: ops::device::DeviceChoice,
}

/// What every command gets from the global flags. The device is resolved when a command first
/// asks for it, and the line saying what was picked and why goes into its report.
pub struct Ctx {
    pub json: bool,
    choice: ops::device::DeviceChoice,
    /// The device's name and the line saying why it was picked, once a command asked for it.
    used: std::cell::RefCell<Option<(String, String)>>,
}

impl Ctx {
    /// The device to run on (resolving `auto`); recorded in the command's report.
    pub fn device(&self) -> Result<candle_core::Device> {
        let (device, why) = ops::device::resolve(self.choice)?;
        *self.used.borrow_mut() = Some((ops::device::name(&device), why));
        Ok(device)
    }

    /// The choice itself, for the operations layer's requests (checked and recorded here).
    pub fn device_choice(&self) -> Result<ops::device::DeviceChoice> {
        self.device()?;
        Ok(self.choice)
    }
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
    Info(cli::info::InfoArgs),
    /// Extract activations of one layer over an image folder into a workspace (resumable).
    Extract(cli::extract::ExtractArgs),
    /// Fold the finished tasks of a split extraction into the workspace, exactly as one machine
    /// would have written it.
    Merge(cli::merge::MergeArgs),
    /// Run a command on a Slurm cluster: a split stage as a job array plus its merge, any
    /// other command as one job (sbatch scripts in WS/slurm/).
    Submit(cli::submit::SubmitArgs),
    /// The tasks of a workspace's split jobs: done, running, failed or missing.
    Status(cli::status::StatusArgs),
    /// Accuracy of a model's classifier head on a folder of class sub-folders.
    Classify(cli::classify::ClassifyArgs),
    /// Linear probe: multinomial logistic regression on the pooled output, fit on one folder's
    /// images and scored on another's (classes = sub-folder names). With --spliced, also with
    /// the tapped layer replaced by the workspace SAE's reconstruction.
    Probe(cli::probe::ProbeArgs),
    /// A workspace at a glance: model, layer, activations, SAEs and their analyses, and any
    /// file that cannot be read (the app's workspace panel).
    Summary(cli::summary::SummaryArgs),
    /// List a workspace's SAEs (WS/saes/<name>/) with their training figures and analyses.
    Saes(cli::saes::SaesArgs),
    /// Make one of a workspace's SAEs the active one (used when --sae is not given).
    UseSae(cli::use_sae::UseSaeArgs),
    /// Train an SAE on a workspace's activations, saved to WS/saes/<name>/ in SAELens format
    /// (never over another SAE) and made the workspace's active SAE.
    /// An interrupted run (crash, Ctrl-C, cancel) resumes from its last checkpoint when re-run
    /// with the same settings.
    Train(cli::train::TrainArgs),
    /// Train a grid of SAEs (architecture × width × k × learning rate) on one pass of shuffled
    /// batches, each as if trained alone; `--group I --groups N` splits the grid for a cluster.
    Sweep(cli::sweep::SweepArgs),
    /// Write the first stored activation rows and an SAE's codes for them to a safetensors
    /// file (`x`, `codes`), to compare with other tools.
    Encode(cli::encode::EncodeArgs),
    /// Evaluate a workspace's SAE on an image folder: FVE, MSE, L0, dead/dense, spliced accuracy.
    EvalSae(cli::eval_sae::EvalSaeArgs),
    /// The SAE benchmark: every SAE of a workspace (or --sae) beside two controls at its width
    /// and sparsity (untrained, PCA): FVE, NMSE, L0, dead/dense, spliced probe, sparse probing,
    /// monosemanticity and Moran's I, with whether each metric separates it from its controls.
    /// Written to WS/saes/<name>/benchmark.json, WS/benchmark.json and WS/benchmark.csv.
    Eval(cli::eval::EvalArgs),
    /// Make the built-in example workspace, no download needed: synthetic images of four
    /// classes and a small random-weight model, extracted, with an SAE trained and indexed.
    Example(cli::example::ExampleArgs),
    /// Build the feature index (top images per feature, frequencies, histograms, per-image top
    /// features) into the SAE's folder (WS/saes/<name>/index); resumes an interrupted build.
    Index(cli::index::IndexArgs),
    /// OOD detection: fit on in-distribution images, score the in-distribution folder and each
    /// OOD folder with SAE and baseline methods (AUROC, FPR at 95% TPR). Full per-image results
    /// go to WS/saes/<name>/ood/results.json.
    Ood(cli::ood::OodArgs),
    /// Ontology: a tree over features and class trees (SAE profiles and raw activations),
    /// compared with a taxonomy (e.g. WordNet) when given. Written to WS/saes/<name>/ontology.json.
    Tree(cli::tree::TreeArgs),
    /// Feature labels: automatic ones from class folders, and manual ones (which always win).
    Label(cli::label::LabelArgs),
    /// The features whose decoder directions are closest to a feature's (cosine), as its page
    /// in the app lists them.
    Nearest(cli::nearest::NearestArgs),
    /// Heatmap of features over any image (in the dataset or not): JSON grid and a PNG overlay.
    Heatmap(cli::heatmap::HeatmapArgs),
    /// Edit SAE features in the model's stream: one image's prediction before and after
    /// (--image), or features' causal effects on a class over the workspace's images (--class).
    Intervene(cli::intervene::InterveneArgs),
    /// Export features (JSON + CSV + PNGs) to share; see docs/FORMATS.md.
    Export(cli::export::ExportArgs),
    /// Import the labels of an export (features.json or its folder) into a workspace.
    ImportLabels(cli::import_labels::ImportLabelsArgs),
    /// Diffusion steering: text-encoder SAEs, steered generation, attribute discovery.
    Steer {
        #[command(subcommand)]
        which: cli::steer::SteerCommand,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: cli::bench::BenchCommand,
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
    #[arg(long, value_parser = cli::choices::<ops::backbone::PosInterpolation>())]
    pos_interpolation: Option<backbone::PosInterpolation>,
}

impl ModelArgs {
    fn spec(&self) -> Result<ModelSpec> {
        let mut spec = ModelSpec::from_cli(&self.model, self.model_config.as_deref())?;
        spec.pos_interpolation = self.pos_interpolation;
        Ok(spec)
    }

    fn load(
        &self,
        device: &candle_core::Device,
    ) -> Result<(ModelSpec, backbone::VisionTransformer)> {
        let spec = self.spec()?;
        let b = backbone::load_backbone(&spec, device)
            .with_context(|| format!("loading model `{}`", self.model))?;
        Ok((spec, b))
    }
}

fn main() {
    // `--json` anywhere asks for a JSON object as the last stdout line, errors included (usage
    // errors too, which clap would otherwise only print to stderr).
    // args_os: an argument that is not UTF-8 must not panic here (clap says what is wrong).
    let json = std::env::args_os().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let usage = !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
            if json && usage {
                // The message up to the usage line, on one line (a missing argument's name is on
                // the line after "not provided:").
                let msg = e.render().to_string();
                let first = msg
                    .lines()
                    .take_while(|l| !l.starts_with("Usage:"))
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                let first = first.strip_prefix("error: ").unwrap_or(&first);
                println!(
                    "{}",
                    serde_json::json!({ "error": format!("{first} (see --help)") })
                );
            }
            e.exit()
        }
    };
    let ctx = Ctx {
        // `--json` after `submit --` (in the submitted command) asks for JSON too.
        json: cli.json || json,
        choice: cli.device,
        used: std::cell::RefCell::new(None),
    };
    if let Err(e) = run(cli.command, &ctx) {
        let signalled = stop_flag_set()
            && matches!(
                e.downcast_ref::<saescope_ops::Error>(),
                Some(saescope_ops::Error::Cancelled)
            );
        let msg = if signalled {
            "stopped by a signal (Ctrl-C or SIGTERM): the progress is kept; run the same command \
             again to resume"
                .to_string()
        } else {
            format!("{e:#}")
        };
        if json {
            println!("{}", serde_json::json!({ "error": msg }));
        }
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}

/// Prints a command's report: one JSON line with `--json` (with `device`, where it ran, and
/// `device_choice`, why, when it used one), else the human form and the device on stderr.
fn emit<T: Serialize>(ctx: &Ctx, value: &T, human: impl FnOnce()) -> Result<()> {
    let device = ctx.used.borrow().clone();
    if ctx.json {
        let mut v = serde_json::to_value(value)?;
        if let (Some(obj), Some((name, why))) = (v.as_object_mut(), device) {
            obj.entry("device").or_insert(name.into());
            obj.entry("device_choice").or_insert(why.into());
        }
        println!("{}", serde_json::to_string(&v)?);
    } else {
        human();
        if let Some((_, why)) = device {
            eprintln!("device: {why}");
        }
    }
    Ok(())
}

/// `emit` whose human form is the same report, pretty-printed.
fn emit_pretty<T: Serialize>(ctx: &Ctx, value: &T) -> Result<()> {
    emit(ctx, value, || {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        )
    })
}

/// Whether Ctrl-C or SIGTERM arrived (only ever set once a job's handler is registered).
fn stop_flag_set() -> bool {
    STOP_REGISTERED
        .get()
        .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst))
}

static STOP_REGISTERED: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

/// Set by Ctrl-C or SIGTERM once a command runs a job: the job stops at its next check and keeps
/// its progress (training writes a checkpoint first). A second signal ends the process at once.
fn stop_flag() -> Arc<AtomicBool> {
    STOP_REGISTERED
        .get_or_init(|| {
            let flag = Arc::new(AtomicBool::new(false));
            #[cfg(unix)]
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                // Registered first, so the second signal (flag already set) exits.
                let _ = signal_hook::flag::register_conditional_shutdown(sig, 1, flag.clone());
                let _ = signal_hook::flag::register(sig, flag.clone());
            }
            flag
        })
        .clone()
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
    let job = Job::new(stop_flag(), move |p| {
        b.set_length(p.total);
        b.set_position(p.done);
        b.set_message(p.message.clone());
    });
    (job, bar)
}

#[cfg(feature = "gui")]
fn open_app(workspace: Option<PathBuf>) -> Result<()> {
    saescope_app::run_native_app(workspace)
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

fn run(command: Option<Command>, ctx: &Ctx) -> Result<()> {
    match command {
        None => open_app(None),
        Some(Command::Gui { workspace }) => open_app(workspace),
        Some(Command::Info(a)) => cli::info::run(a, ctx),
        Some(Command::Extract(a)) => cli::extract::run(a, ctx),
        Some(Command::Merge(a)) => cli::merge::run(a, ctx),
        Some(Command::Submit(a)) => cli::submit::run(a, ctx),
        Some(Command::Status(a)) => cli::status::run(a, ctx),
        Some(Command::Classify(a)) => cli::classify::run(a, ctx),
        Some(Command::Probe(a)) => cli::probe::run(a, ctx),
        Some(Command::Train(a)) => cli::train::run(a, ctx),
        Some(Command::Saes(a)) => cli::saes::run(a, ctx),
        Some(Command::Summary(a)) => cli::summary::run(a, ctx),
        Some(Command::UseSae(a)) => cli::use_sae::run(a, ctx),
        Some(Command::Index(a)) => cli::index::run(a, ctx),
        Some(Command::Ood(a)) => cli::ood::run(a, ctx),
        Some(Command::Tree(a)) => cli::tree::run(a, ctx),
        Some(Command::Label(a)) => cli::label::run(a, ctx),
        Some(Command::Heatmap(a)) => cli::heatmap::run(a, ctx),
        Some(Command::Nearest(a)) => cli::nearest::run(a, ctx),
        Some(Command::Intervene(a)) => cli::intervene::run(a, ctx),
        Some(Command::Export(a)) => cli::export::run(a, ctx),
        Some(Command::ImportLabels(a)) => cli::import_labels::run(a, ctx),
        Some(Command::EvalSae(a)) => cli::eval_sae::run(a, ctx),
        Some(Command::Eval(a)) => cli::eval::run(a, ctx),
        Some(Command::Encode(a)) => cli::encode::run(a, ctx),
        Some(Command::Sweep(a)) => cli::sweep::run(a, ctx),
        Some(Command::Example(a)) => cli::example::run(a, ctx),
        Some(Command::Steer { which }) => cli::steer::run(which, ctx),
        Some(Command::Bench { which }) => cli::bench::run(which, ctx),
    }
}
