//! The steering view on a tiny random diffusion pipeline.

use super::*;

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
    // The shared tiny CLIP as it is, weights and config only: discovery finds the CLIP
    // tokenizer as `steer make-tiny` does.
    let clip = shared_path("models/tiny-random/clip");
    assert!(!clip.join("tokenizer.json").exists());

    let mut h = steering_harness();
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

/// A failed Load keeps the pipeline that was loaded: its images stay, it still generates, and
/// the load's error is on screen.
#[test]
fn steering_failed_load_keeps_the_loaded_pipeline() {
    let root = std::path::Path::new("target/ui-steer-failed-load-test");
    let pipe_dir = tiny_pipeline(root);
    let mut h = steering_harness();
    load_pipeline(&mut h, &pipe_dir);
    pick_size(&mut h, "128 px");
    wait_steer(&mut h, full_decoder_shown);

    let bad = root.join("not-a-pipeline");
    std::fs::create_dir_all(&bad).unwrap();
    h.state_mut().steer.settings.pipeline = bad.display().to_string();
    h.run_steps(1);
    h.get_by_role_and_label(Role::Button, "Load").click();
    let load_failed = |h: &Harness<'static, SaescopeApp>| {
        steer(h).jobs.iter().any(|j| {
            j.title == "Load pipeline"
                && matches!(j.state(), saescope_app::jobs::JobState::Failed(_))
        })
    };
    wait_until(&mut h, load_failed, |app| {
        app.steer
            .jobs
            .iter()
            .filter(|j| j.title != "Load pipeline")
            .collect()
    });
    h.run_steps(2);
    h.get_by_label_contains("not a diffusers pipeline folder");
    let v = steer(&h);
    assert!(
        v.loaded.is_some(),
        "a failed load unloaded the working pipeline"
    );
    assert!(v.unsteered.is_some() && v.steered.is_some());
    // Still usable: another size generates with the pipeline that stayed loaded.
    pick_size(&mut h, "256 px");
    wait_until(
        &mut h,
        |h| {
            full_decoder_shown(h)
                && steer(h).unsteered.as_ref().unwrap().texture.size() == [256, 256]
        },
        |app| {
            app.steer
                .jobs
                .iter()
                .filter(|j| j.title != "Load pipeline")
                .collect()
        },
    );
    // The failed load's error stays until the next load.
    h.get_by_label_contains("not a diffusers pipeline folder");
}

/// While a generation runs, its progress bar counts the steps done of the total: never "0/0",
/// and a real total (one side, no SAE, of 4 steps) shows before it ends.
#[test]
fn steering_generation_shows_its_steps_done_of_the_total() {
    let root = std::path::Path::new("target/ui-steer-progress-test");
    let pipe_dir = tiny_pipeline(root);
    let mut h = steering_harness();
    load_pipeline(&mut h, &pipe_dir);
    wait_steer(&mut h, full_decoder_shown);
    // Four steps of a large image: long enough to watch.
    h.get_by_role_and_label(Role::SpinButton, "Steps")
        .set_value_accesskit(4.0);
    h.run_steps(1);
    assert_eq!(h.state().steer.settings.steps, 4);
    pick_size(&mut h, "512 px");
    wait_steer(&mut h, |h| steer(h).busy());
    let start = std::time::Instant::now();
    let mut seen = Vec::new();
    while steer(&h).busy() {
        for text in progress_texts(&h) {
            if let Some((_, total)) = count_in(&text) {
                assert!(total > 0, "the progress reads {text:?} during a generation");
            }
            if !seen.contains(&text) {
                seen.push(text);
            }
        }
        assert!(start.elapsed().as_secs() < 120, "timed out; seen {seen:?}");
        std::thread::sleep(std::time::Duration::from_millis(5));
        h.run_steps(1);
    }
    assert!(
        seen.iter()
            .any(|t| t.contains("steps") && count_in(t).is_some_and(|(d, n)| n == 4 && d <= 4)),
        "no step count of 4 seen during the generation: {seen:?}"
    );
}

/// The labels of the progress bars on screen.
fn progress_texts(h: &Harness<'static, SaescopeApp>) -> Vec<String> {
    use egui_kittest::kittest::NodeT;
    h.query_all_by_role(Role::ProgressIndicator)
        .filter_map(|n| n.accesskit_node().label())
        .collect()
}

/// The last "done/total" count in a text.
fn count_in(text: &str) -> Option<(u64, u64)> {
    text.split_whitespace().rev().find_map(|w| {
        let (d, n) = w.split_once('/')?;
        Some((d.parse().ok()?, n.parse().ok()?))
    })
}

/// A tiny random SD-Turbo-style pipeline (real CLIP tokenizer) in a fresh `root`.
pub(super) fn tiny_pipeline(root: &std::path::Path) -> std::path::PathBuf {
    let _ = std::fs::remove_dir_all(root);
    let pipe_dir = root.join("tiny-sd-turbo");
    saescope_core::steer::tiny::write_tiny_pipeline(
        &pipe_dir,
        &saescope_core::shared::shared_path("data/clip/tokenizer.json"),
        7,
        true,
    )
    .unwrap();
    pipe_dir
}

/// The app on its Steering view.
fn steering_harness() -> Harness<'static, SaescopeApp> {
    let mut h = Harness::builder()
        .with_size(egui::vec2(1000.0, 760.0))
        .with_theme(egui::Theme::Light)
        .wgpu()
        .build_eframe(|cc| SaescopeApp::new(cc));
    h.run_steps(2);
    h.get_by_label("Steering").click();
    h.run_steps(2);
    h
}

/// Types the pipeline folder (no SAE), presses Load and waits for it.
pub(super) fn load_pipeline(h: &mut Harness<'static, SaescopeApp>, pipe_dir: &std::path::Path) {
    let f = h.get_by_role_and_label(Role::TextInput, "Pipeline folder");
    f.focus();
    f.type_text(&pipe_dir.display().to_string());
    h.run_steps(1);
    h.get_by_role_and_label(Role::Button, "Load").click();
    wait_steer(h, |h| steer(h).loaded.is_some());
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
