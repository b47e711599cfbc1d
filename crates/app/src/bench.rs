//! `saescope bench gui`: CPU time per frame of the feature grid with many items, measured
//! headless (egui layout + tessellation; no GPU upload), while scrolling through the grid.

use crate::explorer::Explorer;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct GridBench {
    pub items: usize,
    pub frames: usize,
    pub window: (f32, f32),
    pub median_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    /// Frames measured after thumbnails of the visible rows were made (the steady state).
    pub warm_frames: usize,
    /// Opening feature pages: from the click to the frame in which every top image is drawn
    /// (thumbnails made from the index, within the per-frame budget), over `pages_opened` pages.
    pub pages_opened: usize,
    pub page_open_median_ms: f64,
    pub page_open_max_ms: f64,
    /// Frames the page took to fill.
    pub page_open_frames_max: usize,
    /// The Compare tab (every SAE's row, the Pareto plots, the last page's closest features in
    /// the other SAEs), once the other SAEs are loaded: SAEs in the workspace and frame times.
    pub compare_saes: usize,
    pub compare_median_ms: f64,
    pub compare_p95_ms: f64,
}

pub fn bench_grid(ws: &Path, items: usize, frames: usize) -> crate::Result<GridBench> {
    let mut x = Explorer::open(ws)?;
    let Some(index) = &x.index else {
        return Err(crate::Error::Workspace(format!(
            "{}: no feature index; run `saescope index` first",
            ws.display()
        )));
    };
    // `items` cards cycling through the real features (their thumbnails are real).
    let d = index.d_sae as u32;
    x.order = (0..items as u32).map(|i| i % d).collect();
    let ctx = egui::Context::default();
    let window = (1280.0, 800.0);
    let input = |events: Vec<egui::Event>| egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(window.0, window.1),
        )),
        events,
        ..Default::default()
    };
    let mut frame = |events: Vec<egui::Event>| -> f64 {
        let t = Instant::now();
        let mut out = ctx.run_ui(input(events), |ui| {
            egui::CentralPanel::default().show(ui, |ui| {
                x.features_grid(ui);
            });
        });
        // Textures are not uploaded anywhere here; dropping them unapplied is a debug panic.
        out.textures_delta.clear();
        let prims = ctx.tessellate(out.shapes, out.pixels_per_point);
        std::hint::black_box(prims.len());
        t.elapsed().as_secs_f64() * 1e3
    };
    // Warm up: the first frames make the visible thumbnails.
    let hover = egui::Event::PointerMoved(egui::pos2(400.0, 400.0));
    for _ in 0..20 {
        frame(vec![hover.clone()]);
    }
    let mut times = Vec::with_capacity(frames);
    for i in 0..frames {
        // Scroll down steadily, jumping back to the top now and then.
        let delta = if i % 50 == 49 { 1e6 } else { -120.0 };
        times.push(frame(vec![
            hover.clone(),
            egui::Event::MouseWheel {
                unit: egui::MouseWheelUnit::Point,
                delta: egui::vec2(0.0, delta),
                phase: egui::TouchPhase::Move,
                source: egui::MouseWheelSource::Unknown,
                modifiers: egui::Modifiers::NONE,
            },
        ]));
    }
    // Feature pages, as a click on a card opens them: the whole explorer is drawn each frame
    // until the page's top images are all there.
    let d_sae = x.index.as_ref().map_or(0, |i| i.d_sae);
    let pages: Vec<u32> = (0..d_sae as u32)
        .step_by((d_sae / 20).max(1))
        .take(20)
        .collect();
    let mut open_ms = Vec::new();
    let mut open_frames = 0;
    for &f in &pages {
        x.select(f);
        let t = Instant::now();
        let mut n = 0;
        while n < 50 {
            n += 1;
            let mut out = ctx.run_ui(input(vec![hover.clone()]), |ui| {
                egui::CentralPanel::default().show(ui, |ui| x.ui(ui));
            });
            // Textures are not uploaded anywhere here; dropping them unapplied is a debug panic.
            out.textures_delta.clear();
            std::hint::black_box(ctx.tessellate(out.shapes, out.pixels_per_point).len());
            if x.feature_page_ready(f) {
                break;
            }
        }
        open_ms.push(t.elapsed().as_secs_f64() * 1e3);
        open_frames = open_frames.max(n);
    }
    open_ms.sort_by(f64::total_cmp);
    x.tab = crate::explorer::Tab::Compare;
    let mut compare = Vec::new();
    let loading = Instant::now();
    while compare.len() < frames.min(300) {
        let t = Instant::now();
        let mut out = ctx.run_ui(input(vec![hover.clone()]), |ui| {
            egui::CentralPanel::default().show(ui, |ui| x.ui(ui));
        });
        // Textures are not uploaded anywhere here; dropping them unapplied is a debug panic.
        out.textures_delta.clear();
        std::hint::black_box(ctx.tessellate(out.shapes, out.pixels_per_point).len());
        let ms = t.elapsed().as_secs_f64() * 1e3;
        // Frames count once the other SAEs are in (a background job) and 20 warm frames made
        // their thumbnails; a workspace that cannot load them is timed as it is after 2 minutes.
        if x.compare_ready() || loading.elapsed().as_secs() > 120 {
            compare.push(ms);
        } else {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let compare_saes = x.ws.sae_names().len();
    let compare = sorted_tail(compare, 20);
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let cpct = |p: f64| {
        compare
            .get(((compare.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(GridBench {
        items,
        frames,
        window,
        median_ms: pct(0.5),
        p95_ms: pct(0.95),
        max_ms: *times.last().unwrap_or(&0.0),
        warm_frames: 20,
        pages_opened: open_ms.len(),
        page_open_median_ms: open_ms.get(open_ms.len() / 2).copied().unwrap_or(0.0),
        page_open_max_ms: open_ms.last().copied().unwrap_or(0.0),
        page_open_frames_max: open_frames,
        compare_saes,
        compare_median_ms: cpct(0.5),
        compare_p95_ms: cpct(0.95),
    })
}

/// `v` without its first `warm` values, sorted.
fn sorted_tail(v: Vec<f64>, warm: usize) -> Vec<f64> {
    let mut t: Vec<f64> = v.into_iter().skip(warm).collect();
    t.sort_by(f64::total_cmp);
    t
}
