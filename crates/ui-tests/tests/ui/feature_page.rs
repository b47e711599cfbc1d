//! The feature page's class attribution (measured in the background, saved, read back) and the
//! explorer's plots' axes (tick values on both axes, names uncut) at laptop and desktop sizes.

use super::*;

/// The feature page measures which classes' logits the feature's decoder direction pushes,
/// beside random directions, shows the table, saves it and shows it again after a reopen.
#[test]
fn feature_page_measures_class_attribution_and_reads_it_back() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = analysed_workspace(tmp.path());
    let home = ws.join("saes/topk-64-k4");
    let mut h = explorer_on(&ws, egui::vec2(1280.0, 800.0));
    let first = h.state().explorer.as_ref().unwrap().order[0];
    h.get_by_label_contains(&format!("#{first}\n")).click();
    h.run_steps(4);
    assert!(
        h.query_by_label("beyond random").is_none(),
        "nothing measured yet"
    );
    let button = h.get_by_role_and_label(Role::Button, "Measure class attribution");
    button.scroll_to_me();
    button.click_accesskit();
    h.run_steps(2);
    wait_for(&mut h, |h| h.query_by_label("beyond random").is_some());
    h.run_steps(2);
    let saved = saescope_ops::intervene::load_attributions(&home).unwrap();
    let a = &saved[&first];
    assert_eq!(a.images, 64, "64 of the workspace's 100 images");
    assert_eq!(a.random_directions, 8);
    assert_eq!(a.classes.len(), 10);
    // Every logit of the head is a row, the folder's 4 classes and the 6 others, with the
    // measured figures.
    let shown = |h: &Harness<'static, SaescopeApp>, text: &str| {
        assert!(h.query_all_by_label(text).count() > 0, "`{text}` not shown");
    };
    for c in &a.classes {
        shown(&h, &c.class);
        shown(&h, &format!("{:+.3} ± {:.3}", c.mean_dlogit, c.se_dlogit));
        shown(
            &h,
            &format!("{:+.3} ± {:.3}", c.random_mean_dlogit, c.random_sd_dlogit),
        );
    }
    let yes = a.classes.iter().filter(|c| c.beyond_random).count();
    let said = h.query_all_by_label_contains("yes, pushes").count();
    assert_eq!(said, yes);
    assert_eq!(h.query_all_by_label("no").count(), 10 - yes);
    // The button sits under the table: scrolled to, the whole table is in view above it.
    h.get_by_role_and_label(Role::Button, "Measure class attribution")
        .scroll_to_me();
    h.remove_cursor();
    h.run_steps(12);
    h.snapshot("feature_page_attribution");

    // Closed and reopened, the page shows the saved table without measuring again.
    h.get_by_role_and_label(Role::Button, "< Workspaces")
        .click();
    h.run_steps(2);
    h.state_mut().open_workspace(ws.clone());
    h.run_steps(2);
    h.state_mut().explorer.as_mut().unwrap().select(first);
    h.run_steps(3);
    assert!(h.state().explorer.as_ref().unwrap().jobs.is_empty());
    h.get_by_label("beyond random");
    let top = a
        .classes
        .iter()
        .max_by(|x, y| x.mean_dlogit.total_cmp(&y.mean_dlogit))
        .unwrap();
    shown(
        &h,
        &format!("{:+.3} ± {:.3}", top.mean_dlogit, top.se_dlogit),
    );
}

/// The feature page's histogram and the OOD tab's ROC curves and score histogram, scrolled into
/// view at 1024×640 and 1280×800: tick values on both axes, axis names whole (snapshots).
#[test]
fn plots_show_tick_values_and_whole_axis_names_at_two_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = analysed_workspace(tmp.path());
    // One harness per size: their snapshot results are checked together at the end.
    let mut results = egui_kittest::SnapshotResults::new();
    for (w, hgt) in [(1024.0, 640.0), (1280.0, 800.0)] {
        let size = format!("{w}x{hgt}");
        let mut h = explorer_on(&ws, egui::vec2(w, hgt));
        let first = h.state().explorer.as_ref().unwrap().order[0];
        h.get_by_label_contains(&format!("#{first}\n")).click();
        h.run_steps(4);
        // The heading under the histogram at the bottom edge: the plot just above it.
        h.get_by_label("Classes it fires on").scroll_to_me();
        // The scroll animates over frames, and a plot sizes its axes from the frame before.
        h.remove_cursor();
        h.run_steps(12);
        h.get_by_label_contains("Bars are the index's bins: 40 per decade, each 0.025 wide");
        h.snapshot(format!("axes_feature_histogram_{size}"));

        h.get_by_role_and_label(Role::Button, "OOD").click();
        h.run_steps(3);
        h.get_by_label_contains("SAE Mahalanobis score per folder")
            .scroll_to_me();
        // The scroll animates over frames, and a plot sizes its axes from the frame before.
        h.run_steps(12);
        h.snapshot(format!("axes_ood_roc_{size}"));
        h.get_by_label_contains("Most unusual in").scroll_to_me();
        // The scroll animates over frames, and a plot sizes its axes from the frame before.
        h.run_steps(12);
        h.snapshot(format!("axes_ood_histogram_{size}"));
        results.extend_harness(&mut h);
    }
    results.unwrap();
}
