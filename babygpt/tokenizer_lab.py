"""A tokenizer lab: what a byte-level BPE learns from a corpus, and what it does to a text.

``pieces`` splits a text into the spans its tokens spell (with their ids), ``first_merges`` lists
the merges in the order BPE learned them, in readable characters, and ``tokenizer_report`` gives
the compression (characters per token) and how much of the vocabulary a text uses. Fewer, longer
tokens make a model's context reach further and its steps cheaper per character; the price is a
larger embedding table and rarer tokens, each seen less often in training.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .data import is_builtin, load_text
from .tokenizer import BPETokenizer, CharTokenizer, train_tokenizer

COMPARED_SIZES = (256, 512, 1024)


def byte_of_symbol() -> dict[str, int]:
    """Byte-level BPE spells every byte as one printable character: bytes that print as themselves
    stay, the rest (control bytes, space, a few others) take the characters from U+0100 on, in order.
    This is that table turned around, to read a learned merge as text again."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[chr(byte)] = byte
        else:
            symbols[chr(256 + extra)] = byte
            extra += 1
    return symbols


BYTE_OF_SYMBOL = byte_of_symbol()


def readable(symbols: str) -> str:
    """A BPE token's symbols as the text they stand for ("Ġthe" -> " the"); bytes of a character
    split across tokens show as their hex codes."""
    raw = bytes(BYTE_OF_SYMBOL[s] for s in symbols)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(f"\\x{b:02x}" for b in raw)


@functools.lru_cache(maxsize=16)
def lab_tokenizer(corpus: str, vocab_size: int) -> BPETokenizer:
    """A byte-level BPE of ``vocab_size`` trained on a built-in corpus, remembered (it is the same
    every time: BPE training is deterministic)."""
    if not is_builtin(corpus):
        raise ValueError(f"{corpus!r} is not a built-in corpus")
    return train_tokenizer("bpe", load_text(corpus), vocab_size)


@functools.lru_cache(maxsize=8)
def lab_characters(corpus: str) -> CharTokenizer:
    """The character vocabulary of a built-in corpus, remembered (every visitor's first open asks)."""
    return train_tokenizer("char", load_text(corpus))


def bpe_for(corpus: str, vocab_size: int) -> BPETokenizer:
    """A byte-level BPE learned on ``corpus``: a built-in one's remembered, a file's trained anew."""
    if is_builtin(corpus):
        return lab_tokenizer(corpus, vocab_size)
    return train_tokenizer("bpe", load_text(corpus), vocab_size)


@dataclass
class Piece:
    text: str
    ids: list[int]  # more than one where a character's bytes fell into several tokens


def pieces(tokenizer, text: str) -> list[Piece]:
    """The spans of ``text`` its tokens spell, in order; joined they give the text back."""
    if isinstance(tokenizer, CharTokenizer):
        return [Piece(ch, [i]) for ch, i in zip(text, tokenizer.encode(text))]
    encoding = tokenizer.tokenizer.encode(text)
    out: list[Piece] = []
    last = None
    for token_id, span in zip(encoding.ids, encoding.offsets):
        if span == last:  # another byte of the same character
            out[-1].ids.append(token_id)
        else:
            out.append(Piece(text[span[0]:span[1]], [token_id]))
        last = span
    return out


def first_merges(tokenizer: BPETokenizer, count: int = 20) -> list[tuple[int, str, str, str]]:
    """(rank, left, right, merged) for the first ``count`` merges BPE learned, as readable text."""
    merges = tokenizer.to_dict()["tokenizer"]["model"]["merges"][:count]
    rows = []
    for rank, merge in enumerate(merges, start=1):
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        rows.append((rank, readable(left), readable(right), readable(left + right)))
    return rows


def tokenizer_report(name: str, tokenizer, text: str) -> dict:
    """How ``tokenizer`` cuts ``text``: tokens, characters per token, the vocabulary it uses."""
    ids = tokenizer.encode(text)
    return {"tokenizer": name, "vocab_size": tokenizer.vocab_size, "tokens": len(ids),
            "characters_per_token": len(text) / len(ids) if ids else 0.0, "distinct_tokens": len(set(ids)),
            "vocabulary_used": len(set(ids)) / tokenizer.vocab_size}


def compared_tokenizers(corpus: str, sizes: tuple[int, ...] = COMPARED_SIZES) -> dict[str, object]:
    """Characters (every character of the corpus) and a BPE of each size, all learned on ``corpus``
    (a built-in name or a text file)."""
    characters = lab_characters(corpus) if is_builtin(corpus) else train_tokenizer("char", load_text(corpus))
    return {"characters": characters, **{f"BPE-{size}": bpe_for(corpus, size) for size in sizes}}
