//! The explorer: features, feature pages, labels, OOD, ontology, the image view and interventions.

use super::*;

/// Browse a real analysed workspace: feature grid, a feature page with heatmaps and label
/// autosave, OOD view and ontology view — with a snapshot of each.
#[test]
fn explorer_browses_features_ood_and_ontology() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = analysed_workspace(tmp.path());
    let mut h = explorer_on(&ws, egui::vec2(1100.0, 800.0));
    let x = h.state().explorer.as_ref().expect("explorer open");
    assert!(x.index.is_some() && x.ood.is_some() && x.ontology.is_some());
    let first = x.order[0];
    assert_eq!(x.order.len(), 64);
    // Class labels are given only where significant: the first feature may have none.
    let label = x
        .labels
        .labels
        .get(&first)
        .map(|l| l.text.clone())
        .unwrap_or_default();
    h.snapshot("explorer_features");

    h.get_by_label_contains(&format!("#{first}\n")).click();
    h.run_steps(6);
    assert_eq!(h.state().explorer.as_ref().unwrap().selected, Some(first));
    h.get_by_label(&format!("Feature {first}"));
    assert!(h.query_by_label_contains("lift").is_some());
    // Examples across the activation range: eight images of the feature's random sample, at
    // quantiles of their activation (weakest first), from the index.
    h.get_by_label("Across the activation range");
    let x = h.state().explorer.as_ref().unwrap();
    let ix = x.index.as_ref().unwrap();
    let picks = ix.quantile_examples(first as usize, 8);
    assert_eq!(picks.len(), 8.min(ix.samples[first as usize].len()));
    assert!(
        picks.len() >= 2,
        "the first feature fires on more than one image"
    );
    h.get_by_label("quantile 6% example");
    h.snapshot("explorer_feature_page");

    // Arrow keys step through the grid's order (the first card has no previous one); Back
    // returns to the page shown before.
    let second = h.state().explorer.as_ref().unwrap().order[1];
    h.key_press(egui::Key::ArrowLeft);
    h.run_steps(2);
    assert_eq!(h.state().explorer.as_ref().unwrap().selected, Some(first));
    h.key_press(egui::Key::ArrowRight);
    h.run_steps(2);
    assert_eq!(h.state().explorer.as_ref().unwrap().selected, Some(second));
    h.get_by_role_and_label(Role::Button, "Back").click();
    h.run_steps(2);
    assert_eq!(h.state().explorer.as_ref().unwrap().selected, Some(first));
    h.get_by_role_and_label(Role::Button, "Forward").click();
    h.run_steps(2);
    assert_eq!(h.state().explorer.as_ref().unwrap().selected, Some(second));
    h.key_press(egui::Key::ArrowLeft);
    h.run_steps(2);
    assert_eq!(h.state().explorer.as_ref().unwrap().selected, Some(first));

    // Rename the label: autosaved to labels.json shortly after typing stops.
    let edit = h.get_by_role(Role::TextInput);
    edit.focus();
    edit.type_text(" edge");
    h.run();
    // While the explorer holds that unsaved edit, `saescope label --set` (the same ops call)
    // labels another feature from another process: both labels are kept when the explorer saves.
    saescope_ops::analyse::label(
        &saescope_ops::analyse::LabelRequest {
            workspace: ws.clone(),
            set: vec![(second, "set from the command line".into())],
            ..Default::default()
        },
        &saescope_core::job::Job::default(),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    h.run_steps(3);
    let saved = saescope_core::analysis::labels::Labels::load(&ws.join("saes/topk-64-k4")).unwrap();
    assert_eq!(saved.labels[&first].text, format!("{label} edge").trim());
    assert_eq!(saved.labels[&second].text, "set from the command line");
    let shown = &h.state().explorer.as_ref().unwrap().labels;
    assert_eq!(shown.labels[&second].text, "set from the command line");
    assert_eq!(
        saved.labels[&first].source,
        saescope_core::analysis::labels::LabelSource::Manual
    );
    // The grid's search sees the renamed label at once.
    h.get_by_role_and_label(Role::Button, "Features").click();
    h.run_steps(2);
    let search = h.get_by_role(Role::TextInput);
    search.focus();
    search.type_text("edge");
    h.run_steps(2);
    assert_eq!(h.state().explorer.as_ref().unwrap().order, vec![first]);
    h.get_by_role_and_label(Role::Button, "Feature").click();
    h.run_steps(6);

    // Heatmap opacity and side by side: the thumbnails are made again at the new opacity, and
    // each top image shows the plain image beside its heatmap.
    h.get_by_role_and_label(Role::Slider, "Heatmap opacity")
        .set_value_accesskit(0.3);
    h.run_steps(2);
    assert_eq!(
        h.state().explorer.as_ref().unwrap().form.heatmap.opacity,
        0.3
    );
    h.get_by_role_and_label(Role::CheckBox, "Side by side")
        .click();
    h.run_steps(6);
    assert!(
        h.state()
            .explorer
            .as_ref()
            .unwrap()
            .form
            .heatmap
            .side_by_side
    );
    h.get_by_label("top image 1 without heatmap");
    h.get_by_role_and_label(Role::CheckBox, "Side by side")
        .click();
    h.get_by_role_and_label(Role::Slider, "Heatmap opacity")
        .set_value_accesskit(0.75);
    h.run_steps(2);

    // A top image opens in the image view with this feature's heatmap (encoded in the
    // background by the real backbone).
    h.get_by_label("top image 1").click();
    h.run_steps(2);
    let start = std::time::Instant::now();
    while h.query_by_label("Top features of this image").is_none() {
        assert!(start.elapsed().as_secs() < 60, "image never encoded");
        std::thread::sleep(std::time::Duration::from_millis(100));
        h.run_steps(1);
    }
    h.run_steps(2);
    assert_eq!(
        h.state()
            .explorer
            .as_ref()
            .unwrap()
            .image_view
            .as_ref()
            .unwrap()
            .feature,
        Some(first)
    );
    h.snapshot("explorer_image");

    h.get_by_role_and_label(Role::Button, "OOD").click();
    h.run_steps(3);
    assert!(h.query_by_label("sae_mahalanobis").is_some());
    h.snapshot("explorer_ood");
    // Method names explain themselves, and a most-unusual image opens in the image view with
    // the heatmap of the feature that contributed most to its score.
    h.run_steps(6); // thumbnails: a few per frame
    let unusual = h.query_all_by_label_contains("unusual image ").count();
    assert_eq!(unusual, 8, "8 thumbnails of the most unusual MNIST images");
    h.get_all_by_label_contains("unusual image ")
        .next()
        .unwrap()
        .click_accesskit();
    h.run_steps(2);
    let x = h.state().explorer.as_ref().unwrap();
    assert_eq!(x.tab, saescope_app::explorer::Tab::Image);
    assert!(x.image_view.as_ref().unwrap().feature.is_some());
    h.get_by_role_and_label(Role::Button, "OOD").click();
    h.run_steps(2);

    // Export the labelled features from the Export view (a background job).
    h.get_by_role_and_label(Role::Button, "Export").click();
    h.run_steps(2);
    let out = tmp.path().join("exported");
    let field = h.get_by_role_and_label(Role::TextInput, "Output folder");
    field.focus();
    field.type_text(out.to_str().unwrap());
    h.run();
    h.get_all_by_role_and_label(Role::Button, "Export")
        .last()
        .unwrap()
        .click();
    let start = std::time::Instant::now();
    while !out.join("features.csv").is_file() {
        assert!(start.elapsed().as_secs() < 60, "export never finished");
        std::thread::sleep(std::time::Duration::from_millis(100));
        h.run_steps(1);
    }

    h.get_by_role_and_label(Role::Button, "Ontology").click();
    h.run_steps(3);
    assert_eq!(h.query_all_by_label_contains("top-split purity").count(), 2);
    assert!(
        h.query_by_label("Taxonomy").is_some(),
        "the WordNet tree is shown beside"
    );
    h.snapshot("explorer_ontology");

    // Searching the feature tree opens the path to the match; its leaf opens the feature.
    let search = h.get_by_role_and_label(Role::TextInput, "Search tree:");
    search.focus();
    search.type_text(&first.to_string());
    h.run_steps(4);
    h.snapshot("explorer_ontology_search");
    h.get_by_label_contains(&format!("#{first} ")).click();
    h.run_steps(2);
    let x = h.state().explorer.as_ref().unwrap();
    assert_eq!(x.selected, Some(first));
    assert_eq!(x.tab, saescope_app::explorer::Tab::Feature);
}

/// Interventions in the image view (ablate from a top feature's +, a clamp to 0 that changes
/// nothing, painted patches) and a causal effect measured from the feature page.
#[test]
fn image_view_intervenes_and_feature_page_measures_causal_effects() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = analysed_workspace(tmp.path());
    let mut h = explorer_on(&ws, egui::vec2(1280.0, 800.0));
    // Sort by class lift: the cards show each feature's best class and lift, most selective
    // first; Reverse puts the least selective first.
    h.get_by_role_and_label(Role::ComboBox, "Sort by").click();
    h.run_steps(2);
    h.get_by_label("Class lift").click();
    h.run_steps(2);
    let lifts = |h: &Harness<'static, SaescopeApp>| -> Vec<f64> {
        let x = h.state().explorer.as_ref().unwrap();
        let index = x.index.as_ref().unwrap();
        x.order
            .iter()
            .map(|&f| index.best_lift(f as usize).unwrap().1)
            .collect()
    };
    let l = lifts(&h);
    assert!(l.windows(2).all(|w| w[0] >= w[1]), "{l:?}");
    assert!(
        h.query_by_label_contains(&format!("lift {:.1}x", l[0]))
            .is_some()
    );
    h.get_by_label("Reverse").click();
    h.run_steps(2);
    let r = lifts(&h);
    assert!(r.windows(2).all(|w| w[0] <= w[1]), "{r:?}");
    h.get_by_label("Reverse").click();
    h.run_steps(2);
    let first = h.state().explorer.as_ref().unwrap().order[0];
    h.get_by_label_contains(&format!("#{first}\n")).click();
    h.run_steps(6);
    h.get_by_label("top image 1").click();
    h.run_steps(2);
    wait_for(&mut h, |h| {
        h.query_by_label("Top features of this image").is_some()
    });
    // The model's own prediction is shown before any edit (the CIFAR ViT has a head).
    let said = {
        use egui_kittest::kittest::NodeT;
        let n = h.get_by_label_contains("Model's prediction: ");
        n.accesskit_node()
            .label()
            .filter(|l| !l.is_empty())
            .or_else(|| n.value())
            .unwrap_or_default()
    };
    assert!(
        [
            "airplane",
            "cat",
            "frog",
            "ship",
            "automobile",
            "bird",
            "deer",
            "dog",
            "horse",
            "truck"
        ]
        .iter()
        .any(|c| said.starts_with(&format!("Model's prediction: {c} "))),
        "{said}"
    );
    let view = |h: &Harness<'static, SaescopeApp>| {
        h.state()
            .explorer
            .as_ref()
            .unwrap()
            .image_view
            .as_ref()
            .unwrap()
            .intervene
            .features
            .iter()
            .map(|c| c.feature)
            .collect::<Vec<u32>>()
    };
    // The image's strongest feature, ablated on every patch: the prediction table appears.
    h.get_all_by_role_and_label(Role::Button, "+")
        .next()
        .unwrap()
        .click();
    h.run_steps(2);
    assert_eq!(view(&h).len(), 1);
    wait_for(&mut h, |h| {
        h.query_by_label_contains("Prediction:").is_some()
            || h.query_by_label_contains("No feature activation changed")
                .is_some()
    });
    assert!(
        h.query_by_label_contains("Where the output changed")
            .is_some()
            || h.query_by_label_contains("No feature activation changed")
                .is_some()
    );
    h.snapshot("explorer_intervene");

    // Clamp to 0 a feature that is off everywhere on this image: nothing changes, bit for bit.
    let off = {
        let x = h.state().explorer.as_ref().unwrap();
        let codes = x.image_view.as_ref().unwrap().codes().expect("encoded");
        let d_sae = x.sae.as_ref().unwrap().d_sae as u32;
        (0..d_sae)
            .find(|&j| (0..codes.rows()).all(|r| codes.row(r).all(|(k, _)| k != j)))
            .expect("with k=4 of 64 some feature is off on every token")
    };
    h.get_by_label_contains(" ×").click(); // the chip removes it
    h.run_steps(2);
    assert!(view(&h).is_empty());
    let add = h.get_by_role_and_label(Role::TextInput, "Add feature");
    add.focus();
    add.type_text(&off.to_string());
    h.run();
    h.get_by_role_and_label(Role::Button, "Add").click();
    h.run_steps(2);
    assert_eq!(view(&h), vec![off]);
    h.get_by_role_and_label(Role::RadioButton, "Clamp").click();
    h.run_steps(2);
    let settled = |h: &Harness<'static, SaescopeApp>| {
        h.query_by_label_contains("running the model").is_none()
            && (h
                .query_by_label_contains("No feature activation changed")
                .is_some()
                || h.query_by_label_contains("Prediction:").is_some())
    };
    wait_for(&mut h, settled);
    assert!(
        h.query_by_label_contains("bit for bit").is_some(),
        "a clamp to 0 of a feature that is off must change nothing"
    );

    // Painted patches: choosing them with nothing painted asks for paint instead of running.
    h.get_by_role_and_label(Role::RadioButton, "Painted patches")
        .click();
    h.run_steps(2);
    assert!(h.query_by_label_contains("Paint some patches").is_some());
    h.get_by_role_and_label(Role::RadioButton, "All patches")
        .click();
    h.run_steps(2);

    // Each chosen feature has its own edit: a second feature, added while "Clamp" is the
    // default, is switched to Ablate on its own chip; the first stays clamped.
    let add = h.get_by_role_and_label(Role::TextInput, "Add feature");
    add.focus();
    add.type_text(&first.to_string());
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Add").click();
    h.run_steps(2);
    assert_eq!(view(&h), vec![off, first]);
    h.get_all_by_role(Role::ComboBox)
        .filter(|n| n.value().as_deref() == Some("Clamp"))
        .max_by(|a, b| a.rect().left().total_cmp(&b.rect().left()))
        .unwrap()
        .click();
    h.run_steps(2);
    h.get_all_by_label("Ablate")
        .find(|n| {
            use egui_kittest::kittest::NodeT;
            n.accesskit_node().role() != Role::RadioButton
        })
        .unwrap()
        .click();
    h.run_steps(2);
    let edits = |h: &Harness<'static, SaescopeApp>| {
        let x = h.state().explorer.as_ref().unwrap();
        x.image_view
            .as_ref()
            .unwrap()
            .intervene
            .intervention()
            .unwrap()
            .edits
    };
    use saescope_core::analysis::intervene::EditMode;
    assert_eq!(
        edits(&h)
            .iter()
            .map(|e| (e.feature, e.mode))
            .collect::<Vec<_>>(),
        vec![(off, EditMode::Clamp(0.0)), (first, EditMode::Ablate)]
    );
    // The next image keeps the chosen features and their edits.
    h.get_by_role_and_label(Role::Button, "Image").click();
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, ">").click();
    h.run_steps(2);
    wait_for(&mut h, |h| {
        h.query_by_label("Top features of this image").is_some()
    });
    assert_eq!(
        edits(&h)
            .iter()
            .map(|e| (e.feature, e.mode))
            .collect::<Vec<_>>(),
        vec![(off, EditMode::Clamp(0.0)), (first, EditMode::Ablate)],
        "the next image lost the chosen features"
    );

    // The feature page measures the first feature's causal effect on a class in the background.
    h.get_by_role_and_label(Role::Button, "Feature").click();
    h.run_steps(3);
    h.get_by_role_and_label(Role::Button, "Measure causal effect")
        .click_accesskit();
    h.run_steps(2);
    wait_for(&mut h, |h| {
        !h.state().explorer.as_ref().unwrap().effects.is_empty()
    });
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("random features of its frequency")
            .is_some()
    );
    let saved = saescope_core::analysis::causal::load_effects(&ws.join("saes/topk-64-k4")).unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].feature, first);

    // Typed inputs are remembered: an OOD folder typed, the workspace closed and reopened.
    h.get_by_role_and_label(Role::Button, "OOD").click();
    h.run_steps(2);
    h.get_by_label("Score folders").click();
    h.run_steps(2);
    let field = h.get_by_role_and_label(Role::TextInput, "In-distribution to score");
    field.focus();
    field.type_text("/data/cifar/test");
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "< Workspaces")
        .click();
    h.run_steps(2);
    assert!(h.state().explorer.is_none());
    h.state_mut().open_workspace(ws.clone());
    h.run_steps(2);
    assert_eq!(
        h.state().explorer.as_ref().unwrap().form.ood_id,
        "/data/cifar/test"
    );
}

/// A damaged analysis file is an error on the page, not "not computed yet".
#[test]
fn a_corrupt_ood_file_and_an_unreadable_image_are_reported_not_hidden() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = analysed_workspace(tmp.path());
    std::fs::write(ws.join("saes/topk-64-k4/ood/results.json"), "{ torn").unwrap();
    // The images behind the cards are gone (moved or deleted files).
    let ix = saescope_core::analysis::index::load_index(&ws.join("saes/topk-64-k4")).unwrap();
    let ds = saescope_core::store::Workspace::open(&ws)
        .unwrap()
        .dataset()
        .unwrap();
    let best = |f: usize| ds.abs_path(ix.top[f][0].image as usize);
    for f in (0..ix.d_sae).filter(|&f| !ix.top[f].is_empty()) {
        let _ = std::fs::remove_file(best(f));
    }
    let mut h = Harness::builder()
        .with_size(egui::vec2(1100.0, 600.0))
        .wgpu()
        .build_eframe(|cc| SaescopeApp::new(cc));
    h.run();
    h.state_mut().open_workspace(ws.clone());
    h.run_steps(3);
    let x = h.state().explorer.as_ref().unwrap();
    assert!(x.ood.is_none());
    let err = x.error.clone().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("results.json"), "{err}");
    assert!(
        x.index.is_some() && x.ontology.is_some(),
        "the rest still loads"
    );
    // Its card shows the "unreadable" placeholder, with the reason on hover.
    let first = x.order[0];
    let gone = best(first as usize);
    let why = x.thumb_problem(first).unwrap_or_default();
    assert!(
        why.contains("cannot show this image") && why.contains(&*gone.to_string_lossy()),
        "{why}"
    );
}
