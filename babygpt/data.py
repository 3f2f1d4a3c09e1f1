"""Corpora: the built-in texts, the synthetic addition task, and any UTF-8 file.

``load_text(source)`` takes a built-in name (``shakespeare``, ``kjv``, ``addition`` or
``addition:N`` for N-digit operands) or a path, and returns checked text. ``Dataset`` encodes it,
splits it like nanoGPT (first 90 % train, last 10 % val) and draws batches of windows.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
BUILTIN_FILES = {
    "shakespeare": "shakespeare.txt",  # Shakespeare's plays, laid out like Tiny Shakespeare
    "kjv": "kjv.txt",  # books of the King James Bible, one verse a line
}
BUILTIN = (*BUILTIN_FILES, "addition")
TRAIN_FRACTION = 0.9


def is_builtin(name: str | os.PathLike) -> bool:
    return str(name) in BUILTIN_FILES or str(name) == "addition" or str(name).startswith("addition:")


def load_text(source: str | os.PathLike) -> str:
    """The text of a built-in corpus or of a UTF-8 file; ``ValueError`` says what is wrong."""
    name = str(source)
    if name in BUILTIN_FILES:
        return read_text_file(DATA_DIR / BUILTIN_FILES[name])
    if is_builtin(name):
        digits = name.partition(":")[2] or "2"
        if not digits.isdigit() or not 1 <= int(digits) <= 9:
            raise ValueError(f"addition corpus takes 1 to 9 digits, as addition:3; got {name!r}")
        return addition_text(int(digits))
    path = Path(name)
    if not path.exists():
        raise ValueError(f"no corpus named {name!r}: not a built-in ({', '.join(BUILTIN)}) and no such file")
    return read_text_file(path)


def read_text_file(path: Path) -> str:
    if path.is_dir():
        raise ValueError(f"corpus {path} is a directory; give a UTF-8 text file")
    data = path.read_bytes()
    if not data.strip():
        raise ValueError(f"corpus {path} is empty")
    if b"\x00" in data:
        raise ValueError(f"corpus {path} is a binary file (it contains NUL bytes), not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"corpus {path} is not UTF-8 text (invalid byte at offset {error.start})") from None


# --- The addition task (minGPT's adder) ----------------------------------------------------------


def addition_problems(digits: int = 2, seed: int = 0, limit: int = 20000) -> list[tuple[int, int]]:
    """Distinct (a, b) pairs with ``digits``-digit operands (leading zeros allowed), in a seeded order.

    Every pair appears at most once, so the train and val splits never share a problem.
    """
    size = 10**digits
    rng = random.Random(seed)
    if size * size <= limit:
        pairs = [(a, b) for a in range(size) for b in range(size)]
        rng.shuffle(pairs)
        return pairs
    chosen = rng.sample(range(size * size), limit)
    return [divmod(i, size) for i in chosen]


def addition_text(digits: int = 2, seed: int = 0) -> str:
    return "".join(f"{a}+{b}={a + b}\n" for a, b in addition_problems(digits, seed))


def val_lines(text: str, start: int | None = None) -> list[str]:
    """The whole lines of the val split, which starts at character ``start`` (default: 90 %).

    The line the split cuts belongs to neither side and is dropped.
    """
    start = int(TRAIN_FRACTION * len(text)) if start is None else start
    return text[start:].splitlines()[1:]


# --- Encoding, splitting, batching ---------------------------------------------------------------


@dataclass
class Dataset:
    """Token ids of a corpus, split 90/10 into train and val."""

    train: torch.Tensor
    val: torch.Tensor

    @classmethod
    def from_text(cls, text: str, tokenizer, block_size: int) -> Dataset:
        ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
        split = int(TRAIN_FRACTION * len(ids))
        dataset = cls(ids[:split], ids[split:])
        for name, part in (("train", dataset.train), ("val", dataset.val)):
            if len(part) < block_size + 1:
                raise ValueError(
                    f"the corpus is too short: its {name} split has {len(part)} tokens but block_size "
                    f"{block_size} needs at least {block_size + 1} (the whole text is {len(ids)} tokens); "
                    "use a longer text or a smaller block_size"
                )
        return dataset

    def val_start(self, tokenizer) -> int:
        """Where the val split starts in the text, in characters (BPE splits between tokens)."""
        return len(tokenizer.decode(self.train.tolist()))

    def batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator):
        """``batch_size`` random windows: inputs ``x`` and the same windows shifted by one, ``y``."""
        data = self.train if split == "train" else self.val
        starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
        offsets = torch.arange(block_size)
        x = data[starts[:, None] + offsets]
        y = data[starts[:, None] + offsets + 1]
        return x, y

    def windows(self, split: str, block_size: int):
        """Every non-overlapping window of a split, in order: for an exact, repeatable evaluation."""
        data = self.train if split == "train" else self.val
        n = (len(data) - 1) // block_size
        x = data[: n * block_size].view(n, block_size)
        y = data[1 : n * block_size + 1].view(n, block_size)
        return x, y
