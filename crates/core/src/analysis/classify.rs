//! Accuracy of a backbone's classifier head on an image folder whose sub-folders are classes.

use crate::backbone::{Backbone, argmax_last};
use crate::error::{Error, Result};
use crate::job::{Job, Progress};
use crate::store::extract::decode_images;
use crate::store::{Dataset, Skipped};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct ClassifyReport {
    pub n: usize,
    pub accuracy: f64,
    pub per_class: BTreeMap<String, f64>,
    pub skipped: Vec<Skipped>,
    pub seconds: f64,
    pub images_per_s: f64,
}

pub fn classify(
    backbone: &dyn Backbone,
    ds: &Dataset,
    batch_size: usize,
    job: &Job,
) -> Result<ClassifyReport> {
    let start = Instant::now();
    let device = backbone.device().clone();
    let info = backbone.info();
    let n_layers = info.n_layers;
    let labelled: Vec<usize> = (0..ds.len())
        .filter(|&i| ds.images[i].class.is_some())
        .collect();
    if labelled.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no images in class sub-folders; classify needs <folder>/<class>/<image>",
            ds.root.display()
        )));
    }
    let mut mapping = None;
    let mut correct = vec![0usize; ds.classes.len()];
    let mut count = vec![0usize; ds.classes.len()];
    let mut skipped = Vec::new();
    let mut done = 0u64;
    for chunk in labelled.chunks(batch_size.max(1)) {
        job.check()?;
        let (images, ok, bad) = decode_images(ds, chunk);
        skipped.extend(bad);
        if !images.is_empty() {
            let (pixels, _) = backbone.preprocessor().batch(&images, &device)?;
            let out =
                backbone.finish_from(&backbone.forward_to(&pixels, n_layers - 1)?, n_layers - 1)?;
            let logits = out.logits.ok_or_else(|| {
                Error::Invalid(format!(
                    "{} has no classifier head; classify needs one",
                    info.name
                ))
            })?;
            let map = match &mapping {
                Some(m) => m,
                None => {
                    mapping.insert(ds.class_mapping(info.class_names.as_deref(), logits.dim(1)?)?)
                }
            };
            for (pred, &i) in argmax_last(&logits)?.into_iter().zip(&ok) {
                let c = ds.images[i].class.unwrap_or(0) as usize;
                count[c] += 1;
                correct[c] += (pred as usize == map[c]) as usize;
            }
        }
        done += chunk.len() as u64;
        job.report(Progress {
            done,
            total: labelled.len() as u64,
            unit: "images",
            message: String::new(),
        });
    }
    let n: usize = count.iter().sum();
    let per_class = ds
        .classes
        .iter()
        .enumerate()
        .filter(|(c, _)| count[*c] > 0)
        .map(|(c, name)| (name.clone(), correct[c] as f64 / count[c] as f64))
        .collect();
    let seconds = start.elapsed().as_secs_f64();
    Ok(ClassifyReport {
        n,
        accuracy: if n > 0 {
            correct.iter().sum::<usize>() as f64 / n as f64
        } else {
            0.0
        },
        per_class,
        skipped,
        seconds,
        images_per_s: n as f64 / seconds.max(1e-9),
    })
}
