"""Tokenizers: text <-> token ids. Both kinds save to and load from one JSON file.

- ``CharTokenizer``: one token per distinct character of the training text (nanoGPT's
  ``shakespeare_char``). A character that was not in that text cannot be encoded: ``encode``
  raises ``ValueError`` naming every such character (no silent replacement, so a prompt never
  means something other than what was typed).
- ``BPETokenizer``: byte-level BPE trained on the corpus with Hugging Face ``tokenizers``. It works
  on UTF-8 bytes, so it encodes any text and ``decode(encode(s)) == s`` always.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

TOKENIZER_FILE = "tokenizer.json"


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: list[str]):
        if not chars or len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("a character vocabulary must be a non-empty list of distinct single characters")
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def unknown_characters(self, text: str) -> list[str]:
        return sorted(set(text) - self.index.keys())

    def encode(self, text: str) -> list[int]:
        unknown = self.unknown_characters(text)
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:20]) + (" …" if len(unknown) > 20 else "")
            raise ValueError(
                f"{len(unknown)} character(s) not in this model's vocabulary of {self.vocab_size}: {shown}"
            )
        return [self.index[c] for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": self.chars}


class BPETokenizer:
    kind = "bpe"

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def train(cls, text: str, vocab_size: int = 512) -> BPETokenizer:
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        if not isinstance(vocab_size, int) or vocab_size < len(alphabet):
            raise ValueError(f"a byte-level BPE vocabulary needs at least {len(alphabet)} tokens, got {vocab_size!r}")
        tokenizer = Tokenizer(models.BPE())
        # GPT-2's scheme: split into words first (merges never cross a word boundary), then map
        # every byte to a printable character so any UTF-8 text has a spelling.
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, show_progress=False)
        tokenizer.train_from_iterator(_chunks(text), trainer=trainer)
        return cls(tokenizer)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tokenizer": json.loads(self.tokenizer.to_str())}


def _chunks(text: str, size: int = 1 << 16):
    for start in range(0, len(text), size):
        yield text[start : start + size]


def train_tokenizer(kind: str, text: str, vocab_size: int = 512):
    if kind == "char":
        return CharTokenizer.train(text)
    if kind == "bpe":
        return BPETokenizer.train(text, vocab_size)
    raise ValueError(f"unknown tokenizer kind {kind!r}; choose char or bpe")


@functools.cache
def builtin_character_count(corpus: str) -> int:
    """The character vocabulary of a built-in corpus (what a char model trained on it has), read once."""
    from .data import load_text  # data needs nothing from here; imported late to keep it that way

    return train_tokenizer("char", load_text(corpus)).vocab_size


def tokenizer_from_dict(values: dict):
    if not isinstance(values, dict):
        raise ValueError("tokenizer file must hold a JSON object")
    kind = values.get("kind")
    if kind == "char":
        chars = values.get("chars")
        if not isinstance(chars, list) or not all(isinstance(c, str) for c in chars):
            raise ValueError("char tokenizer file needs 'chars': a list of characters")
        return CharTokenizer(chars)
    if kind == "bpe":
        try:
            return BPETokenizer(Tokenizer.from_str(json.dumps(values["tokenizer"])))
        except Exception as error:  # tokenizers raises its own exception types
            raise ValueError(f"BPE tokenizer file is malformed: {error}") from None
    raise ValueError(f"tokenizer file has unknown kind {kind!r}; expected char or bpe")


def save_tokenizer(tokenizer, path: str | os.PathLike) -> None:
    Path(path).write_text(json.dumps(tokenizer.to_dict(), ensure_ascii=False), encoding="utf-8")


def load_tokenizer(path: str | os.PathLike):
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read tokenizer {path}: {error}") from None
    return tokenizer_from_dict(values)
