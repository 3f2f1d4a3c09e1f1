"""Start here: the ladder's figures come from the shipped models, and every step's button fills the
tab it opens (with the visitor's own model once there is one)."""

import json
import math
import re
from dataclasses import replace

from gradio_client import Client

from babygpt import tour
from babygpt.checkpoint import SHIPPED_DIR, load_checkpoint, read_config
from babygpt.models import config_from_json


def client(url):
    return Client(url, verbose=False, analytics_enabled=False)


def test_the_ladder_is_the_shipped_models_with_their_measured_figures():
    rungs = tour.ladder()
    index = {e["name"]: e for e in json.loads((SHIPPED_DIR / "index.json").read_text())["checkpoints"]}
    assert [r.name for r in rungs] == list(tour.LADDER)
    for rung in rungs:
        assert rung.val_loss == index[rung.name]["full_val_loss"]
        assert rung.bits_per_char == index[rung.name]["bits_per_char"]
        assert rung.parameters == load_checkpoint(SHIPPED_DIR / rung.name).model.num_parameters()
        assert rung.in_words == config_from_json(read_config(SHIPPED_DIR / rung.name)["model"]).in_words()
        assert rung.choices == math.exp(rung.val_loss)
    table = tour.ladder_table(rungs)
    assert all(f"| {r.name} |" in table and f"{r.val_loss:.3f}" in table for r in rungs)


def test_the_words_follow_the_numbers():
    rungs = tour.ladder()
    first, best = rungs[0], min(rungs, key=lambda r: r.val_loss)
    words = tour.loss_in_words(rungs)
    assert f"{first.val_loss:.2f}" in words and f"{first.choices:.1f} equally likely" in words
    assert f"{best.name}'s {best.val_loss:.2f}" in words and f"{best.bits_per_char:.2f}" in words
    # other numbers, other words: nothing is written by hand
    changed = [replace(r, val_loss=r.val_loss + 0.5) for r in rungs]
    assert tour.loss_in_words(changed) != words
    worse = [rungs[0], replace(rungs[1], val_loss=rungs[0].val_loss + 0.1)]
    assert "no better" in tour.what_each_rung_buys(worse)[0]
    better = tour.what_each_rung_buys(rungs[:2])[0]
    assert f"{rungs[0].val_loss:.3f} → {rungs[1].val_loss:.3f}" in better


def test_each_config_says_what_it_looks_at_in_its_own_numbers():
    saved = {name: config_from_json(read_config(SHIPPED_DIR / name)["model"]) for name in tour.LADDER}
    changes = {"gpt": ({"n_layer": 2}, "2 blocks"), "ngram": ({"n": 6}, "last 5 tokens"),
               "lstm": ({"n_layer": 1}, "1 LSTM layer"), "bigram": ({"vocab_size": 30}, "30×30"),
               "llama": ({"n_kv_head": 4}, "4 attention heads, positions"),
               "gpt-single-head": ({"block_size": 16}, "last 16 tokens")}
    for name, (change, words) in changes.items():
        changed = replace(saved[name], **change)
        assert words in changed.in_words() and words not in saved[name].in_words(), name


def test_the_samples_are_each_rungs_own_continuation(app_url):
    html = client(app_url).predict(api_name="/start_samples")
    models = {name: load_checkpoint(SHIPPED_DIR / name) for name in ("bigram", "llama")}
    for name, text in tour.ladder_samples(models).items():
        assert f"<b>{name}</b>" in html
        shown = re.search(rf"<b>{name}</b><pre>(.*?)</pre>", html, flags=re.S).group(1)
        assert shown.replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&") == text


def test_every_step_fills_the_tab_it_opens_first_shipped_then_the_visitors_own(app_url):
    from test_app import TINY_TRAINING

    c = client(app_url)
    models, prompt = c.predict(api_name="/start_compare")
    assert models == list(tour.COMPARED) and prompt == tour.SAMPLE_PROMPT
    _, texts, *_ = c.predict(models, prompt, 20, 0.8, 0, 1.0, 0, api_name="/compare")
    assert set(texts) == set(tour.COMPARED), "Compare takes the six it is given"
    assert list(c.predict(api_name="/start_train")) == ["from scratch", "gpt", "shakespeare", 60]
    assert c.predict(api_name="/start_inside") == "gpt"
    assert c.predict(api_name="/start_attention") == "gpt-block"
    *_, note = c.predict("gpt-block", api_name="/attention_history")
    assert "snapshots" in note and "move the slider" in note, "the shipped replay works with no training"
    assert list(c.predict(api_name="/start_lora")) == ["LoRA fine-tune", "gpt", "kjv"]
    assert c.predict(api_name="/start_hub") == "gpt"
    c.predict(*TINY_TRAINING.values(), api_name="/train")  # trained with snapshots, as the Train tab does
    assert c.predict(api_name="/start_inside") == "my-gpt"
    assert c.predict(api_name="/start_attention") == "my-gpt"
    assert list(c.predict(api_name="/start_lora"))[1] == "my-gpt"
    assert c.predict(api_name="/start_hub") == "my-gpt"
    assert client(app_url).predict(api_name="/start_inside") == "gpt", "another visitor still starts on gpt"


def test_a_run_with_a_single_evaluation_replays_its_one_snapshot(app_url):
    """A short first training evaluates once: Attention over training shows that snapshot (a
    slider from 0 to 0 made gradio fail)."""
    from test_app import TINY_TRAINING

    c = client(app_url)
    c.predict(*{**TINY_TRAINING, "max_iters": 20}.values(), api_name="/train")
    slider, figure, note = c.predict("my-gpt", api_name="/attention_history")
    assert note.startswith("1 snapshot, at step 20") and "train longer" in note and figure is not None
