//! Every explorer tab at a small laptop window (1024×640) and a large screen (2560×1440):
//! scrolled to its end with the mouse wheel, as a user would, its last element is on screen
//! (inside the window, not clipped below or beside it).

use super::*;

const SIZES: [egui::Vec2; 2] = [egui::vec2(1024.0, 640.0), egui::vec2(2560.0, 1440.0)];

/// Wheel-scrolls whatever is under `at` by `pages` pages down (negative: up).
fn wheel(h: &mut Harness<'static, SaescopeApp>, at: egui::Pos2, pages: f32) {
    h.hover_at(at);
    h.run_steps(1);
    for _ in 0..(pages.abs().ceil() as usize) {
        h.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Page,
            delta: egui::vec2(0.0, -pages.signum()),
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Unknown,
            modifiers: Default::default(),
        });
        h.run_steps(1);
    }
    h.run_steps(20); // smooth scrolling settles
}

/// The rect of the lowest (then rightmost) node whose label contains `text`.
fn lowest(h: &Harness<'static, SaescopeApp>, text: &str) -> egui::Rect {
    h.get_all_by_label_contains(text)
        .map(|n| n.rect())
        .max_by(|a, b| {
            a.bottom()
                .total_cmp(&b.bottom())
                .then(a.right().total_cmp(&b.right()))
        })
        .unwrap_or_else(|| panic!("no element labelled {text:?}"))
}

fn assert_on_screen(rect: egui::Rect, size: egui::Vec2, what: &str) {
    let window = egui::Rect::from_min_size(egui::Pos2::ZERO, size).expand(0.5);
    assert!(
        window.contains_rect(rect),
        "{what} at {rect:?} is not inside the {}×{} window",
        size.x,
        size.y
    );
}

/// The built-in example (256 features) opened in the explorer at `size`; keep the folder.
fn example_explorer(size: egui::Vec2) -> (tempfile::TempDir, Harness<'static, SaescopeApp>) {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("ex");
    saescope_ops::example::example(
        &saescope_ops::example::ExampleRequest {
            folder: folder.clone(),
            device: Default::default(),
        },
        &saescope_core::job::Job::default(),
    )
    .unwrap();
    let h = explorer_on(&saescope_ops::example::workspace_of(&folder), size);
    (tmp, h)
}

fn tab(h: &mut Harness<'static, SaescopeApp>, name: &str) {
    // The tab's button is the first of that name (an action button may share it).
    h.get_all_by_role_and_label(Role::Button, name)
        .min_by(|a, b| a.rect().top().total_cmp(&b.rect().top()))
        .unwrap()
        .click();
    h.run_steps(4);
}

#[test]
fn every_explorer_tab_scrolls_to_its_end_at_both_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    // All ten CIFAR-10 classes: three class trees of ten leaves, fully open, are taller than
    // a laptop window (they pushed the feature tree out of reach).
    let classes = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ];
    let ids = saescope_core::shared::shared_path("data/wordnet/cifar10-wnids.txt");
    let ws = analysed_workspace_of(tmp.path(), &classes, &ids);
    for size in SIZES {
        let mut h = explorer_on(&ws, size);
        let middle = egui::pos2(size.x * 0.5, size.y * 0.75);
        let what = |s: &str| format!("{s} ({}×{})", size.x, size.y);

        // Features: the last card of the grid.
        let last = *h.state().explorer.as_ref().unwrap().order.last().unwrap();
        wheel(&mut h, middle, 30.0);
        assert_on_screen(
            lowest(&h, &format!("#{last}\n")),
            size,
            &what("the grid's last card"),
        );
        wheel(&mut h, middle, -30.0);

        // A feature page: its last section, the nearest features.
        let first = h.state().explorer.as_ref().unwrap().order[0];
        h.get_by_label_contains(&format!("#{first}\n")).click();
        h.run_steps(6);
        wheel(&mut h, middle, 30.0);
        assert_on_screen(
            lowest(&h, "Nearest features (decoder cosine)"),
            size,
            &what("the feature page's nearest features"),
        );

        // The image view with an intervention: the effect map's right edge.
        wheel(&mut h, middle, -30.0);
        h.get_by_label("top image 1").click();
        h.run_steps(2);
        wait_for(&mut h, |h| {
            h.query_by_label("Top features of this image").is_some()
        });
        h.get_all_by_role_and_label(Role::Button, "+")
            .next()
            .unwrap()
            .click();
        wait_for(&mut h, |h| {
            h.query_by_label("effect map").is_some()
                || h.query_by_label_contains("No feature activation changed")
                    .is_some()
        });
        h.run_steps(4);
        wheel(&mut h, middle, 30.0);
        if h.query_by_label("effect map").is_some() {
            assert_on_screen(lowest(&h, "effect map"), size, &what("the effect map"));
        }
        // The intervention panel's widest row is inside the window (it ran off at 1024 px).
        let painted = h
            .get_all_by_role_and_label(Role::RadioButton, "Painted patches")
            .next()
            .unwrap()
            .rect();
        assert!(
            painted.right() <= size.x,
            "{}: 'Painted patches' ends at {}",
            what("the intervention panel"),
            painted.right()
        );

        // Dataset: the last image's thumbnail.
        tab(&mut h, "Dataset");
        h.run_steps(6);
        // Every column of thumbnails fits (an extra one was cut at the right edge at 1920 px).
        let right = h
            .get_all_by_label_contains("dataset image ")
            .map(|n| n.rect().right())
            .fold(0f32, f32::max);
        assert!(
            right <= size.x,
            "{}: thumbnails reach {right}",
            what("the dataset grid")
        );
        let images = h.state().explorer.as_ref().unwrap().ds.len();
        for _ in 0..3 {
            wheel(&mut h, middle, 40.0); // thumbnails arrive a few per frame
        }
        assert_on_screen(
            lowest(&h, &format!("dataset image {}", images - 1)),
            size,
            &what("the dataset's last thumbnail"),
        );

        // OOD: the ranked list's last row, after scrolling the page and then the list.
        tab(&mut h, "OOD");
        wheel(&mut h, middle, 60.0);
        let n = {
            let r = h.state().explorer.as_ref().unwrap().ood.as_ref().unwrap();
            r.sets.iter().map(|s| s.images.len()).sum::<usize>()
        };
        let list = lowest(&h, "All images by");
        wheel(&mut h, egui::pos2(size.x * 0.3, list.bottom() + 60.0), 60.0);
        assert_on_screen(
            lowest(&h, &format!("rank {n}")),
            size,
            &what("the OOD ranked list's last row"),
        );
        assert_on_screen(
            lowest(&h, "contribution to the score"),
            size,
            &what("the contributions chart"),
        );

        // Ontology: the feature tree's root, below the class trees.
        tab(&mut h, "Ontology");
        let features = h
            .state()
            .explorer
            .as_ref()
            .unwrap()
            .ontology
            .as_ref()
            .unwrap()
            .features
            .len();
        wheel(&mut h, middle, 30.0);
        assert_on_screen(
            lowest(&h, &format!("{features} leaves")),
            size,
            &what("the feature tree's root"),
        );

        // Export: its button.
        tab(&mut h, "Export");
        wheel(&mut h, middle, 30.0);
        let export = h
            .get_all_by_role_and_label(Role::Button, "Export")
            .map(|n| n.rect())
            .max_by(|a, b| a.bottom().total_cmp(&b.bottom()))
            .unwrap();
        assert_on_screen(export, size, &what("the Export button"));

        // Compare: the form for another SAE at its end.
        tab(&mut h, "Compare");
        h.run_steps(10);
        wheel(&mut h, middle, 60.0);
        h.get_by_label("Train or load another SAE").click();
        h.run_steps(4);
        wheel(&mut h, middle, 60.0);
        assert_on_screen(
            lowest(&h, "Train SAE"),
            size,
            &what("the Compare tab's train button"),
        );
    }
}

/// Jobs share one status row: five finished jobs push the page down no further than none
/// (each job had a line of its own above every tab), and "All jobs (5)" opens them all in a
/// window over the page.
#[test]
fn job_lines_share_one_status_row_that_never_pushes_the_page() {
    let size = SIZES[0];
    let (_tmp, mut h) = example_explorer(size);
    tab(&mut h, "Export");
    let top = |h: &Harness<'static, SaescopeApp>| {
        h.get_by_role_and_label(Role::TextInput, "Output folder")
            .rect()
            .top()
    };
    let before = top(&h);
    let ctx = h.ctx.clone();
    for i in 0..5 {
        let job = saescope_app::jobs::BackgroundJob::spawn(&format!("Job {i}"), &ctx, move |_| {
            Ok(format!("finished {i}"))
        });
        h.state_mut().explorer.as_mut().unwrap().jobs.push(job);
    }
    wait_for(&mut h, |h| {
        h.state()
            .explorer
            .as_ref()
            .unwrap()
            .jobs
            .iter()
            .all(|j| !j.is_running())
    });
    h.run_steps(3);
    assert_eq!(top(&h), before, "the jobs pushed the page down");
    // The newest job is on the row; the others are one click away.
    assert!(h.query_all_by_label_contains("finished 4").count() > 0);
    assert_eq!(h.query_all_by_label_contains("finished 0").count(), 0);
    h.get_by_label("All jobs (5)").click();
    h.run_steps(3);
    for i in 0..5 {
        assert!(
            h.query_all_by_label_contains(&format!("finished {i}"))
                .count()
                > 0,
            "job {i} is not in the window"
        );
    }
    assert_eq!(top(&h), before, "the window pushed the page down");
}

/// The grid and the feature pages scroll apart: a page opens at its top however far the grid
/// was scrolled, the grid keeps its place while a page is read, and a new sort starts at the
/// top (it kept the old position).
#[test]
fn grid_and_feature_pages_keep_their_own_scroll_and_a_new_sort_starts_at_the_top() {
    let size = SIZES[0];
    let (_tmp, mut h) = example_explorer(size);
    let middle = egui::pos2(size.x * 0.5, size.y * 0.75);
    let order =
        |h: &Harness<'static, SaescopeApp>| h.state().explorer.as_ref().unwrap().order.clone();
    let card_top = |h: &Harness<'static, SaescopeApp>, f: u32| {
        h.query_by_label_contains(&format!("#{f}\n"))
            .map(|n| n.rect().top())
    };
    let first = order(&h)[0];
    let grid_top = card_top(&h, first).unwrap();
    wheel(&mut h, middle, 3.0);
    assert!(
        card_top(&h, first).is_none_or(|t| t < grid_top),
        "the grid did not scroll"
    );
    // Open a card that is on screen now: its page starts at the top.
    let visible = order(&h)
        .into_iter()
        .find(|&f| card_top(&h, f).is_some_and(|t| t > grid_top && t < size.y - 100.0))
        .unwrap();
    h.get_by_label_contains(&format!("#{visible}\n")).click();
    h.run_steps(4);
    let heading = h.get_by_label(&format!("Feature {visible}")).rect();
    let stats = h.get_by_label("Token frequency").rect();
    assert_on_screen(heading, size, "the page's heading");
    assert_on_screen(stats, size, "the page's first statistic");
    wheel(&mut h, middle, 3.0);
    // Back to the grid: where it was.
    tab(&mut h, "Features");
    assert!(
        card_top(&h, first).is_none_or(|t| t < grid_top),
        "the grid lost its place"
    );
    // A new sort starts at the top.
    h.get_by_label("Reverse").click();
    h.run_steps(4);
    let new_first = order(&h)[0];
    assert_eq!(
        card_top(&h, new_first),
        Some(grid_top),
        "the reversed grid did not start at the top"
    );
}

/// The Dataset tab filters by class and by name or number, and a click opens the image.
#[test]
fn dataset_tab_filters_by_class_and_name_and_opens_an_image() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = analysed_workspace(tmp.path());
    let mut h = explorer_on(&ws, egui::vec2(1280.0, 800.0));
    tab(&mut h, "Dataset");
    let n = h.state().explorer.as_ref().unwrap().ds.len();
    assert!(h.query_by_label(&format!("{n} of {n} images")).is_some());
    h.get_by_role_and_label(Role::ComboBox, "Class").click();
    h.run_steps(2);
    h.get_by_label("cat").click();
    h.run_steps(3);
    let ds = h.state().explorer.as_ref().unwrap().ds.clone();
    let cats: Vec<usize> = (0..n)
        .filter(|&i| ds.class_name(i) == Some("cat"))
        .collect();
    assert!(
        h.query_by_label(&format!("{} of {n} images", cats.len()))
            .is_some()
    );
    let field = h.get_by_role_and_label(Role::TextInput, "Find image");
    field.focus();
    field.type_text(&cats[3].to_string());
    h.run_steps(4);
    assert!(h.query_by_label(&format!("1 of {n} images")).is_some());
    h.get_by_label(&format!("dataset image {}", cats[3]))
        .click();
    h.run_steps(2);
    let x = h.state().explorer.as_ref().unwrap();
    assert_eq!(x.tab, saescope_app::explorer::Tab::Image);
    assert_eq!(
        x.image_view.as_ref().unwrap().title,
        ds.images[cats[3]].path
    );
}

/// The start page's New workspace form and the Steering view (a tiny pipeline loaded) reach
/// their last element at both sizes: the Create button, and attribute discovery's button.
#[test]
fn start_page_and_steering_view_reach_their_ends_at_both_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let pipe = super::steering::tiny_pipeline(&tmp.path().join("pipe"));
    for size in SIZES {
        let mut h = Harness::builder()
            .with_size(size)
            .with_theme(egui::Theme::Light)
            .wgpu()
            .build_eframe(|cc| SaescopeApp::new(cc));
        h.run_steps(2);
        let middle = egui::pos2(size.x * 0.5, size.y * 0.75);
        wheel(&mut h, middle, 20.0);
        let create = h
            .get_all_by_role_and_label(Role::Button, "Create workspace")
            .map(|n| n.rect())
            .max_by(|a, b| a.bottom().total_cmp(&b.bottom()))
            .unwrap();
        assert_on_screen(create, size, "the New workspace form's Create button");

        h.get_by_label("Steering").click();
        h.run_steps(2);
        super::steering::load_pipeline(&mut h, &pipe);
        h.run_steps(4);
        wheel(&mut h, middle, 30.0);
        h.get_by_label("Attribute discovery").click();
        h.run_steps(4);
        wheel(&mut h, middle, 30.0);
        let discover = h
            .get_all_by_role_and_label(Role::Button, "Discover attributes")
            .map(|n| n.rect())
            .max_by(|a, b| a.bottom().total_cmp(&b.bottom()))
            .unwrap();
        assert_on_screen(
            discover,
            size,
            "the Steering view's Discover attributes button",
        );
    }
}
