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
    // Once folder and model are known: the store's size on disk and a rough time.
    wait_for(&mut h, |h| {
        h.query_by_label_contains(
            "40 images × 65 tokens × width 128 × 2 bytes (F16) = 665.6 kB on disk; extraction \
             under a minute",
        )
        .is_some()
    });
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

/// Storage in memory that a test reads back (what eframe's file would hold).
#[derive(Clone, Default)]
struct MemStorage(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>);

impl saescope_app::eframe::Storage for MemStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.lock().unwrap().get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.lock().unwrap().insert(key.to_string(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.lock().unwrap().remove(key);
    }
    fn flush(&mut self) {}
}

impl MemStorage {
    /// The app's state as saved, if it was.
    fn saved(&self) -> Option<saescope_app::Persisted> {
        saescope_app::eframe::get_value(self, saescope_app::STORAGE_KEY)
    }

    fn holding(state: &saescope_app::Persisted) -> Self {
        let mut s = MemStorage::default();
        saescope_app::eframe::set_value(&mut s, saescope_app::STORAGE_KEY, state);
        s
    }
}

/// The app started from `stored` state (as eframe gives it at the start), saving into `saves`.
fn app_with_storage(stored: MemStorage, saves: MemStorage) -> Harness<'static, SaescopeApp> {
    let stored: &'static MemStorage = Box::leak(Box::new(stored));
    let mut h = Harness::builder()
        .with_size(egui::vec2(1000.0, 800.0))
        .with_theme(egui::Theme::Light)
        .wgpu()
        .build_eframe(move |cc| {
            cc.storage = Some(stored);
            let mut app = SaescopeApp::new(cc);
            app.headless_storage = Some(Box::new(saves));
            app
        });
    h.run_steps(2);
    h
}

/// The example's random-weight DINOv2-layout model (3 layers, width 64, 17 tokens) in `dir`.
fn tiny_model(dir: &std::path::Path) -> std::path::PathBuf {
    saescope_ops::example::write_model(dir, 0).unwrap();
    dir.to_path_buf()
}

/// `n` CIFAR-10 test cats linked into `dir/cat`.
fn cats(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("cat")).unwrap();
    for i in 0..n {
        let name = format!("{i:04}.jpg");
        std::os::unix::fs::symlink(
            saescope_core::shared::shared_path("data/cifar10/test/cat").join(&name),
            dir.join("cat").join(&name),
        )
        .unwrap();
    }
    dir.to_path_buf()
}

/// Fills the new-workspace form (layer 1, a TopK SAE of 64 features, k 4) and waits until the
/// form says what the folder and the model hold.
fn fill_create_form(
    h: &mut Harness<'static, SaescopeApp>,
    images: &std::path::Path,
    model: &std::path::Path,
    workspace: &std::path::Path,
) {
    for (name, v) in [
        ("Image folder", images),
        ("Model", model),
        ("Workspace folder", workspace),
    ] {
        let field = h.get_by_role_and_label(Role::TextInput, name);
        field.focus();
        field.type_text(v.to_str().unwrap());
        h.run_steps(2);
    }
    for (name, v) in [("Layer", 1.0), ("features", 64.0), ("k", 4.0)] {
        h.get_by_role_and_label(Role::SpinButton, name)
            .set_value_accesskit(v);
        h.run_steps(2);
    }
    wait_for(h, |h| {
        h.query_by_label_contains(" images, ").is_some()
            && h.query_by_label_contains("3 layers (0 to 2), width 64")
                .is_some()
    });
}

/// The whole text of the label that contains `part`.
fn text_of(h: &Harness<'static, SaescopeApp>, part: &str) -> String {
    use egui_kittest::kittest::NodeT;
    let n = h.get_by_label_contains(part);
    n.accesskit_node()
        .label()
        .filter(|l| !l.is_empty())
        .or_else(|| n.value())
        .unwrap_or_default()
}

/// Steps the app until its creation job ends; returns whether it failed.
fn wait_for_creation(h: &mut Harness<'static, SaescopeApp>) -> bool {
    let start = std::time::Instant::now();
    loop {
        assert!(
            start.elapsed().as_secs() < 120,
            "the creation did not end, or ended but is still pending"
        );
        match h.state().create_job.as_ref().map(|j| j.state()) {
            Some(saescope_app::jobs::JobState::Failed(_)) => return true,
            None | Some(saescope_app::jobs::JobState::Done(_))
                if h.state().persisted.pending_create.is_none() =>
            {
                return false;
            }
            _ => {}
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        h.run_steps(1);
    }
}

/// Issue G item 1: a folder of unreadable images fails with the files and why (the first few,
/// and how many in all), in the form's words, and leaves no half-made workspace folder behind.
/// The form warns before anything runs.
#[test]
fn new_workspace_of_unreadable_images_says_why_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir_all(images.join("a")).unwrap();
    for i in 0..7 {
        std::fs::write(images.join(format!("a/{i:04}.jpg")), b"not a jpeg").unwrap();
    }
    let model = tiny_model(&tmp.path().join("model"));
    let ws = tmp.path().join("ws");
    let mut h = app_with_storage(MemStorage::default(), MemStorage::default());
    fill_create_form(&mut h, &images, &model, &ws);
    wait_for(&mut h, |h| {
        h.query_by_label_contains("none of the first 7 images can be read")
            .is_some()
    });
    h.get_by_role_and_label(Role::Button, "Create workspace")
        .click();
    h.run_steps(1);
    assert!(wait_for_creation(&mut h), "the creation fails");
    h.run_steps(2);
    let shown = text_of(&h, "none of the 7 images in");
    assert!(
        shown.contains("a/0000.jpg: corrupt or unsupported image"),
        "{shown}"
    );
    assert!(shown.contains("and 4 more"), "{shown}");
    assert!(
        shown.ends_with("give another folder with the Image folder field"),
        "{shown}"
    );
    assert!(!ws.exists(), "no half-made workspace is left");
}

/// Issue G item 2: a workspace folder that already holds another layer's activations is named
/// in the form's words (was "Use another the Workspace folder field folder"), and is left as it
/// was. Item 4: before that, the form shows the store's size and a rough time.
#[test]
fn new_workspace_form_says_the_folder_is_used_and_shows_the_estimate() {
    let tmp = tempfile::tempdir().unwrap();
    let images = cats(&tmp.path().join("images"), 6);
    let model = tiny_model(&tmp.path().join("model"));
    let ws = tmp.path().join("ws");
    saescope_ops::build::extract(
        &saescope_ops::build::ExtractRequest {
            model: saescope_core::backbone::ModelSpec::from_cli(model.to_str().unwrap(), None)
                .unwrap(),
            device: Default::default(),
            images: images.clone(),
            workspace: ws.clone(),
            options: saescope_ops::create::extract_options(0),
            task: None,
        },
        &Default::default(),
    )
    .unwrap();
    let mut h = app_with_storage(MemStorage::default(), MemStorage::default());
    fill_create_form(&mut h, &images, &model, &ws);
    // 6 images × 17 tokens × 64 × 2 bytes (F16) = 13,056 bytes.
    wait_for(&mut h, |h| {
        h.query_by_label_contains(
            "6 images × 17 tokens × width 64 × 2 bytes (F16) = 13.1 kB on disk; extraction \
             under a minute at the speed of a forward pass timed here on 6 images (cpu)",
        )
        .is_some()
    });
    h.get_by_role_and_label(Role::Button, "Create workspace")
        .click();
    h.run_steps(1);
    assert!(wait_for_creation(&mut h), "the creation fails");
    h.run_steps(2);
    let shown = text_of(&h, "already holds activations of");
    assert!(
        shown.ends_with("; give another folder with the Workspace folder field"),
        "{shown}"
    );
    assert!(!shown.contains("another the"), "{shown}");
    assert!(ws.join("workspace.json").is_file() && ws.join("activations").is_dir());
}

/// Issue G item 3: "did not finish" is said only of a creation that did not: one that finished
/// (after the last save, say) is not offered; one that did not is offered with Resume, which
/// finishes it; and a creation that ends while another view shows is no longer pending.
#[test]
fn only_an_unfinished_creation_is_offered_and_it_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let images = cats(&tmp.path().join("images"), 6);
    let model = tiny_model(&tmp.path().join("model"));
    let request = |ws: &std::path::Path| saescope_app::create::CreateRequest {
        images: images.display().to_string(),
        model: model.display().to_string(),
        layer: 1,
        workspace: ws.display().to_string(),
        d_sae: 64,
        k: 4,
        ..Default::default()
    };
    let done = tmp.path().join("done");
    request(&done)
        .run(Default::default(), &Default::default())
        .unwrap();
    let pending = |ws: &std::path::Path| saescope_app::Persisted {
        pending_create: Some(request(ws)),
        ..Default::default()
    };
    let h = app_with_storage(MemStorage::holding(&pending(&done)), MemStorage::default());
    assert!(h.query_by_label_contains("did not finish").is_none());
    assert!(h.state().persisted.pending_create.is_none());

    let todo = tmp.path().join("todo");
    let saves = MemStorage::default();
    let mut h = app_with_storage(MemStorage::holding(&pending(&todo)), saves.clone());
    h.get_by_label(&format!("Creating {} did not finish.", todo.display()));
    h.get_by_role_and_label(Role::Button, "Resume").click();
    h.run_steps(1);
    assert!(h.state().create_job.is_some(), "resumed");
    // It ends while the steering view shows: no longer pending, and saved so.
    h.get_by_role_and_label(Role::Button, "Steering").click();
    h.run_steps(1);
    assert!(!wait_for_creation(&mut h), "the creation finishes");
    assert_eq!(h.state().persisted.mode, saescope_app::Mode::Steering);
    let start = std::time::Instant::now();
    while saves.saved().is_none_or(|s| s.pending_create.is_some()) {
        assert!(start.elapsed().as_secs() < 5, "the end is saved");
        std::thread::sleep(std::time::Duration::from_millis(50));
        h.run_steps(1);
    }
    // Back on the start page, the new workspace opens.
    h.get_by_role_and_label(Role::Button, "Workspaces").click();
    h.run_steps(2);
    assert_eq!(h.state().open.as_ref().map(|o| o.dir.clone()), Some(todo));
}

/// Issue G item 5: the state is saved as it changes, not every 30 s, so a killed app loses
/// nothing.
#[test]
fn state_is_saved_as_soon_as_it_changes() {
    let saves = MemStorage::default();
    let mut h = app_with_storage(MemStorage::default(), saves.clone());
    let saved_within = |h: &mut Harness<'static, SaescopeApp>,
                        ok: &dyn Fn(&saescope_app::Persisted) -> bool| {
        let start = std::time::Instant::now();
        while !saves.saved().is_some_and(|s| ok(&s)) {
            assert!(start.elapsed().as_secs() < 3, "not saved within 3 s");
            std::thread::sleep(std::time::Duration::from_millis(20));
            h.run_steps(1);
        }
    };
    h.get_by_role_and_label(Role::Button, "Dark theme").click();
    h.run_steps(1);
    saved_within(&mut h, &|s| s.dark_mode);
    let input = h.get_by_role_and_label(Role::TextInput, "Example folder:");
    input.focus();
    input.type_text("/tmp/my-example");
    h.run_steps(1);
    saved_within(&mut h, &|s| s.example_folder == "/tmp/my-example");
}
