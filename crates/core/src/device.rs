//! The compute device: one choice (`cpu`, `cuda[:N]`, `metal`, `auto`) and what this build and
//! machine can offer. CUDA and Metal exist only in builds with `--features cuda` / `metal`
//! (Metal builds only on macOS); `auto` takes the first of CUDA, Metal and the CPU that works
//! and says why it passed over the others.

use crate::error::{Error, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
    Metal,
    /// The default everywhere (CLI, app, library requests): the best device this build and
    /// machine offer, the CPU when there is no other.
    #[default]
    Auto,
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        Ok(match s.as_str() {
            "cpu" => DeviceChoice::Cpu,
            "metal" => DeviceChoice::Metal,
            "auto" => DeviceChoice::Auto,
            "cuda" => DeviceChoice::Cuda(0),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => DeviceChoice::Cuda(n),
                _ => {
                    return Err(Error::Invalid(format!(
                        "unknown device `{s}`: use cpu, cuda, cuda:N, metal or auto"
                    )));
                }
            },
        })
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceChoice::Metal => write!(f, "metal"),
            DeviceChoice::Auto => write!(f, "auto"),
        }
    }
}

/// One kind of device and whether it can be used here, with the reason when not.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceStatus {
    pub device: String,
    pub available: bool,
    pub detail: String,
}

/// Every kind of device and whether this build on this machine can use it.
pub fn devices() -> Vec<DeviceStatus> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = vec![DeviceStatus {
        device: "cpu".into(),
        available: true,
        detail: format!("{threads} threads"),
    }];
    for choice in [DeviceChoice::Cuda(0), DeviceChoice::Metal] {
        out.push(match open(choice) {
            Ok(_) => DeviceStatus {
                device: choice.to_string(),
                available: true,
                detail: "ready".into(),
            },
            Err(why) => DeviceStatus {
                device: choice.to_string(),
                available: false,
                detail: why,
            },
        });
    }
    out
}

/// The device `choice` names, and a line saying what was picked and why. The answer is kept for
/// the process's life: every use case asking for the same choice gets the same device (a CUDA
/// context is made once, and tensors from two use cases can meet).
pub fn resolve(choice: DeviceChoice) -> Result<(Device, String)> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static RESOLVED: OnceLock<Mutex<HashMap<DeviceChoice, (Device, String)>>> = OnceLock::new();
    let cache = RESOLVED.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache.lock().ok().and_then(|m| m.get(&choice).cloned()) {
        return Ok(hit);
    }
    let fresh = resolve_uncached(choice)?;
    if let Ok(mut m) = cache.lock() {
        m.insert(choice, fresh.clone());
    }
    Ok(fresh)
}

fn resolve_uncached(choice: DeviceChoice) -> Result<(Device, String)> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::Cpu, "cpu (asked for)".into())),
        DeviceChoice::Auto => {
            let mut passed = Vec::new();
            for c in [DeviceChoice::Cuda(0), DeviceChoice::Metal] {
                match open(c) {
                    Ok(d) => return Ok((d, format!("{c} (auto: the first available)"))),
                    Err(why) => passed.push(format!("{c}: {why}")),
                }
            }
            Ok((
                Device::Cpu,
                format!("cpu (auto; passed over {})", passed.join("; ")),
            ))
        }
        c => open(c)
            .map(|d| (d, format!("{c} (asked for)")))
            .map_err(|why| {
                crate::fixable!(
                    [format!("device {c} cannot be used: {why}")],
                    ["choose ", crate::fix::Opt::Device.either(&["cpu", "auto"])]
                )
            }),
    }
}

/// A device's short name as `--device` spells it: `cpu`, `cuda:N`, `metal`.
pub fn name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { .. } => "metal".into(),
    }
}

/// The device that the device-generic tests run their candle path on: `SAESCOPE_TEST_DEVICE`
/// (`cpu`, `cuda`, `cuda:N`, `metal`; default `cpu`). The references they compare with stay
/// the CPU fast paths, so `SAESCOPE_TEST_DEVICE=cuda` (scripts/gpu-bench.sh) checks that a GPU
/// run only changes where the same ops execute.
pub fn test_device() -> Result<Device> {
    let choice = match std::env::var("SAESCOPE_TEST_DEVICE") {
        Ok(s) if !s.trim().is_empty() => s.parse()?,
        _ => DeviceChoice::Cpu,
    };
    resolve(choice).map(|(d, _)| d)
}

/// Opens a CUDA or Metal device, or says why it cannot.
fn open(choice: DeviceChoice) -> std::result::Result<Device, String> {
    match choice {
        DeviceChoice::Cpu | DeviceChoice::Auto => Ok(Device::Cpu),
        DeviceChoice::Cuda(n) => open_cuda(n),
        DeviceChoice::Metal => open_metal(),
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(n: usize) -> std::result::Result<Device, String> {
    Device::new_cuda(n)
        .map_err(|e| format!("no usable CUDA device {n} (driver or device missing: {e})"))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_: usize) -> std::result::Result<Device, String> {
    Err("this saescope was built without CUDA (rebuild with --features cuda)".into())
}

#[cfg(feature = "metal")]
fn open_metal() -> std::result::Result<Device, String> {
    Device::new_metal(0).map_err(|e| format!("no usable Metal device ({e})"))
}

#[cfg(not(feature = "metal"))]
fn open_metal() -> std::result::Result<Device, String> {
    Err("this saescope was built without Metal (macOS only: rebuild with --features metal)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_print_and_bad_ones_name_the_options() {
        for (s, c) in [
            ("cpu", DeviceChoice::Cpu),
            ("CUDA", DeviceChoice::Cuda(0)),
            ("cuda:2", DeviceChoice::Cuda(2)),
            ("metal", DeviceChoice::Metal),
            ("auto", DeviceChoice::Auto),
        ] {
            assert_eq!(s.parse::<DeviceChoice>().unwrap(), c);
        }
        assert_eq!(DeviceChoice::Cuda(2).to_string(), "cuda:2");
        let e = "gpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(e.contains("cpu, cuda, cuda:N, metal or auto"), "{e}");
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    /// In a build without CUDA or Metal (the test build), `auto` is the CPU and says why, and
    /// asking for CUDA is refused with the way out.
    #[cfg(not(any(feature = "cuda", feature = "metal")))]
    #[test]
    fn auto_picks_the_cpu_here_and_says_why() {
        let (d, why) = resolve(DeviceChoice::Auto).unwrap();
        assert!(d.is_cpu());
        assert!(why.contains("built without CUDA"), "{why}");
        let e = resolve(DeviceChoice::Cuda(0)).unwrap_err().to_string();
        assert!(
            e.contains("--features cuda") && e.contains("--device cpu"),
            "{e}"
        );
        let list = devices();
        assert_eq!(list.len(), 3);
        assert!(list[0].available && !list[1].available && !list[2].available);
    }
}
