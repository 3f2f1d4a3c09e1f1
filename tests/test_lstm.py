"""The lstm family: the spelled-out cell equals torch.nn.LSTM, its state is generation's cache, and
every tool that is not about attention takes it like any other family."""

import json
from pathlib import Path

import pytest
import torch
from gradio_client import Client

from babygpt import checkpoint
from babygpt.models import build_model, make_config
from babygpt.runs import new_run, resume_run
from babygpt.sampling import token_ids
from babygpt.stats import flops_per_token, measured_flops_per_token, parameter_breakdown, training_memory

from conftest import cli_here, randomize_

ROOT = Path(__file__).resolve().parent.parent
SIZES = [{"n_layer": 1, "n_embd": 8, "n_hidden": 12}, {"n_layer": 3, "n_embd": 16, "n_hidden": 8}]


def random_lstm(seed=0, **sizes):
    torch.manual_seed(seed)
    model = build_model(make_config("lstm", vocab_size=20, block_size=16, **(sizes or SIZES[1]))).eval()
    randomize_(model, scale=0.5, seed=seed)
    return model


def ids(batch=3, length=16, seed=0):
    return torch.randint(0, 20, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sizes", SIZES, ids=["one layer, wider hidden", "three layers, narrower hidden"])
def test_the_spelled_out_cell_equals_torch_lstm(sizes):
    model, x = random_lstm(**sizes), ids()
    with torch.no_grad():
        embedded = model.embedding(x)
        shape = (sizes["n_layer"], 3, sizes["n_hidden"])
        start = (torch.randn(shape), torch.randn(shape))
        for state in (None, start):
            fast, (h_fast, c_fast) = model.lstm(embedded, state)
            slow, (h_slow, c_slow) = model.spelled_out(embedded, state)
            torch.testing.assert_close(slow, fast, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close((h_slow, c_slow), (h_fast, c_fast), atol=1e-5, rtol=1e-5)


def test_the_gates_add_up_to_the_cell_and_the_hidden_state():
    model = random_lstm(n_layer=2, n_embd=8, n_hidden=12)
    with torch.no_grad():
        plain, _ = model(ids())
        logits, kept = model.run_with_cache(ids(), lambda name: name.startswith("layers.1."))
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=1e-5)  # the spelled-out path ran: same logits
    i, f, g, o = (kept[f"layers.1.{name}"] for name in ("input_gate", "forget_gate", "cell_candidate", "output_gate"))
    c, h = kept["layers.1.cell"], kept["layers.1.hidden"]
    assert all(0 <= t.min() and t.max() <= 1 for t in (i, f, o)) and -1 <= g.min() and g.max() <= 1
    previous = torch.cat([torch.zeros_like(c[:, :1]), c[:, :-1]], dim=1)  # c_{t-1}, zero before the text
    torch.testing.assert_close(c, f * previous + i * g)
    torch.testing.assert_close(h, o * torch.tanh(c))


def test_nothing_asked_runs_torch_lstm_bit_for_bit():
    model = random_lstm()
    with torch.no_grad():
        plain, _ = model(ids())
        nothing, _ = model.run_with_cache(ids(), ["embed", "logits"])
    assert torch.equal(plain, nothing)


def test_generation_carries_the_state_exactly_and_never_cuts_the_prompt():
    """The cache is the recurrent state: each step reads one token, and the logits equal reading the
    whole text from the start again, prompt longer than block_size included."""
    model = random_lstm()
    prompt = [i % 20 for i in range(40)]  # 2.5 x block_size
    cached = list(token_ids(model, prompt, 30, temperature=1.0, seed=3))
    uncached = list(token_ids(model, prompt, 30, temperature=1.0, seed=3, use_cache=False))
    assert [t for t, _, _ in cached] == [t for t, _, _ in uncached]
    assert max(float((a - b).abs().max()) for (_, a, _), (_, b, _) in zip(cached, uncached)) <= 1e-5
    with torch.no_grad():
        everything, _ = model(torch.tensor([prompt]))
    torch.testing.assert_close(cached[0][1], everything[0, -1], atol=1e-5, rtol=1e-5)
    assert model.max_context is None and model.new_cache().length == 0


def test_bf16_autocast_trains_with_the_recurrence_in_fp32():
    model = random_lstm().train()
    x = ids()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss = model(x, x)
    loss.backward()
    assert torch.isfinite(loss) and model.lstm.weight_hh_l0.grad is not None


def test_its_stats_are_counted_from_its_own_file():
    config = make_config("lstm", vocab_size=9, block_size=8, n_layer=2, n_embd=4, n_hidden=6)
    model = build_model(config)
    rows = {row["module"]: row["parameters"] for row in parameter_breakdown(model)}
    gates = 4 * 6
    assert rows == {"token embedding": 9 * 4, "layer 0 LSTM": gates * (4 + 6) + 2 * gates,
                    "layer 1 LSTM": gates * (6 + 6) + 2 * gates, "output head": 6 * 9 + 9}
    analytic = flops_per_token(config)
    assert analytic["forward"] == 2 * (gates * (4 + 6) + gates * (6 + 6) + 6 * 9) and analytic["attention"] == 0
    measured = measured_flops_per_token(model)  # the counter is given the oneDNN layer's formula by the family
    assert (measured["forward"], measured["training"]) == (analytic["forward"], analytic["training"])
    memory = training_memory(config, batch_size=4)
    assert memory["parameters"] == 4 * model.num_parameters() and memory["activations"] > 0


def test_the_cli_trains_resumes_samples_evaluates_and_explains_export(tmp_path):
    out = tmp_path / "lstm"
    train = ["train", "--preset", "lstm", "--n-embd", "16", "--n-hidden", "24", "--batch-size", "4", "--max-iters", "6",
             "--eval-interval", "3", "--eval-iters", "1", "--sample-tokens", "8", "--out", out]
    assert cli_here(*train).returncode == 0
    assert cli_here("train", "--resume", "--max-iters", "9", "--out", out).returncode == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 9
    sample = cli_here("sample", out, "--prompt", "ROMEO:", "--max-new-tokens", "20")
    assert sample.stdout.startswith("ROMEO:") and len(sample.stdout) > len("ROMEO:")
    assert "bits/char" in cli_here("eval", out).stdout
    export = cli_here("export", out, "--out", tmp_path / "hf")
    assert export.returncode == 2 and "transformers has no lstm model" in export.stderr
    assert "Traceback" not in export.stderr
    assert not (tmp_path / "hf").exists()


def test_stop_and_resume_equals_an_uninterrupted_run(tmp_path):
    settings = {"model": {"n_embd": 16, "n_hidden": 24, "dropout": 0.1},
                "train": {"batch_size": 4, "max_iters": 8, "eval_interval": 4, "eval_iters": 1, "sample_tokens": 0}}
    whole = [e.loss for e in new_run("shakespeare", preset="lstm", **settings, out_dir=tmp_path / "a").run()
             if e.kind == "step"]
    first = new_run("shakespeare", preset="lstm", model=settings["model"],
                    train={**settings["train"], "max_iters": 4}, out_dir=tmp_path / "b")
    split = [e.loss for e in first.run() if e.kind == "step"]
    split += [e.loss for e in resume_run(tmp_path / "b", train={"max_iters": 8}).run() if e.kind == "step"]
    assert split == whole


def test_the_shipped_lstm_sits_on_the_ladder_and_the_app_takes_it(app_url):
    shipped = checkpoint.shipped_checkpoints()
    assert "lstm" in shipped
    index = {e["name"]: e for e in json.loads((ROOT / "checkpoints" / "index.json").read_text())["checkpoints"]}
    names = list(index)
    assert names.index("ngram") < names.index("lstm") < names.index("gpt-single-head")
    assert index["lstm"]["family"] == "lstm" and index["lstm"]["full_val_loss"] < index["bigram"]["full_val_loss"]
    client = Client(app_url, verbose=False, analytics_enabled=False)
    html, texts, note, details = client.predict(["lstm", "gpt"], "ROMEO:\n", 30, 0.8, 0, 1.0, 0, api_name="/compare")
    assert texts["lstm"].startswith("ROMEO:\n") and len(details["lstm"]["tokens"]) == 30
    table, _, summary = client.predict("lstm", None, 12, 100_000, api_name="/stats")
    assert "layer 0 LSTM" in str(table) and "recurrent state of" in summary
    single, every, average, note = client.predict("lstm", "To be", 0, 0, api_name="/attention")
    assert "lstm model" in note and "no attention" in note and single is None
    figure, note = client.predict("lstm", "To be", api_name="/logit_lens")
    assert "no attention" in note and figure is None
    # The Train tab trains one (its form greys out n_head: the family has none) into this session
    settings = dict(preset="lstm", n_layer=1, n_head=1, n_embd=16, block_size=16, batch_size=4, max_iters=6,
                    learning_rate=3e-3, max_seconds=0, corpus="shakespeare", upload=None, x_axis="step")
    figure, status, sample, names, archive = client.predict(*settings.values(), api_name="/train")
    assert "my-lstm" in names and "is ready" in status
    updates = client.predict("lstm", api_name="/form_fields")
    assert [u.get("interactive") for u in updates] == [True, False, True, True, True]  # no heads
