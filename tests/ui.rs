//! The desktop app driven headless with egui_kittest (rendered on Mesa's software Vulkan driver).

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use saescope::app::SaescopeApp;

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
    let input = h.get_by_role(Role::TextInput);
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
    assert!(h.state().open.is_none());
    h.snapshot("start_page_error");
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
    use saescope::backbone::{ModelSpec, TokenSelection, load_backbone};
    use saescope::shared::shared_path;
    use saescope::store::extract::{ExtractOptions, extract};
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
    let config =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/vit-cifar10.json");
    let spec = ModelSpec::from_cli(
        shared_path("models/vit-cifar10/vit_cifar10.pth")
            .to_str()
            .unwrap(),
        Some(&config),
    )
    .unwrap();
    let model = load_backbone(&spec, &candle_core::Device::Cpu).unwrap();
    let ws = tmp.path().join("ws");
    let opts = ExtractOptions {
        layer: 3,
        tokens: TokenSelection::Patch,
        dtype: saescope::store::workspace::StoreDType::F16,
        batch_size: 8,
        images_per_shard: None,
    };
    extract(
        &ws,
        &spec,
        &model,
        &tmp.path().join("images"),
        &opts,
        &Default::default(),
    )
    .unwrap();

    let mut h = harness();
    h.run();
    let input = h.get_by_role(Role::TextInput);
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
