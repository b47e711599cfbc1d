//! Plot axes the explorer's plots share: a log10 axis labelled with the values it stands for
//! (0.01, 0.1, 1, 10), and count axes that label whole numbers only. egui_plot's defaults label
//! a log axis with its exponents and counts with fractions.

use egui_plot::{GridInput, GridMark};
use std::ops::RangeInclusive;

/// Grid marks of a log10 axis at 1, 2, …, 9 × each power of ten; each mark's step is its gap to
/// the next mark of its kind, so labels thin out (egui_plot hides those closer than their
/// width) from 3–9 first, then 2 and 5, keeping the decades.
pub fn log_value_marks(input: GridInput) -> Vec<GridMark> {
    let (lo, hi) = input.bounds;
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return Vec::new();
    }
    let span = hi - lo;
    if span > 24.0 {
        // Zoomed far out: decades only, every `step` of them.
        let step = 10f64.powf((span / 12.0).log10().ceil());
        let first = (lo / step).floor() as i64;
        let last = (hi / step).ceil() as i64;
        return (first..=last)
            .map(|k| GridMark {
                value: k as f64 * step,
                step_size: step,
            })
            .collect();
    }
    let mut marks = Vec::new();
    for k in lo.floor() as i64..=hi.ceil() as i64 {
        for m in 1..=9u32 {
            let value = k as f64 + (m as f64).log10();
            if value < lo || value > hi {
                continue;
            }
            let step_size = match m {
                1 => 1.0,
                2 | 5 => 0.3,
                _ => ((m + 1) as f64 / m as f64).log10(),
            };
            marks.push(GridMark { value, step_size });
        }
    }
    marks
}

/// A log10 axis mark as the value it stands for (0.02, 5, 300).
pub fn log_value_label(mark: GridMark, _range: &RangeInclusive<f64>) -> String {
    value_text(mark.value)
}

/// `10^x` written plainly with as many decimals as it needs (scientific beyond 1e±5).
pub fn value_text(x: f64) -> String {
    let k = (x + 1e-9).floor();
    let mantissa = 10f64.powf(x - k);
    let rounded = (mantissa * 100.0).round() / 100.0;
    let (mantissa, k) = if rounded >= 10.0 {
        (1.0, k + 1.0)
    } else {
        (rounded, k)
    };
    let value = mantissa * 10f64.powf(k);
    if !(-5.0..=5.0).contains(&k) {
        return format!("{mantissa}e{k}");
    }
    let decimals = (-k).max(0.0) as usize + if mantissa.fract() > 1e-6 { 2 } else { 0 };
    let s = format!("{value:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Linear grid steps of 1, 2 or 5 × 10ⁿ with about five labelled marks over the visible range
/// (egui_plot's default powers of ten left a 0–10 axis with one label).
pub fn linear_steps(input: egui_plot::GridInput) -> [f64; 3] {
    let span = (input.bounds.1 - input.bounds.0)
        .abs()
        .max(f64::MIN_POSITIVE);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    [step / 5.0, step, step * 5.0]
}

/// A count axis's marks: whole non-negative numbers only.
pub fn count_label(mark: GridMark, _range: &RangeInclusive<f64>) -> String {
    if mark.value < 0.0 || (mark.value - mark.value.round()).abs() > 1e-6 {
        String::new()
    } else {
        format!("{:.0}", mark.value)
    }
}

/// The colour of the `i`-th series of a plot (matplotlib's tab10, repeating), so every plot of
/// the explorer colours its series alike.
pub fn series_colour(i: usize) -> egui::Color32 {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = TAB10[i % TAB10.len()];
    egui::Color32::from_rgb(r, g, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axis_marks_are_the_values_at_one_two_five_per_decade() {
        let marks = log_value_marks(GridInput {
            bounds: (-1.01, 1.0),
            base_step_size: 0.01,
        });
        let labels: Vec<String> = marks
            .iter()
            .map(|m| log_value_label(*m, &(0.0..=1.0)))
            .collect();
        assert_eq!(
            labels,
            [
                "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1", "2", "3", "4",
                "5", "6", "7", "8", "9", "10"
            ]
        );
        let decade = |v: f64| marks.iter().find(|m| (m.value - v).abs() < 1e-9).unwrap();
        assert_eq!(decade(0.0).step_size, 1.0);
        assert_eq!(decade(2f64.log10()).step_size, 0.3);
        assert!(decade(9f64.log10()).step_size < 0.05);
        assert_eq!(value_text(-3.0), "0.001");
        assert_eq!(value_text(2.0 + 3f64.log10()), "300");
        assert_eq!(value_text(-2.0 + 5f64.log10()), "0.05");
        assert_eq!(value_text(0.05), "1.12");
        assert_eq!(value_text(7.0), "1e7");
        // Far out: decades only, a bounded number of them.
        let far = log_value_marks(GridInput {
            bounds: (-300.0, 300.0),
            base_step_size: 1.0,
        });
        assert!(far.len() < 40 && far.iter().all(|m| m.value.fract() == 0.0));
    }

    #[test]
    fn count_axes_label_whole_counts_only() {
        let at = |value| {
            count_label(
                GridMark {
                    value,
                    step_size: 0.5,
                },
                &(0.0..=1.0),
            )
        };
        assert_eq!(at(0.0), "0");
        assert_eq!(at(1500.0), "1500");
        assert_eq!(at(0.5), "");
        assert_eq!(at(-1.0), "");
    }
}
