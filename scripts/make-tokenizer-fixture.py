#!/usr/bin/env python3
"""Writes tests/fixtures/clip_tokenizer_corpus.json: the token ids that Hugging Face transformers'
CLIPTokenizerFast gives shared/data/clip/tokenizer.json for ~600 strings, the reference for the
Rust CLIP tokenizer (crates/core/src/backbone/tokenizer.rs). Ids are BOS + tokens + EOS, neither
truncated nor padded.

The corpus: every string literal of the built-in prompt corpus (crates/core/src/steer/corpus.rs),
every third prompt that builtin_prompts() makes from them, and ~120 hand-made hard cases (case,
accents and decomposed accents, CJK, emoji, contractions, numbers, punctuation, Unicode
whitespace, HTML entities, special-token text, very long words and prompts, empty strings).

Usage (from the repository root; no torch needed):
    python3 -m venv /work/venv-tok && /work/venv-tok/bin/pip install transformers tokenizers
    /work/venv-tok/bin/python scripts/make-tokenizer-fixture.py [SHARED_DIR]
SHARED_DIR defaults to $SAESCOPE_SHARED, else ../shared next to the repository root."""
import json, os, re, sys

import tokenizers, transformers
from transformers import CLIPTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = (sys.argv[1] if len(sys.argv) > 1 else None) or os.environ.get("SAESCOPE_SHARED") \
    or os.path.join(ROOT, "..", "shared")
OUT = os.path.join(ROOT, "tests", "fixtures", "clip_tokenizer_corpus.json")


def corpus_rs():
    """The const string arrays of corpus.rs, and builtin_prompts() re-done in Python."""
    src = open(os.path.join(ROOT, "crates/core/src/steer/corpus.rs"), encoding="utf-8").read()
    arrays = {name: re.findall(r'"((?:[^"\\]|\\.)*)"', body)
              for name, body in re.findall(r"const (\w+): \[&str; \d+\] = \[(.*?)\];", src, re.S)}
    sub, sett, sty, mood = (arrays[k] for k in ("SUBJECTS", "SETTINGS", "STYLES", "MOODS"))
    prompts = set()
    for i in range(1200):
        p = f"{sty[(i // 3 + i * 11) % len(sty)]} of {sub[i % len(sub)]} {sett[(i // 2 + i * 7) % len(sett)]}"
        m = mood[(i // 5 + i * 3) % len(mood)]
        prompts.add(p + (", " + m if m else ""))
    literals = [s for k in ("SUBJECTS", "SETTINGS", "STYLES", "MOODS") for s in arrays[k] if s]
    return literals, sorted(prompts)[::3]


HARD = [
    "a photo of a cat",
    # empty and whitespace
    "", " ", "   ", "\t", "\n", " \t\n\r ", "  a photo of a cat  ", "\ta photo\tof a cat\n",
    "a  photo   of    a cat", "a\nphoto\r\nof\ta\u000bcat\u000c", "a\u00a0photo\u3000of\u2003a\u2009cat",
    "a\u0085photo\u2028of\u2029a\u202fcat\u205f", "a\u200bphoto\ufeffof a cat", "a\u1680photo\u180eof",
    "line one\n\nline two", "x\x1cy\x1dz\x1ew\x1fv",
    # case
    "A PHOTO OF A CAT", "A Photo Of A Cat", "aPhOtO oF a CaT", "DSLR HDR 4K UHD", "McDonald's iPhone",
    "İstanbul", "STRASSE straße", "ΟΔΟΣ ΟΔΟΣ οδος", "ǅemal ǈ ǋ",
    # accents, NFC and decomposed
    "café", "naïve", "Zürich", "crème brûlée", "São Paulo", "Ångström", "Øresund Łódź", "résumé",
    "cafe\u0301", "nai\u0308ve", "Zu\u0308rich", "A\u030angstro\u0308m", "\u1100\u1161\u11a8",
    # scripts
    "猫の写真", "一只猫的照片", "고양이 사진", "Кошка на фото", "γάτα", "قطة في الصورة", "חתול",
    "बिल्ली की तस्वीर", "แมวในภาพ", "ラーメン", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", "ℌ𝔢𝔩𝔩𝔬 𝐛𝐨𝐥𝐝",
    "Ⅻ Ⅳ ⅷ", "ⅫⅣ", "xⅻy", "ⓐⓑⓒ Ⓐ", "xⓐy", "كَتَبَ", "น้ำ", "ﬁsh ﬂower", "x² y³ ½ ¾", "٣ ٤ ५", "ª º", "a·b", "µm Ω",
    # emoji and symbols
    "🐱", "a cat 🐱🐶", "👍🏽", "👨‍👩‍👧‍👦 family", "🏳️‍🌈", "❤️ love", "🇫🇷🇯🇵", "☃ ★ ☆ → ← ✓",
    "© ® ™ € £ ¥ $ ¢", "°C 90° ±5", "§¶†‡•…", "\u2018quoted\u2019 \u201cdouble\u201d «guillemets»",
    "the cat\u2019s toy", "x\U0001f600y",
    # contractions
    "it's", "IT'S", "It'S", "don't", "DON'T", "they're", "THEY'RE", "we've", "WE'VE", "i'm", "I'M",
    "you'll", "YOU'LL", "she'd", "SHE'D", "'s 't 're 've 'm 'll 'd", "'sun 'tom 'real 'very 'man 'llama 'dog",
    "the dogs' bones", "rock 'n' roll", "''s '''", "!'s ?'t .'re", "o'clock", "'", "''", "y'all'd've",
    # numbers
    "1234567", "3.14", "1,000", "-42", "+1e-10", "0x1F", "2024-01-31", "12:30pm", "v1.2.3", "100%",
    "#1 №2", "9000000000000000000000",
    # punctuation runs
    "!!!", "...", "--", "?!?!", "a -- b", "wait... what!?", "(((nested)))", "[a] {b} <c>", "a/b\\c|d",
    "foo_bar-baz.qux", "e-mail@example.com", "https://example.com/a?b=c&d=e#f", "***bold***",
    "masterpiece, best quality, (detailed:1.2), [ugly]", "~`^", '"quoted"',
    # HTML entities and markup
    "&amp;", "cats &amp; dogs", "&lt;b&gt;bold&lt;/b&gt;", "&quot;hi&quot; &#39;x&#39; &#x27;y&#x27;",
    "&amp;amp;", "&nbsp;", "<b>bold</b> <br/>", "Ã©tÃ© mojibake",
    # special-token text
    "<|startoftext|>", "<|endoftext|>", "a cat<|endoftext|>a dog", "<|ENDOFTEXT|>", "< |endoftext| >",
    "</w>", "cat</w>",
    # long
    "a" * 300, "pneumonoultramicroscopicsilicovolcanoconiosis" * 7, "x" * 50 + " " + "ab" * 150,
    "supercalifragilisticexpialidocious", "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
    " ".join(["cat"] * 100),
    "a highly detailed digital painting of an ancient castle on a cliff above a stormy sea at night, "
    "lit by lightning, with ravens circling the towers, in the style of a romantic landscape painting, "
    "dramatic lighting, volumetric fog, intricate stonework, trending on artstation, 8k, ultra sharp "
    "focus, cinematic composition, golden ratio, by a master painter of the nineteenth century",
    ", ".join(str(i) for i in range(60)),
    "🐱" * 40,
]


def main():
    path = os.path.join(SHARED, "data", "clip", "tokenizer.json")
    tok = CLIPTokenizerFast(tokenizer_file=path)
    literals, prompts = corpus_rs()
    texts, seen = [], set()
    for t in literals + prompts + HARD:
        if t not in seen:
            seen.add(t)
            texts.append(t)
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    cases = [{"text": t, "ids": tok(t, truncation=False, padding=False)["input_ids"]} for t in texts]
    doc = {"source": f"transformers {transformers.__version__} (tokenizers {tokenizers.__version__}) "
                     "CLIPTokenizerFast on shared/data/clip/tokenizer.json",
           "cases": cases}
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("{\n" + f'"source": {json.dumps(doc["source"])},\n"cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False, separators=(", ", ": ")) for c in cases))
        f.write("\n]\n}\n")
    print(f"{OUT}: {len(cases)} cases ({len(literals)} literals, {len(prompts)} prompts, "
          f"{len(cases) - len(literals) - len(prompts)} hard), {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
