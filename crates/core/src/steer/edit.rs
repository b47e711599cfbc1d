//! Editing a prompt's conditioning through SAE features: each edit adds α times a feature's
//! decoder direction (x + α·W_dec[f]) or clamps the feature to a value (x + (v − f(x))·W_dec[f])
//! on all tokens, the prompt's tokens, or chosen positions. The SAE's reconstruction error is
//! kept (x itself is edited, not x̂), so with no edit the conditioning is untouched, bit for bit.

use super::pipeline::Conditioning;
use crate::error::{Error, Result};
use crate::fix::Opt;
use crate::sae::Sae;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode", content = "value")]
pub enum EditMode {
    /// Add α·W_dec[f].
    Add(f32),
    /// Set the feature's activation to this value on each chosen token.
    Clamp(f32),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// Every position, padding included (the UNet attends to all of them).
    All,
    /// The prompt's own tokens and its EOS (not BOS, not padding).
    Prompt,
    /// These positions.
    Positions(Vec<usize>),
}

impl TokenScope {
    /// `all`, `prompt`, or comma-separated positions such as `1,2,5`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "all" => Ok(TokenScope::All),
            "prompt" => Ok(TokenScope::Prompt),
            list => list
                .split(',')
                .map(|p| p.trim().parse::<usize>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(TokenScope::Positions)
                .map_err(|_| {
                    crate::fixable!(
                        [Opt::Tokens, format!(" `{s}`: not a token scope")],
                        ["use `all`, `prompt` or positions like `1,2,5`"]
                    )
                }),
        }
    }

    pub fn positions(&self, cond: &Conditioning, n_tokens: usize) -> Vec<usize> {
        match self {
            TokenScope::All => (0..n_tokens).collect(),
            TokenScope::Prompt => (1..=cond.eos_position.min(n_tokens - 1)).collect(),
            TokenScope::Positions(p) => p.iter().copied().filter(|&i| i < n_tokens).collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureEdit {
    pub feature: usize,
    #[serde(flatten)]
    pub mode: EditMode,
    pub tokens: TokenScope,
}

/// The largest edit strength or clamp value accepted: far past what saturates every image.
pub const MAX_EDIT: f32 = 10_000.0;

impl FeatureEdit {
    /// `F=α` (add) or `F=clamp:V`, applied to `tokens`.
    pub fn parse(s: &str, tokens: &TokenScope) -> Result<Self> {
        let bad = || {
            crate::fixable!(
                [Opt::Feature, format!(" `{s}`: not a feature edit")],
                ["write FEATURE=ALPHA (e.g. 12=4.0) or FEATURE=clamp:VALUE (e.g. 12=clamp:0)"]
            )
        };
        let (f, v) = s.split_once('=').ok_or_else(bad)?;
        let feature = f.trim().parse().map_err(|_| bad())?;
        let mode = match v.trim().strip_prefix("clamp:") {
            Some(c) => EditMode::Clamp(c.trim().parse().map_err(|_| bad())?),
            None => EditMode::Add(v.trim().parse().map_err(|_| bad())?),
        };
        // D10: NaN, ±inf and 1e38 gave an all-black image with exit 0.
        let (EditMode::Add(value) | EditMode::Clamp(value)) = mode;
        if !(value.is_finite() && value.abs() <= MAX_EDIT) {
            return Err(crate::fixable!(
                [
                    Opt::Feature,
                    format!(" `{s}`: the value must be a finite number within ±{MAX_EDIT}")
                ],
                ["strengths of a few units move an image (e.g. 12=4.0)"]
            ));
        }
        Ok(FeatureEdit {
            feature,
            mode,
            tokens: tokens.clone(),
        })
    }

    /// An additive edit of zero changes nothing.
    pub fn is_noop(&self) -> bool {
        self.mode == EditMode::Add(0.0)
    }
}

/// The feature's direction in the conditioning's own units: W_dec[f] divided by the SAE's
/// input scale (1 when the scale is folded into the weights, as saescope saves them).
pub fn direction(sae: &Sae, feature: usize) -> Vec<f32> {
    let s = sae.input_scale.unwrap_or(1.0);
    sae.w_dec[feature * sae.d_in..(feature + 1) * sae.d_in]
        .iter()
        .map(|w| w / s)
        .collect()
}

/// The conditioning with every edit applied, in order. Without effective edits it returns the
/// input unchanged (the same tensor).
pub fn apply(sae: &Sae, cond: &Conditioning, edits: &[FeatureEdit]) -> Result<Conditioning> {
    let edits: Vec<&FeatureEdit> = edits.iter().filter(|e| !e.is_noop()).collect();
    if edits.is_empty() {
        return Ok(cond.clone());
    }
    let (mut rows, d) = cond.rows()?;
    sae.check_fits(d, "the text encoder's output")?;
    let n_tokens = rows.len() / d;
    for e in &edits {
        if e.feature >= sae.d_sae {
            return Err(Error::Invalid(format!(
                "feature {} does not exist: the SAE has {} features (0..{})",
                e.feature,
                sae.d_sae,
                sae.d_sae - 1
            )));
        }
    }
    // Clamping needs the activations of the unedited tokens.
    let codes = edits
        .iter()
        .any(|e| matches!(e.mode, EditMode::Clamp(_)))
        .then(|| sae.encode_sparse(&rows));
    for e in edits {
        let dir = direction(sae, e.feature);
        for t in e.tokens.positions(cond, n_tokens) {
            let alpha = match e.mode {
                EditMode::Add(a) => a,
                EditMode::Clamp(v) => {
                    let current = codes
                        .as_ref()
                        .and_then(|c| c.row(t).find(|(id, _)| *id as usize == e.feature))
                        .map_or(0.0, |(_, a)| a);
                    v - current
                }
            };
            for (x, w) in rows[t * d..(t + 1) * d].iter_mut().zip(&dir) {
                *x += alpha * w;
            }
        }
    }
    cond.with_rows(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_arguments_parse_and_explain_mistakes() {
        let all = TokenScope::All;
        assert_eq!(
            FeatureEdit::parse("12=-3.5", &all).unwrap().mode,
            EditMode::Add(-3.5)
        );
        assert_eq!(
            FeatureEdit::parse("7=clamp:0", &all).unwrap().mode,
            EditMode::Clamp(0.0)
        );
        let e = FeatureEdit::parse("12", &all).unwrap_err().to_string();
        assert!(e.contains("FEATURE=ALPHA"), "{e}");
        assert_eq!(
            TokenScope::parse("1, 3").unwrap(),
            TokenScope::Positions(vec![1, 3])
        );
        assert!(TokenScope::parse("first").is_err());
    }
}
