//! `saescope bench …`: speed figures, each beside its PyTorch peer in the same run where one
//! exists (extraction, SAE training), and the app's grid, the index's encode rate and steering.

use super::*;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// CPU time per frame of the app's feature grid with many items (headless, while scrolling).
    Gui {
        #[arg(long)]
        workspace: PathBuf,
        #[arg(long, default_value_t = 20_000)]
        items: usize,
        #[arg(long, default_value_t = 300)]
        frames: usize,
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
    },
    /// SAE training throughput on random data (tokens/s), at the PyTorch peer's settings.
    SaeTrain {
        /// topk, batchtopk, matryoshka (the peer's 5 geometric prefixes) or jumprelu (the
        /// peer's L0 coefficient 1e-3, kernel width 1e-3 and initial threshold e^−3).
        #[arg(long, default_value = "topk")]
        arch: String,
        /// jumprelu: start every threshold here instead of the peer's e^−3 (on this random
        /// data, 2.9 starts near L0 32: the sparse regime that training reaches; the peer's
        /// dense GEMMs cost the same at any threshold).
        #[arg(long)]
        init_threshold: Option<f32>,
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
        /// The PyTorch peer (e.g. ../shared/bench/peer_sae_train.py, or bench/peer_sae_train.py
        /// which takes --device), run in the same command.
        #[arg(long)]
        peer: Option<PathBuf>,
        /// Extra argument for the peer (repeatable), e.g. `--peer-arg=--device --peer-arg=cuda`.
        #[arg(long, allow_hyphen_values = true)]
        peer_arg: Vec<String>,
        /// The device trainer's decoder form: `sparse` (gather the active rows, index_add the
        /// gradients) or `dense` (codes as a dense matrix, GEMMs). Default: the CPU trainer's
        /// own kernels on the CPU, `dense` on a GPU.
        #[arg(long, value_parser = choices::<ops::sae::train::DecoderKind>())]
        decoder: Option<ops::sae::train::DecoderKind>,
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
    },
}

pub fn run(which: BenchCommand, ctx: &Ctx) -> Result<()> {
    match which {
        BenchCommand::SaeTrain {
            arch,
            init_threshold,
            d_in,
            d_sae,
            k,
            batch,
            steps,
            peer,
            peer_arg,
            decoder,
        } => {
            let options = ops::bench::SaeTrainBenchOptions {
                arch: ops::bench::peer_arch(&arch, d_sae, init_threshold)?,
                d_in,
                d_sae,
                k,
                batch,
                steps,
                decoder,
                peer,
                peer_args: peer_arg,
            };
            let report = ops::bench::bench_sae_train(&ctx.device()?, &options)?;
            emit_pretty(ctx, &report)
        }
        BenchCommand::Extract {
            model,
            images,
            layer,
            batch,
            limit,
            peer,
            peer_arg,
            rounds,
        } => {
            if batch == 0 || limit == 0 {
                anyhow::bail!("--batch and --limit must be at least 1");
            }
            if !(1..=50).contains(&rounds) {
                anyhow::bail!("--rounds must be between 1 and 50 (got {rounds})");
            }
            let (_, b) = model.load(&ctx.device()?)?;
            let ds = ops::workspace::Dataset::scan(&images)?;
            let layer = layer.unwrap_or(b.info().n_layers / 2);
            let report = ops::bench::bench_extract(
                &b,
                &ds,
                layer,
                batch,
                limit,
                rounds,
                peer.as_deref().map(Path::new),
                &peer_arg,
            )?;
            emit_pretty(ctx, &report)
        }
        BenchCommand::Steer {
            tiny_size,
            unet_size,
            tokenizer,
        } => {
            let tok = tokenizer.unwrap_or_else(ops::steer::tiny::shared_clip_tokenizer);
            let device = ctx.device()?;
            let report = ops::steer::bench::run(
                &tok,
                tiny_size,
                (unet_size > 0).then_some(unet_size),
                &device,
            )?;
            emit_pretty(ctx, &report)
        }
        BenchCommand::Gui {
            workspace,
            items,
            frames,
        } => {
            #[cfg(feature = "gui")]
            {
                let report = saescope_app::bench::bench_grid(&workspace, items, frames)?;
                emit_pretty(ctx, &report)
            }
            #[cfg(not(feature = "gui"))]
            {
                let _ = (workspace, items, frames);
                Err(no_gui())
            }
        }
        BenchCommand::Index {
            workspace,
            sae,
            rows,
        } => {
            let ws = ops::workspace::Workspace::open(&workspace)?;
            let sae = ops::sae::workflow::workspace_sae(&ws, sae.as_deref())?
                .on_device(&ctx.device()?)?;
            let report = ops::bench::bench_index(&ws, &sae, rows)?;
            emit_pretty(ctx, &report)
        }
    }
}
