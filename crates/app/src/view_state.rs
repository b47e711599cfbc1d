//! View state that several views share: a leaf module, so the views that use it (explorer,
//! image view, intervention panel) never import one another in a circle.

use crate::backbone::VisionTransformer;
use std::sync::{Arc, OnceLock};

/// The workspace's backbone, loaded on first use and shared by later encodings.
pub type SharedBackbone = Arc<OnceLock<std::result::Result<VisionTransformer, crate::Failure>>>;

/// Heatmap display: opacity over the image, and the plain image beside it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct HeatmapView {
    pub opacity: f32,
    pub side_by_side: bool,
}

impl Default for HeatmapView {
    fn default() -> Self {
        HeatmapView {
            opacity: 0.75,
            side_by_side: false,
        }
    }
}

impl HeatmapView {
    /// The opacity slider and the side-by-side switch; true when the opacity changed.
    pub fn controls_ui(&mut self, ui: &mut egui::Ui) -> bool {
        let mut changed = false;
        ui.horizontal(|ui| {
            let l = ui.label("Heatmap opacity");
            changed = ui
                .add(egui::Slider::new(&mut self.opacity, 0.0..=1.0).step_by(0.05))
                .labelled_by(l.id)
                .on_hover_text("0 shows the image alone, 1 the heatmap alone")
                .changed();
            ui.checkbox(&mut self.side_by_side, "Side by side")
                .on_hover_text("Show the image without the heatmap beside each heatmap");
        });
        changed
    }
}
