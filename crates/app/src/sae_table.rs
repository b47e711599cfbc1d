//! The workspace panel's SAE table: each SAE's type, size, training figures and analyses, and
//! the button that makes another SAE the one explored.

/// The workspace's SAEs side by side; returns the name whose "Use" button was clicked.
pub(crate) fn sae_table_ui(
    ui: &mut egui::Ui,
    saes: &[crate::ops::saes::SaeSummary],
) -> Option<String> {
    let mut chosen = None;
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("–".to_string(), f);
    egui::Grid::new("sae_table")
        .num_columns(10)
        .striped(true)
        .show(ui, |ui| {
            // The figures here are the SAE's own (its training run, or a loaded SAE measured on
            // the stored rows); the Compare tab's come from `saescope eval` on labelled images,
            // so the two can differ.
            let own = "From its training run (or, for a loaded SAE, measured on this workspace's \
                       stored rows); the Compare tab shows the benchmark's, on labelled images";
            for h in [
                "", "SAE", "Type", "Latents", "k", "Tokens", "FVE", "L0", "Dead", "Analyses",
            ] {
                let header = ui.strong(h);
                if matches!(h, "FVE" | "L0" | "Dead") {
                    header.on_hover_text(own);
                }
            }
            ui.end_row();
            for s in saes {
                if s.active {
                    ui.label("active")
                        .on_hover_text("Shown below and used when no SAE is named");
                } else if ui
                    .button("Use")
                    .on_hover_text(format!("Explore {} instead", s.name))
                    .clicked()
                {
                    chosen = Some(s.name.clone());
                }
                ui.label(&s.name);
                ui.label(&s.architecture);
                ui.label(s.d_sae.to_string());
                ui.label(opt(s.k, &|k| format!("{k}")));
                ui.label(opt(s.tokens.map(|t| t as f64), &|t| {
                    if t >= 1e6 {
                        format!("{:.1} M", t / 1e6)
                    } else {
                        format!("{:.0} k", t / 1e3)
                    }
                }));
                // Where the figures come from: the training run, or (an SAE loaded from
                // elsewhere) the workspace's stored rows, measured when it was indexed.
                let from = match s.figures_from.as_deref() {
                    Some("training run") => "its last training batch".to_string(),
                    Some("training log") => "the last line of its training log".to_string(),
                    Some(rows) => rows.to_string(),
                    None => "not measured yet: build its index".to_string(),
                };
                ui.label(opt(s.final_fve, &|v| format!("{v:.3}")))
                    .on_hover_text(format!("Fraction of variance explained, on {from}"));
                ui.label(opt(s.final_l0, &|v| format!("{v:.1}")))
                    .on_hover_text(format!("Active latents per token, on {from}"));
                ui.label(opt(s.dead_fraction, &|v| format!("{:.1}%", v * 100.0)))
                    .on_hover_text(format!("Latents that never fired, on {from}"));
                let mut parts = Vec::new();
                if s.index {
                    parts.push("index".to_string());
                }
                if s.labels > 0 {
                    parts.push(format!("{} labels", s.labels));
                }
                if s.ontology {
                    parts.push("ontology".into());
                }
                if s.ood {
                    parts.push("OOD".into());
                }
                ui.horizontal(|ui| {
                    ui.label(if parts.is_empty() {
                        "none yet".to_string()
                    } else {
                        parts.join(", ")
                    });
                    // Files beside the SAE that cannot be read are said, not shown as absent.
                    if !s.problems.is_empty() {
                        ui.colored_label(ui.visuals().error_fg_color, "⚠ unreadable files")
                            .on_hover_text(
                                s.problems
                                    .iter()
                                    .map(|e| crate::words::shown(e))
                                    .collect::<Vec<_>>()
                                    .join("\n"),
                            );
                    }
                });
                ui.end_row();
            }
        });
    chosen
}
