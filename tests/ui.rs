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
