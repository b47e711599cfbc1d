//! The trainable architectures and how the CLI names and configures them.

use super::{Prefixes, SAEV_PREFIXES};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TrainArch {
    TopK,
    BatchTopK,
    /// ReLU with `l1`·Σ f_j‖W_dec[j]‖ added to the loss.
    Relu {
        l1: f32,
    },
    /// BatchTopK codes; the loss sums the squared error of each prefix's reconstruction
    /// (Bussmann et al. 2025, arXiv 2503.17547).
    Matryoshka {
        prefixes: Prefixes,
    },
    /// f = z·H(z − θ) on z = ReLU(pre), θ = exp(log θ) learned per latent through a straight-through
    /// estimator with a rectangle kernel of width `bandwidth` (Rajamanoharan et al. 2024, arXiv
    /// 2407.14435), plus an L0 term: `l0_coeff`·L0, or with a target T `l0_coeff`·(L0/T − 1)².
    JumpRelu {
        l0_coeff: f32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        l0_target: Option<f32>,
        bandwidth: f32,
        init_threshold: f32,
    },
}

/// JumpReLU's defaults: SAELens's and the PyTorch peer's kernel width, the peer's initial θ.
pub const JUMP_BANDWIDTH: f32 = 1e-3;
pub const JUMP_INIT_THRESHOLD: f32 = 0.049_787_07; // exp(−3)

impl TrainArch {
    /// Parses the CLI name (`topk`, `batchtopk`, `relu`, `matryoshka`, `jumprelu`); `l1` is used by
    /// `relu` only. Matryoshka starts with saev's sampled prefixes and JumpReLU with an L0 target
    /// of k (its coefficient set from the data by the workflow); the CLI adjusts both.
    pub fn parse(name: &str, l1: f32) -> crate::error::Result<Self> {
        match name {
            "topk" => Ok(TrainArch::TopK),
            "batchtopk" => Ok(TrainArch::BatchTopK),
            // D10: NaN would train as 0 and be recorded as null; infinity fails at the end.
            "relu" | "standard" if !(l1.is_finite() && l1 >= 0.0) => Err(crate::fixable!([
                crate::fix::Opt::L1,
                format!(" must be a finite number of at least 0 (got {l1})")
            ])),
            "relu" | "standard" => Ok(TrainArch::Relu { l1 }),
            "matryoshka" => Ok(TrainArch::Matryoshka {
                prefixes: Prefixes::Sampled { n: SAEV_PREFIXES },
            }),
            "jumprelu" => Ok(TrainArch::JumpRelu {
                l0_coeff: 0.0,
                l0_target: None,
                bandwidth: JUMP_BANDWIDTH,
                init_threshold: JUMP_INIT_THRESHOLD,
            }),
            other => Err(crate::fixable!(
                [
                    crate::fix::Opt::Arch,
                    format!(" {other}: unknown architecture")
                ],
                ["use topk, batchtopk, matryoshka, jumprelu or relu"]
            )),
        }
    }

    /// Applies the CLI's `--prefixes` (Matryoshka: a count of sampled prefixes, or a list of
    /// ends) and `--l0-coeff` (JumpReLU: a fixed penalty; without it, an L0 target of `k`).
    /// Either given to another architecture is an error.
    pub fn with_options(
        self,
        prefixes: Option<&str>,
        l0_coeff: Option<f32>,
        k: usize,
    ) -> crate::error::Result<Self> {
        use crate::fix::Opt;
        let unused = |opt: Opt, arch: &str| {
            Err(crate::fixable!([
                opt,
                format!(" applies to --arch {arch} only")
            ]))
        };
        if l0_coeff.is_some() && !matches!(self, TrainArch::JumpRelu { .. }) {
            return unused(Opt::L0Coeff, "jumprelu");
        }
        match (self, prefixes, l0_coeff) {
            (TrainArch::Matryoshka { .. }, Some(p), _) => {
                let parts: Vec<&str> = p.split(',').map(str::trim).collect();
                let bad = || {
                    crate::fixable!([
                        Opt::Prefixes,
                        format!(" {p:?}: give a count (10) or increasing ends (1024,4096,16384)")
                    ])
                };
                let nums: Vec<usize> = parts
                    .iter()
                    .map(|s| s.parse().map_err(|_| bad()))
                    .collect::<crate::error::Result<_>>()?;
                Ok(TrainArch::Matryoshka {
                    prefixes: match nums.as_slice() {
                        [n] => Prefixes::Sampled { n: *n },
                        _ => Prefixes::Ends { ends: nums },
                    },
                })
            }
            (
                TrainArch::JumpRelu {
                    bandwidth,
                    init_threshold,
                    ..
                },
                None,
                c,
            ) => Ok(TrainArch::JumpRelu {
                l0_coeff: c.unwrap_or(0.0),
                l0_target: c.is_none().then_some(k as f32),
                bandwidth,
                init_threshold,
            }),
            (_, Some(_), _) => unused(Opt::Prefixes, "matryoshka"),
            (arch, None, _) => Ok(arch),
        }
    }

    /// The CLI name.
    pub fn name(&self) -> &'static str {
        match self {
            TrainArch::TopK => "topk",
            TrainArch::BatchTopK => "batchtopk",
            TrainArch::Relu { .. } => "relu",
            TrainArch::Matryoshka { .. } => "matryoshka",
            TrainArch::JumpRelu { .. } => "jumprelu",
        }
    }

    pub(super) fn unit_norm_decoder(&self) -> bool {
        !matches!(self, TrainArch::Relu { .. })
    }

    /// Codes chosen by a top-k (per row or per batch), with AuxK to revive dead latents.
    pub fn uses_k(&self) -> bool {
        matches!(
            self,
            TrainArch::TopK | TrainArch::BatchTopK | TrainArch::Matryoshka { .. }
        )
    }
}
