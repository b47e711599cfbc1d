//! The research loop without the CLI: import labels, save an image's heatmaps, and measure SAEs
//! (benchmark, eval-sae, probe) from the explorer.

use super::*;

fn job_message(h: &Harness<'static, SaescopeApp>, title: &str) -> Option<String> {
    h.state()
        .explorer
        .as_ref()?
        .jobs
        .iter()
        .rev()
        .find(|j| j.title == title)
        .and_then(|j| match j.state() {
            saescope_app::jobs::JobState::Done(m) => Some(m),
            _ => None,
        })
}

fn type_into(h: &mut Harness<'static, SaescopeApp>, field: &str, text: &str) {
    let f = h.get_by_role_and_label(Role::TextInput, field);
    f.focus();
    f.type_text(text);
    h.run_steps(2);
}

#[test]
fn labels_are_imported_heatmaps_saved_and_saes_measured_from_the_explorer() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = analysed_workspace(tmp.path());
    let home = ws.join("saes/topk-64-k4");
    // A colleague's export: feature 9 labelled there, not here.
    let job = saescope_core::job::Job::default();
    saescope_ops::analyse::set_labels(&ws, &home, &[(9, "from a colleague".into())]).unwrap();
    let export = tmp.path().join("colleague");
    saescope_ops::share::export(
        &saescope_ops::share::ExportRequest {
            workspace: ws.clone(),
            sae: None,
            selection: saescope_core::analysis::export::Selection::Ids(vec![9]),
            out: export.clone(),
            pngs: false,
        },
        &job,
    )
    .unwrap();
    saescope_ops::analyse::set_labels(&ws, &home, &[(9, String::new())]).unwrap();

    let mut h = explorer_on(&ws, egui::vec2(1280.0, 900.0));
    assert!(
        !h.state()
            .explorer
            .as_ref()
            .unwrap()
            .labels
            .labels
            .contains_key(&9)
    );
    h.get_by_role_and_label(Role::Button, "Export").click();
    h.run_steps(2);
    type_into(&mut h, "Export to import", export.to_str().unwrap());
    h.get_by_role_and_label(Role::Button, "Import labels")
        .click();
    wait_for(&mut h, |h| job_message(h, "Import labels").is_some());
    h.run_steps(2);
    assert_eq!(
        job_message(&h, "Import labels").unwrap(),
        "1 labels imported, 0 manual labels kept"
    );
    assert_eq!(
        h.state().explorer.as_ref().unwrap().labels.labels[&9].text,
        "from a colleague",
        "the explorer shows the imported label at once"
    );

    // An edit still in memory (made within the autosave delay) survives a later job's end: the
    // import's reload ran again whenever any job finished.
    h.state_mut()
        .explorer
        .as_mut()
        .unwrap()
        .labels
        .labels
        .get_mut(&9)
        .unwrap()
        .text = "edited since".into();

    // The image view saves the shown feature's heatmap as a PNG.
    h.get_by_role_and_label(Role::Button, "Image").click();
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Open image").click();
    wait_for(&mut h, |h| {
        h.query_by_label("Top features of this image").is_some()
    });
    let shown = h
        .state()
        .explorer
        .as_ref()
        .unwrap()
        .image_view
        .as_ref()
        .unwrap()
        .feature
        .unwrap();
    let pngs = tmp.path().join("heatmaps");
    type_into(&mut h, "Save heatmaps to", pngs.to_str().unwrap());
    h.get_by_role_and_label(Role::Button, "Save heatmap PNGs")
        .click();
    wait_for(&mut h, |h| job_message(h, "Save heatmaps").is_some());
    h.run_steps(2);
    assert_eq!(
        h.state().explorer.as_ref().unwrap().labels.labels[&9].text,
        "edited since",
        "a later job's end reloaded the imported labels over an edit"
    );
    let png = pngs.join(format!("heatmap-{shown}.png"));
    assert!(
        saescope_core::store::dataset::load_rgb(&png).is_ok(),
        "{} is not a readable PNG",
        png.display()
    );

    // The Compare tab measures: the explored SAE on the eval images, the linear probe clean and
    // spliced, and the benchmark, whose figures then fill the table.
    h.get_by_role_and_label(Role::Button, "Compare").click();
    h.run_steps(4);
    assert!(
        h.query_by_label_contains("No benchmark figures yet")
            .is_some()
    );
    h.get_by_label("Measure SAEs on labelled images").click();
    h.run_steps(2);
    type_into(
        &mut h,
        "Fit images",
        tmp.path().join("cifar/train").to_str().unwrap(),
    );
    type_into(
        &mut h,
        "Eval images",
        tmp.path().join("cifar/test").to_str().unwrap(),
    );
    h.get_by_role_and_label(Role::Button, "Evaluate this SAE")
        .click();
    wait_for(&mut h, |h| job_message(h, "Evaluate SAE").is_some());
    let m = job_message(&h, "Evaluate SAE").unwrap();
    assert!(
        m.starts_with("40 images: FVE ") && m.contains("spliced"),
        "{m}"
    );
    h.get_by_role_and_label(Role::Button, "Linear probe")
        .click();
    wait_for(&mut h, |h| job_message(h, "Linear probe").is_some());
    let m = job_message(&h, "Linear probe").unwrap();
    assert!(
        m.starts_with("4 classes, fit on 100, scored on 40") && m.contains("spliced"),
        "{m}"
    );
    h.get_by_role_and_label(Role::Button, "Run the benchmark")
        .click();
    wait_for(&mut h, |h| job_message(h, "Benchmark").is_some());
    h.run_steps(4);
    assert!(
        h.query_by_label_contains("No benchmark figures yet")
            .is_none(),
        "the benchmark's figures did not reach the table"
    );
    assert!(ws.join("saes/topk-64-k4/benchmark.json").is_file());
}
