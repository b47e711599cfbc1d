//! The desktop app driven headless with egui_kittest (rendered on Mesa's software Vulkan driver).

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use saescope_app::SaescopeApp;
use saescope_core::steer::session::Decoder;

#[path = "../../../tests/common/mod.rs"]
mod common;

fn harness() -> Harness<'static, SaescopeApp> {
    Harness::builder()
        .with_size(egui::vec2(1000.0, 560.0))
        .with_theme(egui::Theme::Light)
        .wgpu()
        .build_eframe(|cc| SaescopeApp::new(cc))
}

#[test]
fn start_page_reports_a_folder_that_is_not_a_workspace() {
    let mut h = harness();
    h.run();
    h.get_by_label("saescope");
    let input = h.get_by_role_and_label(Role::TextInput, "Open workspace folder:");
    input.focus();
    input.type_text("/no/such/workspace");
    h.run();
    h.get_by_role_and_label(Role::Button, "Open").click();
    h.run();
    assert!(
        h.query_by_label_contains("is not a saescope workspace")
            .is_some(),
        "the error is shown in the window"
    );
    // In the app's words: the form to use, not the CLI command.
    assert!(
        h.query_by_label_contains("create one with the New workspace form on the start page")
            .is_some()
    );
    assert!(h.state().open.is_none());
    // The status bar says where jobs run: auto picks the CPU in this build.
    h.get_by_role_and_label(Role::ComboBox, "Device:");
    h.get_by_label("runs on cpu");
    h.snapshot("start_page_error");
    // The error stays until its cause changes: editing the path clears it.
    let input = h.get_by_role_and_label(Role::TextInput, "Open workspace folder:");
    input.focus();
    input.type_text("2");
    h.run();
    assert!(h.state().error.is_none());
    assert!(
        h.query_by_label_contains("is not a saescope workspace")
            .is_none()
    );
    // Opened again, it comes back, and Dismiss hides it.
    h.get_by_role_and_label(Role::Button, "Open").click();
    h.run();
    assert!(h.state().error.is_some());
    h.get_by_role_and_label(Role::Button, "Dismiss").click();
    h.run();
    assert!(h.state().error.is_none());
}

/// Browse… on a machine where no file dialog can open (no desktop portal, as here and in CI)
/// says so beside the button instead of doing nothing.
#[test]
fn browse_says_when_no_file_dialog_can_open() {
    let mut h = harness();
    h.run();
    h.get_all_by_role_and_label(Role::Button, "Browse...")
        .next()
        .unwrap()
        .click();
    let start = std::time::Instant::now();
    while h
        .query_by_label_contains("no file dialog can open here")
        .is_none()
    {
        assert!(start.elapsed().as_secs() < 20, "no notice");
        std::thread::sleep(std::time::Duration::from_millis(50));
        h.run_steps(1);
    }
}

#[test]
fn theme_toggle_switches_to_dark() {
    let mut h = harness();
    h.run();
    let was_dark = h.state().persisted.dark_mode;
    let label = if was_dark {
        "Light theme"
    } else {
        "Dark theme"
    };
    h.get_by_role_and_label(Role::Button, label).click();
    h.run();
    assert_ne!(h.state().persisted.dark_mode, was_dark);
}

#[test]
fn opening_a_real_workspace_shows_its_summary_and_remembers_it() {
    use saescope_core::backbone::{ModelSpec, TokenSelection};
    use saescope_core::shared::shared_path;
    use saescope_core::store::extract::ExtractOptions;
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images/cat");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..12 {
        let name = format!("{i:04}.jpg");
        std::os::unix::fs::symlink(
            shared_path("data/cifar10/test/cat").join(&name),
            images.join(&name),
        )
        .unwrap();
    }
    let config = project("assets/models/vit-cifar10.json");
    let spec = ModelSpec::from_cli(
        shared_path("models/vit-cifar10/vit_cifar10.pth")
            .to_str()
            .unwrap(),
        Some(&config),
    )
    .unwrap();
    let ws = tmp.path().join("ws");
    let opts = ExtractOptions {
        layer: 3,
        tokens: TokenSelection::Patch,
        dtype: saescope_core::store::workspace::StoreDType::F16,
        batch_size: 8,
        images_per_shard: None,
    };
    saescope_ops::build::extract(
        &saescope_ops::build::ExtractRequest {
            model: spec,
            device: Default::default(),
            images: tmp.path().join("images"),
            workspace: ws.clone(),
            options: opts,
        },
        &Default::default(),
    )
    .unwrap();

    let mut h = harness();
    h.run();
    let input = h.get_by_role_and_label(Role::TextInput, "Open workspace folder:");
    input.focus();
    input.type_text(ws.to_str().unwrap());
    h.run();
    h.get_by_role_and_label(Role::Button, "Open").click();
    h.run();
    assert!(h.state().error.is_none(), "{:?}", h.state().error);
    h.get_by_label("768 rows in 1/1 shards (F16)");
    h.get_by_label("3 of 6");
    assert_eq!(h.state().persisted.recent_workspaces.first(), Some(&ws));
}

/// A small real workspace with everything the explorer shows: SAE, index, labels, OOD results
/// and ontology, made through the operations layer with the CLI's default options.
fn analysed_workspace(tmp: &std::path::Path) -> std::path::PathBuf {
    use saescope_core::shared::shared_path;
    use saescope_ops::analyse;
    let link = common::subset;
    // Two-level folders: OOD set names are the last two path components, kept stable here.
    let train = tmp.join("cifar/train");
    link(
        "data/cifar10/train",
        &["airplane", "cat", "ship", "frog"],
        25,
        &train,
    );
    let test = tmp.join("cifar/test");
    link(
        "data/cifar10/test",
        &["airplane", "cat", "ship", "frog"],
        10,
        &test,
    );
    let mnist = tmp.join("mnist/test");
    link("data/mnist/test", &["1", "7"], 20, &mnist);
    let ws = tmp.join("ws");
    let job = saescope_core::job::Job::default();
    extract_cifar_layer3(&train, &ws);
    train_sae(&ws, 64, 60_000);
    analyse::build_index(
        &analyse::IndexRequest {
            workspace: ws.clone(),
            sae: None,
            device: Default::default(),
            options: saescope_core::analysis::index::IndexOptions {
                top_n: 16,
                ..Default::default()
            },
        },
        &job,
    )
    .unwrap();
    analyse::label(
        &analyse::LabelRequest {
            workspace: ws.clone(),
            from_classes: true,
            ..Default::default()
        },
        &job,
    )
    .unwrap();
    analyse::ood(
        &analyse::OodRequest {
            workspace: ws.clone(),
            sae: None,
            device: Default::default(),
            fit: train,
            id: test,
            ood: vec![mnist],
            options: Default::default(),
        },
        &job,
    )
    .unwrap();
    // airplane, cat, frog, ship in sorted order
    let class_ids = tmp.join("wnids.txt");
    std::fs::write(&class_ids, "n02691156\nn02121620\nn01639765\nn04194289\n").unwrap();
    analyse::tree(
        &analyse::TreeRequest {
            workspace: ws.clone(),
            sae: None,
            taxonomy: Some(saescope_core::analysis::ontology::TaxonomyInput {
                taxonomy: shared_path("data/wordnet/cifar10-graph-wordnet.json"),
                class_ids,
            }),
        },
        &job,
    )
    .unwrap();
    ws
}

/// A workspace made by `extract` alone (activations, no SAE) is not a dead end: the explorer
/// offers Train SAE (then index and class labels, as a new workspace gets), and the grid opens.
#[test]
fn a_workspace_without_an_sae_trains_one_from_the_explorer() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("cifar");
    common::subset("data/cifar10/train", &["cat", "ship"], 12, &images);
    let ws = tmp.path().join("ws");
    extract_cifar_layer3(&images, &ws);
    let mut h = explorer_on(&ws, egui::vec2(1280.0, 800.0));
    h.get_by_label_contains("no SAE yet");
    assert!(
        h.query_by_role_and_label(Role::Button, "Load SAE")
            .is_none()
    );
    for (field, value) in [("features", 64.0), ("k", 4.0), ("M tokens", 0.05)] {
        h.get_by_role_and_label(Role::SpinButton, field)
            .set_value_accesskit(value);
        h.run_steps(2);
    }
    h.get_by_role_and_label(Role::Button, "Train SAE").click();
    h.run();
    wait_for(&mut h, |h| {
        h.state()
            .explorer
            .as_ref()
            .is_some_and(|x| x.index.is_some())
    });
    let x = h.state().explorer.as_ref().unwrap();
    assert_eq!(x.sae.as_ref().map(|s| (s.d_sae, s.d_in)), Some((64, 128)));
    let home = x.home.clone().unwrap();
    assert!(home.ends_with("saes/topk-64-k4"), "{}", home.display());
    // 50,000 tokens were asked for; the run's report says how many it drew.
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("train.json")).unwrap()).unwrap();
    assert_eq!(run["settings"]["tokens"], 50_000);
    // Class labels came with it, so search by class works at once.
    assert!(!x.labels.labels.is_empty());
    h.run_steps(4);
    assert!(h.query_by_label_contains("no SAE yet").is_none());
    // The workspace panel lists the new SAE.
    assert_eq!(h.state().open.as_ref().map(|o| o.saes.len()), Some(1));
}

/// Load SAE on a workspace without one: the typed path is checked under the field (naming it)
/// before anything runs, a SAELens weights file stands for its folder, and a failed load's
/// message goes once the load succeeds instead of staying above the new result.
#[test]
fn loading_an_sae_checks_the_file_first_and_a_success_replaces_the_old_error() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("cifar");
    common::subset("data/cifar10/train", &["cat", "ship"], 12, &images);
    let (ws, other) = (tmp.path().join("ws"), tmp.path().join("other"));
    extract_cifar_layer3(&images, &ws);
    extract_cifar_layer3(&images, &other);
    train_sae(&other, 64, 20_000);
    let weights = other.join("saes/topk-64-k4/sae_weights.safetensors");
    // An SAE of another width: it loads as a file but does not fit this layer.
    let narrow = tmp.path().join("narrow");
    saescope_core::sae::formats::save_saelens(
        &saescope_core::sae::Sae::random_topk(64, 32, 4, 0.1, 1),
        &narrow,
    )
    .unwrap();
    // The CLI's path check: a path that does not exist is named as one, not as an SAE name.
    let err = saescope_core::sae::workflow::sae_home(
        &saescope_core::store::workspace::Workspace::open(&ws).unwrap(),
        Some(&tmp.path().join("no/such/sae")),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no such SAE file or folder"), "{err}");

    let mut h = explorer_on(&ws, egui::vec2(1280.0, 800.0));
    let set_file = |h: &mut Harness<'static, SaescopeApp>, path: &std::path::Path| {
        let field = h.get_by_role_and_label(Role::TextInput, "SAE file (optional)");
        field.focus();
        h.run_steps(1);
        h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
        h.run_steps(1);
        let field = h.get_by_role_and_label(Role::TextInput, "SAE file (optional)");
        field.type_text(path.to_str().unwrap());
        h.run_steps(2);
        let typed = h
            .state()
            .explorer
            .as_ref()
            .unwrap()
            .form
            .new_sae
            .sae_file
            .clone();
        assert_eq!(
            typed,
            path.to_str().unwrap(),
            "the field holds the typed path"
        );
    };
    let hint_shows = |h: &mut Harness<'static, SaescopeApp>, text: &str| {
        wait_until(
            h,
            |h| h.query_by_label_contains(text).is_some(),
            |_| Vec::new(),
        );
    };
    let load_disabled = |h: &Harness<'static, SaescopeApp>| {
        use egui_kittest::kittest::NodeT;
        h.get_by_role_and_label(Role::Button, "Load SAE")
            .accesskit_node()
            .is_disabled()
    };

    set_file(&mut h, &tmp.path().join("no/such/sae_weights.safetensors"));
    hint_shows(&mut h, "SAE file: ");
    h.get_by_label_contains("no such SAE file or folder");
    assert!(
        load_disabled(&h),
        "a path that cannot load does not start a job"
    );

    set_file(&mut h, &narrow);
    hint_shows(&mut h, "SAELens SAE: 32 features over width 64");
    assert!(!load_disabled(&h));
    h.get_by_role_and_label(Role::Button, "Load SAE").click();
    h.run_steps(1);
    let failed = |h: &Harness<'static, SaescopeApp>| {
        h.state().explorer.as_ref().is_some_and(|x| {
            x.jobs
                .iter()
                .any(|j| matches!(j.state(), saescope_app::jobs::JobState::Failed(_)))
        })
    };
    wait_until(&mut h, failed, |_| Vec::new());
    h.run_steps(2);
    h.get_by_label_contains("d_in=64");

    set_file(&mut h, &weights);
    hint_shows(
        &mut h,
        "SAELens SAE: 64 features over width 128 (TopK, k 4)",
    );
    h.get_by_role_and_label(Role::Button, "Load SAE").click();
    h.run_steps(1);
    wait_until(
        &mut h,
        |h| {
            h.state()
                .explorer
                .as_ref()
                .is_some_and(|x| x.index.is_some())
        },
        |_| Vec::new(),
    );
    h.run_steps(4);
    let x = h.state().explorer.as_ref().unwrap();
    // Named after the weights file's folder, not the file.
    assert!(
        x.home.as_ref().unwrap().ends_with("saes/topk-64-k4"),
        "{:?}",
        x.home
    );
    assert_eq!(x.jobs.len(), 1, "the failed load's line is gone");
    assert!(h.query_by_label_contains("d_in=64").is_none());
    // The workspace panel says why a loaded SAE has no curves.
    h.get_by_label_contains("SAEs (1)").click();
    h.run_steps(2);
    h.get_by_label_contains("Training curves: topk-64-k4")
        .click();
    h.run_steps(2);
    h.get_by_label_contains("No training log: this SAE was loaded");
}

/// Layer-3 activations of the CIFAR-10 ViT over `images`, all tokens, into a new workspace.
fn extract_cifar_layer3(images: &std::path::Path, ws: &std::path::Path) {
    use saescope_core::shared::shared_path;
    let model = saescope_core::backbone::ModelSpec::from_cli(
        &shared_path("models/vit-cifar10/vit_cifar10.pth").to_string_lossy(),
        Some(&project("assets/models/vit-cifar10.json")),
    )
    .unwrap();
    saescope_ops::build::extract(
        &saescope_ops::build::ExtractRequest {
            model,
            device: Default::default(),
            images: images.to_path_buf(),
            workspace: ws.to_path_buf(),
            options: saescope_core::store::extract::ExtractOptions {
                layer: 3,
                tokens: saescope_core::backbone::TokenSelection::All,
                dtype: saescope_core::store::workspace::StoreDType::F16,
                batch_size: 256,
                images_per_shard: None,
            },
        },
        &saescope_core::job::Job::default(),
    )
    .unwrap();
}

/// Trains a TopK SAE (k 4, batch 512) on the workspace, as `saescope train` with these options.
fn train_sae(ws: &std::path::Path, d_sae: usize, tokens: u64) {
    saescope_ops::build::train(
        &saescope_ops::build::TrainRequest {
            workspace: ws.to_path_buf(),
            device: Default::default(),
            options: saescope_core::sae::workflow::TrainOptions {
                tokens: Some(tokens),
                batch: 512,
                ..saescope_core::sae::workflow::TrainOptions::topk(d_sae, 4)
            },
        },
        &saescope_core::job::Job::default(),
    )
    .unwrap();
}

/// A file of the saescope project (this crate lives in its `crates/ui-tests`).
fn project(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// The app at `size`, with `ws` opened from the start page as a user would (typed, Open).
fn explorer_on(ws: &std::path::Path, size: egui::Vec2) -> Harness<'static, SaescopeApp> {
    let mut h = Harness::builder()
        .with_size(size)
        .with_theme(egui::Theme::Light)
        .wgpu()
        .build_eframe(|cc| SaescopeApp::new(cc));
    h.run();
    let input = h.get_by_role_and_label(Role::TextInput, "Open workspace folder:");
    input.focus();
    input.type_text(ws.to_str().unwrap());
    h.run();
    h.get_by_role_and_label(Role::Button, "Open").click();
    h.run_steps(6); // thumbnails arrive within a few frames
    h
}

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
    let label = x.labels.labels.get(&first).map(|l| l.text.clone()).unwrap();
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
    std::thread::sleep(std::time::Duration::from_millis(700));
    h.run_steps(3);
    let saved = saescope_core::analysis::labels::Labels::load(&ws.join("saes/topk-64-k4")).unwrap();
    assert_eq!(saved.labels[&first].text, format!("{label} edge"));
    assert_eq!(
        saved.labels[&first].source,
        saescope_core::analysis::labels::LabelSource::Manual
    );
    // The grid's search sees the renamed label at once.
    h.get_by_role_and_label(Role::Button, "Features").click();
    h.run_steps(2);
    let search = h.get_by_role(Role::TextInput);
    search.focus();
    search.type_text(" edge");
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
            .clone()
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

/// A workspace with two SAEs: the panel lists both side by side (figures from training, which
/// analyses exist) and "Use" switches the explorer to the other one.
#[test]
fn workspace_panel_lists_and_switches_saes() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = analysed_workspace(tmp.path());
    train_sae(&ws, 32, 30_000);
    let mut h = Harness::builder()
        .with_size(egui::vec2(1100.0, 600.0))
        .with_theme(egui::Theme::Light)
        .wgpu()
        .build_eframe(|cc| SaescopeApp::new(cc));
    h.run();
    h.state_mut().open_workspace(ws.clone());
    h.run_steps(3);
    // The new SAE is active and has no index yet; the first one has all its analyses.
    assert!(h.state().explorer.as_ref().unwrap().index.is_none());
    h.get_by_label("SAEs (2)");
    h.get_by_label("topk-32-k4");
    h.get_by_label_contains("ontology, OOD");
    h.get_by_label("none yet");
    h.get_by_role_and_label(Role::Button, "Use").click();
    h.run_steps(3);
    let x = h.state().explorer.as_ref().unwrap();
    assert!(x.index.is_some(), "switched to the indexed SAE");
    assert!(x.home.as_ref().unwrap().ends_with("saes/topk-64-k4"));
    // Fold the workspace summary (it shows temporary paths) for a stable snapshot.
    h.get_by_label("Workspace").click();
    h.run_steps(2);
    h.snapshot("workspace_saes");
    // Sorting by maximum activation shows that value on the cards, under a readable name.
    h.get_by_role_and_label(Role::ComboBox, "Sort by").click();
    h.run_steps(2);
    h.get_by_label("Max activation").click();
    h.run_steps(3);
    let x = h.state().explorer.as_ref().unwrap();
    assert_eq!(x.sort, saescope_app::explorer::SortBy::MaxActivation);
    let top = x.order[0];
    // The card's text as the grid writes it: id, label (shortened past 14 characters), value.
    let want = {
        let i = x.index.as_ref().unwrap();
        let label = x.labels.labels.get(&top).map_or("", |l| l.text.as_str());
        let mut short: String = label.chars().take(14).collect();
        if label.chars().count() > 14 {
            short.push_str("..");
        }
        format!("#{top}\n{short}\nmax {:.3}", i.max_act[top as usize])
    };
    h.get_by_label_contains(&want);
}

/// A damaged analysis file is an error on the page, not "not computed yet".
#[test]
fn a_corrupt_ood_file_is_reported_not_hidden() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = analysed_workspace(tmp.path());
    std::fs::write(ws.join("saes/topk-64-k4/ood/results.json"), "{ torn").unwrap();
    let mut h = Harness::builder()
        .with_size(egui::vec2(1100.0, 600.0))
        .wgpu()
        .build_eframe(|cc| SaescopeApp::new(cc));
    h.run();
    h.state_mut().open_workspace(ws.clone());
    h.run_steps(3);
    let x = h.state().explorer.as_ref().unwrap();
    assert!(x.ood.is_none());
    let err = x.error.clone().unwrap_or_default();
    assert!(err.contains("results.json"), "{err}");
    assert!(
        x.index.is_some() && x.ontology.is_some(),
        "the rest still loads"
    );
}

/// A new user's flow with no terminal: fill the "new workspace" form, create (extract → train →
/// index in the background, with progress), and land in the explorer with real features.
#[test]
fn new_workspace_flow_creates_trains_indexes_and_opens_the_explorer() {
    use saescope_core::shared::shared_path;
    // Fixed relative paths keep the form snapshot stable.
    let root = std::path::Path::new("target/ui-create-test");
    let _ = std::fs::remove_dir_all(root);
    for class in ["cat", "ship"] {
        std::fs::create_dir_all(root.join("images").join(class)).unwrap();
        for i in 0..20 {
            let name = format!("{i:04}.jpg");
            std::os::unix::fs::symlink(
                shared_path("data/cifar10/test").join(class).join(&name),
                root.join("images").join(class).join(&name),
            )
            .unwrap();
        }
    }
    // Relative to this crate (crates/ui-tests, the tests' working folder) when ../shared is
    // beside the project (as CI has it): a stable snapshot.
    let relative = std::path::Path::new("../../../shared/models/vit-cifar10/vit_cifar10.pth");
    let model = if relative.is_file() {
        relative.to_path_buf()
    } else {
        shared_path("models/vit-cifar10/vit_cifar10.pth")
    };
    let mut h = Harness::builder()
        .with_size(egui::vec2(1000.0, 700.0))
        .with_theme(egui::Theme::Light)
        .wgpu()
        .build_eframe(|cc| SaescopeApp::new(cc));
    h.run();
    let values = [
        ("Image folder", "target/ui-create-test/images".to_string()),
        ("Model", model.display().to_string()),
        (
            "Model config (.pth)",
            "../../assets/models/vit-cifar10.json".to_string(),
        ),
        ("Workspace folder", "target/ui-create-test/ws".to_string()),
    ];
    for (name, v) in &values {
        let field = h.get_by_role_and_label(Role::TextInput, name);
        field.focus();
        field.type_text(v);
        // Fixed steps, not run(): a background hint arriving re-lays the form's grid, which
        // repaints for several frames and can exceed run()'s settle limit.
        h.run_steps(2);
    }
    assert!(
        h.state().create.problem().is_none(),
        "{:?}",
        h.state().create.problem()
    );
    // As the fields are typed, the form says what they hold (worked out in the background).
    wait_for(&mut h, |h| {
        h.query_by_label_contains("40 images, 2 classes (cat, ship)")
            .is_some()
            && h.query_by_label_contains("6 layers (0 to 5), width 128")
                .is_some()
    });
    // A layer the model lacks is named before anything runs.
    let layer = h.get_by_role_and_label(Role::SpinButton, "Layer");
    layer.set_value_accesskit(9.0);
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("this model has layers 0 to 5")
            .is_some()
    );
    h.get_by_role_and_label(Role::SpinButton, "Layer")
        .set_value_accesskit(3.0);
    h.run_steps(2);
    if relative.is_file() {
        h.snapshot("new_workspace_form");
    }
    h.get_by_role_and_label(Role::Button, "Create workspace")
        .click();
    h.run_steps(2);
    assert!(
        h.state().persisted.pending_create.is_some(),
        "remembered until it finishes"
    );
    let start = std::time::Instant::now();
    while h.state().explorer.is_none() {
        assert!(start.elapsed().as_secs() < 300, "creation did not finish");
        if let Some(j) = &h.state().create_job
            && let saescope_app::jobs::JobState::Failed(e) = j.state()
        {
            panic!("creation failed: {e}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        h.run_steps(1);
    }
    let x = h.state().explorer.as_ref().unwrap();
    let index = x.index.as_ref().expect("indexed");
    assert_eq!(index.n_images, 40);
    assert_eq!(index.d_sae, 2048);
    assert!(h.state().persisted.pending_create.is_none());

    // Still without a terminal: OOD scores against MNIST digits, then the trees.
    let mnist = root.join("mnist/test");
    std::fs::create_dir_all(mnist.join("1")).unwrap();
    for i in 0..10 {
        let name = format!("{:05}.png", i);
        let src = shared_path("data/mnist/test/1");
        let first = std::fs::read_dir(&src)
            .unwrap()
            .map(|e| e.unwrap().path())
            .nth(i)
            .unwrap();
        std::os::unix::fs::symlink(first, mnist.join("1").join(name)).unwrap();
    }
    h.run_steps(3);
    h.get_by_role_and_label(Role::Button, "OOD").click();
    h.run_steps(2);
    for (role, name, v) in [
        (
            Role::TextInput,
            "In-distribution to score",
            "target/ui-create-test/images",
        ),
        (
            Role::MultilineTextInput,
            "Other folders (one per line)",
            "target/ui-create-test/mnist/test",
        ),
    ] {
        let f = h.get_by_role_and_label(role, name);
        f.focus();
        f.type_text(v);
        h.run();
    }
    h.get_by_role_and_label(Role::Button, "Score").click();
    wait_for(&mut h, |h| {
        h.state().explorer.as_ref().unwrap().ood.is_some()
    });
    let ood = h.state().explorer.as_ref().unwrap().ood.clone().unwrap();
    assert_eq!(ood.results.len(), 6);
    h.get_by_role_and_label(Role::Button, "Ontology").click();
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Build trees").click();
    wait_for(&mut h, |h| {
        h.state().explorer.as_ref().unwrap().ontology.is_some()
    });
    h.run_steps(2);
    assert!(h.query_by_label_contains("Feature tree (").is_some());
}

/// Steps the app until `done` holds (explorer jobs), failing on a failed job or after two
/// minutes.
fn wait_for(
    h: &mut Harness<'static, SaescopeApp>,
    done: impl Fn(&Harness<'static, SaescopeApp>) -> bool,
) {
    wait_until(h, done, |app| {
        app.explorer
            .as_ref()
            .map_or(Vec::new(), |x| x.jobs.iter().collect())
    });
}

/// Steps the app every 40 ms until `done` holds; fails when one of `jobs` failed, when the
/// steering view shows an error, or after two minutes (listing the jobs).
fn wait_until(
    h: &mut Harness<'static, SaescopeApp>,
    done: impl Fn(&Harness<'static, SaescopeApp>) -> bool,
    jobs: impl Fn(&SaescopeApp) -> Vec<&saescope_app::jobs::BackgroundJob>,
) {
    let start = std::time::Instant::now();
    while !done(h) {
        for j in jobs(h.state()) {
            if let saescope_app::jobs::JobState::Failed(e) = j.state() {
                panic!("job {} failed: {e}", j.title);
            }
        }
        if let Some(e) = &h.state().steer.error {
            panic!("steering error: {e}");
        }
        if start.elapsed().as_secs() >= 120 {
            let list: Vec<String> = jobs(h.state())
                .iter()
                .map(|j| format!("{}: {:?}", j.title, j.state()))
                .collect();
            panic!("timed out; jobs: {list:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(40));
        h.run_steps(1);
    }
}

/// The steering view end to end on a tiny random pipeline in diffusers layout: load it with a
/// text SAE, generate, steer with a slider (preview first, then the full decoder), cancel and
/// resume, and run attribute discovery with the tiny CLIP.
#[test]
fn steering_view_generates_steers_cancels_and_discovers() {
    use saescope_core::shared::shared_path;
    // Fixed relative paths keep the snapshot stable.
    let root = std::path::Path::new("target/ui-steer-test");
    let _ = std::fs::remove_dir_all(root);
    let pipe_dir = root.join("tiny-sd-turbo");
    saescope_core::steer::tiny::write_tiny_pipeline(
        &pipe_dir,
        &shared_path("data/clip/tokenizer.json"),
        7,
        true,
    )
    .unwrap();
    let pipe = saescope_core::steer::pipeline::Pipeline::load(
        pipe_dir.to_str().unwrap(),
        None,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let sae_dir = root.join("text-sae");
    saescope_core::steer::corpus::train_text_sae(
        &pipe,
        pipe_dir.to_str().unwrap(),
        None,
        &sae_dir,
        &saescope_core::sae::workflow::TrainOptions {
            batch: 1024,
            ..saescope_core::sae::workflow::TrainOptions::topk(128, 8)
        },
        &Default::default(),
    )
    .unwrap();
    // The tiny CLIP with the real tokenizer beside it.
    let clip = root.join("clip");
    std::fs::create_dir_all(&clip).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::os::unix::fs::symlink(
            std::fs::canonicalize(shared_path("models/tiny-random/clip").join(f)).unwrap(),
            clip.join(f),
        )
        .unwrap();
    }
    std::fs::copy(
        shared_path("data/clip/tokenizer.json"),
        clip.join("tokenizer.json"),
    )
    .unwrap();

    let mut h = Harness::builder()
        .with_size(egui::vec2(1000.0, 760.0))
        .with_theme(egui::Theme::Light)
        .wgpu()
        .build_eframe(|cc| SaescopeApp::new(cc));
    h.run_steps(2);
    h.get_by_label("Steering").click();
    h.run_steps(2);
    for (name, v) in [
        ("Pipeline folder", pipe_dir.display().to_string()),
        ("Text SAE", sae_dir.join("sae").display().to_string()),
    ] {
        let f = h.get_by_role_and_label(Role::TextInput, name);
        f.focus();
        f.type_text(&v);
        h.run_steps(1);
    }
    h.get_by_role_and_label(Role::Button, "Load").click();
    wait_steer(&mut h, |h| steer(h).loaded.is_some());
    // A small size: pick it from the combo box.
    pick_size(&mut h, "128 px");
    // First the preview, then (at rest) the full decoder; no slider: identical sides.
    wait_steer(&mut h, full_decoder_shown);
    assert!(steer(&h).identical);
    assert_eq!(
        steer(&h).unsteered.as_ref().unwrap().texture.size(),
        [128, 128]
    );

    // A slider, set as a screen reader would, steers the right image only.
    h.get_by_role_and_label(Role::Button, "Add slider").click();
    h.run_steps(2);
    h.get_by_role_and_label(Role::Slider, "Strength of slider 1")
        .set_value_accesskit(6.0);
    h.run_steps(1);
    assert_eq!(h.state().steer.settings.sliders[0].value, 6.0);
    wait_steer(&mut h, |h| {
        steer(h).busy()
            || steer(h)
                .steered
                .as_ref()
                .is_some_and(|s| s.decoder == Decoder::Preview)
    });
    wait_steer(&mut h, |h| !steer(h).identical && full_decoder_shown(h));
    h.run_steps(2);
    h.snapshot("steering_view");

    // While a slider moves, the unsteered image stays the full decoder's (its latents are
    // reused): whenever the steered side shows a preview, the unsteered side is still full.
    h.get_by_role_and_label(Role::Slider, "Strength of slider 1")
        .set_value_accesskit(3.0);
    h.run_steps(1);
    let unsteered_kept = |h: &Harness<'static, SaescopeApp>| {
        let v = steer(h);
        let preview = v
            .steered
            .as_ref()
            .is_some_and(|s| s.decoder == Decoder::Preview);
        if preview {
            assert_eq!(v.unsteered.as_ref().unwrap().decoder, Decoder::Full);
        }
        preview
    };
    wait_steer(&mut h, |h| unsteered_kept(h) || steer(h).busy());
    wait_steer(&mut h, |h| {
        !unsteered_kept(h) && full_decoder_shown(h) && !steer(h).identical
    });
    // The difference view: where the steered image differs, through the same decoder.
    h.get_by_role_and_label(Role::CheckBox, "Show the difference")
        .click();
    h.run_steps(2);
    assert!(steer(&h).difference.as_ref().is_some_and(|(_, m)| *m > 0.0));
    h.get_by_label("difference image");
    h.get_by_role_and_label(Role::CheckBox, "Show the difference")
        .click();
    h.run_steps(1);

    // Cancel: a larger image takes long enough to catch in flight; it is not restarted until
    // asked, then Generate resumes it.
    pick_size(&mut h, "512 px");
    wait_steer(&mut h, |h| steer(h).busy());
    h.get_by_role_and_label(Role::Button, "Cancel").click();
    h.run_steps(1);
    wait_steer(&mut h, |h| !steer(h).busy());
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(60));
        h.run_steps(1);
    }
    assert!(
        !steer(&h).busy(),
        "a cancelled generation is not restarted by itself"
    );
    assert!(h.query_by_label("Cancelled.").is_some());
    pick_size(&mut h, "128 px");
    wait_steer(&mut h, full_decoder_shown);
    h.run_steps(2);
    assert!(
        h.query_by_label("Cancelled.").is_none(),
        "a new request clears the cancelled state"
    );

    // Steer only a chosen token of the prompt.
    h.get_by_role_and_label(Role::ComboBox, "Steer tokens")
        .click_accesskit();
    h.run_steps(2);
    h.get_by_label("chosen tokens").click_accesskit();
    h.run_steps(2);
    let tokens = pipe.prompt_tokens(&h.state().steer.settings.prompt);
    let (pos, text) = tokens.iter().find(|(_, t)| t.len() > 3).unwrap().clone();
    h.get_by_label(&text).click_accesskit();
    h.run_steps(1);
    assert_eq!(h.state().steer.settings.chosen_tokens, vec![pos]);
    wait_steer(&mut h, |h| {
        full_decoder_shown(h)
            && steer(h).shown_edits().first().is_some_and(|e| {
                e.tokens == saescope_core::steer::edit::TokenScope::Positions(vec![pos])
            })
    });
    h.key_press(egui::Key::Escape); // closes the scope menu
    h.run_steps(2);
    h.snapshot("steering_chosen_tokens");

    // Attribute discovery with the tiny CLIP, then a slider from its ranking.
    h.get_by_label("Attribute discovery").click_accesskit();
    h.run_steps(2);
    let f = h.get_by_role_and_label(Role::TextInput, "CLIP model");
    f.focus();
    f.type_text(clip.to_str().unwrap());
    h.run_steps(1);
    h.get_by_role_and_label(Role::SpinButton, "Candidates")
        .set_value_accesskit(2.0);
    h.run_steps(1);
    h.get_by_role_and_label(Role::Button, "Discover attributes")
        .click_accesskit();
    wait_steer(&mut h, |h| steer(h).discovery.is_some());
    h.run_steps(2);
    let ranking = steer(&h).discovery.as_ref().unwrap().ranking.clone();
    assert_eq!(ranking.len(), 2);
    h.get_by_role_and_label(Role::Button, &format!("Use feature {}", ranking[0].feature))
        .click_accesskit();
    h.run_steps(2);
    assert_eq!(h.state().steer.settings.sliders.len(), 2);
    assert_eq!(
        h.state().steer.settings.sliders[1].feature,
        ranking[0].feature
    );

    // The SAE features active on the prompt are listed, strongest first; "+" adds a slider.
    wait_steer(&mut h, |h| {
        h.query_by_label_contains("SAE features on this prompt (")
            .is_some()
    });
    let prompt = h.state().steer.settings.prompt.clone();
    let loaded = steer(&h).loaded.clone().unwrap();
    // The text SAE was trained here, so its strongest corpus prompts came with it (on hover).
    assert!(loaded.top_prompts.is_some());
    let want = saescope_core::steer::session::prompt_features(
        &loaded.pipe,
        loaded.sae.as_ref().unwrap(),
        &prompt,
        12,
    )
    .unwrap();
    assert!(!want.is_empty());
    h.get_by_label_contains(&format!("#{} · {:.2} on", want[0].feature, want[0].max));
    h.get_all_by_role_and_label(Role::Button, "+")
        .next()
        .unwrap()
        .click_accesskit();
    h.run_steps(2);
    assert_eq!(h.state().steer.settings.sliders.len(), 3);
    assert_eq!(
        h.state().steer.settings.sliders[2].feature,
        want[0].feature as usize
    );
}

/// Picks an image size from the steering view's combo box.
fn pick_size(h: &mut Harness<'static, SaescopeApp>, size: &str) {
    h.get_by_role_and_label(Role::ComboBox, "Size")
        .click_accesskit();
    h.run_steps(2);
    h.get_by_label(size).click();
    h.run_steps(1);
}

/// The full decoder's images are on screen and nothing is running.
fn full_decoder_shown(h: &Harness<'static, SaescopeApp>) -> bool {
    steer(h)
        .steered
        .as_ref()
        .is_some_and(|s| s.decoder == Decoder::Full)
        && !steer(h).busy()
}

fn steer<'a>(h: &'a Harness<'static, SaescopeApp>) -> &'a saescope_app::steer_view::SteerView {
    &h.state().steer
}

/// Steps the app until `done` holds, failing on a failed steering job or error, or after two
/// minutes.
fn wait_steer(
    h: &mut Harness<'static, SaescopeApp>,
    done: impl Fn(&Harness<'static, SaescopeApp>) -> bool,
) {
    wait_until(h, done, |app| app.steer.jobs.iter().collect());
}

/// First run: the start page makes the built-in example (no download) in a typed folder and
/// opens it in the explorer, with features labelled from its four classes.
#[test]
fn built_in_example_is_made_and_opened_from_the_start_page() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("example");
    let mut h = harness();
    h.run();
    h.get_by_label("Built-in example");
    // Empty means ~/saescope-example; the test types a temporary folder.
    let input = h.get_by_role_and_label(Role::TextInput, "Example folder:");
    input.focus();
    input.type_text(&folder.display().to_string());
    h.run();
    assert_eq!(
        h.state().persisted.example_folder,
        folder.display().to_string()
    );
    h.get_by_role_and_label(Role::Button, "Make the example")
        .click_accesskit();
    // The job repaints while it runs: step, don't wait for the UI to settle.
    h.run_steps(1);
    wait_for(&mut h, |h| {
        if let Some((j, _)) = &h.state().example_job
            && let saescope_app::jobs::JobState::Failed(e) = j.state()
        {
            panic!("example failed: {e}");
        }
        h.state().explorer.is_some()
    });
    h.run_steps(4);
    let x = h.state().explorer.as_ref().unwrap();
    assert!(x.index.is_some());
    assert_eq!(x.ds.classes, ["checks", "discs", "squares", "stripes"]);
    assert!(!x.labels.labels.is_empty(), "labelled from classes");
    assert!(folder.join("workspace/workspace.json").is_file());
}
