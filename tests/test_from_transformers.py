"""Import: randomly initialised GPT-2 and Llama models, saved by transformers itself, load into the
gpt and llama families with the same logits; what the families cannot express is refused."""

import json
import re
import shutil

import pytest
import torch

transformers = pytest.importorskip("transformers")

from babygpt import checkpoint
from babygpt.data import load_text
from babygpt.from_transformers import import_transformers, save_imported
from babygpt.hub import from_pretrained
from babygpt.tokenizer import BPETokenizer

from conftest import HUB_TOKEN, ROOT, adapter_on_a_local_base

VOCAB = 300


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(load_text("shakespeare")[:100_000], vocab_size=VOCAB)


def gpt2(**overrides):
    values = {"vocab_size": VOCAB, "n_positions": 32, "n_embd": 48, "n_layer": 2, "n_head": 4} | overrides
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**values))


def llama(**overrides):
    values = {"vocab_size": VOCAB, "hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32} | overrides
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**values))


def saved(model, directory, tokenizer, how="tokenizer.json"):
    """``model`` as transformers saves it, with ``tokenizer`` in one of the two forms GPT-2's come in."""
    torch.manual_seed(0)
    with torch.no_grad():  # biases and norms start at 0 and 1: make every weight matter
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    model.save_pretrained(directory)
    if how == "tokenizer.json":
        tokenizer.tokenizer.save(str(directory / "tokenizer.json"))
    elif how == "vocab+merges":
        tokenizer.tokenizer.model.save(str(directory))
    return directory


def logits_agree(theirs, directory):
    ours = import_transformers(directory)
    idx = torch.randint(0, VOCAB, (2, 32), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, actual = theirs.eval()(idx).logits, ours.model(idx)[0]
    assert expected.abs().max() > 0.5, "logits too small for a sharp comparison"
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    return ours


@pytest.mark.parametrize("make, family, overrides", [
    (gpt2, "gpt", {}),  # tied head, gelu_new
    (gpt2, "gpt", {"tie_word_embeddings": False, "activation_function": "gelu"}),
    (llama, "llama", {}),  # grouped-query attention (2 key/value heads for 4)
    (llama, "llama", {"num_key_value_heads": 4, "tie_word_embeddings": True, "rope_theta": 500.0}),
    (llama, "llama", {"num_key_value_heads": 1, "rms_norm_eps": 1e-5}),
])
def test_transformers_checkpoints_import_with_the_same_logits(make, family, overrides, bpe, tmp_path):
    theirs = make(**overrides)
    ours = logits_agree(theirs, saved(theirs, tmp_path / "hf", bpe))
    assert ours.config["model"]["family"] == family
    assert ours.model.config.tie_weights == theirs.config.tie_word_embeddings
    assert ours.tokenizer.encode("ROMEO: hello") == bpe.encode("ROMEO: hello")


def test_gpt2s_vocab_and_merges_files_are_its_tokenizer_too(bpe, tmp_path):
    directory = saved(gpt2(), tmp_path / "hf", bpe, how="vocab+merges")
    assert not (directory / "tokenizer.json").exists()
    text = "Wherefore art thou, Romeo?"
    assert import_transformers(directory).tokenizer.encode(text) == bpe.encode(text)


def test_an_import_is_a_checkpoint_and_from_pretrained_reads_the_directory(bpe, tmp_path):
    theirs = gpt2()
    directory = saved(theirs, tmp_path / "hf", bpe)
    again = checkpoint.load_checkpoint(save_imported(directory, tmp_path / "babygpt"))
    assert again.config["imported_from"]["architectures"] == ["GPT2LMHeadModel"]
    idx = torch.randint(0, VOCAB, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(again.model(idx)[0], theirs.eval()(idx).logits, atol=1e-4, rtol=1e-4)
    assert from_pretrained(str(directory)).model.config == again.model.config


def test_an_exported_model_comes_back_with_the_same_logits(tmp_path):
    from babygpt.export import export_transformers

    for name in ("gpt", "llama"):
        shipped = checkpoint.load_checkpoint(checkpoint.find_checkpoint(name))
        back = import_transformers(export_transformers(name, tmp_path / name))
        idx = torch.randint(0, 62, (2, 64), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            torch.testing.assert_close(back.model(idx)[0], shipped.model(idx)[0], atol=1e-5, rtol=1e-5)
        text = "ROMEO:\nWhat say you?"
        assert back.tokenizer.encode(text) == shipped.tokenizer.encode(text)
        assert back.tokenizer.decode(shipped.tokenizer.encode(text)) == text


# Each case is a row of SECURITY.md's table of imports and the Hub (the last test checks it lists
# exactly these): (what is sent, a piece of the message). Nothing is unpickled, nothing half-written.
CASES = [
    ("a repo of another architecture (a BERT config)", "a bert (BertForMaskedLM) is not a model BabyGPT can import"),
    ("a GPT-2 with an activation gpt lacks (relu)", "gpt cannot express this GPT-2's the activation 'relu'"),
    ("a GPT-2 whose MLP is not 4 × n_embd wide", "an MLP of width 100"),
    ("a GPT-2 that scales attention by layer depth", "attention scaled by layer depth"),
    ("a Llama with biases in attention", "biases in attention (attention_bias)"),
    ("a Llama with biases in the MLP", "biases in the MLP (mlp_bias)"),
    ("a Llama with another activation (gelu)", "the activation 'gelu'"),
    ("a Llama with scaled RoPE (linear)", "scaled RoPE ('linear'"),
    ("a Llama whose head size is not hidden_size / heads", "a head size of 16"),
    ("a checkpoint without a tokenizer", "has no tokenizer"),
    ("an unreadable tokenizer.json", "tokenizer cannot be read"),
    ("weights whose shapes do not match the config", "weights do not match its config: lm_head.weight (300, 48)"),
    ("a truncated model.safetensors", "is not a readable safetensors file"),
    ("a folder with only pickle weights (pytorch_model.bin)", "has only pickle weights (pytorch_model.bin)"),
    ("a Hub repo with only pickle weights", "nothing was downloaded"),
    ("a model over the size limit (BABYGPT_MAX_MODEL_MB)", "over this app's limit of 0.0 MB"),
    ("a Hub that fails in the middle of a download", "answered 500"),
    ("an adapter pushed while its base is only on this machine", "is only on this machine"),
    ("an adapter whose base repo is missing", "no repository alice/base"),
    ("an adapter whose base repo has changed (another sha256)", "has changed since the adapter was trained"),
]
REFUSED_CONFIGS = {  # what -> (which model, its config's difference)
    "a GPT-2 with an activation gpt lacks (relu)": (gpt2, {"activation_function": "relu"}),
    "a GPT-2 whose MLP is not 4 × n_embd wide": (gpt2, {"n_inner": 100}),
    "a GPT-2 that scales attention by layer depth": (gpt2, {"scale_attn_by_inverse_layer_idx": True}),
    "a Llama with biases in attention": (llama, {"attention_bias": True}),
    "a Llama with biases in the MLP": (llama, {"mlp_bias": True}),
    "a Llama with another activation (gelu)": (llama, {"hidden_act": "gelu"}),
    "a Llama with scaled RoPE (linear)": (llama, {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
    "a Llama whose head size is not hidden_size / heads": (llama, {"head_dim": 16}),
}


def bad_directory(what, bpe, directory):
    """A transformers directory damaged as ``what`` says."""
    if what in REFUSED_CONFIGS:
        make, overrides = REFUSED_CONFIGS[what]
        return saved(make(**overrides), directory, bpe)
    if what.startswith("a repo of another architecture"):
        config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64)
        return saved(transformers.BertForMaskedLM(config), directory, bpe)
    saved(gpt2(), directory, bpe, how=None if what == "a checkpoint without a tokenizer" else "tokenizer.json")
    weights = directory / "model.safetensors"
    if what == "an unreadable tokenizer.json":
        (directory / "tokenizer.json").write_text("{not json", encoding="utf-8")
    elif what == "weights whose shapes do not match the config":
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, "n_embd": 64}))
    elif what == "a truncated model.safetensors":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif what == "a folder with only pickle weights (pytorch_model.bin)":
        weights.unlink()
        (directory / "pytorch_model.bin").write_bytes(b"never read: a real one could run code when unpickled")
    return directory


def hub_case(what, bpe, tmp_path, hub):
    """The Hub cases: each call raises what a user sees."""
    from huggingface_hub import HfApi

    from babygpt.hub import download_checkpoint, push_to_hub

    api = HfApi(endpoint=hub.url, token=HUB_TOKEN)
    fetch = dict(token=HUB_TOKEN, endpoint=hub.url)
    if what.startswith("an adapter"):
        base, adapter = adapter_on_a_local_base(tmp_path)
        if what == "an adapter pushed while its base is only on this machine":
            return lambda: push_to_hub(adapter, "alice/adapter", **fetch)
        push_to_hub(base, "alice/base", **fetch)
        push_to_hub(adapter, "alice/adapter", **fetch)
        shutil.rmtree(base)
        if what == "an adapter whose base repo is missing":
            hub.repos.pop("alice/base")
        else:  # retrained: the same shape, other weights
            retrained = checkpoint.load_checkpoint(checkpoint.find_checkpoint("gpt"))
            with torch.no_grad():
                retrained.model.lm_head.weight.mul_(1.01)
            checkpoint.save_checkpoint(tmp_path / "retrained", retrained.model, retrained.tokenizer, {})
            api.upload_file(path_or_fileobj=str(tmp_path / "retrained" / "model.safetensors"),
                            path_in_repo="model.safetensors", repo_id="alice/base")
        return lambda: download_checkpoint("alice/adapter", tmp_path / "copy", **fetch)
    directory = saved(gpt2(), tmp_path / "hf", bpe)
    if what == "a Hub repo with only pickle weights":
        (directory / "model.safetensors").rename(directory / "pytorch_model.bin")
    api.create_repo("alice/gpt2")
    api.upload_folder(folder_path=directory, repo_id="alice/gpt2")
    if what == "a Hub that fails in the middle of a download":
        hub.fail_path("/model.safetensors", 500)  # the file list and config.json answer
    limit = 1000 if what.startswith("a model over the size limit") else None
    return lambda: download_checkpoint("alice/gpt2", tmp_path / "copy", max_bytes=limit, **fetch)


HUB_CASES = {what for what, _ in CASES[CASES.index(("a Hub repo with only pickle weights", "nothing was downloaded")):]}


@pytest.mark.parametrize("what, message", CASES, ids=[what for what, _ in CASES])
def test_bad_imports_are_refused_with_a_clear_message(what, message, bpe, tmp_path, request):
    if what in HUB_CASES:
        call = hub_case(what, bpe, tmp_path, request.getfixturevalue("hub"))
    else:
        directory = bad_directory(what, bpe, tmp_path / "hf")
        call = lambda: import_transformers(directory, max_bytes=None)  # noqa: E731
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)
    assert not (tmp_path / "copy").exists(), "nothing half-written"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".download-")], "no staging left"
    if what == "a Hub that fails in the middle of a download":
        assert len(request.getfixturevalue("hub").retry_waits) >= 5, "huggingface_hub retried the failing file"


def test_security_md_lists_exactly_these_import_cases():
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| import \| (.+?) \| (.+?) \|$", text, flags=re.MULTILINE)
    assert [what for what, _ in rows] == [what for what, _ in CASES]
    assert all(message in shown for (_, message), (_, shown) in zip(CASES, rows))
