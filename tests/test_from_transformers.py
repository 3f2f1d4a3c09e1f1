"""Import: randomly initialised GPT-2 and Llama models, saved by transformers itself, load into the
gpt and llama families with the same logits; what the families cannot express is refused."""

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from babygpt import checkpoint
from babygpt.data import load_text
from babygpt.from_transformers import import_transformers, save_imported
from babygpt.hub import from_pretrained
from babygpt.tokenizer import BPETokenizer

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


@pytest.mark.parametrize("make, overrides, reason", [
    (gpt2, {"activation_function": "relu"}, "the activation 'relu'"),
    (gpt2, {"n_inner": 100}, "an MLP of width 100"),
    (gpt2, {"scale_attn_by_inverse_layer_idx": True}, "scaled by layer depth"),
    (llama, {"attention_bias": True}, "biases in attention"),
    (llama, {"mlp_bias": True}, "biases in the MLP"),
    (llama, {"hidden_act": "gelu"}, "the activation 'gelu'"),
    (llama, {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "scaled RoPE \\('linear'"),
    (llama, {"head_dim": 16}, "a head size of 16"),
])
def test_what_the_families_cannot_express_is_refused_with_the_reason(make, overrides, reason, bpe, tmp_path):
    directory = saved(make(**overrides), tmp_path / "hf", bpe)
    with pytest.raises(ValueError, match=reason):
        import_transformers(directory)


def test_another_architecture_is_refused_naming_what_is_imported(bpe, tmp_path):
    bert = transformers.BertForMaskedLM(transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                                                                num_attention_heads=2, intermediate_size=64))
    directory = saved(bert, tmp_path / "bert", bpe)
    with pytest.raises(ValueError, match=r"a bert \(BertForMaskedLM\) is not a model BabyGPT can import: it imports "
                                         r"gpt2 \(into gpt\), llama \(into llama\)"):
        import_transformers(directory)


def test_pickle_only_weights_are_refused_without_being_read(bpe, tmp_path):
    directory = saved(gpt2(), tmp_path / "hf", bpe)
    (directory / "model.safetensors").unlink()
    (directory / "pytorch_model.bin").write_bytes(b"not even read: a real one could run code when unpickled")
    with pytest.raises(ValueError, match=r"only pickle weights \(pytorch_model.bin\)"):
        import_transformers(directory)


def test_a_missing_tokenizer_weights_that_do_not_fit_and_a_size_limit_are_refused(bpe, tmp_path):
    directory = saved(gpt2(), tmp_path / "hf", bpe, how=None)
    with pytest.raises(ValueError, match="has no tokenizer"):
        import_transformers(directory)
    (directory / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="tokenizer cannot be read"):
        import_transformers(directory)
    bpe.tokenizer.save(str(directory / "tokenizer.json"))
    with pytest.raises(ValueError, match=r"weights are 0.3 MB, over this app's limit of 0.0 MB"):
        import_transformers(directory, max_bytes=1000)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "n_embd": 64}))
    with pytest.raises(ValueError, match=r"weights do not match its config: lm_head.weight \(300, 48\) where the "
                                         r"config means \(300, 64\)"):
        import_transformers(directory)
    (directory / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        import_transformers(directory)
