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
