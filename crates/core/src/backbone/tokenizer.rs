//! CLIP's byte-level BPE tokenizer, read from a Hugging Face `tokenizer.json` (or `vocab.json` +
//! `merges.txt`): whitespace collapsed, lower-cased, split into words (contractions, letter
//! runs, single digits, runs of other symbols), each word's UTF-8 bytes mapped to GPT-2's
//! printable byte alphabet, merged by rank with `</w>` marking the word end, then wrapped in
//! `<|startoftext|>` … `<|endoftext|>` and padded to the context length.
//! (Unicode NFC normalisation is not applied; it only matters for decomposed accents.)

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

pub struct ClipTokenizer {
    vocab: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    byte_char: [char; 256],
    pub bos: u32,
    pub eos: u32,
}

/// GPT-2's reversible byte → printable character table.
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

impl ClipTokenizer {
    /// From a model folder: `tokenizer.json`, else `vocab.json` + `merges.txt`.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let tj = dir.join("tokenizer.json");
        if tj.exists() {
            return Self::from_tokenizer_json(&tj);
        }
        let (v, m) = (dir.join("vocab.json"), dir.join("merges.txt"));
        if v.exists() && m.exists() {
            let vocab: HashMap<String, u32> = crate::fsutil::read_json(&v)?;
            let text = std::fs::read_to_string(&m).map_err(|e| Error::io(&m, e))?;
            let merges = text
                .lines()
                .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
                .filter_map(|l| {
                    l.split_once(' ')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                })
                .collect();
            return Self::new(vocab, merges);
        }
        Err(Error::Model(format!(
            "{}: no CLIP tokenizer (tokenizer.json, or vocab.json + merges.txt); copy the tokenizer files of the original model into the folder",
            dir.display()
        )))
    }

    pub fn from_tokenizer_json(path: &Path) -> Result<Self> {
        let v: serde_json::Value = crate::fsutil::read_json(path)?;
        let bad = |what: &str| {
            Error::Model(format!(
                "{}: not a BPE tokenizer.json ({what})",
                path.display()
            ))
        };
        let model = v.get("model").ok_or_else(|| bad("no model"))?;
        let vocab: HashMap<String, u32> =
            serde_json::from_value(model.get("vocab").cloned().ok_or_else(|| bad("no vocab"))?)
                .map_err(|_| bad("vocab"))?;
        let merges = model
            .get("merges")
            .and_then(|m| m.as_array())
            .ok_or_else(|| bad("no merges"))?
            .iter()
            .filter_map(|m| match m {
                // Newer files store pairs as arrays, older ones as "a b" strings.
                serde_json::Value::Array(p) if p.len() == 2 => {
                    Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string()))
                }
                serde_json::Value::String(s) => s
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string())),
                _ => None,
            })
            .collect();
        Self::new(vocab, merges)
    }

    fn new(vocab: HashMap<String, u32>, merges: Vec<(String, String)>) -> Result<Self> {
        let special = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| Error::Model(format!("tokenizer vocabulary lacks {t}")))
        };
        Ok(ClipTokenizer {
            bos: special("<|startoftext|>")?,
            eos: special("<|endoftext|>")?,
            ranks: merges
                .into_iter()
                .enumerate()
                .map(|(i, p)| (p, i))
                .collect(),
            vocab,
            byte_char: byte_chars(),
        })
    }

    /// Token ids of `text` without the special tokens.
    pub fn encode_words(&self, text: &str) -> Vec<u32> {
        let clean = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        let mut ids = Vec::new();
        for word in split_words(&clean) {
            let mut parts: Vec<String> = word
                .bytes()
                .map(|b| self.byte_char[b as usize].to_string())
                .collect();
            if let Some(last) = parts.last_mut() {
                last.push_str("</w>");
            }
            // Merge the lowest-ranked adjacent pair until none is in the merge table.
            loop {
                let best = parts
                    .windows(2)
                    .enumerate()
                    .filter_map(|(i, w)| {
                        self.ranks
                            .get(&(w[0].clone(), w[1].clone()))
                            .map(|&r| (r, i))
                    })
                    .min();
                let Some((_, i)) = best else { break };
                let merged = format!("{}{}", parts[i], parts[i + 1]);
                parts.splice(i..i + 2, [merged]);
            }
            ids.extend(parts.iter().filter_map(|p| self.vocab.get(p).copied()));
        }
        ids
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
        self.vocab.get(token).copied()
    }

    /// The text of one token id (`</w>` word ends dropped), for showing tokens to people.
    /// A linear search: callers cache it.
    pub fn token_text(&self, id: u32) -> Option<String> {
        let piece = self.vocab.iter().find(|(_, v)| **v == id)?.0;
        let piece = piece.strip_suffix("</w>").unwrap_or(piece);
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

/// CLIP's pre-tokenizer pattern `'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+`.
fn split_words(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let other = |c: char| !c.is_whitespace() && !c.is_alphabetic() && !c.is_numeric();
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let rest: String = chars[i + 1..chars.len().min(i + 3)].iter().collect();
            if let Some(s) = ["ll", "re", "ve"].iter().find(|s| rest.starts_with(*s)) {
                out.push(format!("'{s}"));
                i += 3;
                continue;
            }
            if let Some(s) = ["s", "t", "m", "d"].iter().find(|s| rest.starts_with(*s)) {
                out.push(format!("'{s}"));
                i += 2;
                continue;
            }
        }
        let start = i;
        if c.is_alphabetic() {
            while i < chars.len() && chars[i].is_alphabetic() {
                i += 1;
            }
        } else if c.is_numeric() {
            i += 1;
        } else if other(c) {
            i += 1;
            // A run of symbols stops at an apostrophe that starts a contraction? The regex is
            // greedy left to right, so the run simply continues over symbols.
            while i < chars.len() && other(chars[i]) {
                i += 1;
            }
        } else {
            i += 1; // whitespace
            continue;
        }
        out.push(chars[start..i].iter().collect());
    }
    out
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

    #[test]
    fn words_split_like_the_clip_pattern() {
        assert_eq!(
            split_words("it's 42 cats!!"),
            ["it", "'s", "4", "2", "cats", "!!"]
        );
        assert_eq!(split_words("we'll go"), ["we", "'ll", "go"]);
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
