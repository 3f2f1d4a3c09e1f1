"""One-knob ablations: the plan refuses bad input before anything trains; runs share seed and budget."""

import csv
import json
import math

import pytest

from babygpt.ablation import (
    MAX_SEEDS,
    MAX_VALUES,
    AblationSpec,
    RunResult,
    base_from_checkpoint,
    leaderboard,
    plan,
    ranked_by,
    run_ablation,
    split_values,
)
from babygpt.checkpoint import read_adapter_config, read_config, shipped_checkpoints

from conftest import cli_here

TINY = {"n_embd": 16, "n_head": 2, "block_size": 16}
TINY_TRAIN = {"batch_size": 4}


def spec(knob="n_layer", values=("1", "2"), **overrides) -> AblationSpec:
    return AblationSpec(knob, list(values), model=dict(TINY), train=dict(TINY_TRAIN), **overrides)


def test_the_plan_types_each_value_and_gives_every_setting_the_same_seeds_and_budget():
    runs = plan(spec(values=split_values(" 1, 2,4 "), seeds=2, seed=7, max_seconds=3))
    assert [(r.label, r.value, r.seed) for r in runs] == [
        ("n_layer=1", 1, 7), ("n_layer=1", 1, 8), ("n_layer=2", 2, 7), ("n_layer=2", 2, 8), ("n_layer=4", 4, 7),
        ("n_layer=4", 4, 8)]
    assert {r.train["max_seconds"] for r in runs} == {3.0} and all(r.model["n_embd"] == 16 for r in runs)
    assert [r.value for r in plan(spec("dropout", ["0", "0.1"]))] == [0.0, 0.1]
    assert [r.train["optimizer"] for r in plan(spec("optimizer", ["adamw", "muon"]))] == ["adamw", "muon"]
    assert [r.model["tie_weights"] for r in plan(spec("tie_weights", ["true", "false"]))] == [True, False]
    families = plan(spec("family", ["gpt", "lstm", "bigram"]))
    assert [r.family for r in families] == ["gpt", "lstm", "bigram"]
    assert "n_head" not in families[1].model and families[2].model == {"block_size": 16}, "only what the family has"
    tokenizers = plan(spec("tokenizer", ["char", "bpe-300"]))
    assert [(r.tokenizer, r.bpe_vocab_size) for r in tokenizers] == [("char", 512), ("bpe", 300)]


@pytest.mark.parametrize("bad, message", [
    (dict(knob="n_layers"), "unknown knob 'n_layers' for a gpt base; choose one of: family, tokenizer"),
    (dict(knob="n_kv_head"), "unknown knob 'n_kv_head' for a gpt base"),  # a llama knob
    (dict(knob="device", values=["cpu", "cuda"]), "unknown knob 'device'"),  # the machine's, not the model's
    (dict(values=["1", "two"]), "n_layer=two: n_layer takes int values"),
    (dict(values=["1", "0"]), "n_layer=0: "),
    (dict(values=["1", "1.5"]), "n_layer=1.5: n_layer takes int values"),
    (dict(knob="dropout", values=["0", "nan"]), "dropout=nan: dropout must be a finite number"),
    (dict(knob="n_head", values=["2", "3"]), "n_head=3: "),  # 16 is not divisible by 3
    (dict(knob="family", values=["gpt", "transformer"]), "family=transformer: unknown model family"),
    (dict(knob="tokenizer", values=["char", "bpe"]), "tokenizer=bpe: tokenizer values are char or bpe-N"),
    (dict(knob="tokenizer", values=["char", "bpe-100"]), "tokenizer=bpe-100: a byte-level BPE vocabulary needs"),
    (dict(knob="optimizer", values=["adamw", "sgd"]), "optimizer=sgd: "),
    (dict(values=["1"]), f"2 to {MAX_VALUES} values, got 1"),
    (dict(values=[str(n) for n in range(1, MAX_VALUES + 2)]), f"2 to {MAX_VALUES} values, got {MAX_VALUES + 1}"),
    (dict(values=["1", "2", "1"]), "each value once"),
    (dict(seeds=MAX_SEEDS + 1), f"seeds per setting must be a whole number from 1 to {MAX_SEEDS}"),
    (dict(seeds=0), "seeds per setting"),
    (dict(max_seconds=0), "the time budget per run must be a positive number"),
    (dict(max_seconds=math.inf), "the time budget per run must be a positive number"),
    (dict(corpus="no-such-corpus"), "no-such-corpus"),
    (dict(preset="gpt-9000"), "unknown preset 'gpt-9000'"),
])
def test_bad_input_is_refused_before_anything_trains_naming_it(bad, message):
    settings = {"knob": "n_layer", "values": ["1", "2"], **bad}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan(spec(settings.pop("knob"), settings.pop("values"), **settings))


def test_a_bpe_vocabulary_the_corpus_cannot_fill_is_refused(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("to be or not to be, that is the question\n" * 20, encoding="utf-8")
    with pytest.raises(ValueError, match=r"tokenizer=bpe-2000: the corpus fills only \d+ tokens of a 2,000-token"):
        plan(spec("tokenizer", ["char", "bpe-2000"], corpus=str(corpus)))


def test_a_budget_cap_is_stated():
    with pytest.raises(ValueError, match="at most 60 s here, got 61"):
        plan(spec(max_seconds=61), max_seconds_cap=60)


def result(label, seed, val_loss, tokenizer="char-62", characters_per_token=1.0):
    return RunResult(label, label, seed, val_loss, val_loss, val_loss / math.log(2) / characters_per_token, 10, 100,
                     1.0, 1000, tokenizer, [], None)


def test_the_leaderboard_labels_a_gap_smaller_than_the_spread_between_seeds_as_noise():
    results = [result("a", 1, 2.00), result("a", 2, 2.10), result("b", 1, 2.04), result("b", 2, 2.12),
               result("c", 1, 2.50), result("c", 2, 2.52)]
    board = leaderboard(results)
    assert [e["setting"] for e in board] == ["a", "b", "c"]
    assert board[0]["verdict"] == "best" and board[0]["spread"] == pytest.approx(0.0707, abs=1e-4)
    assert "within noise" in board[1]["verdict"], "b is 0.03 worse, the seeds spread 0.07"
    assert board[2]["verdict"].endswith("real")
    single = leaderboard([result("a", 1, 2.0), result("b", 1, 2.1)])
    assert "one seed: no noise estimate" in single[1]["verdict"]


def test_different_tokenizers_are_ranked_by_bits_per_character_not_loss():
    char, bpe = result("char", 1, 1.5), result("bpe-512", 1, 3.0, tokenizer="bpe-512", characters_per_token=2.5)
    assert ranked_by([char, bpe]) == "bits_per_char"
    assert [e["setting"] for e in leaderboard([char, bpe])] == ["bpe-512", "char"], "3.0 nats/token over 2.5 chars"


def test_an_ablation_trains_every_setting_with_equal_seed_and_budget_and_writes_its_results(tmp_path):
    ablation = spec("n_layer", ["1", "2"], seeds=2, max_seconds=1.5)
    events = list(run_ablation(ablation, tmp_path))
    starts = [e for e in events if e.kind == "start"]
    assert [(e.index, e.run.name) for e in starts] == [
        (0, "n_layer=1-seed1337"), (1, "n_layer=1-seed1338"), (2, "n_layer=2-seed1337"), (3, "n_layer=2-seed1338")]
    results = events[-1].results
    assert events[-1].kind == "done" and len(results) == 4
    for r in results:
        assert r.train_seconds == pytest.approx(1.5, abs=0.5), "each run ends at its wall-clock budget"
        assert r.history[-1]["step"] == r.steps and r.val_loss == r.history[-1]["val_loss"]
        assert (tmp_path / f"{r.label}-seed{r.seed}" / "model.safetensors").is_file()
    one, two = results[0], results[2]
    assert two.parameters > one.parameters
    # The same seed gives the same first steps, whatever the settings' speed: step 25's losses repeat.
    again = list(run_ablation(spec("n_layer", ["1", "3"], max_seconds=1.0), None))[-1].results[0]
    assert again.history[0]["step"] == one.history[0]["step"] == 25
    assert again.history[0]["val_loss"] == pytest.approx(one.history[0]["val_loss"], abs=1e-6)
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [(row["setting"], int(row["seed"])) for row in rows] == [(r.label, r.seed) for r in results]
    assert float(rows[0]["val_loss"]) == pytest.approx(one.val_loss)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["spec"]["knob"] == "n_layer" and len(saved["runs"]) == 4
    assert [e["setting"] for e in saved["leaderboard"]] == [e["setting"] for e in leaderboard(results)]
    assert all(e["spread"] is not None for e in saved["leaderboard"]), "two seeds: a spread for each setting"


def test_the_ablate_command_prints_a_leaderboard_and_refuses_a_bad_value(tmp_path):
    done = cli_here("ablate", "--preset", "bigram", "--knob", "learning_rate", "--values", "0.1,0.01",
                    "--max-seconds", "0.5", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    board = done.stdout.split("leaderboard, ranked by val loss:")[1].splitlines()
    assert board[1].split()[0] == "rank" and {line.split()[1] for line in board[2:4]} == {
        "learning_rate=0.1", "learning_rate=0.01"}
    assert (tmp_path / "results.csv").is_file() and (tmp_path / "results.json").is_file()
    refused = cli_here("ablate", "--knob", "n_layer", "--values", "1,zero", "--out", tmp_path / "never")
    assert refused.returncode == 2 and "n_layer=zero: n_layer takes int values" in refused.stderr
    assert not (tmp_path / "never").exists(), "refused before anything was written"


def test_a_stopped_ablation_ends_its_run_at_once_and_starts_no_other(tmp_path):
    stopping = []
    events = []
    for event in run_ablation(spec("n_layer", ["1", "2", "3"], max_seconds=30), tmp_path, stop=lambda: bool(stopping)):
        events.append(event)
        if event.kind == "train" and event.train_event.step == 3:
            stopping.append(True)
    results = events[-1].results
    assert len(results) == 1 and results[0].steps <= 4, "the run ends after the step in progress"
    assert [e.index for e in events if e.kind == "start"] == [0], "no further run starts"
    assert (tmp_path / "results.csv").is_file(), "what finished is kept"


def test_a_trained_models_settings_can_be_the_base():
    config = read_config(shipped_checkpoints()["lstm"])
    base = base_from_checkpoint(config)
    assert base["family"] == "lstm" and base["preset"] is None and base["corpus"] == "shakespeare"
    runs = plan(AblationSpec("n_hidden", ["128", "256"], **base))
    shipped = {k: v for k, v in config["model"].items() if k not in ("family", "vocab_size")}
    assert runs[1].model == shipped, "the value the model has: exactly its settings"
    assert runs[0].model == {**shipped, "n_hidden": 128}
    assert runs[0].train["learning_rate"] == config["train"]["learning_rate"]
    with pytest.raises(ValueError, match="a LoRA adapter's settings are its base's"):
        base_from_checkpoint(read_adapter_config(shipped_checkpoints()["gpt-kjv-lora"]))


def test_the_ablate_command_takes_a_models_settings_or_a_preset_not_both(tmp_path):
    both = cli_here("ablate", "--preset", "gpt", "--base", "llama", "--knob", "n_layer", "--values", "1,2",
                    "--out", tmp_path)
    assert both.returncode == 2 and "--preset or --base, not both" in both.stderr
    unknown = cli_here("ablate", "--base", "llama", "--knob", "n_kv_head", "--values", "1,3", "--out", tmp_path)
    assert unknown.returncode == 2 and "n_kv_head=3:" in unknown.stderr, "checked against the model's own settings"
