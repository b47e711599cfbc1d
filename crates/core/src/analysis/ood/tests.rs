use super::*;

#[test]
fn auroc_matches_hand_computed_values() {
    // Perfect separation, perfect inversion, and a hand-counted mixed case.
    assert_eq!(auroc(&[1.0, 2.0], &[3.0, 4.0]), 1.0);
    assert_eq!(auroc(&[3.0, 4.0], &[1.0, 2.0]), 0.0);
    // id {1, 3}, ood {2, 4}: pairs (ood > id): 2>1, 4>1, 4>3 → 3 of 4.
    assert_eq!(auroc(&[1.0, 3.0], &[2.0, 4.0]), 0.75);
    // Ties count one half: id {1, 2}, ood {2, 3}: 2>1, 2=2 (½), 3>1, 3>2 → 3.5 of 4.
    assert_eq!(auroc(&[1.0, 2.0], &[2.0, 3.0]), 0.875);
    assert_eq!(auroc(&[5.0; 3], &[5.0; 4]), 0.5);
}

#[test]
fn fpr95_matches_hand_computed_values() {
    // 20 OOD scores 1..=20: 95% TPR keeps 19 of them → threshold 2.
    let ood: Vec<f64> = (1..=20).map(f64::from).collect();
    // id scores: 0, 1.5, 2, 2.5, 10 → 3 of 5 at or above 2.
    assert_eq!(fpr_at_95_tpr(&[0.0, 1.5, 2.0, 2.5, 10.0], &ood), 0.6);
    assert_eq!(fpr_at_95_tpr(&[0.0, 1.0], &ood), 0.0);
    // 10 OOD scores: floor(0.5) = 0 → threshold is the lowest OOD score.
    let ood10: Vec<f64> = (1..=10).map(f64::from).collect();
    assert_eq!(fpr_at_95_tpr(&[0.5, 1.0, 3.0, 11.0], &ood10), 0.75);
}

#[test]
fn roc_curve_runs_from_origin_to_one_and_its_area_is_the_auroc() {
    let id = [0.1, 0.4, 0.35, 0.8];
    let ood = [0.9, 0.4, 0.65, 0.7, 0.2];
    let pts = roc_curve(&id, &ood, 1000);
    assert_eq!(pts[0], (0.0, 0.0));
    assert_eq!(*pts.last().unwrap(), (1.0, 1.0));
    let area: f64 = pts
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
        .sum();
    assert!((area - auroc(&id, &ood)).abs() < 1e-12);
}

#[test]
fn mahalanobis_contributions_sum_to_the_distance() {
    let mut m = Moments::new(3);
    let mut rng = crate::rng::Rng::new(4);
    let rows: Vec<f32> = (0..300)
        .flat_map(|_| {
            let a = rng.normal();
            [a, a * 0.5 + rng.normal() * 0.1, rng.normal() * 2.0]
        })
        .collect();
    m.add(&rows[..150 * 3]);
    m.add(&rows[150 * 3..]);
    let g = m.gaussian(0.0).unwrap();
    let x = [1.0f32, -0.5, 0.3, 0.0, 0.0, 0.0];
    let (d2, c) = g.score(&x, true);
    for (d, ci) in d2.iter().zip(&c) {
        let s: f64 = ci.iter().map(|&v| v as f64).sum();
        assert!((s - d).abs() < 1e-3 * d.max(1.0), "{s} vs {d}");
    }
    // The correlated direction is cheap, the anti-correlated one expensive.
    let (d_along, _) = g.score(&[1.0, 0.5, 0.0], false);
    let (d_against, _) = g.score(&[1.0, -0.5, 0.0], false);
    assert!(d_against[0] > 10.0 * d_along[0]);
}

/// Held-out likelihood wants little shrinkage when the fit has many samples per dimension
/// and much more when it has few: the choice follows the fit data, not any OOD set.
#[test]
fn ridge_choice_follows_the_amount_of_fit_data() {
    let d = 40;
    let mut rng = crate::rng::Rng::new(9);
    // Strongly correlated data: x = A·z with a random mixing matrix.
    let a: Vec<f32> = (0..d * d).map(|_| rng.normal()).collect();
    let mut sample = |n: usize| -> Vec<f32> {
        (0..n)
            .flat_map(|_| {
                let z: Vec<f32> = (0..d).map(|_| rng.normal()).collect();
                (0..d)
                    .map(|i| (0..d).map(|j| a[i * d + j] * z[j]).sum::<f32>())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let choose = |train: &[f32], held: &[f32]| {
        let mut m = Moments::new(d);
        m.add(train);
        choose_ridge(None, &m, held).unwrap()
    };
    let many = choose(&sample(4000), &sample(1000));
    let few = choose(&sample(45), &sample(1000));
    assert!(many.chosen_on_held_out_fit && many.held_out_nll.len() >= 2);
    assert!(
        few.ridge > many.ridge,
        "few samples: {} vs many: {}",
        few.ridge,
        many.ridge
    );
    assert_eq!(
        choose_ridge(Some(0.5), &Moments::new(d), &[])
            .unwrap()
            .ridge,
        0.5
    );
}
