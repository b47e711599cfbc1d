//! Export of labelled feature sets (versioned JSON documented in docs/FORMATS.md, a CSV
//! summary, per-feature PNGs of top-patch crops and heatmap overlays) and import of the labels
//! back into a workspace. Export → import keeps every label field.

use super::heatmap::{Heatmap, grid, model_view, overlay, patch_crop, token_box};
use super::index::{FeatureIndex, sae_fingerprint};
use super::labels::{Label, LabelSource, Labels, class_scores};
use crate::error::{Error, Result};
use crate::fix::Opt;
use crate::fsutil;
use crate::sae::Sae;
use crate::store::Workspace;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "saescope-features";
pub const VERSION: u32 = 1;
/// Top examples written per feature.
pub const EXAMPLES: usize = 16;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedExample {
    /// Image path relative to `images_root`.
    pub image: String,
    pub class: Option<String>,
    /// Position in the stored token sequence, and its box in model-input pixels (None for CLS).
    pub token: u32,
    pub patch_box: Option<[f32; 4]>,
    pub activation: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedClass {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    pub token_frequency: f64,
    pub image_frequency: f64,
    pub mean_activation: f64,
    pub max_activation: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedFeature {
    pub id: u32,
    pub label: Option<Label>,
    pub stats: FeatureStats,
    /// The three classes with the highest precision among the top images.
    pub classes: Vec<ExportedClass>,
    pub top_examples: Vec<ExportedExample>,
    /// Relative path of the feature's PNG, when written.
    pub png: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportFile {
    pub format: String,
    pub version: u32,
    pub model: String,
    pub layer: usize,
    pub images_root: PathBuf,
    pub sae_d_in: usize,
    pub sae_d_sae: usize,
    /// Feature ids only mean the same thing for the same SAE: import checks this.
    pub sae_fingerprint: String,
    pub features: Vec<ExportedFeature>,
}

/// Which features to export.
#[derive(Clone, Debug)]
pub enum Selection {
    /// Every feature that fired.
    Alive,
    Labelled,
    /// Features whose class label passed the significance tests ([`Label::is_significant`]).
    Significant,
    Ids(Vec<u32>),
}

/// Parses "3,10-12,40" into ids.
pub fn parse_ids(spec: &str) -> Result<Vec<u32>> {
    parse_id_list(spec, Opt::Features, MAX_FEATURE_IDS)
}

/// More features than any SAE has: a list that names more is refused before it is expanded.
pub const MAX_FEATURE_IDS: u64 = 1 << 22;

/// Parses ids and ranges ("3,10-12,40") given to `option`, refusing, before any memory is
/// taken for them, a list of more than `most` ids.
pub fn parse_id_list(spec: &str, option: Opt, most: u64) -> Result<Vec<u32>> {
    let bad = || {
        crate::fixable!(
            [option, format!(" `{spec}`: not a list of ids")],
            ["write ids and ranges like 3,10-12,40"]
        )
    };
    let mut ranges = Vec::new();
    let mut count: u64 = 0;
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b): (u32, u32) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ),
            None => {
                let v = part.parse().map_err(|_| bad())?;
                (v, v)
            }
        };
        if b < a {
            return Err(bad());
        }
        count += (b - a) as u64 + 1;
        if count > most {
            return Err(crate::fixable!(
                [
                    option,
                    format!(
                        " `{spec}` names {count} or more ids, more than the {most} there can be"
                    )
                ],
                ["name ranges within what exists"]
            ));
        }
        ranges.push(a..=b);
    }
    Ok(ranges.into_iter().flatten().collect())
}

#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    pub out: PathBuf,
    pub features: usize,
    pub labelled: usize,
    pub pngs: usize,
}

#[allow(clippy::too_many_arguments)] // the SAE, its analyses, the selection and where it goes
pub fn export(
    ws: &Workspace,
    sae: &Sae,
    index: &FeatureIndex,
    labels: &Labels,
    selection: &Selection,
    out: &Path,
    pngs: bool,
    job: &crate::job::Job,
) -> Result<ExportReport> {
    let ds = ws.dataset()?;
    let ids: Vec<u32> = match selection {
        Selection::Alive => (0..index.d_sae as u32)
            .filter(|&j| index.token_count[j as usize] > 0)
            .collect(),
        Selection::Labelled => labels.labels.keys().copied().collect(),
        Selection::Significant => labels
            .labels
            .iter()
            .filter(|(_, l)| l.is_significant())
            .map(|(j, _)| *j)
            .collect(),
        Selection::Ids(v) => v.clone(),
    };
    if let Some(&bad) = ids.iter().find(|&&j| j as usize >= index.d_sae) {
        return Err(Error::Invalid(format!(
            "feature {bad} does not exist: the SAE has {} features",
            index.d_sae
        )));
    }
    let geometry = ws.config.backbone.geometry;
    let token_indices = geometry.select(ws.config.tokens)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    if pngs {
        let p = out.join("png");
        std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    }
    // Temporary files a killed or failed export left here (D15); a live writer's stay.
    crate::fsutil::remove_stale_temp_files(out, 1, false);
    // Progress in features written, so a long export shows real counts and can be cancelled.
    let done = std::sync::atomic::AtomicU64::new(0);
    let report = |_: &ExportedFeature| {
        let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        job.report(crate::job::Progress {
            done: d,
            total: ids.len() as u64,
            unit: "features",
            message: "exporting".into(),
        });
    };
    let features: Vec<ExportedFeature> = ids
        .par_iter()
        .map(|&j| -> Result<ExportedFeature> {
            job.check()?;
            let ju = j as usize;
            let top = &index.top[ju];
            let mut classes: Vec<ExportedClass> = class_scores(index, &ds, ju)
                .into_iter()
                .map(|(c, p, r)| ExportedClass {
                    class: ds.classes[c].clone(),
                    precision: p,
                    recall: r,
                })
                .collect();
            classes.sort_by(|a, b| {
                b.precision
                    .total_cmp(&a.precision)
                    .then(b.recall.total_cmp(&a.recall))
            });
            classes.truncate(3);
            let top_examples: Vec<ExportedExample> = top
                .iter()
                .take(EXAMPLES)
                .map(|e| {
                    let seq_pos = token_indices[e.token as usize];
                    ExportedExample {
                        image: ds.images[e.image as usize].path.clone(),
                        class: ds.class_name(e.image as usize).map(String::from),
                        token: e.token,
                        patch_box: geometry.patch_box(seq_pos),
                        activation: e.value,
                    }
                })
                .collect();
            let png = if pngs && !top.is_empty() {
                let rel = format!("png/feature-{j:05}.png");
                let mut crops = Vec::new();
                let mut overlays = Vec::new();
                for e in top.iter().take(8) {
                    let img = match ds.load(e.image as usize) {
                        Ok(i) => i,
                        Err(_) => continue, // unreadable now: leave the tile out
                    };
                    let heat = Heatmap::from_tokens(j, &geometry, &token_indices, &e.tokens);
                    let img = model_view(&img, ws.config.preprocessor.as_ref(), heat.input_size);
                    let ov = overlay(&img, &heat, heat.zoom_for(96), index.max_act[ju], 0.75);
                    let side = ov.width();
                    let bx = token_box(&geometry, token_indices[e.token as usize]);
                    crops.push(patch_crop(&img, heat.input_size, bx, side));
                    overlays.push(ov);
                }
                let cols = crops.len().max(1);
                crops.extend(overlays);
                let label = labels.labels.get(&j).map(|l| l.text.as_str());
                fsutil::write_atomic(
                    &out.join(&rel),
                    &png_bytes(&grid(&crops, cols, 2), j, label)?,
                )?;
                Some(rel)
            } else {
                None
            };
            Ok(ExportedFeature {
                id: j,
                label: labels.labels.get(&j).cloned(),
                stats: FeatureStats {
                    token_frequency: index.token_frequency(ju),
                    image_frequency: index.image_frequency(ju),
                    mean_activation: index.mean_active(ju),
                    max_activation: index.max_act[ju],
                },
                classes,
                top_examples,
                png,
            })
        })
        .inspect(|f| {
            if let Ok(f) = f {
                report(f)
            }
        })
        .collect::<Result<_>>()?;
    let file = ExportFile {
        format: FORMAT.into(),
        version: VERSION,
        model: ws.config.model.source.clone(),
        layer: ws.config.layer,
        images_root: ds.root.clone(),
        sae_d_in: sae.d_in,
        sae_d_sae: sae.d_sae,
        sae_fingerprint: sae_fingerprint(sae),
        features,
    };
    fsutil::write_json_atomic(&out.join("features.json"), &file)?;
    fsutil::write_atomic(&out.join("features.csv"), csv(&file).as_bytes())?;
    Ok(ExportReport {
        out: out.to_path_buf(),
        features: file.features.len(),
        labelled: file.features.iter().filter(|f| f.label.is_some()).count(),
        pngs: file.features.iter().filter(|f| f.png.is_some()).count(),
    })
}

/// The PNG of a feature's tiles, carrying its id and label in text chunks (`Title`,
/// `saescope:feature`, `saescope:label`; UTF-8 iTXt) so a shared file still says what it shows.
fn png_bytes(img: &image::RgbImage, feature: u32, label: Option<&str>) -> Result<Vec<u8>> {
    let err = |e: png::EncodingError| Error::Invalid(format!("cannot encode PNG: {e}"));
    let mut buf = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut buf, img.width(), img.height());
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let title = match label {
            Some(l) => format!("saescope feature {feature}: {l}"),
            None => format!("saescope feature {feature}"),
        };
        enc.add_itxt_chunk("Title".into(), title).map_err(err)?;
        enc.add_itxt_chunk("saescope:feature".into(), feature.to_string())
            .map_err(err)?;
        if let Some(l) = label {
            enc.add_itxt_chunk("saescope:label".into(), l.to_string())
                .map_err(err)?;
        }
        let mut w = enc.write_header().map_err(err)?;
        w.write_image_data(img.as_raw()).map_err(err)?;
    }
    Ok(buf)
}

/// A CSV field: a leading quote when a spreadsheet would run it as a formula (`=`, `+`, `-`,
/// `@`), then quoted when it holds a separator.
pub(crate) fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv(file: &ExportFile) -> String {
    let mut out = String::from(
        "id,label,source,confidence,significant,label_top_images,label_class_images,label_base_rate,label_lift,label_recall,label_p,label_null_p,token_frequency,image_frequency,mean_activation,max_activation,top_class,top_class_precision,top_class_recall\n",
    );
    for f in &file.features {
        let (label, source, conf) = match &f.label {
            Some(l) => (
                csv_field(&l.text),
                serde_json::to_value(l.source)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                format!("{:.4}", l.confidence),
            ),
            None => Default::default(),
        };
        // A class label's evidence (empty for other labels).
        let evidence = f
            .label
            .as_ref()
            .map(|l| {
                let sig = l.is_significant();
                match &l.evidence {
                    Some(e) => format!(
                        "{sig},{},{},{:.6},{:.4},{:.4},{:.3e},{}",
                        e.n,
                        e.k,
                        e.base_rate,
                        e.lift,
                        l.recall.unwrap_or(0.0),
                        e.p_value,
                        e.null_p.map(|p| format!("{p:.3e}")).unwrap_or_default()
                    ),
                    None => format!("{sig},,,,,,,"),
                }
            })
            .unwrap_or_else(|| ",,,,,,,".into());
        let (tc, tp, tr) =
            f.classes
                .first()
                .map_or((String::new(), String::new(), String::new()), |c| {
                    (
                        csv_field(&c.class),
                        format!("{:.4}", c.precision),
                        format!("{:.4}", c.recall),
                    )
                });
        out.push_str(&format!(
            "{},{label},{source},{conf},{evidence},{:.6},{:.6},{:.6},{:.6},{tc},{tp},{tr}\n",
            f.id,
            f.stats.token_frequency,
            f.stats.image_frequency,
            f.stats.mean_activation,
            f.stats.max_activation
        ));
    }
    out
}

pub fn read_export(path: &Path) -> Result<ExportFile> {
    let p = if path.is_dir() {
        path.join("features.json")
    } else {
        path.to_path_buf()
    };
    let f: ExportFile = fsutil::read_json(&p)?;
    if f.format != FORMAT || f.version > VERSION {
        return Err(Error::Invalid(format!(
            "{}: format `{}` version {} is not one this saescope reads ({FORMAT} ≤ {VERSION}); update saescope",
            p.display(),
            f.format,
            f.version
        )));
    }
    // D10: a confidence of 1e308 was taken as it was. Labels' figures are shares.
    for feat in &f.features {
        if let Some(l) = &feat.label {
            for (what, v) in [
                ("confidence", Some(l.confidence)),
                ("precision", l.precision),
                ("recall", l.recall),
            ] {
                if let Some(v) = v
                    && !(0.0..=1.0).contains(&v)
                {
                    return Err(Error::Invalid(format!(
                        "{}: feature {}'s label has {what} {v:e}; it must be between 0 and 1",
                        p.display(),
                        feat.id
                    )));
                }
            }
        }
    }
    Ok(f)
}

#[derive(Clone, Debug, Serialize)]
pub struct ImportReport {
    pub imported: usize,
    /// Kept because the workspace has a manual label there.
    pub kept_manual: usize,
}

/// Applies an export's labels to the workspace; a manual label in the workspace is kept over
/// any imported one. Refuses an export made with a different SAE unless `force`.
pub fn import_labels(home: &Path, sae: &Sae, from: &Path, force: bool) -> Result<ImportReport> {
    let f = read_export(from)?;
    let mine = sae_fingerprint(sae);
    if f.sae_fingerprint != mine && !force {
        return Err(crate::fixable!(
            [
                from,
                format!(
                    ": exported from another SAE ({}; this workspace's is {mine}), so its \
                     feature ids mean other things",
                    f.sae_fingerprint
                )
            ],
            ["pass ", Opt::Force, " to import anyway"]
        ));
    }
    let mut labels = Labels::load(home)?;
    let (mut imported, mut kept_manual) = (0, 0);
    for feat in &f.features {
        if let Some(l) = &feat.label {
            if feat.id as usize >= sae.d_sae {
                return Err(Error::Invalid(format!(
                    "feature {} is beyond this SAE's {} features",
                    feat.id, sae.d_sae
                )));
            }
            // A manual label here is the user's own work: an import never replaces it, not
            // even with the export's manual label (D6: it did, while reporting it kept).
            match labels.labels.get(&feat.id) {
                Some(mine) if mine.source == LabelSource::Manual => {
                    if mine.text != l.text {
                        kept_manual += 1;
                    }
                }
                _ => {
                    labels.set(feat.id, l.clone());
                    imported += 1;
                }
            }
        }
    }
    labels.save(home)?;
    Ok(ImportReport {
        imported,
        kept_manual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_id_lists_parse() {
        assert_eq!(parse_ids("3, 10-12,40").unwrap(), [3, 10, 11, 12, 40]);
        assert!(parse_ids("5-2").is_err());
        assert!(parse_ids("x").is_err());
        // D4: a huge range is refused before it is expanded (this would be 16 GB of ids).
        let e = parse_ids("0-4294967295").unwrap_err().to_string();
        assert!(
            e.contains("--features") && e.contains("4294967296 or more ids"),
            "{e}"
        );
        assert!(
            parse_id_list("0-99", Opt::Tokens, 64)
                .unwrap_err()
                .to_string()
                .contains("--tokens")
        );
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("cat"), "cat");
        assert_eq!(csv_field("a, \"b\""), "\"a, \"\"b\"\"\"");
        // A label a spreadsheet would run as a formula is written as text.
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
    }
}
