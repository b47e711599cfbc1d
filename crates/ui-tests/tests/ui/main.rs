//! The desktop app driven headless with egui_kittest (rendered on Mesa's software Vulkan driver).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests make fixtures and fail loudly

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use saescope_app::SaescopeApp;
use saescope_core::steer::session::Decoder;

#[path = "../../../../tests/common/mod.rs"]
mod common;

mod explorer;
mod feature_page;
mod research;
mod saes;
mod sizes;
mod start;
mod steering;

fn harness() -> Harness<'static, SaescopeApp> {
    Harness::builder()
        .with_size(egui::vec2(1000.0, 560.0))
        .with_theme(egui::Theme::Light)
        .wgpu()
        .build_eframe(|cc| SaescopeApp::new(cc))
}

/// A small real workspace with everything the explorer shows: SAE, index, labels, OOD results
/// and ontology, made through the operations layer with the CLI's default options.
fn analysed_workspace(tmp: &std::path::Path) -> std::path::PathBuf {
    // airplane, cat, frog, ship in sorted order
    let class_ids = tmp.join("wnids.txt");
    std::fs::write(&class_ids, "n02691156\nn02121620\nn01639765\nn04194289\n").unwrap();
    analysed_workspace_of(tmp, &["airplane", "cat", "ship", "frog"], &class_ids)
}

/// [`analysed_workspace`] over the given CIFAR-10 classes, whose WordNet ids (in sorted class
/// order) are in `class_ids`.
fn analysed_workspace_of(
    tmp: &std::path::Path,
    classes: &[&str],
    class_ids: &std::path::Path,
) -> std::path::PathBuf {
    use saescope_core::shared::shared_path;
    use saescope_ops::analyse;
    let link = common::subset;
    // Two-level folders: OOD set names are the last two path components, kept stable here.
    let train = tmp.join("cifar/train");
    link("data/cifar10/train", classes, 25, &train);
    let test = tmp.join("cifar/test");
    link("data/cifar10/test", classes, 10, &test);
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
    analyse::tree(
        &analyse::TreeRequest {
            workspace: ws.clone(),
            sae: None,
            taxonomy: Some(saescope_core::analysis::ontology::TaxonomyInput {
                taxonomy: shared_path("data/wordnet/cifar10-graph-wordnet.json"),
                class_ids: class_ids.to_path_buf(),
            }),
        },
        &job,
    )
    .unwrap();
    ws
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
            task: None,
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
