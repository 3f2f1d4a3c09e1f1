"""The app as users and API clients see it: ``python app.py`` on 127.0.0.1, driven by gradio_client."""

import csv
import json
import math
import re
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from babygpt.ablation import LEADERBOARD_HEADERS
from babygpt.experiments import TABLE_HEADERS
from babygpt.ui.links import read_link
from babygpt.ui.train_tab import LIMITS

TINY_TRAINING = dict(preset="gpt", n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=30,
                     learning_rate=1e-3, max_seconds=0, corpus="shakespeare", upload=None, x_axis="step",
                     tokenizer="char", bpe_vocab_size=512, seed=1337, dropout=0.0, weight_decay=0.1, warmup_iters=100,
                     bf16=False, optimizer="adamw")


def client(url: str) -> Client:
    return Client(url, verbose=False, analytics_enabled=False)


def train(c: Client, **overrides):
    settings = {**TINY_TRAINING, **overrides}
    return c.predict(*settings.values(), api_name="/train")


def test_every_event_has_an_api_name(app_url):
    endpoints = set(client(app_url).view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/train", "/finetune", "/switch_mode", "/logit_lens", "/head_roles", "/loss_vs_compute", "/quantize",
            "/attention_lines", "/attention_history", "/attention_replay", "/stop_training", "/preset_values",
            "/describe", "/redraw", "/compare", "/attention", "/stats",
            "/download", "/push", "/load", "/models", "/recolour", "/generated_text",
            "/attention_generated", "/inside", "/inside_sample", "/overlay"} <= endpoints


def test_train_streams_a_model_that_joins_this_session_only(app_url):
    mine, theirs = client(app_url), client(app_url)
    figure, status, sample, names, archive = train(mine)
    assert "my-gpt" in names and "is ready" in status and "best val loss" in status and "MFU" in status
    assert len(sample) > 0 and figure is not None
    with zipfile.ZipFile(archive) as z:
        assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json"} <= set(z.namelist())
    # The new model works in the other tabs of this session…
    html, texts, *_ = mine.predict(["my-gpt", "gpt"], "Hamlet:", 20, 0.8, 0, 1.0, 3, api_name="/compare")
    assert set(texts) == {"my-gpt", "gpt"} and all(t.startswith("Hamlet:") for t in texts.values())
    # …and is invisible to another session.
    with pytest.raises(AppError, match="no model named 'my-gpt'"):
        theirs.predict(["my-gpt"], "Hamlet:", 20, 0.8, 0, 1.0, 3, api_name="/compare")


def test_compare_is_repeatable_with_a_seed_and_caps_huge_requests(app_url):
    c = client(app_url)
    first = c.predict(["bigram", "gpt", "llama"], "Hamlet:\n", 60, 1.0, 0, 0.9, 7, api_name="/compare")
    again = c.predict(["bigram", "gpt", "llama"], "Hamlet:\n", 60, 1.0, 0, 0.9, 7, api_name="/compare")
    assert first[1] == again[1] and len(first[1]) == 3
    assert all("tok/s" in first[0] and name in first[0] for name in ("bigram", "gpt", "llama"))
    _, texts, note, _ = c.predict(["bigram"], "a", 5000, 1.0, 0, 1.0, 0, api_name="/compare")
    assert "capped at 1000" in note and len(texts["bigram"]) == 1001


def test_compare_generates_with_bf16_weights_when_asked(app_url):
    c = client(app_url)
    args = (["gpt", "lstm"], "Hamlet:\n", 40, 0.8, 0, 1.0, 0, "greedy", "", "probability", False)
    _, half, note, details = c.predict(*args, "bfloat16", api_name="/compare")
    _, full, full_note, _ = c.predict(*args, "float32", api_name="/compare")
    assert note == "bfloat16 weights: gpt; lstm stays float32 (its family cannot generate in bfloat16)"
    assert full_note == "" and half["lstm"] == full["lstm"]
    assert details["gpt"]["new_tokens"] == 40 and half["gpt"].startswith("Hamlet:\n")
    with pytest.raises(AppError, match="'float16'.*not in the list of choices"):  # gradio's own check of the radio
        c.predict(*args, "float16", api_name="/compare")


def test_compare_shows_what_each_model_believed_and_feeds_the_attention_tab(app_url):
    c = client(app_url)
    with pytest.raises(AppError, match="generate in the Compare tab first"):
        c.predict("gpt", api_name="/generated_text")
    html, texts, note, details = c.predict(["gpt", "llama"], "Hamlet:\n", 40, 0.8, 0, 1.0, 0, "greedy", "\\n",
                                           "entropy", api_name="/compare")
    for name in ("gpt", "llama"):
        d = details[name]
        assert d["text"] == texts[name] and d["first_token_ms"] > 0 and d["tokens_per_sec"] > 0
        assert d["finish_reason"] in ("stop", "length") and len(d["tokens"]) == d["new_tokens"]
        for token in d["tokens"]:
            # Greedy: every token is the model's likeliest, with its probability.
            assert token["top5"][0] == [token["text"], token["probability"]] and 0 < token["entropy_bits"] < 6
        if d["finish_reason"] == "stop":
            assert texts[name].endswith("\n") and texts[name].count("\n") == 2, "stopped at the first new newline"
    assert "sure (low entropy)" in html and "the model&#x27;s top 5" in html
    assert "likely to the model" in c.predict("probability", api_name="/recolour")
    assert c.predict("gpt", api_name="/generated_text") == texts["gpt"]
    assert c.predict("gpt-block", api_name="/generated_text") == texts["gpt"], "else the first column's text"
    *_, note = c.predict("llama", texts["llama"], 0, 0, api_name="/attention_generated")
    assert "tokens" in note
    # A prompt longer than the context: said in the note, and the model sees its last 64 tokens.
    _, _, note, details = c.predict(["gpt"], "To be, or not to be " * 10, 3, 0.8, 0, 1.0, 0, "greedy",
                                    api_name="/compare")
    assert "gpt sees only the last 64 tokens" in note and details["gpt"]["context_cut"]


def test_compare_streams_colour_only_and_the_last_drawing_has_every_hover_text(app_url):
    """Each redraw sends the whole columns: while the models write they carry colours only; the
    hover text of every token comes with the last drawing."""
    job = client(app_url).submit(["gpt", "llama"], "Hamlet:\n", 120, 1.0, 0, 1.0, 0, api_name="/compare")
    _, _, _, details = job.result()
    *redraws, last = [output[0] for output in job.outputs()]
    assert redraws, "the columns stream while the models write"
    for drawn in redraws:
        assert "class='bg-tok'" in drawn and " title=" not in drawn
    tokens = sum(d["new_tokens"] for d in details.values())
    assert last.count("<span class='bg-tok'") == tokens == 240
    assert len(re.findall(r"<span class='bg-tok' style='[^']*' title='[^']*the model&#x27;s top 5", last)) == tokens
    columns = lambda drawn: [re.sub(r"<[^>]*>", "", text) for text in re.findall(r"<pre[^>]*>(.*?)</pre>", drawn, re.S)]  # noqa: E731
    for streamed, final in zip(columns(redraws[-1]), columns(last), strict=True):
        assert final.startswith(streamed) and len(streamed) > len("Hamlet:\n"), "the same tokens, only lighter"


def test_attention_and_stats_and_download(app_url):
    c = client(app_url)
    single, grid, average, note = c.predict("gpt", "To be, or not to be", 1, 2, api_name="/attention")
    assert "19 tokens" in note and "layer 1, head 2" in note
    table, chart, summary = c.predict("gpt", None, 12, 100_000, api_name="/stats")
    assert "parameters" in summary and "Chinchilla" in summary and "measured" in summary
    assert "fitted law" in summary and "KV cache of" in summary
    assert len(table["data"]) > 3
    assert "+1.3 % off the analytic one" in summary and "recomputes QKᵀ" in summary  # the gpt preset's gap, explained
    table, _, summary = c.predict(None, "llama", 12, 100_000, api_name="/stats")
    assert "preset **llama** (untrained)" in summary
    _, _, summary = c.predict("bigram", None, 12, 100_000, api_name="/stats")  # no matmuls: still a full report
    assert "each token is a table lookup" in summary and "Chinchilla" in summary
    archive = c.predict("gpt", api_name="/download")
    assert zipfile.ZipFile(archive).testzip() is None
    # The shipped LoRA adapter is a model in these tabs too: its attention, and its adapters' share.
    _, _, _, note = c.predict("gpt-kjv-lora", "And God said", 1, 1, api_name="/attention")
    assert "12 tokens" in note
    table, _, summary = c.predict("gpt-kjv-lora", None, 12, 100_000, api_name="/stats")
    assert table["data"][-1][:2] == ["LoRA adapters", 73_728] and "883,200 parameters" in summary


@pytest.mark.parametrize(
    "endpoint, args, message",
    [
        ("/compare", [["gpt"], "", 20, 0.8, 0, 1.0, 0], "prompt is empty"),
        ("/compare", [[], "Hi", 20, 0.8, 0, 1.0, 0], "pick at least one model"),
        ("/compare", [["gpt"], "Hi 🙂", 20, 0.8, 0, 1.0, 0], "has never seen '🙂'"),
        ("/compare", [["gpt"], "Hi", 20, -1.0, 0, 1.0, 0], "less than minimum value 0"),  # the slider's range
        ("/compare", [["gpt"], "Hi", -3, 0.8, 0, 1.0, 0], "less than minimum value 0"),
        ("/compare", [["gpt"], "Hi", 20, 0.8, 0, 1.0, 0, "dice"], "not in the list of choices"),
        ("/recolour", ["rainbow"], "not in the list of choices"),
        ("/attention", ["gpt", "", 0, 0], "text is empty"),
        ("/stats", [None, None, 12, 1000], "pick a model or a preset"),
        ("/download", [None], "pick a model"),
    ],
)
def test_bad_input_gives_a_readable_message(app_url, endpoint, args, message):
    with pytest.raises(AppError, match=message):
        client(app_url).predict(*args, api_name=endpoint)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"n_embd": 30, "n_head": 4}, "divisible by n_head"),
        ({"max_iters": 10**9}, "greater than maximum value 20000"),  # the field's range
        ({"n_layer": 0}, "less than minimum value 1"),
        ({"learning_rate": 0}, "learning_rate must be positive"),
        ({"corpus": "upload a .txt file"}, "choose a .txt file"),
    ],
)
def test_bad_training_settings_give_a_readable_message(app_url, overrides, message):
    with pytest.raises(AppError, match=message):
        train(client(app_url), **overrides)


def test_uploads_must_be_small_utf8_text(app_url, tmp_path):
    binary = tmp_path / "image.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    with pytest.raises(AppError, match="binary file"):
        train(client(app_url), corpus="upload a .txt file", upload=handle_file(str(binary)))
    big = b"a" * (6 * 1024 * 1024)
    (tmp_path / "big.txt").write_bytes(big)
    with pytest.raises(ValueError, match="exceeds the maximum file size of 5242880 bytes"):  # the client is told
        train(client(app_url), corpus="upload a .txt file", upload=handle_file(str(tmp_path / "big.txt")))
    # A client that does not check is refused by the server.
    response = httpx.post(app_url + "gradio_api/upload", files={"files": ("big.txt", big, "text/plain")}, timeout=60)
    assert response.status_code == 413


def test_an_uploaded_corpus_trains(app_url, tmp_path):
    text = tmp_path / "mine.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 200, encoding="utf-8")
    _, status, _, names, _ = train(client(app_url), corpus="upload a .txt file", upload=handle_file(str(text)),
                                   max_iters=10)
    assert "is ready" in status and any(n.startswith("my-gpt") for n in names)


def test_describe_counts_parameters_and_flops_before_training(app_url):
    c = client(app_url)
    form = ["gpt", 4, 4, 128, 64, 12, 2000, 1e-3, 60, "shakespeare"]
    lora = ["gpt", 8, 16, ["q", "v"]]
    text = c.predict("from scratch", *form, *lora, api_name="/describe")
    # the gpt preset on Shakespeare's own characters: the shipped gpt's count
    from dataclasses import replace

    from babygpt.checkpoint import SHIPPED_DIR, load_checkpoint
    from babygpt.models import config_from_json
    from babygpt.stats import parameter_count

    assert f"{load_checkpoint(SHIPPED_DIR / 'gpt').model.num_parameters():,} parameters" in text, text
    assert "FLOPs per token" in text
    bpe = c.predict("from scratch", *form, *lora, "bpe", 1000, api_name="/describe")
    shipped = config_from_json(load_checkpoint(SHIPPED_DIR / "gpt").config["model"])
    assert f"{parameter_count(replace(shipped, vocab_size=1000)):,} parameters" in bpe, bpe
    text = c.predict("LoRA fine-tune", *form, *lora, api_name="/describe")
    assert "**16,384** trainable parameters of 825,856 (1.98 %)" in text and "64 KB" in text  # 809,472 + 16,384


def test_the_loss_plot_redraws_against_tokens_and_flops(app_url):
    c = client(app_url)
    train(c, max_iters=10)
    by_step = c.predict("step", api_name="/redraw")
    by_tokens = c.predict("tokens", api_name="/redraw")
    by_flops = c.predict("FLOPs", api_name="/redraw")
    last_x = [json.loads(f["plot"])["data"][0]["x"][-1] for f in (by_step, by_tokens, by_flops)]
    assert last_x[0] == 10 and last_x[1] == 10 * 4 * 16 and last_x[2] > last_x[1] * 1000


def test_a_second_training_waits_in_the_queue_and_sees_its_position(app_url):
    first, second = client(app_url), client(app_url)
    running = first.submit(*{**TINY_TRAINING, "max_iters": 20000}.values(), api_name="/train")  # stopped below
    deadline = time.monotonic() + 60
    while running.status().code.name in ("STARTING", "JOINING_QUEUE", "IN_QUEUE") and time.monotonic() < deadline:
        time.sleep(0.05)
    waiting = second.submit(*TINY_TRAINING.values(), api_name="/train")
    positions = []
    while time.monotonic() < deadline and not waiting.done():
        status = waiting.status()
        if status.code.name == "IN_QUEUE" and status.rank is not None:
            positions.append(status.rank)
            break
        time.sleep(0.05)
    first.predict(api_name="/stop_training")
    assert positions and positions[0] >= 0, "the second training waited in the queue with a position"
    assert "is ready (stopped)" in running.result()[1]
    assert "is ready (max_iters)" in waiting.result()[1]


def test_another_visitors_stop_leaves_my_training_running(app_url):
    mine, theirs = client(app_url), client(app_url)
    running = mine.submit(*{**TINY_TRAINING, "max_iters": 20000}.values(), api_name="/train")  # stopped below
    deadline = time.monotonic() + 60
    while len(running.outputs()) < 2 and time.monotonic() < deadline:  # it is training: curves are coming
        time.sleep(0.05)
    theirs.predict(api_name="/stop_training")
    time.sleep(1.0)
    assert not running.done(), "another visitor's Stop stopped my training"
    mine.predict(api_name="/stop_training")
    assert "is ready (stopped)" in running.result()[1]


def test_the_more_knobs_reach_the_checkpoint_and_a_seed_repeats_a_run(app_url, tmp_path):
    c = client(app_url)
    knobs = dict(tokenizer="bpe", bpe_vocab_size=300, seed=7, dropout=0.1, weight_decay=0.02, warmup_iters=5,
                 bf16=False, optimizer="muon")
    first = train(c, **knobs)
    again = train(c, **knobs)
    other_seed = train(c, **{**knobs, "seed": 8})
    configs = []
    for *_, archive in (first, again, other_seed):
        with zipfile.ZipFile(archive) as z:
            configs.append((json.loads(z.read("config.json")), json.loads(z.read("tokenizer.json")),
                            json.loads(z.read("metrics.json"))["val_loss"]))
    config, tokenizer, val = configs[0]
    assert tokenizer["kind"] == "bpe" and config["model"]["vocab_size"] == 300
    assert config["model"]["dropout"] == 0.1
    assert {k: config["train"][k] for k in ("seed", "weight_decay", "warmup_iters", "dtype", "optimizer")} == {
        "seed": 7, "weight_decay": 0.02, "warmup_iters": 5, "dtype": "float32", "optimizer": "muon"}
    assert configs[1][2] == val, "the same seed and settings train the same model"
    assert configs[2][2] != val, "another seed, another model"
    # left out (an older client), the knobs take their defaults: characters, seed 1337
    *_, archive = c.predict(*list({**TINY_TRAINING, "seed": 99, "tokenizer": "bpe"}.values())[:12], api_name="/train")
    with zipfile.ZipFile(archive) as z:
        assert json.loads(z.read("tokenizer.json"))["kind"] == "char"
        assert json.loads(z.read("config.json"))["train"]["seed"] == 1337
        assert json.loads(z.read("config.json"))["train"]["optimizer"] == "adamw"


def test_bf16_autocast_is_taken_only_where_the_cpu_has_bf16_instructions(app_url):
    from babygpt.machine import bf16_trains_fast  # the app runs on this same machine

    c = client(app_url)
    if bf16_trains_fast():
        *_, archive = train(c, bf16=True)
        with zipfile.ZipFile(archive) as z:
            assert json.loads(z.read("config.json"))["train"]["dtype"] == "bfloat16"
    else:
        with pytest.raises(AppError, match="bf16 would be emulated"):
            train(c, bf16=True)


def test_the_addition_task_shows_exact_match_accuracy_in_the_status_and_the_curve(app_url):
    figure, status, *_ = train(client(app_url), corpus="addition", max_iters=40)
    assert "Exact-match accuracy on 100 val problems" in status
    traces = {t["name"]: t for t in json.loads(figure["plot"])["data"]}
    accuracy = traces["exact-match accuracy (%)"]
    assert accuracy["yaxis"] == "y2" and all(0 <= y <= 100 for y in accuracy["y"]) and len(accuracy["y"]) >= 1
    # on shakespeare there is no answer to be right about, and no such curve
    figure, status, *_ = train(client(app_url))
    assert "accuracy" not in status
    assert "exact-match accuracy (%)" not in {t["name"] for t in json.loads(figure["plot"])["data"]}


def test_preset_values_fill_the_form_and_models_lists_this_sessions_models(app_url):
    c = client(app_url)
    # sizes, batch, steps, learning rate, then dropout, weight decay, warmup
    assert list(c.predict("llama", api_name="/preset_values")) == [4, 4, 128, 64, 12, 2000, 0.001, 0.0, 0.1, 100]
    assert list(c.predict("bigram", api_name="/preset_values"))[3:7] == [8, 32, 1000, 0.1]
    compare, inside, attention, stats, hub, bases, experiments, ablation_bases = c.predict(api_name="/models")
    names = lambda update: {value for _, value in update["choices"]}  # noqa: E731 - [label, value] pairs
    shipped = {"bigram", "ngram", "lstm", "gpt-single-head", "gpt-multi-head", "gpt-block", "gpt", "gpt-time-weighted",
               "gpt-low-rank", "llama", "gpt-kjv-lora"}
    assert names(compare) == names(inside) == names(stats) == names(hub) == names(experiments) == shipped
    assert names(attention) == shipped - {"bigram", "ngram", "lstm"}, "only models with attention"
    assert names(bases) == names(attention) - {"gpt-kjv-lora"}, "any model LoRA can adapt, not an adapter"
    assert names(ablation_bases) == shipped - {"gpt-kjv-lora"}, "an ablation's base: any model, not an adapter"


def test_generation_runs_while_another_generation_is_running(app_url):
    first, second = client(app_url), client(app_url)
    long = first.submit(["gpt", "llama", "gpt-time-weighted"], "Hamlet:", 1000, 1.0, 0, 1.0, 1, api_name="/compare")
    deadline = time.monotonic() + 60
    while long.status().code.name in ("STARTING", "JOINING_QUEUE", "IN_QUEUE") and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    _, texts, *_ = second.predict(["bigram"], "Hamlet:", 20, 1.0, 0, 1.0, 1, api_name="/compare")
    assert len(texts["bigram"]) == len("Hamlet:") + 20
    assert not long.done(), "the short request finished while the long one was still generating"
    assert time.monotonic() - started < 20
    long.cancel()


def test_the_glue_endpoints(app_url):
    c = client(app_url)
    assert c.predict("gpt", api_name="/stats_clear_preset") is None, "choosing a model clears the preset"
    assert c.predict("llama", api_name="/stats_clear_model") is None, "choosing a preset clears the model"
    assert c.predict(api_name="/refresh_models") == c.predict(api_name="/models")


LORA_TUNE = dict(base="gpt", r=4, alpha=8, targets=["q", "v"], drop_unknown=True, batch_size=4, max_iters=20,
                 learning_rate=3e-3, max_seconds=0, corpus="kjv", upload=None, x_axis="step")


def test_lora_finetune_streams_both_val_curves_and_compares_with_its_base(app_url):
    c = client(app_url)
    assert list(c.predict("LoRA fine-tune", "gpt", api_name="/switch_mode"))[-3:] == [500, 0.003, "kjv"]
    figure, status, sample, names, archive = c.predict(*LORA_TUNE.values(), api_name="/finetune")
    assert "my-gpt-lora" in names and "is ready" in status
    assert "on shakespeare (the base corpus)" in status and len(sample) > 0
    traces = [t["name"] for t in json.loads(figure["plot"])["data"]]
    assert "val on shakespeare (base corpus)" in traces and "val" in traces
    with zipfile.ZipFile(archive) as z:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= set(z.namelist())
        assert "model.safetensors" not in z.namelist()
    compare, _, _, _, _, bases, _, _ = c.predict(api_name="/models")
    assert "my-gpt-lora" in {v for _, v in compare["choices"]} and "my-gpt-lora" not in {v for _, v in bases["choices"]}

    args = (["gpt", "my-gpt-lora"], "And God said", 60, 1.0, 0, 1.0, 5, "sampled", "", "probability")
    html, unmerged, *_ = c.predict(*args, False, api_name="/compare")
    assert unmerged["gpt"] != unmerged["my-gpt-lora"], "the adapter changes what the base writes"
    assert "LoRA r=4 (q, v) on gpt, unmerged" in html
    html, merged, *_ = c.predict(*args, True, api_name="/compare")
    assert merged == unmerged, "merging changes the speed, not the text"
    assert "LoRA r=4 (q, v) on gpt, merged" in html

    # The run kept its attention at every evaluation: step 0 (the base) and step 20.
    slider, figure, note = c.predict("my-gpt-lora", api_name="/attention_history")
    assert slider["maximum"] == 1 and slider["value"] == 1 and "2 snapshots, steps 0 to 20" in note
    assert json.loads(figure["plot"])["layout"]["title"]["text"] == "step 20"
    first = c.predict("my-gpt-lora", 0, api_name="/attention_replay")
    assert json.loads(first["plot"])["layout"]["title"]["text"] == "step 0"
    with pytest.raises(AppError, match="has no attention snapshots"):
        c.predict("gpt", api_name="/attention_history")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"r": 0}, "less than minimum value 1"),  # the field's range
        ({"base": None}, "pick a base model"),
        ({"base": "bigram"}, "LoRA adapts the attention families"),
        ({"targets": []}, "LoRA targets must be some of"),
        ({"alpha": 0}, "LoRA alpha must be positive"),
        ({"drop_unknown": False}, "that the model's vocabulary lacks"),
        ({"base": "nope"}, "no model named 'nope'"),
    ],
)
def test_bad_finetune_settings_give_a_readable_message(app_url, overrides, message):
    with pytest.raises(AppError, match=message):
        client(app_url).predict(*{**LORA_TUNE, **overrides}.values(), api_name="/finetune")


def test_logit_lens_and_head_roles_in_the_attention_tab(app_url):
    c = client(app_url)
    figure, note = c.predict("llama", "ROMEO:\nWhat light", api_name="/logit_lens")
    heatmap = json.loads(figure["plot"])["data"][0]
    assert heatmap["y"] == ["embeddings", "layer 0", "layer 1", "layer 2", "layer 3"] and len(heatmap["x"]) == 17
    assert "logit lens" in note and "model's own prediction" in note
    figure, note = c.predict("gpt-kjv-lora", api_name="/head_roles")
    titles = [a["text"] for a in json.loads(figure["plot"])["layout"]["annotations"]]
    assert titles == ["previous token", "first token", "induction"] and "random sequences" in note


@pytest.mark.parametrize("endpoint, args", [("/attention", ["Hi", 0, 0]), ("/attention_lines", ["Hi", 0]),
                                            ("/logit_lens", ["Hi"]), ("/head_roles", []), ("/attention_history", [])])
def test_the_attention_tab_says_why_a_model_without_attention_has_nothing_to_draw(app_url, endpoint, args):
    """Not an error: the note (or the HTML panel) explains, and the plots stay empty."""
    answer = client(app_url).predict("bigram", *args, api_name=endpoint)
    text = " ".join(str(part) for part in answer)
    assert "**bigram** is a bigram model" in text or "<b>bigram</b> is a bigram model" in text
    assert "has no attention" in text and "Pick a gpt or llama model" in text
    assert all(part is None for part in answer if not isinstance(part, str) and not isinstance(part, dict))


def test_loss_vs_compute_draws_every_model_with_a_history(app_url):
    c = client(app_url)
    train(c, max_iters=10)
    figure, note = c.predict(api_name="/loss_vs_compute")
    data = json.loads(figure["plot"])["data"]
    names = [n for trace in data if trace["name"].startswith("trained on") for n in trace["text"]]
    assert {"gpt", "llama", "ngram"} <= set(names) and any(n.startswith("my-gpt") for n in names)
    layout = json.loads(figure["plot"])["layout"]
    assert layout["xaxis"]["type"] == "log" and layout["yaxis"]["type"] == "log"
    assert "Not drawn: bigram, gpt-kjv-lora" in note


def test_int8_quantization_table_in_model_stats(app_url):
    c = client(app_url)
    table, note = c.predict("llama", api_name="/quantize")
    assert [row[0] for row in table["data"]] == ["fp32", "int8 weights (torchao Int8WeightOnlyConfig)"]
    assert "less memory" in note and "val loss by" in note
    with pytest.raises(AppError, match="pick a trained model"):
        c.predict(None, api_name="/quantize")


def test_bertviz_style_views(app_url):
    head, model = client(app_url).predict("llama", "To be, or not", 2, api_name="/attention_lines")
    assert "layer 2" in head and head.count("<g class='bv-q'>") == 13
    assert model.count("<svg") == 16 and "L3 H3" in model



def test_inside_walks_any_family_and_the_temperature_redoes_only_the_draw(app_url):
    c = client(app_url)
    note, *cards, sampling = c.predict("llama", "ROMEO:\nBut soft", -1, 1, 3, 1.0, 0, 1.0, 0, api_name="/inside")
    assert "following the prediction after token 14" in note and "layer 1 of 4, head 3 of 4" in note
    # each card is an update of its text and visibility; the cards a walk does not need stay hidden
    shown = [card for card in cards[0::2] if card.get("visible")]
    texts = [card["value"] for card in shown]
    assert len(shown) == 14 and not any(card.get("visible") for card in cards[2 * len(shown)::2])
    assert texts[0].startswith("### 1. Text → tokens") and any("Rotary positions" in t for t in texts)
    assert "heads 2, 3 read key/value head 1" in " ".join(texts)
    # the sampling card, one piece of HTML: its words, the top 10 and the draw on the cumulative distribution
    assert sampling.startswith(f"<h3>{len(texts) + 1}. Sampling the next token</h3>") and "The draw u = " in sampling
    assert "draw-picked" in sampling and sampling.count("class='draw-row'") == 10
    greedy = c.predict(0.0, 0, 1.0, 0, api_name="/inside_sample")  # the slider: the logits kept, no forward pass
    assert "At temperature 0 there is no draw" in greedy and greedy.startswith(f"<h3>{len(texts) + 1}.")
    assert "draw-strip" not in greedy
    # a family without heads says so, and a choice outside the model is named
    note, *_ = c.predict("lstm", "ROMEO:", -1, 1, 2, 1.0, 0, 1.0, 0, api_name="/inside")
    assert "has no heads to choose from" in note
    with pytest.raises(AppError, match="layer 9 is outside this model's 4 layers"):
        c.predict("gpt", "ROMEO:", -1, 9, 0, 1.0, 0, 1.0, 0, api_name="/inside")
    with pytest.raises(AppError, match="position 6 is outside the prompt's 6 tokens"):
        c.predict("gpt", "ROMEO:", 6, 0, 0, 1.0, 0, 1.0, 0, api_name="/inside")


def test_experiments_overlays_runs_of_any_origin_and_marks_what_does_not_compare(app_url):
    c = client(app_url)
    train(c, max_iters=20)  # a model of this session's own joins the shipped ones
    figure, table, note = c.predict(["gpt", "llama", "my-gpt"], "tokens", 0.0, api_name="/overlay")
    traces = json.loads(figure["plot"])["data"]
    assert {t["name"] for t in traces} == {f"{n} {s}" for n in ("gpt", "llama", "my-gpt") for s in ("train", "val")}
    rows = {row[0]: row for row in table["data"]}
    assert table["headers"] == TABLE_HEADERS and set(rows) == {"gpt", "llama", "my-gpt"}
    my_val = next(t for t in traces if t["name"] == "my-gpt val")
    assert my_val["x"][-1] == 20 * 4 * 16, "tokens seen: steps × batch × block"
    assert "compare directly" in note
    _, table, note = c.predict(["gpt", "gpt-kjv-lora"], "flops", 0.9, api_name="/overlay")
    assert "compare only within a group" in note and "kjv" in note
    gpt = next(row for row in table["data"] if row[0] == "gpt")
    assert gpt[TABLE_HEADERS.index("bits per character")] == pytest.approx(
        gpt[TABLE_HEADERS.index("best val loss")] / math.log(2), abs=1e-3), "a character model: 1 character per token"
    bad = [(([], "step", 0.0), "pick at least one model"), ((["gpt"], "hours", 0.0), "not in the list of choices"),
           ((["gpt"], "step", 1.0), "greater than maximum value 0.95"), ((["nope"], "step", 0.0), "no model named"),
           ((["gpt"] * 13, "step", 0.0), "at most 12")]
    for args, message in bad:
        with pytest.raises(AppError, match=message):
            c.predict(*args, api_name="/overlay")


def run_ablation_through_the_api(c: Client, *form):
    """What the page does: /ablate plans, then each run's /ablation_run hands the next run its ticket."""
    status, _, _, _, ticket = c.predict(*form, api_name="/ablate")
    answers = []
    while isinstance(ticket, str) and ticket:
        answers.append(c.predict(ticket, api_name="/ablation_run"))
        ticket = answers[-1][-1]
    return status, answers


def test_an_ablation_queues_its_runs_ranks_them_and_offers_the_results(app_url):
    c = client(app_url)
    status, answers = run_ablation_through_the_api(c, "bigram", "learning_rate", "0.1,0.01", 2, 1, "shakespeare")
    assert status.startswith("4 runs queued (learning_rate ∈ {0.1, 0.01} × 2 seed(s), 1 s each)")
    assert len(answers) == 4, "one event per run"
    assert [a[0].split(" runs done")[0] for a in answers[:3]] == ["1 of 4", "2 of 4", "3 of 4"]
    final_status, figure, board, files, _ = answers[-1]
    assert final_status.startswith("done: 4 of 4 runs, ranked by val loss")
    assert board["headers"] == LEADERBOARD_HEADERS and [row[0] for row in board["data"]] == [1, 2]
    assert {row[1] for row in board["data"]} == {"learning_rate=0.1", "learning_rate=0.01"}
    assert all(row[4] is not None for row in board["data"]), "two seeds: each setting has a spread"
    traces = {t["name"] for t in json.loads(figure["plot"])["data"]}
    assert {f"learning_rate={lr} seed {s} val" for lr in ("0.1", "0.01") for s in (1337, 1338)} <= traces
    by_name = {Path(f).name: Path(f) for f in files}
    rows = list(csv.DictReader(by_name["results.csv"].open()))
    assert len(rows) == 4 and {r["seed"] for r in rows} == {"1337", "1338"}
    assert json.loads(by_name["results.json"].read_text())["spec"]["knob"] == "learning_rate"
    models = {v for _, v in c.predict(api_name="/models")[-2]["choices"]}
    assert "my-learning_rate-0.1-seed1337" in models, "every run joins the visitor's models"
    assert c.predict("ghost:0", api_name="/ablation_run")[-1] == {"__type__": "update"}, "a foreign ticket runs nothing"


def test_an_ablation_stops_between_runs_and_keeps_what_finished(app_url):
    c = client(app_url)
    _, _, _, _, ticket = c.predict("bigram", "block_size", "4,8,16", 1, 1, "shakespeare", api_name="/ablate")
    first = c.predict(ticket, api_name="/ablation_run")
    assert c.predict(api_name="/stop_ablation").startswith("stopping")
    status, _, board, files, _ = c.predict(first[-1], api_name="/ablation_run")
    assert status.startswith("stopped: 1 of 3 runs") and len(board["data"]) == 1 and len(files) == 2
    assert c.predict(api_name="/stop_ablation") == "no ablation of yours is running"


def test_an_ablation_stopped_before_its_first_run_trains_none(app_url):
    c = client(app_url)
    _, _, _, _, ticket = c.predict("bigram", "block_size", "4,8", 1, 1, "shakespeare", api_name="/ablate")
    assert c.predict(api_name="/stop_ablation").startswith("stopping")
    status, _, board, files, next_ticket = c.predict(ticket, api_name="/ablation_run")
    assert status == "stopped before any run finished." and not board["data"] and not files
    assert next_ticket == {"__type__": "update"}, "no further run is queued"
    assert c.predict(api_name="/stop_ablation") == "no ablation of yours is running"


def test_the_tokenizer_lab_trains_a_bpe_and_compares_it_with_characters(app_url):
    c = client(app_url)
    tokens, merges, note = c.predict("shakespeare", 300, "To be, or not to be", None, api_name="/tokenizer_lab")
    assert note.startswith("**BPE-300** learned on shakespeare: this text is")
    assert tokens.count("class='tok-piece'") < len("To be, or not to be"), "merged pieces: fewer tokens than characters"
    assert "title='token id " in tokens
    assert [row[0] for row in merges["data"]] == list(range(1, 31)) and merges["data"][0][3] == "␣t"
    columns, table = c.predict("kjv", "In the beginning God created the heaven and the earth. 🙂", None,
                               api_name="/tokenizers_side_by_side")
    rows = {row[0]: row for row in table["data"]}
    assert list(rows) == ["characters", "BPE-256", "BPE-512", "BPE-1024"]
    assert rows["BPE-1024"][3] > rows["BPE-512"][3] > rows["BPE-256"][3], "compression grows with the vocabulary"
    assert "left out, not in kjv's characters: &#x27;🙂&#x27;" in columns, "characters: only the corpus's own"
    preset, knob, values, seeds, budget, corpus, base = c.predict("kjv", api_name="/tokenizer_ablation")
    assert (preset, knob, values, seeds, budget, corpus) == ("gpt", "tokenizer", "char,bpe-512,bpe-1024", 1, 20, "kjv")
    assert base is None, "the preset is the base, not a model of the visitor's"
    for args, message in ((("shakespeare", 300, "", None), "the text is empty"),
                          (("shakespeare", 300, "a" * 5001, None), "up to 5,000"),
                          (("../etc/passwd", 300, "hi", None), "not in the list of choices"),
                          (("upload a .txt file", 300, "hi", None), "choose a .txt file to upload")):
        with pytest.raises(AppError, match=message):
            c.predict(*args, api_name="/tokenizer_lab")
    with pytest.raises(AppError, match="an ablation in the app trains on a built-in corpus"):
        c.predict("upload a .txt file", api_name="/tokenizer_ablation")


def test_the_tokenizer_lab_learns_from_an_uploaded_corpus(app_url, tmp_path):
    corpus = tmp_path / "mine.txt"
    corpus.write_text("the cat sat on the mat; the cat sat on the hat. " * 300, encoding="utf-8")
    c = client(app_url)
    tokens, merges, note = c.predict("upload a .txt file", 300, "the cat sat", handle_file(str(corpus)),
                                     api_name="/tokenizer_lab")
    assert note.startswith("**BPE-300** learned on your file: this text is")
    assert "␣cat" in {row[3] for row in merges["data"]} or "␣the" in {row[3] for row in merges["data"]}
    _, table = c.predict("upload a .txt file", "the cat sat", handle_file(str(corpus)),
                         api_name="/tokenizers_side_by_side")
    assert {row[0]: row[1] for row in table["data"]}["characters"] == len(set(corpus.read_text()))


def test_an_ablation_can_take_one_of_my_models_settings_as_its_base(app_url):
    c = client(app_url)
    train(c, preset="llama", n_layer=1, n_head=2, n_embd=16, max_iters=5)
    assert c.predict("gpt", "my-llama", api_name="/ablation_base_knobs")["value"] == "n_layer"
    knobs = {v for _, v in c.predict("gpt", "my-llama", api_name="/ablation_base_knobs")["choices"]}
    assert "n_kv_head" in knobs, "the model's family's knobs, not the preset's"
    _, answers = run_ablation_through_the_api(c, "gpt", "n_embd", "16,32", 1, 1, "shakespeare", "my-llama")
    parameters = {row[1]: row[-1] for row in answers[-1][2]["data"]}
    _, table, _ = c.predict(["my-llama"], "step", 0.0, api_name="/overlay")
    assert parameters["n_embd=16"] == table["data"][0][1], "the value it was trained with: the same model"
    assert parameters["n_embd=32"] > parameters["n_embd=16"]
    with pytest.raises(AppError, match="a LoRA adapter's settings are its base's"):
        c.predict("gpt", "n_layer", "1,2", 1, 1, "shakespeare", "gpt-kjv-lora", api_name="/ablate")


def test_another_visitors_training_goes_between_two_runs_of_an_ablation(app_url):
    """Each run of an ablation is its own turn in the trainer's queue: a training queued while the
    first run trains goes before the second run."""
    ablating, other = client(app_url), client(app_url)
    # gpt: 3 s end each run by its budget (a bigram's 1,000 steps take less than that)
    _, _, _, _, ticket = ablating.predict("gpt", "n_layer", "1,2", 1, 3, "shakespeare", api_name="/ablate")
    times = {}

    def run(name, call):
        call()
        times[name] = time.monotonic()

    first = threading.Thread(target=run, args=("first run", lambda: times.setdefault(
        "ticket", ablating.predict(ticket, api_name="/ablation_run")[-1])))
    first.start()
    time.sleep(1.5)  # the first run is training now, for 3 s
    queued = threading.Thread(target=run, args=("other visitor", lambda: train(other, max_iters=20)))
    queued.start()
    first.join()
    run("second run", lambda: ablating.predict(times["ticket"], api_name="/ablation_run"))
    queued.join()
    # One training at a time: the other visitor's (20 steps) ending before the second run (3 s)
    # means it went first.
    assert times["first run"] < times["other visitor"] < times["second run"], times


def test_a_forms_link_round_trips_through_the_api(app_url):
    """/train_link and /ablation_link give the query a page opens with (the browser test opens it)."""
    c = client(app_url)
    form = {**{k: v for k, v in TINY_TRAINING.items() if k not in ("upload", "x_axis")}, "seed": 3, "optimizer": "muon"}
    query = c.predict(*form.values(), api_name="/train_link")
    values, notes = read_link(dict(parse_qsl(query.lstrip("?"))), LIMITS)
    assert notes == [] and values == {"tab": "train", **{k: v for k, v in form.items() if k != "bf16"}}
    query = c.predict("gpt", "attn_rank", "0,8", 2, 5, "kjv", api_name="/ablation_link")
    assert read_link(dict(parse_qsl(query.lstrip("?"))), LIMITS) == (
        {"tab": "experiments", "ablate_preset": "gpt", "knob": "attn_rank", "values": "0,8", "seeds": 2,
         "budget": 5.0, "ablate_corpus": "kjv"}, [])
