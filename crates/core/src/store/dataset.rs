//! Image folders as datasets: a recursive scan in a deterministic order, class = the folder
//! directly holding an image, and decoding that skips (and reports) unreadable images instead of failing the run.

use crate::error::{Error, Result};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "webp", "bmp", "gif"];
/// Files larger than this are not images anyone means to analyse here.
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// Decoded images larger than this (in pixels per side) are refused before allocation.
pub const MAX_SIDE: u32 = 16_384;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// Path relative to the dataset root, with `/` separators.
    pub path: String,
    /// Index into `Dataset::classes`, when the image sits in a class sub-folder.
    pub class: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub root: PathBuf,
    /// Sorted names of the folders that directly hold images.
    pub classes: Vec<String>,
    /// Every candidate image, sorted by path.
    pub images: Vec<ImageEntry>,
}

impl Dataset {
    /// Checks a listing read from disk: every class id names a class, and every path is
    /// relative and stays inside the root (a listing must never direct reads elsewhere).
    pub fn check(&self) -> std::result::Result<(), String> {
        for e in &self.images {
            if let Some(c) = e.class
                && c as usize >= self.classes.len()
            {
                return Err(format!(
                    "image {} has class id {c}, but there are {} classes",
                    e.path,
                    self.classes.len()
                ));
            }
            let inside = Path::new(&e.path)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !inside || e.path.is_empty() {
                return Err(format!(
                    "image path `{}` is not inside the image folder",
                    e.path
                ));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// The name of the folder directly holding `rel_path` (None for images at the root).
fn class_of(rel_path: &str) -> Option<&str> {
    let (dir, _) = rel_path.rsplit_once('/')?;
    Some(dir.rsplit_once('/').map_or(dir, |(_, last)| last))
}

impl Dataset {
    /// Maps each dataset class to the model's logit index: by name when the model has class names,
    /// else by sorted folder order (which must then match the number of logits).
    pub fn class_mapping(
        &self,
        class_names: Option<&[String]>,
        n_logits: usize,
    ) -> Result<Vec<usize>> {
        match class_names {
            Some(names) => self
                .classes
                .iter()
                .map(|c| {
                    names.iter().position(|n| n == c).ok_or_else(|| {
                        Error::Invalid(format!("folder class `{c}` is not one of the model's classes ({}); rename the folder", names.join(", ")))
                    })
                })
                .collect(),
            None if self.classes.len() == n_logits => Ok((0..n_logits).collect()),
            None => Err(Error::Invalid(format!(
                "the model has {n_logits} outputs but the folder has {} class sub-folders and the model config names no classes; \
                 add \"class_names\" to the model config",
                self.classes.len()
            ))),
        }
    }

    /// Lists image files under `root` (recursively, symlinks followed, hidden files ignored).
    pub fn scan(root: &Path) -> Result<Dataset> {
        if !root.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: not a folder; pass a folder of images (class sub-folders optional)",
                root.display()
            )));
        }
        let mut files = Vec::new();
        walk(root, &mut files)?;
        let mut rel: Vec<String> = files
            .iter()
            .filter_map(|p| p.strip_prefix(root).ok())
            .map(|p| {
                p.components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        rel.sort();
        // The class is the folder directly holding the image, so `cifar10/` (with `train/cat/…`
        // and `test/cat/…`) and `cifar10/train/` give the same classes.
        let mut classes: Vec<String> = rel
            .iter()
            .filter_map(|p| class_of(p).map(String::from))
            .collect();
        classes.sort();
        classes.dedup();
        let images = rel
            .into_iter()
            .map(|path| {
                let class = class_of(&path)
                    .and_then(|c| classes.binary_search_by(|x| x.as_str().cmp(c)).ok())
                    .map(|i| i as u32);
                ImageEntry { path, class }
            })
            .collect::<Vec<_>>();
        if images.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: no images found (looked for {} files, recursively)",
                root.display(),
                IMAGE_EXTENSIONS.join(", ")
            )));
        }
        Ok(Dataset {
            root: root.to_path_buf(),
            classes,
            images,
        })
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn abs_path(&self, i: usize) -> PathBuf {
        self.root.join(&self.images[i].path)
    }

    pub fn class_name(&self, i: usize) -> Option<&str> {
        self.images[i]
            .class
            .map(|c| self.classes[c as usize].as_str())
    }

    /// Decodes image `i` as RGB, or says why it cannot be used.
    pub fn load(&self, i: usize) -> std::result::Result<RgbImage, String> {
        load_rgb(&self.abs_path(i))
    }
}

/// Every image file under `dir`, following links (folders of links are a common way to build
/// subsets) but refusing a link that points back to one of its own ancestors, which would
/// otherwise list the same images again and again (walkdir detects it).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let hidden =
        |e: &walkdir::DirEntry| e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.');
    let is_image = |p: &Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
    };
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| !hidden(e))
    {
        // A dangling link is listed like any image, so the extraction skips it with its reason
        // instead of stopping on it (one such link aborted a whole extract).
        if let Err(e) = &entry
            && let Some(p) = e.path()
            && e.loop_ancestor().is_none()
            && std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
            && !p.exists()
        {
            if is_image(p) {
                out.push(p.to_path_buf());
            }
            continue;
        }
        let entry = entry.map_err(|e| {
            if let Some(ancestor) = e.loop_ancestor() {
                Error::Invalid(format!(
                    "{}: link loop: it points back to {}, which holds it; remove the link or \
                     point it elsewhere",
                    e.path()
                        .map_or_else(|| dir.display().to_string(), |p| p.display().to_string()),
                    ancestor.display()
                ))
            } else {
                let path = e.path().unwrap_or(dir).to_path_buf();
                match e.into_io_error() {
                    Some(io) => Error::io(&path, io),
                    None => Error::Invalid(format!("{}: cannot be read", path.display())),
                }
            }
        })?;
        let path = entry.path();
        if entry.file_type().is_file() && is_image(path) {
            out.push(path.to_path_buf());
        }
    }
    Ok(())
}

/// Decodes an image file to RGB8 (first frame of a GIF), refusing empty, huge or corrupt files.
pub fn load_rgb(path: &Path) -> std::result::Result<RgbImage, String> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            format!("a link to a file that does not exist ({e})")
        } else if path.to_string_lossy().contains('\u{FFFD}') {
            // Listings hold names as text: a name that is not UTF-8 cannot be found again (D19).
            "its file name is not valid UTF-8 (shown with �); rename the file".to_string()
        } else {
            format!("cannot read: {e}")
        }
    })?;
    if meta.len() == 0 {
        return Err("empty file (0 bytes)".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "file is {} MiB, over the {} MiB limit",
            meta.len() >> 20,
            MAX_FILE_BYTES >> 20
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF])
        && let Some(img) = decode_jpeg_like_pillow(&bytes)?
    {
        return Ok(img);
    }
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .map_err(|e| format!("cannot read: {e}"))
    };
    // The header's size first: the RGB copy below needs w·h·3 bytes whatever the file's format.
    // (A header the size probe cannot read goes on to the decoder, whose limits still apply.)
    if let Ok((w, h)) = reader()?.into_dimensions()
        && (w > MAX_SIDE || h > MAX_SIDE || w as u64 * h as u64 * 3 > MAX_DECODED_BYTES)
    {
        return Err(too_large(w as usize, h as usize));
    }
    let mut reader = reader()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => format!(
            "image too large: over {MAX_SIDE} pixels a side or {} megapixels; downscale it first",
            MAX_DECODED_BYTES / 3_000_000
        ),
        other => format!("corrupt or unsupported image: {other}"),
    })?;
    Ok(img.to_rgb8())
}

/// Decoded images may take at most this much memory (100 megapixels of RGB): a batch decodes
/// several at once, and a 746 KB PNG can claim 16000×16000 pixels (768 MB).
pub const MAX_DECODED_BYTES: u64 = 300_000_000;

fn too_large(w: usize, h: usize) -> String {
    format!(
        "image of {w}×{h} pixels is too large: at most {MAX_SIDE} pixels a side and {} \
         megapixels; downscale it first",
        MAX_DECODED_BYTES / 3_000_000
    )
}

/// Decodes a JPEG with libjpeg-turbo exactly as Pillow does (`Image.open(f).convert("RGB")`):
/// Pillow and so every Python pipeline (transformers, timm, open_clip, saev) decode with
/// libjpeg-turbo at its defaults — accurate integer IDCT (JDCT_ISLOW) and fancy upsampling — and
/// other decoders differ by a few grey levels. Grey JPEGs are replicated to RGB as Pillow's
/// `convert("RGB")` does. Returns `None` for CMYK/YCCK files, which go to the `image` crate
/// (Pillow inverts Adobe CMYK itself; those are not bit-exact).
fn decode_jpeg_like_pillow(bytes: &[u8]) -> std::result::Result<Option<RgbImage>, String> {
    let corrupt = |e: turbojpeg::Error| format!("corrupt or unsupported image: {e}");
    let mut dec = turbojpeg::Decompressor::new().map_err(corrupt)?;
    let header = dec.read_header(bytes).map_err(corrupt)?;
    if matches!(
        header.colorspace,
        turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK
    ) {
        return Ok(None);
    }
    let (w, h) = (header.width, header.height);
    if w > MAX_SIDE as usize || h > MAX_SIDE as usize || (w * h * 3) as u64 > MAX_DECODED_BYTES {
        return Err(too_large(w, h));
    }
    let mut pixels = vec![0u8; w * h * 3];
    let out = turbojpeg::Image {
        pixels: pixels.as_mut_slice(),
        width: w,
        pitch: w * 3,
        height: h,
        format: turbojpeg::PixelFormat::RGB,
    };
    dec.decompress(bytes, out).map_err(corrupt)?;
    RgbImage::from_raw(w as u32, h as u32, pixels)
        .map(Some)
        .ok_or_else(|| "corrupt or unsupported image: decoded size mismatch".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_is_sorted_recursive_and_labels_by_top_folder() {
        let d = tempfile::tempdir().unwrap();
        for p in [
            "b/x/2.png",
            "b/1.jpg",
            "a/3.PNG",
            "top.bmp",
            "a/notes.txt",
            ".hidden/4.png",
        ] {
            let f = d.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, b"x").unwrap();
        }
        let ds = Dataset::scan(d.path()).unwrap();
        let paths: Vec<_> = ds.images.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a/3.PNG", "b/1.jpg", "b/x/2.png", "top.bmp"]);
        assert_eq!(ds.classes, ["a", "b", "x"]);
        assert_eq!(ds.class_name(1), Some("b"));
        assert_eq!(ds.class_name(2), Some("x"));
        assert_eq!(ds.class_name(3), None);
    }

    #[test]
    fn unreadable_images_give_reasons() {
        let d = tempfile::tempdir().unwrap();
        let empty = d.path().join("e.jpg");
        std::fs::write(&empty, b"").unwrap();
        assert!(load_rgb(&empty).unwrap_err().contains("empty"));
        let junk = d.path().join("j.jpg");
        std::fs::write(&junk, b"\xFF\xD8\xFF\xE0 not really a jpeg").unwrap();
        assert!(load_rgb(&junk).unwrap_err().contains("corrupt"));
        let ok = d.path().join("ok.png");
        RgbImage::from_pixel(3, 2, image::Rgb([1, 2, 3]))
            .save(&ok)
            .unwrap();
        assert_eq!(load_rgb(&ok).unwrap().dimensions(), (3, 2));
    }

    /// Grey JPEGs decode to RGB with the three channels equal (Pillow's `convert("RGB")`), and
    /// a JPEG header claiming huge dimensions is refused before decoding.
    #[test]
    fn grey_jpegs_become_rgb_and_huge_jpegs_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let grey: Vec<u8> = (0..16 * 8).map(|i| (i * 2) as u8).collect();
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_subsamp(turbojpeg::Subsamp::Gray).unwrap();
        let jpeg = c
            .compress_to_vec(turbojpeg::Image {
                pixels: grey.as_slice(),
                width: 16,
                pitch: 16,
                height: 8,
                format: turbojpeg::PixelFormat::GRAY,
            })
            .unwrap();
        let p = d.path().join("g.jpg");
        std::fs::write(&p, &jpeg).unwrap();
        let img = load_rgb(&p).unwrap();
        assert_eq!(img.dimensions(), (16, 8));
        assert!(
            img.pixels()
                .all(|px| px.0[0] == px.0[1] && px.0[1] == px.0[2])
        );
        // Patch the SOF0 frame header to claim 60000×60000 pixels.
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let mut huge = jpeg.clone();
        huge[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        let h = d.path().join("huge.jpg");
        std::fs::write(&h, &huge).unwrap();
        let err = load_rgb(&h).unwrap_err();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn absurdly_large_dimensions_are_refused_without_allocating() {
        let d = tempfile::tempdir().unwrap();
        // A valid PNG header claiming 100000×100000 pixels.
        let p = d.path().join("huge.png");
        let mut png = Vec::new();
        png.extend_from_slice(b"\x89PNG\r\n\x1a\n");
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        png.extend_from_slice(&(ihdr.len() as u32).to_be_bytes());
        let mut chunk = b"IHDR".to_vec();
        chunk.extend_from_slice(&ihdr);
        png.extend_from_slice(&chunk);
        png.extend_from_slice(&crc32(&chunk).to_be_bytes());
        std::fs::write(&p, png).unwrap();
        let err = load_rgb(&p).unwrap_err();
        assert!(err.contains("too large"), "{err}");
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn link_loops_are_refused_and_huge_images_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let cls = dir.path().join("cat");
        std::fs::create_dir_all(&cls).unwrap();
        image::RgbImage::new(4, 4).save(cls.join("a.png")).unwrap();
        std::os::unix::fs::symlink(dir.path(), cls.join("loop")).unwrap();
        let err = Dataset::scan(dir.path()).err().unwrap().to_string();
        assert!(err.contains("link loop"), "{err}");
        std::fs::remove_file(cls.join("loop")).unwrap();
        assert_eq!(Dataset::scan(dir.path()).unwrap().len(), 1);
        // A tiny file that claims 16000×16000 pixels is skipped with a reason, not decoded.
        let big = cls.join("big.png");
        image::GrayImage::new(16_000, 16_000).save(&big).unwrap();
        assert!(std::fs::metadata(&big).unwrap().len() < 2 << 20);
        let err = load_rgb(&big).err().unwrap();
        assert!(err.contains("too large"), "{err}");
    }
}
