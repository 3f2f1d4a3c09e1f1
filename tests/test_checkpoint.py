import json
import os
import pickle

import pytest
import torch

from babygpt import checkpoint
from babygpt.models import build_model
from babygpt.tokenizer import train_tokenizer

from conftest import VARIANTS, randomize_, variant_config


def saved(tmp_path, name="gpt", kind="char"):
    tokenizer = train_tokenizer(kind, "abcdefghijklmnopqrst" * 50, vocab_size=260)
    model = build_model(variant_config(name, vocab_size=tokenizer.vocab_size)).eval()
    randomize_(model, scale=0.1)
    checkpoint.save_checkpoint(tmp_path, model, tokenizer, {"val_loss": 1.5}, {"corpus": "test"})
    return model, tokenizer


@pytest.mark.parametrize("name", VARIANTS)
def test_round_trip_gives_the_same_logits(tmp_path, name):
    model, tokenizer = saved(tmp_path, name)
    loaded = checkpoint.load_checkpoint(tmp_path)
    idx = torch.randint(0, tokenizer.vocab_size, (2, 16))
    with torch.no_grad():
        assert torch.equal(loaded.model(idx)[0], model(idx)[0])
    assert loaded.metrics == {"val_loss": 1.5} and loaded.config["corpus"] == "test"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "metrics.json", "model.safetensors",
                                                          "tokenizer.json"]


def test_bpe_checkpoint_round_trip(tmp_path):
    model, tokenizer = saved(tmp_path, "llama-gqa", kind="bpe")
    loaded = checkpoint.load_checkpoint(tmp_path)
    assert loaded.tokenizer.kind == "bpe" and loaded.tokenizer.encode("abc def") == tokenizer.encode("abc def")


def test_a_crash_mid_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, tokenizer = saved(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    def crash_half_way(module, filename, *args, **kwargs):
        with open(filename, "wb") as f:
            f.write(before[: len(before) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_model", crash_half_way)
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_checkpoint(tmp_path, model, tokenizer, {"val_loss": 0.1})
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "temporary files are cleaned up"
    assert checkpoint.load_checkpoint(tmp_path).metrics == {"val_loss": 1.5}


def test_checkpoint_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        saved(tmp_path)
    finally:
        os.umask(old)
    for path in tmp_path.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path.name


def test_loading_never_unpickles(tmp_path, monkeypatch):
    saved(tmp_path, "llama-gqa")

    def refuse(*_, **__):
        raise AssertionError("pickle was used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded = checkpoint.load_checkpoint(tmp_path)
    assert loaded.model.num_parameters() > 0


def test_training_state_round_trip(tmp_path):
    model, _ = saved(tmp_path)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))[1].backward()
    optimizer.step()
    rng = {"torch": torch.get_rng_state(), "batch_generator": torch.Generator().manual_seed(5).get_state()}
    checkpoint.save_training_state(tmp_path, model, optimizer, rng, {"step": 7, "history": []})
    fresh = build_model(model.config)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    state, restored_rng = checkpoint.load_training_state(tmp_path, fresh, fresh_optimizer)
    assert state == {"step": 7, "history": []}
    assert json.loads((tmp_path / "training_state.json").read_text())["step"] == 7
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    original, restored = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    assert original.keys() == restored.keys()
    for index in original:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(original[index][key], restored[index][key]), (index, key)
    assert torch.equal(restored_rng["torch"], rng["torch"])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: "{not json", "not valid JSON"),
        (lambda c: json.dumps([1, 2]), "must hold a JSON object"),
        (lambda c: json.dumps({**c, "format_version": "1"}), "no integer format_version"),
        (lambda c: json.dumps({**c, "format_version": 99}), "format 99, newer than this BabyGPT"),
        (lambda c: json.dumps({k: v for k, v in c.items() if k != "model"}), "malformed model config"),
        (lambda c: json.dumps({**c, "model": {**c["model"], "family": "rnn"}}), "unknown model family 'rnn'"),
        (lambda c: json.dumps({**c, "model": {**c["model"], "n_head": 3}}), "divisible by n_head"),
        (lambda c: json.dumps({**c, "model": {**c["model"], "n_layer": "two"}}), "must be int"),
        (lambda c: json.dumps({**c, "model": {**c["model"], "secret": 1}}), "unknown GPTConfig field"),
        (lambda c: json.dumps({**c, "model": {**c["model"], "n_layer": 3}}), "does not match the config"),
        (lambda c: json.dumps({**c, "model": {**c["model"], "vocab_size": 99}}), "tokenizer has 20 tokens"),
    ],
)
def test_malformed_config_is_refused_clearly(tmp_path, edit, message):
    saved(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(edit(config))
    with pytest.raises(ValueError, match=message):
        checkpoint.load_checkpoint(tmp_path)


def test_damaged_or_missing_files_are_refused_clearly(tmp_path):
    saved(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        checkpoint.load_checkpoint(tmp_path)
    weights.unlink()
    with pytest.raises(ValueError, match="model.safetensors is missing"):
        checkpoint.load_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        checkpoint.load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="cannot resume"):
        checkpoint.load_training_state(tmp_path, build_model(variant_config("gpt")), None)
