"""Start here: the facts of the guided first visit, computed from the shipped models.

The ladder is the path of "Let's build GPT": each rung adds one idea, every rung trained on the
same Shakespeare with the same character vocabulary, so their losses compare. What a loss means
is said with the rungs' own numbers: a val loss of L nats per character is as unsure as a fair
choice among e^L characters, and L / ln 2 bits per character is how many yes/no questions the
model needs, on average, to pin down the next one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import SHIPPED_DIR, read_config, read_json
from .models import PRESETS, config_from_json
from .sampling import generate

# The rungs are the presets that say which rung they add one idea to ("builds_on", in each family's
# file), in the registry's order; each is shown by its shipped checkpoint of the same name. The
# options beside a rung (time weighting, low-rank attention) are left to Compare.
BUILDS_ON = {name: settings["builds_on"] for name, (_, settings) in PRESETS.items() if "builds_on" in settings}
LADDER = tuple(BUILDS_ON)
# Compare shows at most six models at once: the first rung, and the last rungs of the two paths
# and of the ones before them.
COMPARED = tuple(name for name in LADDER if name not in {"gpt-multi-head", "gpt-block"})
SAMPLE_PROMPT = "ROMEO:\n"
SAMPLE_TOKENS = 120
SAMPLE_SEED = 0


@dataclass
class Rung:
    name: str
    parameters: int
    val_loss: float  # nats per character over the whole val split
    bits_per_char: float
    in_words: str  # what the model looks at, from its own config
    vocab_size: int

    @property
    def choices(self) -> float:
        """The number of equally likely characters that would be as uncertain: e^loss."""
        return math.exp(self.val_loss)


def ladder(directory: Path = SHIPPED_DIR) -> list[Rung]:
    """The ladder's rungs that are shipped, with the figures ``scripts.build_checkpoints``
    measured over the whole val split (``index.json``)."""
    index = {entry["name"]: entry for entry in read_json(directory / "index.json")["checkpoints"]}
    rungs = []
    for name in LADDER:
        entry = index.get(name)
        if entry is None or not (directory / name).is_dir():
            continue
        config = config_from_json(read_config(directory / name)["model"])
        rungs.append(Rung(name, entry["parameters"], entry["full_val_loss"], entry["bits_per_char"],
                          config.in_words(), config.vocab_size))
    return rungs


def ladder_table(rungs: list[Rung]) -> str:
    rows = ["| rung | what it looks at to guess the next character | parameters | val loss (nats/char) "
            "| bits/char | as unsure as a fair pick among |",
            "|---|---|---:|---:|---:|---:|"]
    rows += [f"| {r.name} | {r.in_words} | {r.parameters:,} | {r.val_loss:.3f} | {r.bits_per_char:.2f} "
             f"| {r.choices:.1f} characters |" for r in rungs]
    return "\n".join(rows)


def what_each_rung_buys(rungs: list[Rung]) -> list[str]:
    """One line per step up the ladder (a rung against the one it adds to, ``BUILDS_ON``): the loss
    it gained, or that it gained none."""
    by_name, lines = {r.name: r for r in rungs}, []
    steps = [(by_name[BUILDS_ON[r.name]], r) for r in rungs if BUILDS_ON.get(r.name) in by_name]
    for before, after in steps:
        change = before.val_loss - after.val_loss
        if change > 0.005:
            lines.append(f"**{before.name} → {after.name}**: val loss {before.val_loss:.3f} → {after.val_loss:.3f} "
                         f"({change:.3f} nats less per character; {before.choices:.1f} → {after.choices:.1f} "
                         "equally likely characters)")
        else:
            lines.append(f"**{before.name} → {after.name}**: no better ({before.val_loss:.3f} → "
                         f"{after.val_loss:.3f}): on its own, at this size, the idea does not pay yet")
    return lines


def loss_in_words(rungs: list[Rung]) -> str:
    """What the losses mean, with the first rung's and the best rung's own numbers."""
    if len(rungs) < 2:
        return ""
    first, best = rungs[0], min(rungs, key=lambda r: r.val_loss)
    return (
        f"**What the numbers mean.** The loss is the model's surprise at the true next character, in nats "
        f"(natural-log units), averaged over text it never trained on. {first.name}'s {first.val_loss:.2f} is as "
        f"unsure as picking among {first.choices:.1f} equally likely characters (e^{first.val_loss:.2f}); "
        f"{best.name}'s {best.val_loss:.2f} among {best.choices:.1f}. In bits (nats ÷ ln 2) that is "
        f"{first.bits_per_char:.2f} against {best.bits_per_char:.2f} yes/no questions per character. A uniform guess "
        f"over the {first.vocab_size} characters would score ln {first.vocab_size} = {math.log(first.vocab_size):.2f}; "
        "perfect is 0. The samples below show the difference: the same prompt, seed and temperature for every rung."
    )


def ladder_samples(models: dict[str, object], prompt: str = SAMPLE_PROMPT, new_tokens: int = SAMPLE_TOKENS,
                   seed: int = SAMPLE_SEED, temperature: float = 0.8) -> dict[str, str]:
    """Each loaded checkpoint's continuation of ``prompt``: one seed, one temperature, for all."""
    texts = {}
    for name, loaded in models.items():
        ids = loaded.tokenizer.encode(prompt)
        out = generate(loaded.model, ids, new_tokens, temperature=temperature, seed=seed)
        texts[name] = loaded.tokenizer.decode(out)
    return texts
