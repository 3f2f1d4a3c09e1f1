"""Hub round trips against a real HTTP server on 127.0.0.1 that speaks the Hub's protocol."""

import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError

from babygpt.checkpoint import load_checkpoint
from babygpt.hub import check_repo_id, download_checkpoint, push_checkpoint
from babygpt.ui.models import shipped_checkpoints

from conftest import HUB_TOKEN as TOKEN
from conftest import ROOT, adapter_on_a_local_base, running_app

GPT = shipped_checkpoints()["gpt"]


def same_logits(a, b):
    idx = torch.randint(0, a.config.vocab_size, (2, min(16, a.config.block_size)))
    with torch.no_grad():
        return torch.equal(a(idx)[0], b(idx)[0])


def test_push_then_load_by_repo_id_gives_the_same_model(hub, tmp_path):
    pushed = push_checkpoint(GPT, "alice/tiny-gpt", token=TOKEN, private=True, endpoint=hub.url)
    assert pushed.url.endswith("alice/tiny-gpt") and hub.repos["alice/tiny-gpt"]["private"] and pushed.card_written
    assert set(hub.repos["alice/tiny-gpt"]["files"]) == {"config.json", "tokenizer.json", "model.safetensors",
                                                         "metrics.json",
                                                         "README.md"}
    local = download_checkpoint("alice/tiny-gpt", tmp_path / "copy", token=TOKEN, endpoint=hub.url)
    assert sorted(p.name for p in local.iterdir()) == ["config.json", "hub_origin.json", "metrics.json",
                                                       "model.safetensors", "tokenizer.json"]
    from babygpt.hub import hub_origin

    assert hub_origin(local) == "alice/tiny-gpt", "where it came from, for an adapter trained on it"
    assert same_logits(load_checkpoint(local).model, load_checkpoint(GPT).model)


@pytest.mark.parametrize("repo_id", ["", "nobody", "a/b/c", "../etc", "alice/", "alice/x y", "alice/name.git"])
def test_invalid_repo_ids_are_refused_before_any_request(repo_id):
    with pytest.raises(ValueError, match="is not a repo id"):
        check_repo_id(repo_id)


def test_failures_are_clear_leave_nothing_behind_and_never_show_the_token(hub, tmp_path):
    messages = []
    with pytest.raises(ValueError, match="refused the token") as error:
        push_checkpoint(GPT, "alice/x", token="hf_wrong", endpoint=hub.url)
    messages.append(str(error.value))
    push_checkpoint(GPT, "alice/private", token=TOKEN, private=True, endpoint=hub.url)
    with pytest.raises(ValueError, match="no repository alice/private that you can see") as error:
        download_checkpoint("alice/private", tmp_path / "a", token=None, endpoint=hub.url)
    messages.append(str(error.value))
    with pytest.raises(ValueError, match="no repository alice/missing"):
        download_checkpoint("alice/missing", tmp_path / "b", token=TOKEN, endpoint=hub.url)
    hub.fail_next(500, count=20)
    with pytest.raises(ValueError, match="answered 500") as error:
        download_checkpoint("alice/private", tmp_path / "c", token=TOKEN, endpoint=hub.url)
    messages.append(str(error.value))
    assert not any((tmp_path / n).exists() for n in "abc"), "no half-written model"
    assert not [p for p in tmp_path.iterdir()], "no staging folders left"
    assert all(TOKEN not in m and "hf_wrong" not in m for m in messages)


def test_an_unreachable_hub_is_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="cannot be reached|answered"):
        download_checkpoint("alice/x", tmp_path / "x", token=TOKEN, endpoint="http://127.0.0.1:9")


def gpt2_repo(hub, repo_id, directory, n_embd=32, n_layer=1):
    """A randomly initialised GPT-2 saved by transformers (with the shipped models' characters as
    its tokenizer) and uploaded to ``repo_id``: a transformers repo with none of BabyGPT's files."""
    import transformers
    from huggingface_hub import HfApi

    from babygpt.export import transformers_tokenizer

    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=62, n_positions=32, n_embd=n_embd,
                                                                 n_layer=n_layer, n_head=2)).eval()
    model.save_pretrained(directory)
    transformers_tokenizer(load_checkpoint(GPT).tokenizer).save(str(directory / "tokenizer.json"))
    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo(repo_id)
    api.upload_folder(folder_path=directory, repo_id=repo_id)
    return model


def test_the_hub_tab_pushes_and_loads_through_the_app(hub, tmp_path):
    log = tmp_path / "server.log"
    gpt2_repo(hub, "openai/tiny-gpt2", tmp_path / "gpt2")
    gpt2_repo(hub, "openai/wider-gpt2", tmp_path / "wider", n_embd=256, n_layer=2)  # 6.4 MB of weights
    base, adapter = adapter_on_a_local_base(tmp_path)
    push_checkpoint(base, "carol/base", token=TOKEN, endpoint=hub.url)
    push_checkpoint(adapter, "carol/adapter", token=TOKEN, endpoint=hub.url)
    with running_app(log, HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_XET="1",
                     BABYGPT_MAX_MODEL_MB="5") as url:
        client = Client(url, verbose=False, analytics_enabled=False)
        status = client.predict("gpt", "bob/shared-gpt", True, api_name="/push")
        assert "pushed **gpt**" in status and "bob/shared-gpt" in status and "with a generated model card" in status
        assert TOKEN not in status
        status, names = client.predict("bob/shared-gpt", api_name="/load")
        assert TOKEN not in status
        assert "bob-shared-gpt" in status and "my-bob-shared-gpt" in names
        html, texts, *_ = client.predict(["my-bob-shared-gpt", "gpt"], "Hamlet:", 30, 0.0, 0, 1.0, 0,
                                         api_name="/compare")
        assert texts["my-bob-shared-gpt"] == texts["gpt"], "the loaded copy writes exactly what the original does"
        status = client.predict("llama", "bob/llama-hf", False, "transformers", api_name="/push")
        assert "in transformers' layout" in status and "babygpt/config.json" in hub.repos["bob/llama-hf"]["files"]
        status, names = client.predict("bob/llama-hf", api_name="/load")
        assert "my-bob-llama-hf" in names and "imported" not in status, "BabyGPT's own files, from babygpt/"
        status, names = client.predict("openai/tiny-gpt2", api_name="/load")
        assert "imported from transformers (GPT2LMHeadModel) into BabyGPT's gpt family" in status
        *_, note = client.predict("my-openai-tiny-gpt2", "ROMEO:", 0, 0, api_name="/attention")
        assert "6 tokens" in note
        with pytest.raises(AppError, match=r"weights are 6.\d MB, over this app's limit of 5.0 MB"):
            client.predict("openai/wider-gpt2", api_name="/load")
        status, names = client.predict("carol/adapter", api_name="/load")  # its base is none of this visitor's
        assert "its base fetched from the Hub as **my-carol-adapter-base**" in status
        assert {"my-carol-adapter", "my-carol-adapter-base"} <= set(names)
        html, texts, *_ = client.predict(["my-carol-adapter"], "Hamlet:", 5, 0.0, 0, 1.0, 0, api_name="/compare")
        assert texts["my-carol-adapter"].startswith("Hamlet:")
        with pytest.raises(AppError, match="is not a repo id"):
            client.predict("gpt", "not a repo", True, api_name="/push")
        with pytest.raises(AppError, match="no repository bob/absent"):
            client.predict("bob/absent", api_name="/load")
        hub.fail_next(500, count=20)
        with pytest.raises(AppError, match="answered 500") as error:
            client.predict("gpt", "bob/shared-gpt", True, api_name="/push")
        assert TOKEN not in str(error.value)
    assert all(TOKEN not in str(r) for r in hub.requests)
    printed = log.read_text()
    assert "127.0.0.1" in printed  # the server's own output was captured
    assert TOKEN not in printed and TOKEN[3:] not in printed  # nor its tail, in any message or traceback


def test_an_adapter_travels_when_its_base_is_a_shipped_model(hub, tmp_path):
    adapter = shipped_checkpoints()["gpt-kjv-lora"]
    push_checkpoint(adapter, "alice/gpt-kjv-lora", token=TOKEN, endpoint=hub.url)
    assert set(hub.repos["alice/gpt-kjv-lora"]["files"]) == {"adapter_config.json", "adapter_model.safetensors",
                                                             "metrics.json", "README.md"}
    assert "LoRA adapter (r = 8" in hub.repos["alice/gpt-kjv-lora"]["files"]["README.md"].decode()
    local = download_checkpoint("alice/gpt-kjv-lora", tmp_path / "copy", token=TOKEN, endpoint=hub.url)
    assert same_logits(load_checkpoint(local).model, load_checkpoint(adapter).model)


def test_the_model_card_is_generated_and_a_users_edits_are_kept(hub):
    from huggingface_hub import HfApi, ModelCard

    push_checkpoint(GPT, "alice/carded", token=TOKEN, endpoint=hub.url)
    card = hub.repos["alice/carded"]["files"]["README.md"].decode()
    front, body = card.split("\n---\n", 1)
    data = ModelCard(card).data  # as huggingface_hub reads it
    assert (data.library_name, data.license, data.datasets) == ("babygpt", "mit", ["shakespeare"])
    assert "gpt" in data.tags and "library_name: babygpt" in front
    assert [(r.metric_type, r.metric_value) for r in data.eval_results] == [("loss", 1.9519)]
    for part in ("# alice/carded", "809,472", "1,719,808 forward", "| `n_layer` | 4 |", "| `learning_rate` | 0.001 |",
                 "| 2,000 | 1,536,000 |", "Seed 0, temperature 0.8", "download_checkpoint(\"alice/carded\""):
        assert part in body, part
    assert TOKEN not in card
    # Pushed again unedited: regenerated. Edited by its owner: kept, and the push says so.
    assert push_checkpoint(GPT, "alice/carded", token=TOKEN, endpoint=hub.url).card_written
    edited = card.replace("## Samples", "## Samples\n\nMy own notes.")
    HfApi(endpoint=hub.url, token=TOKEN).upload_file(path_or_fileobj=edited.encode(), path_in_repo="README.md",
                                                     repo_id="alice/carded")
    again = push_checkpoint(GPT, "alice/carded", token=TOKEN, endpoint=hub.url)
    assert not again.card_written and hub.repos["alice/carded"]["files"]["README.md"].decode() == edited


@pytest.mark.parametrize("name", ["bigram", "ngram", "lstm", "gpt", "llama", "gpt-kjv-lora"])
def test_save_push_and_from_pretrained_for_every_family_and_an_adapter(hub, tmp_path, name):
    from babygpt.hub import from_pretrained, push_to_hub, save_pretrained

    original = from_pretrained(name)  # a shipped name
    saved = save_pretrained(original, tmp_path / "saved")
    assert same_logits(load_checkpoint(saved).model, original.model)
    pushed = push_to_hub(original, f"alice/{name}", token=TOKEN, endpoint=hub.url)  # a loaded model, not a folder
    assert pushed.card_written and pushed.url.endswith(f"alice/{name}")
    for _ in range(2):  # a second load replaces the first copy
        loaded = from_pretrained(f"alice/{name}", token=TOKEN, endpoint=hub.url, cache_dir=tmp_path / "cache")
        assert same_logits(loaded.model, original.model)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"alice--{name}"]


def test_pushing_without_any_token_says_how_to_get_one(hub, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr("huggingface_hub.constants.HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    with pytest.raises(ValueError, match="needs a Hugging Face token .* set HF_TOKEN"):
        push_checkpoint(GPT, "alice/x", token=None, endpoint=hub.url)
    assert "alice/x" not in hub.repos, "nothing was sent"


def test_train_tiny_push_and_load_by_repo_id_gives_the_same_logits(hub, tmp_path):
    from babygpt.hub import from_pretrained
    from babygpt.runs import new_run

    trainer = new_run("shakespeare", preset="llama", model={"n_layer": 1, "n_head": 2, "n_kv_head": 1, "n_embd": 16,
                                                              "block_size": 16},
                      train={"batch_size": 4, "max_iters": 5, "eval_interval": 5, "eval_iters": 1, "sample_tokens": 0},
                      out_dir=tmp_path / "tiny")
    for _ in trainer.run():
        pass
    push_checkpoint(tmp_path / "tiny", "alice/tiny-llama", token=TOKEN, endpoint=hub.url)
    loaded = from_pretrained("alice/tiny-llama", token=TOKEN, endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert same_logits(loaded.model, load_checkpoint(tmp_path / "tiny").model)
    assert "model-index" in hub.repos["alice/tiny-llama"]["files"]["README.md"].decode()


def test_pushing_where_the_token_may_not_write_is_a_clear_message(hub):
    hub.namespaces = {"alice"}
    with pytest.raises(ValueError, match="your token may not write to bob/x") as error:
        push_checkpoint(GPT, "bob/x", token=TOKEN, endpoint=hub.url)
    assert TOKEN not in str(error.value) and "bob/x" not in hub.repos
    assert push_checkpoint(GPT, "alice/x", token=TOKEN, endpoint=hub.url).card_written


def test_a_push_to_a_hub_that_stops_answering_or_cannot_be_reached_is_a_clear_message(hub, monkeypatch):
    monkeypatch.setattr("babygpt.hub.TIMEOUT_SECONDS", 1.0)
    push_checkpoint(GPT, "alice/slow", token=TOKEN, endpoint=hub.url)
    before = dict(hub.repos["alice/slow"]["files"])
    hub.stall_next(3.0, count=50)  # more than any retry huggingface_hub makes
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"stopped answering \(alice/slow\); try again"):
        push_checkpoint(GPT, "alice/slow", token=TOKEN, endpoint=hub.url)
    assert time.monotonic() - started < 30, "the push gave up"
    assert hub.repos["alice/slow"]["files"] == before
    hub.stop_stalling()
    assert push_checkpoint(GPT, "alice/slow", token=TOKEN, endpoint=hub.url).url  # retry works once it answers
    with pytest.raises(ValueError, match="cannot be reached"):
        push_checkpoint(GPT, "alice/x", token=TOKEN, endpoint="http://127.0.0.1:9")  # refused connection


def test_a_download_from_a_hub_that_stops_answering_is_a_clear_message(hub, tmp_path):
    """Downloads keep huggingface_hub's own limit per request (HF_HUB_DOWNLOAD_TIMEOUT, 10 s; read
    at import, so the download runs in a process started with 1 s) and its retries (all made; the
    waits between them skipped by ``record_retry_waits``)."""
    push_checkpoint(GPT, "alice/slow", token=TOKEN, endpoint=hub.url)
    hub.stall_next(1.5, count=1000)  # past the 1 s limit of each request
    script = (f"import sys\nsys.path.insert(0, {str(ROOT / 'tests')!r})\nfrom hub_server import record_retry_waits\n"
              "waits = record_retry_waits()\nfrom babygpt.hub import download_checkpoint\ntry:\n"
              f"    download_checkpoint('alice/slow', {str(tmp_path / 'copy')!r}, token={TOKEN!r}, "
              f"endpoint={hub.url!r})\n"
              "except ValueError as error:\n    print(error)\n    print('retries:', len(waits))\n    sys.exit(3)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_DOWNLOAD_TIMEOUT": "1", "HF_HUB_ETAG_TIMEOUT": "1",
           "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    hub.stop_stalling()
    assert result.returncode == 3, result.stdout + result.stderr
    assert "stopped answering (alice/slow); try again in a moment" in result.stdout and TOKEN not in result.stdout
    assert "retries: 0" not in result.stdout, "huggingface_hub retried before giving up"
    assert list(tmp_path.iterdir()) == [], "nothing half-written, no staging folder left"


@pytest.mark.parametrize("name", ["gpt", "llama"])
def test_a_push_in_transformers_layout_loads_in_transformers_and_in_babygpt(hub, tmp_path, monkeypatch, name):
    transformers = pytest.importorskip("transformers")
    from babygpt.hub import from_pretrained, push_to_hub

    repo = f"alice/{name}-hf"
    push_to_hub(name, repo, token=TOKEN, endpoint=hub.url, layout="transformers")
    files = set(hub.repos[repo]["files"])
    assert files == {"README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                     "generation_config.json", "babygpt_tokenizer.json", "babygpt/config.json",
                     "babygpt/tokenizer.json", "babygpt/model.safetensors", "babygpt/metrics.json"}
    # transformers downloads from huggingface_hub's endpoint, which HF_ENDPOINT sets at import
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", hub.url)
    monkeypatch.setattr("huggingface_hub.constants.HUGGINGFACE_CO_URL_TEMPLATE",
                        hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr("transformers.utils.hub._hf_api", None)  # its shared client, made on first use
    theirs = transformers.AutoModelForCausalLM.from_pretrained(repo, token=TOKEN, cache_dir=tmp_path / "hf").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(repo, token=TOKEN, cache_dir=tmp_path / "hf")
    ours = from_pretrained(repo, token=TOKEN, endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert ours.config["model"]["family"] == name and "imported_from" not in ours.config, "BabyGPT's own copy"
    assert same_logits(ours.model, load_checkpoint(shipped_checkpoints()[name]).model)
    ids = ours.tokenizer.encode("ROMEO:\nWhat say you?")
    assert tokenizer("ROMEO:\nWhat say you?")["input_ids"] == ids
    with torch.no_grad():
        torch.testing.assert_close(theirs(torch.tensor([ids])).logits, ours.model(torch.tensor([ids]))[0],
                                   atol=1e-4, rtol=1e-4)
    from huggingface_hub import ModelCard

    card = ModelCard(hub.repos[repo]["files"]["README.md"].decode())
    assert card.data.library_name == "transformers" and f'pipeline("text-generation", model="{repo}")' in card.text


def test_a_transformers_repo_without_babygpts_files_is_imported_and_pickle_only_is_refused(hub, tmp_path):
    pytest.importorskip("transformers")
    from huggingface_hub import HfApi

    from babygpt.hub import from_pretrained

    model = gpt2_repo(hub, "openai/tiny-gpt2", tmp_path / "gpt2")
    api = HfApi(endpoint=hub.url, token=TOKEN)
    ours = from_pretrained("openai/tiny-gpt2", token=TOKEN, endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert ours.config["imported_from"]["source"] == "openai/tiny-gpt2"
    idx = torch.randint(0, 62, (1, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours.model(idx)[0], model(idx).logits, atol=1e-4, rtol=1e-4)
    before = len(hub.requests)
    with pytest.raises(ValueError, match=r"weights are 0.\d MB, over this app's limit of 0.0 MB"):
        download_checkpoint("openai/tiny-gpt2", tmp_path / "big", token=TOKEN, endpoint=hub.url, max_bytes=10_000)
    assert not (tmp_path / "big").exists()
    assert not any(r["method"] == "GET" and "model.safetensors" in r["path"] for r in hub.requests[before:])

    api.create_repo("old/pickled")
    api.upload_file(path_or_fileobj=b"could run code when unpickled", path_in_repo="pytorch_model.bin",
                    repo_id="old/pickled")
    api.upload_file(path_or_fileobj=(tmp_path / "gpt2" / "config.json").read_bytes(), path_in_repo="config.json",
                    repo_id="old/pickled")
    before = len(hub.requests)
    with pytest.raises(ValueError, match=r"only pickle weights \(pytorch_model.bin\).*nothing was downloaded"):
        download_checkpoint("old/pickled", tmp_path / "pickled", token=TOKEN, endpoint=hub.url)
    assert not any("pytorch_model.bin" in r["path"] for r in hub.requests[before:]), "not a byte of it fetched"


def test_an_adapter_names_its_base_by_repo_id_and_fetches_it_hash_checked(hub, tmp_path):
    import json

    from huggingface_hub import HfApi

    from babygpt.hub import from_pretrained, push_to_hub

    base, _ = adapter_on_a_local_base(tmp_path)
    with pytest.raises(ValueError, match=r"base \(my-base\) is only on this machine.*push the base model first"):
        push_to_hub(tmp_path / "adapter", "alice/adapter", token=TOKEN, endpoint=hub.url)
    assert "alice/adapter" not in hub.repos, "nothing was sent"
    push_to_hub(base, "alice/base", token=TOKEN, endpoint=hub.url)  # remembered beside the base
    push_to_hub(tmp_path / "adapter", "alice/adapter", token=TOKEN, endpoint=hub.url)
    pushed = json.loads(hub.repos["alice/adapter"]["files"]["adapter_config.json"])
    assert pushed["base_model_name_or_path"] == "alice/base"

    shutil.rmtree(base)  # elsewhere: the base is not here, so it comes from the Hub
    loaded = from_pretrained("alice/adapter", token=TOKEN, endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["alice--adapter", "alice--base"]
    original = checkpoint_on(tmp_path / "adapter", tmp_path / "cache" / "alice--base")
    assert same_logits(loaded.model, original.model)

    # The base repo changes (retrained): the adapter no longer fits it, and says so.
    other = tmp_path / "retrained"
    shutil.copytree(GPT, other)
    with torch.no_grad():
        retrained = load_checkpoint(other).model
        retrained.lm_head.weight.mul_(1.01)
    from babygpt.checkpoint import save_checkpoint

    save_checkpoint(other, retrained, load_checkpoint(GPT).tokenizer, {})
    HfApi(endpoint=hub.url, token=TOKEN).upload_file(path_or_fileobj=str(other / "model.safetensors"),
                                                     path_in_repo="model.safetensors", repo_id="alice/base")
    (tmp_path / "again").mkdir()
    with pytest.raises(ValueError, match="the adapter's base alice/base has changed since the adapter was trained"):
        download_checkpoint("alice/adapter", tmp_path / "again" / "copy", token=TOKEN, endpoint=hub.url)
    hub.repos.pop("alice/base")
    with pytest.raises(ValueError, match="no repository alice/base"):
        download_checkpoint("alice/adapter", tmp_path / "again" / "copy", token=TOKEN, endpoint=hub.url)
    assert [p.name for p in (tmp_path / "again").iterdir()] == [], "nothing half-written"


def checkpoint_on(adapter, base):
    from babygpt.checkpoint import load_adapter

    return load_adapter(adapter, base=base)
