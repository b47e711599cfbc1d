//! The Ontology tab: the form that builds the trees, the feature tree and the class trees.

use super::*;

impl Explorer {
    /// Build the trees, optionally against a taxonomy (e.g. WordNet).
    pub(super) fn tree_form(&mut self, ui: &mut egui::Ui) {
        egui::CollapsingHeader::new("Build trees")
            .default_open(self.ontology.is_none())
            .show(ui, |ui| {
                egui::Grid::new("tree_form").num_columns(2).show(ui, |ui| {
                    for (caption, value, hint) in [
                        (
                            "Taxonomy (optional)",
                            &mut self.form.tree_taxonomy,
                            "WordNet node-link .json or parent/child lines",
                        ),
                        (
                            "Class ids (optional)",
                            &mut self.form.tree_class_ids,
                            "one taxonomy id per class, sorted class order",
                        ),
                    ] {
                        labelled_path_row(ui, &self.picker, Pick::File, caption, value, hint);
                    }
                });
                let tax = (!self.form.tree_taxonomy.trim().is_empty()
                    && !self.form.tree_class_ids.trim().is_empty())
                .then(|| crate::analysis::ontology::TaxonomyInput {
                    taxonomy: self.form.tree_taxonomy.trim().into(),
                    class_ids: self.form.tree_class_ids.trim().into(),
                });
                let ready = self.sae.is_some() && self.index.is_some() && !self.running();
                if ui
                    .add_enabled(ready, egui::Button::new("Build trees"))
                    .on_hover_text(
                        "Feature tree and class trees (compared with the taxonomy when given)",
                    )
                    .clicked()
                {
                    let request = crate::ops::analyse::TreeRequest {
                        workspace: self.ws.dir.clone(),
                        sae: self.home.clone(),
                        taxonomy: tax,
                    };
                    self.push_job(BackgroundJob::spawn("Ontology", ui.ctx(), move |job| {
                        let (o, _) = crate::ops::analyse::tree(&request, job)?;
                        Ok(format!("{} features in the tree", o.features.len()))
                    }));
                }
            });
    }

    pub(super) fn ontology_ui(&mut self, ui: &mut egui::Ui) {
        self.tree_form(ui);
        let Some(o) = self.ontology.clone() else {
            ui.label("No trees yet: build them above.");
            return;
        };
        if let Some((a, b)) = &o.taxonomy_top_split {
            ui.label(format!(
                "Taxonomy's top split: {{{}}} / {{{}}}",
                a.join(", "),
                b.join(", ")
            ));
        }
        // Class trees side by side: SAE profiles, raw activations, and the taxonomy itself.
        let trees: Vec<(&str, &crate::analysis::ontology::ClassTree)> = [
            ("Class tree (SAE features)", &o.class_tree_sae),
            ("Class tree (raw activations)", &o.class_tree_raw),
            ("Taxonomy", &o.taxonomy_tree),
        ]
        .into_iter()
        .filter_map(|(n, t)| t.as_ref().map(|t| (n, t)))
        .collect();
        // The class trees scroll within at most 40% of the page, so the feature tree below is
        // always on screen however far they are expanded.
        let class_height = (ui.available_height() * 0.4).max(120.0);
        egui::ScrollArea::vertical()
            .id_salt("class_trees")
            .max_height(class_height)
            .auto_shrink([false, true])
            .show(ui, |ui| class_trees_ui(ui, &trees));
        ui.separator();
        ui.horizontal(|ui| {
            ui.label(
                egui::RichText::new(format!("Feature tree ({} features)", o.features.len()))
                    .strong(),
            );
            let l = ui.label("Search tree:");
            ui.add(
                egui::TextEdit::singleline(&mut self.form.tree_search)
                    .hint_text("label or id")
                    .desired_width(160.0),
            )
            .labelled_by(l.id);
        });
        let feats = o.features.clone();
        let q = self.form.tree_search.trim().to_lowercase();
        let label_of = |f: u32| {
            self.labels
                .labels
                .get(&f)
                .map(|l| l.text.clone())
                .unwrap_or_default()
        };
        let matches: Option<std::collections::HashSet<usize>> = (!q.is_empty()).then(|| {
            (0..feats.len())
                .filter(|&i| {
                    feats[i].to_string() == q || label_of(feats[i]).to_lowercase().contains(&q)
                })
                .collect()
        });
        let texts: Vec<String> = feats
            .iter()
            .map(|&f| format!("#{f} {}", label_of(f)))
            .collect();
        let tags: Vec<String> = feats.iter().map(|&f| label_of(f)).collect();
        let ctx = ui.ctx().clone();
        let mut go = None;
        // A node's thumbnails are its most frequent features.
        let counts: Vec<f64> = feats
            .iter()
            .map(|&f| {
                self.index
                    .as_ref()
                    .and_then(|ix| ix.token_count.get(f as usize))
                    .map_or(0.0, |&c| c as f64)
            })
            .collect();
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                let mut thumb = |i: usize| self.thumb(&ctx, feats[i], ThumbKind::Card);
                let mut style = TreeStyle {
                    leaf_text: &|i| texts[i].clone(),
                    leaf_tag: &|i| Some(tags[i].clone()).filter(|t| !t.is_empty()),
                    leaf_thumb: &mut thumb,
                    leaf_rank: &|i| counts[i],
                    matches: matches.as_ref(),
                    salt: "features",
                };
                tree_node(
                    ui,
                    &o.feature_tree,
                    o.feature_tree.root(),
                    &mut style,
                    &mut go,
                );
            });
        if let Some(i) = go {
            self.select(feats[i]);
        }
    }
}

/// The class trees side by side, one column each.
fn class_trees_ui(ui: &mut egui::Ui, trees: &[(&str, &crate::analysis::ontology::ClassTree)]) {
    // Side by side when each tree gets room, one under another otherwise (at 1024 px three
    // columns drew over each other).
    if ui.available_width() < 380.0 * trees.len() as f32 {
        for (name, t) in trees {
            class_tree_ui(ui, name, t);
        }
        return;
    }
    ui.columns(trees.len().max(1), |cols| {
        for (ui, (name, t)) in cols.iter_mut().zip(trees) {
            class_tree_ui(ui, name, t);
        }
    });
}

/// One class tree: its name, its comparison with the taxonomy, and the collapsible tree.
fn class_tree_ui(ui: &mut egui::Ui, name: &str, t: &crate::analysis::ontology::ClassTree) {
    ui.label(egui::RichText::new(name).strong());
    if let Some(c) = &t.comparison {
        ui.label(format!(
            "cophenetic correlation with the taxonomy {:.3} · top-split purity {:.2}",
            c.cophenetic_correlation, c.top_split_purity
        ));
    }
    let names = t.classes.clone();
    let mut style = TreeStyle {
        leaf_text: &|i| names[i].clone(),
        leaf_tag: &|i| Some(names[i].clone()),
        leaf_thumb: &mut |_| None,
        leaf_rank: &|_| 0.0,
        matches: None,
        salt: name,
    };
    tree_node(ui, &t.tree, t.tree.root(), &mut style, &mut None);
}

/// A collapsible dendrogram node; leaves are buttons (clicking one sets `clicked`).
fn tree_node(
    ui: &mut egui::Ui,
    d: &Dendrogram,
    node: usize,
    style: &mut TreeStyle,
    clicked: &mut Option<usize>,
) {
    match d.children(node) {
        None => {
            let text = (style.leaf_text)(node);
            let button = match (style.leaf_thumb)(node) {
                Some(t) => egui::Button::image_and_text(
                    egui::Image::new(&t).fit_to_exact_size(egui::vec2(28.0, 28.0)),
                    text,
                ),
                None => egui::Button::new(text),
            };
            if ui.add(button).on_hover_text("Open").clicked() {
                *clicked = Some(node);
            }
        }
        Some((a, b)) => {
            let leaves = d.leaves(node);
            if let Some(m) = style.matches
                && !leaves.iter().any(|l| m.contains(l))
            {
                return;
            }
            let h = d.merges[node - d.n].height;
            let id = ui.make_persistent_id((style.salt, node));
            let mut state = egui::collapsing_header::CollapsingState::load_with_default_open(
                ui.ctx(),
                id,
                leaves.len() <= 12,
            );
            if style.matches.is_some() {
                state.set_open(true);
            }
            // The header shows the node's most representative leaves (up to 4 thumbnails).
            let mut reps = leaves.clone();
            reps.sort_by(|x, y| (style.leaf_rank)(*y).total_cmp(&(style.leaf_rank)(*x)));
            reps.truncate(4);
            state
                .show_header(ui, |ui| {
                    for r in reps {
                        if let Some(t) = (style.leaf_thumb)(r) {
                            ui.add(
                                egui::Image::new(&t)
                                    .fit_to_exact_size(egui::vec2(20.0, 20.0))
                                    .alt_text(format!(
                                        "representative {}",
                                        (style.leaf_text)(r).trim_start_matches('#')
                                    )),
                            );
                        }
                    }
                    let summary = tag_summary(leaves.iter().filter_map(|&l| (style.leaf_tag)(l)))
                        .map(|s| format!(" · {s}"))
                        .unwrap_or_default();
                    ui.label(format!("{} leaves{summary} · height {h:.3}", leaves.len()))
                        .on_hover_text(
                            "The leaves' labels (classes for class trees), commonest first",
                        );
                })
                .body(|ui| {
                    tree_node(ui, d, a, style, clicked);
                    tree_node(ui, d, b, style, clicked);
                });
        }
    }
}

/// How a dendrogram is drawn: leaf captions and thumbnails, and an optional search filter.
struct TreeStyle<'a> {
    leaf_text: &'a dyn Fn(usize) -> String,
    /// A leaf's label (a class for class trees), summarised in its ancestors' headers.
    leaf_tag: &'a dyn Fn(usize) -> Option<String>,
    leaf_thumb: &'a mut dyn FnMut(usize) -> Option<egui::TextureHandle>,
    /// Which leaves represent an internal node in its header (highest first).
    leaf_rank: &'a dyn Fn(usize) -> f64,
    /// Only subtrees holding one of these leaves are shown (and opened).
    matches: Option<&'a std::collections::HashSet<usize>>,
    salt: &'a str,
}

/// What a subtree holds, from its leaves' labels: the commonest first with their counts, three
/// at most ("ship 7, airplane 3, cat, +4 more"); None when no leaf is labelled.
fn tag_summary(tags: impl Iterator<Item = String>) -> Option<String> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for t in tags {
        // Long free-text labels are cut so a header stays one line.
        let short: String = t.chars().take(24).collect();
        *counts.entry(short).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if v.is_empty() {
        return None;
    }
    let mut parts: Vec<String> = v
        .iter()
        .take(3)
        .map(|(t, n)| {
            if *n > 1 {
                format!("{t} {n}")
            } else {
                t.clone()
            }
        })
        .collect();
    if v.len() > 3 {
        parts.push(format!("+{} more", v.len() - 3));
    }
    Some(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::tag_summary;

    #[test]
    fn tag_summary_lists_the_commonest_labels_with_counts() {
        let tags = ["ship", "cat", "ship", "frog", "ship", "cat", "dog", "deer"];
        assert_eq!(
            tag_summary(tags.iter().map(|s| s.to_string())).as_deref(),
            Some("ship 3, cat 2, deer, +2 more")
        );
        assert_eq!(tag_summary(std::iter::empty()), None);
        assert_eq!(
            tag_summary(["a very long label that goes on and on".to_string()].into_iter())
                .as_deref(),
            Some("a very long label that g")
        );
    }
}
