//! CLIP's byte-level BPE tokenizer on Hugging Face's `tokenizers` crate, the engine of
//! transformers' `CLIPTokenizerFast` (transformers 5 has no other CLIP tokenizer): from a
//! `tokenizer.json`, or from `vocab.json` + `merges.txt` with CLIP's pipeline (NFC, whitespace
//! collapsed, lower-cased, CLIP's word pattern, GPT-2's byte alphabet, `</w>` word ends). Text is
//! wrapped in `<|startoftext|>` … `<|endoftext|>` and padded to the context length. Checked
//! against transformers 5.24 on a corpus of 655 texts (`tests/fixtures/clip_tokenizer_corpus.json`,
//! made by `scripts/make-tokenizer-fixture.py`).

use crate::error::{Error, Result};
use std::path::Path;
use tokenizers::Tokenizer;

pub struct ClipTokenizer {
    inner: Tokenizer,
    byte_char: [char; 256],
    pub bos: u32,
    pub eos: u32,
}

/// GPT-2's reversible byte → printable character table (for showing BPE pieces as text).
fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable =
            (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        table[b as usize] = if printable {
            b as char
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('?')
        };
    }
    table
}

/// CLIP's tokenizer pipeline around a vocabulary and merges, as `tokenizer.json` holds it
/// (the layout transformers writes for `openai/clip-vit-*`).
fn clip_tokenizer_json(vocab: &serde_json::Value, merges: &[String]) -> serde_json::Value {
    let special = |id: u64, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    let id = |t: &str| vocab.get(t).and_then(|v| v.as_u64()).unwrap_or(0);
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(id("<|startoftext|>"), "<|startoftext|>"),
                         special(id("<|endoftext|>"), "<|endoftext|>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex":
                "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"},
             "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
             "use_regex": false}]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<|endoftext|>",
                  "continuing_subword_prefix": "", "end_of_word_suffix": "</w>",
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    })
}

impl ClipTokenizer {
    /// From a model folder: `tokenizer.json`, else `vocab.json` + `merges.txt`.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let tj = dir.join("tokenizer.json");
        if tj.exists() {
            return Self::from_tokenizer_json(&tj);
        }
        let (v, m) = (dir.join("vocab.json"), dir.join("merges.txt"));
        if v.exists() && m.exists() {
            let vocab: serde_json::Value = crate::fsutil::read_json(&v)?;
            if !vocab.is_object() {
                return Err(Error::Model(format!(
                    "{}: not a vocabulary (a JSON object of token → id)",
                    v.display()
                )));
            }
            let text = std::fs::read_to_string(&m).map_err(|e| Error::io(&m, e))?;
            let merges: Vec<String> = text
                .lines()
                .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
                .map(str::to_string)
                .collect();
            let json = clip_tokenizer_json(&vocab, &merges).to_string();
            let inner = json.parse::<Tokenizer>().map_err(|e| {
                Error::Model(format!(
                    "{} + merges.txt: not a CLIP BPE vocabulary ({e})",
                    v.display()
                ))
            })?;
            return Self::new(inner);
        }
        Err(Error::Model(format!(
            "{}: no CLIP tokenizer (tokenizer.json, or vocab.json + merges.txt); copy the tokenizer files of the original model into the folder",
            dir.display()
        )))
    }

    pub fn from_tokenizer_json(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let inner = Tokenizer::from_bytes(&bytes)
            .map_err(|e| Error::Model(format!("{}: not a tokenizer.json ({e})", path.display())))?;
        Self::new(inner)
    }

    fn new(mut inner: Tokenizer) -> Result<Self> {
        // Our callers pad and truncate to the text encoder's context themselves.
        inner
            .with_truncation(None)
            .map_err(|e| Error::Model(format!("tokenizer: {e}")))?;
        inner.with_padding(None);
        let special = |t: &str| {
            inner
                .token_to_id(t)
                .ok_or_else(|| Error::Model(format!("tokenizer vocabulary lacks {t}")))
        };
        Ok(ClipTokenizer {
            bos: special("<|startoftext|>")?,
            eos: special("<|endoftext|>")?,
            inner,
            byte_char: byte_chars(),
        })
    }

    /// Token ids of `text` without the start and end tokens (the special tokens typed as text
    /// are matched, as transformers does).
    pub fn encode_words(&self, text: &str) -> Vec<u32> {
        match self.inner.encode(text, false) {
            Ok(e) => e.get_ids().to_vec(),
            // The CLIP pipeline has no step that can fail on text; keep the caller going.
            Err(_) => Vec::new(),
        }
    }

    /// `<|startoftext|> … <|endoftext|>`, truncated and padded (with EOS, as CLIP does) to `len`.
    pub fn encode(&self, text: &str, len: usize) -> Vec<u32> {
        self.encode_padded(text, len, self.eos)
    }

    /// As `encode`, padding with `pad` (SD 2.x's tokenizer pads with `!`).
    pub fn encode_padded(&self, text: &str, len: usize, pad: u32) -> Vec<u32> {
        let mut ids = vec![self.bos];
        ids.extend(self.encode_words(text));
        ids.truncate(len.saturating_sub(1));
        ids.push(self.eos);
        ids.resize(len, pad);
        ids
    }

    /// The id of one vocabulary entry (a special token or a BPE piece).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The text of one token id (`</w>` word ends dropped), for showing tokens to people.
    pub fn token_text(&self, id: u32) -> Option<String> {
        let piece = self.inner.id_to_token(id)?;
        if piece.starts_with("<|") {
            return Some(piece);
        }
        let piece = piece.strip_suffix("</w>").unwrap_or(&piece);
        let bytes: Vec<u8> = piece
            .chars()
            .map(|c| {
                self.byte_char
                    .iter()
                    .position(|&b| b == c)
                    .map_or(b'?', |b| b as u8)
            })
            .collect();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> ClipTokenizer {
        ClipTokenizer::from_tokenizer_json(&crate::shared::shared_path("data/clip/tokenizer.json"))
            .unwrap()
    }

    #[test]
    fn matches_the_reference_ids() {
        let t = shared();
        assert_eq!(
            t.encode("a photo of a cat", 9),
            [49406, 320, 1125, 539, 320, 2368, 49407, 49407, 49407]
        );
        // Whitespace and case do not matter.
        assert_eq!(
            t.encode_words("  A   Photo of a CAT "),
            t.encode_words("a photo of a cat")
        );
    }

    #[test]
    fn token_ids_read_back_as_text() {
        let t = shared();
        let words: Vec<String> = t
            .encode_words("a photo of a café!")
            .into_iter()
            .map(|id| t.token_text(id).unwrap())
            .collect();
        assert_eq!(words.concat(), "aphotoofacafé!");
        assert_eq!(t.token_text(49407).as_deref(), Some("<|endoftext|>"));
    }

    /// transformers 5.24's CLIPTokenizerFast on 655 texts: the built-in prompt corpus and hard
    /// cases (accents composed and not, CJK, emoji, contractions, numbers, whitespace of every
    /// kind, special tokens typed as text, texts past 77 tokens).
    #[test]
    fn matches_transformers_on_a_corpus() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/clip_tokenizer_corpus.json");
        let fixture: serde_json::Value = crate::fsutil::read_json(&path).unwrap();
        let cases = fixture["cases"].as_array().unwrap();
        assert!(cases.len() > 600);
        // Both ways in: the tokenizer.json, and vocab.json + merges.txt with CLIP's pipeline.
        let dir = tempfile::tempdir().unwrap();
        let tj: serde_json::Value =
            crate::fsutil::read_json(&crate::shared::shared_path("data/clip/tokenizer.json"))
                .unwrap();
        let merges: Vec<String> = tj["model"]["merges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| match m {
                serde_json::Value::Array(p) => {
                    format!("{} {}", p[0].as_str().unwrap(), p[1].as_str().unwrap())
                }
                other => other.as_str().unwrap().to_string(),
            })
            .collect();
        crate::fsutil::write_atomic(
            &dir.path().join("vocab.json"),
            tj["model"]["vocab"].to_string().as_bytes(),
        )
        .unwrap();
        crate::fsutil::write_atomic(
            &dir.path().join("merges.txt"),
            format!("#version: 0.2\n{}\n", merges.join("\n")).as_bytes(),
        )
        .unwrap();
        for t in [shared(), ClipTokenizer::from_folder(dir.path()).unwrap()] {
            let mut wrong = Vec::new();
            for case in cases {
                let text = case["text"].as_str().unwrap();
                let want: Vec<u32> = case["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect();
                let mut got = vec![t.bos];
                got.extend(t.encode_words(text));
                got.push(t.eos);
                if got != want {
                    wrong.push(format!("{text:?}: {got:?} != {want:?}"));
                }
            }
            assert!(
                wrong.is_empty(),
                "{} of {} differ:\n{}",
                wrong.len(),
                cases.len(),
                wrong.join("\n")
            );
        }
    }

    #[test]
    fn long_text_is_truncated_with_the_end_token_kept() {
        let t = shared();
        let ids = t.encode(&"cat ".repeat(100), 77);
        assert_eq!(ids.len(), 77);
        assert_eq!(ids[0], t.bos);
        assert_eq!(ids[76], t.eos);
    }
}
