//! The start page: opening and creating workspaces, the theme, the built-in example.

use super::*;

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
        h.query_by_label_contains("/no/such/workspace does not exist")
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
            task: None,
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
    // The explorer itself says the model has random weights (not only a start-page hover).
    h.get_by_label_contains("its model has random weights");
}
