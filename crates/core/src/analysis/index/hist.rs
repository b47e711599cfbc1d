//! The feature index's activation histogram: log-spaced bins from 1e-3 to 1e3.

/// Histogram: 40 log-spaced bins per decade over [1e-3, 1e3) (each 6% wide: 10 per decade
/// gave a typical feature, which spans about one decade, seven bars), plus one bin below and
/// one above.
pub const HIST_PER_DECADE: usize = 40;
pub const HIST_BINS: usize = 6 * HIST_PER_DECADE + 2;
const HIST_LO: f32 = 1e-3;

/// Lower edge of histogram bin `b` (bin 0 is everything below 1e-3).
pub fn hist_edge(b: usize) -> f32 {
    if b == 0 {
        0.0
    } else {
        HIST_LO * 10f32.powf((b - 1) as f32 / HIST_PER_DECADE as f32)
    }
}

pub(super) fn hist_bin(v: f32) -> usize {
    if v < HIST_LO {
        0
    } else {
        ((v / HIST_LO).log10() * HIST_PER_DECADE as f32)
            .floor()
            .min((HIST_BINS - 2) as f32) as usize
            + 1
    }
}
