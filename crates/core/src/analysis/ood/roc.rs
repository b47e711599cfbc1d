//! Detection metrics over in- and out-of-distribution scores: AUROC, FPR at 95% TPR, ROC curve.

/// All scores tagged `true` for OOD, sorted by score (descending if `descending`).
fn labelled(id: &[f64], ood: &[f64], descending: bool) -> Vec<(f64, bool)> {
    let mut all: Vec<(f64, bool)> = id
        .iter()
        .map(|&s| (s, false))
        .chain(ood.iter().map(|&s| (s, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    if descending {
        all.reverse();
    }
    all
}

/// Area under the ROC curve with OOD as the positive class (higher score = more OOD); ties
/// count one half (the Mann–Whitney statistic).
pub fn auroc(id: &[f64], ood: &[f64]) -> f64 {
    let all = labelled(id, ood, false);
    // Average ranks over ties.
    let mut rank_sum_ood = 0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_ood += avg_rank * all[i..=j].iter().filter(|x| x.1).count() as f64;
        i = j + 1;
    }
    let (n_id, n_ood) = (id.len() as f64, ood.len() as f64);
    (rank_sum_ood - n_ood * (n_ood + 1.0) / 2.0) / (n_id * n_ood)
}

/// False-positive rate at 95% true-positive rate: the threshold is the highest score that still
/// flags at least 95% of OOD images; FPR = fraction of in-distribution images at or above it.
pub fn fpr_at_95_tpr(id: &[f64], ood: &[f64]) -> f64 {
    let mut o = ood.to_vec();
    o.sort_by(|a, b| a.total_cmp(b));
    let k = (0.05 * o.len() as f64).floor() as usize;
    let threshold = o[k.min(o.len() - 1)];
    id.iter().filter(|&&s| s >= threshold).count() as f64 / id.len() as f64
}

/// ROC curve as (FPR, TPR) points at every distinct threshold, thinned to at most `max_points`.
pub fn roc_curve(id: &[f64], ood: &[f64], max_points: usize) -> Vec<(f64, f64)> {
    let all = labelled(id, ood, true);
    let (n_id, n_ood) = (id.len().max(1) as f64, ood.len().max(1) as f64);
    let mut pts = vec![(0.0, 0.0)];
    let (mut fp, mut tp) = (0f64, 0f64);
    for (i, &(s, pos)) in all.iter().enumerate() {
        if pos {
            tp += 1.0
        } else {
            fp += 1.0
        }
        if i + 1 == all.len() || all[i + 1].0 != s {
            pts.push((fp / n_id, tp / n_ood));
        }
    }
    if pts.len() > max_points && max_points >= 2 {
        let step = (pts.len() - 1) as f64 / (max_points - 1) as f64;
        pts = (0..max_points)
            .map(|i| pts[((i as f64 * step).round() as usize).min(pts.len() - 1)])
            .collect();
    }
    pts
}

// ---------- per-image features ----------
