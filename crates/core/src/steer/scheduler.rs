//! Euler-ancestral sampling (diffusers' `EulerAncestralDiscreteScheduler`), with the model's own
//! noise schedule. Its noise comes from a seeded generator, so a seed gives the same image on
//! every run (candle's CPU random source cannot be seeded).

use super::config::ScheduleSpec;
use crate::error::{Error, Result};
use crate::rng::Rng;
use candle_core::{Device, Tensor};

pub struct EulerAncestral {
    /// Model timesteps, one per step, from the noisiest.
    pub timesteps: Vec<f64>,
    /// σ for each step plus a final 0.
    pub sigmas: Vec<f64>,
    pub init_noise_sigma: f64,
    v_prediction: bool,
}

impl EulerAncestral {
    pub fn new(spec: &ScheduleSpec, steps: usize) -> Result<Self> {
        let n = spec.num_train_timesteps;
        if steps == 0 || steps > n {
            return Err(Error::Invalid(format!(
                "steps must be between 1 and {n}, not {steps}"
            )));
        }
        let betas: Vec<f64> = (0..n)
            .map(|i| {
                let t = if n > 1 {
                    i as f64 / (n - 1) as f64
                } else {
                    0.0
                };
                if spec.beta_schedule == "scaled_linear" {
                    let (a, b) = (spec.beta_start.sqrt(), spec.beta_end.sqrt());
                    (a + (b - a) * t).powi(2)
                } else {
                    spec.beta_start + (spec.beta_end - spec.beta_start) * t
                }
            })
            .collect();
        let mut cum = 1.0;
        let train_sigmas: Vec<f64> = betas
            .iter()
            .map(|b| {
                cum *= 1.0 - b;
                ((1.0 - cum) / cum).sqrt()
            })
            .collect();
        let timesteps: Vec<f64> = match spec.timestep_spacing.as_str() {
            "trailing" => {
                let ratio = n as f64 / steps as f64;
                (0..steps)
                    .map(|i| (n as f64 - i as f64 * ratio).round() - 1.0)
                    .collect()
            }
            "linspace" => (0..steps)
                .map(|i| {
                    let t = if steps > 1 {
                        i as f64 / (steps - 1) as f64
                    } else {
                        0.0
                    };
                    (n - 1) as f64 * (1.0 - t)
                })
                .collect(),
            _ => {
                let ratio = n / steps;
                (0..steps)
                    .rev()
                    .map(|i| (i * ratio + spec.steps_offset) as f64)
                    .collect()
            }
        };
        // σ at fractional timesteps by linear interpolation, as np.interp does.
        let interp = |t: f64| {
            let t = t.clamp(0.0, (n - 1) as f64);
            let lo = t.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            let w = t - lo as f64;
            train_sigmas[lo] * (1.0 - w) + train_sigmas[hi] * w
        };
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t)).collect();
        let max_sigma = sigmas.iter().cloned().fold(0.0, f64::max);
        sigmas.push(0.0);
        let init_noise_sigma = if ["linspace", "trailing"].contains(&spec.timestep_spacing.as_str())
        {
            max_sigma
        } else {
            (max_sigma * max_sigma + 1.0).sqrt()
        };
        Ok(EulerAncestral {
            timesteps,
            sigmas,
            init_noise_sigma,
            v_prediction: spec.prediction_type == "v_prediction",
        })
    }

    /// The UNet's input at step `i`: the sample scaled to unit variance.
    pub fn scale_model_input(&self, sample: &Tensor, i: usize) -> Result<Tensor> {
        let s = self.sigmas[i];
        Ok((sample / (s * s + 1.0).sqrt())?)
    }

    /// One step from σ_i to σ_{i+1}, adding fresh noise drawn from `rng`.
    pub fn step(
        &self,
        model_output: &Tensor,
        i: usize,
        sample: &Tensor,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        let sigma = self.sigmas[i];
        let x0 = if self.v_prediction {
            ((model_output * (-sigma / (sigma * sigma + 1.0).sqrt()))?
                + (sample / (sigma * sigma + 1.0))?)?
        } else {
            (sample - (model_output * sigma)?)?
        };
        let to = self.sigmas[i + 1];
        let up = (to * to * (sigma * sigma - to * to) / (sigma * sigma))
            .max(0.0)
            .sqrt();
        let down = (to * to - up * up).max(0.0).sqrt();
        let derivative = ((sample - &x0)? / sigma)?;
        let prev = (sample + (derivative * (down - sigma))?)?;
        if up == 0.0 {
            return Ok(prev);
        }
        let noise = gaussian(rng, sample.dims(), sample.device())?;
        Ok((prev + (noise * up)?)?)
    }
}

/// Standard normal noise of `shape` from a seeded generator.
pub fn gaussian(rng: &mut Rng, shape: &[usize], device: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
    Ok(Tensor::from_vec(v, shape, device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(spacing: &str) -> ScheduleSpec {
        ScheduleSpec {
            class_name: "EulerAncestralDiscreteScheduler".into(),
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: "scaled_linear".into(),
            prediction_type: "epsilon".into(),
            timestep_spacing: spacing.into(),
            steps_offset: 1,
        }
    }

    /// Values diffusers gives for SD's schedule (EulerAncestralDiscreteScheduler.set_timesteps).
    #[test]
    fn timesteps_and_sigmas_follow_diffusers() {
        let s = EulerAncestral::new(&spec("trailing"), 1).unwrap();
        assert_eq!(s.timesteps, vec![999.0]);
        assert!((s.sigmas[0] - 14.6146).abs() < 1e-3, "{}", s.sigmas[0]);
        assert!((s.init_noise_sigma - 14.6146).abs() < 1e-3);
        let s = EulerAncestral::new(&spec("trailing"), 4).unwrap();
        assert_eq!(s.timesteps, vec![999.0, 749.0, 499.0, 249.0]);
        let s = EulerAncestral::new(&spec("leading"), 4).unwrap();
        assert_eq!(s.timesteps, vec![751.0, 501.0, 251.0, 1.0]);
        // leading spacing scales the first noise by sqrt(σ_max² + 1)
        let m = s.sigmas[0];
        assert!((s.init_noise_sigma - (m * m + 1.0).sqrt()).abs() < 1e-9);
    }

    /// One step to σ = 0 returns the model's clean estimate and draws no noise.
    #[test]
    fn last_step_is_the_clean_estimate() {
        let s = EulerAncestral::new(&spec("trailing"), 1).unwrap();
        let dev = Device::Cpu;
        let sample = Tensor::new(&[3.0f32, -1.0], &dev).unwrap();
        let eps = Tensor::new(&[0.1f32, 0.2], &dev).unwrap();
        let mut rng = Rng::new(1);
        let out = s.step(&eps, 0, &sample, &mut rng).unwrap();
        let sig = s.sigmas[0] as f32;
        let want = [3.0 - sig * 0.1, -1.0 - sig * 0.2];
        let got: Vec<f32> = out.to_vec1().unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "{g} vs {w}");
        }
    }
}
