"""Runs overlaid: curves read back from checkpoints, on one scale only where the scale is the same."""

import math

import pytest

from babygpt.checkpoint import load_checkpoint
from babygpt.data import Dataset, load_text
from babygpt.evaluation import split_loss
from babygpt.experiments import (
    comparability_note,
    comparison_rows,
    overlay_figure,
    read_run,
    smoothed,
)
from babygpt.runs import new_run
from babygpt.stats import flops_per_token

MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 16, "dropout": 0.0}
TRAIN = {"batch_size": 4, "max_iters": 6, "eval_interval": 3, "eval_iters": 2, "sample_tokens": 0, "warmup_iters": 1}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny trained checkpoints: characters and BPE on Shakespeare, characters on the KJV."""
    made = {}
    for name, corpus, tokenizer in (("char", "shakespeare", "char"), ("bpe", "shakespeare", "bpe"),
                                    ("kjv", "kjv", "char")):
        out = tmp_path_factory.mktemp(name)
        for _ in new_run(corpus, preset="gpt", model=MODEL, train=TRAIN, tokenizer=tokenizer, bpe_vocab_size=300,
                         out_dir=out).run():
            pass
        made[name] = out
    return made


def test_smoothing_is_a_debiased_moving_average():
    assert smoothed([3.0, 1.0, 2.0], 0.0) == [3.0, 1.0, 2.0]
    assert smoothed([2.0] * 5, 0.9) == pytest.approx([2.0] * 5)  # debiased: no pull towards zero
    assert smoothed([0.0, 10.0], 0.5) == pytest.approx([0.0, 5.0 / 0.75])
    with pytest.raises(ValueError, match="smoothing"):
        smoothed([1.0], 1.0)


def test_a_run_is_read_back_from_its_checkpoint(runs):
    run = read_run("char", runs["char"])
    loaded = load_checkpoint(runs["char"])
    assert [p["step"] for p in run.history] == [3, 6]
    assert run.best_val_loss == min(p["val_loss"] for p in loaded.metrics["history"])
    assert run.parameters == sum(p.numel() for p in loaded.model.parameters())
    assert (run.corpus, run.tokenizer) == ("shakespeare", f"char-{loaded.tokenizer.vocab_size}")
    assert run.bits_per_char == pytest.approx(run.best_val_loss / math.log(2))
    assert run.tokens_per_second == pytest.approx(run.tokens_seen / run.train_seconds)


def test_bits_per_character_divides_out_the_bpe_tokens(runs):
    """The characters a BPE token spells, checked against the evaluation's own count over every window."""
    run = read_run("bpe", runs["bpe"])
    loaded = load_checkpoint(runs["bpe"])
    dataset = Dataset.from_text(load_text("shakespeare"), loaded.tokenizer, MODEL["block_size"])
    measured = split_loss(loaded.model, dataset, loaded.tokenizer)
    assert measured["characters"] / measured["tokens"] > 1.3  # a BPE-300 token spells more than one character
    assert run.characters_per_token == pytest.approx(measured["characters"] / measured["tokens"], rel=0.01)
    assert run.bits_per_char == pytest.approx(run.best_val_loss / math.log(2) / run.characters_per_token)


def test_the_overlay_puts_every_run_on_the_chosen_axis(runs):
    read = [read_run(name, path) for name, path in runs.items()]
    figure = overlay_figure(read, "flops")
    assert [t.name for t in figure.data] == [f"{name} {split}" for name in runs for split in ("val", "train")]
    char = read[0]
    assert list(figure.data[0].x) == [p["tokens"] * flops_per_token(load_checkpoint(runs["char"]).model.config)[
        "training"] for p in char.history]
    assert list(figure.data[0].y) == [p["val_loss"] for p in char.history]
    assert list(overlay_figure(read, "seconds").data[1].x) == [p["elapsed"] for p in char.history]
    smooth = overlay_figure(read, "step", smoothing=0.5)
    assert list(smooth.data[0].y) == pytest.approx(smoothed([p["val_loss"] for p in char.history], 0.5))
    assert "not comparable" in figure.layout.yaxis.title.text
    assert "not comparable" not in overlay_figure(read[:1]).layout.yaxis.title.text
    with pytest.raises(ValueError, match="x axis"):
        overlay_figure(read, "epochs")


def test_the_table_and_note_say_what_compares_with_what(runs):
    read = [read_run(name, path) for name, path in runs.items()]
    rows = comparison_rows(read)
    assert [r[0] for r in rows] == ["char", "bpe", "kjv"] and [r[6] for r in rows] == ["shakespeare", "shakespeare",
                                                                                        "kjv"]
    assert rows[1][7].startswith("bpe-") and rows[1][3] == pytest.approx(read[1].bits_per_char, abs=1e-4)
    note = comparability_note(read)
    assert "char (shakespeare, char-" in note and "bpe (shakespeare, bpe-" in note and "never across corpora" in note
    assert "compares them all" in comparability_note(read[:2])
    assert "compare directly" in comparability_note(read[:1])
