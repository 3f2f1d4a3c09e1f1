"""Export to transformers: AutoModelForCausalLM loads the exported directory with the same logits."""

import functools

import pytest
import torch

transformers = pytest.importorskip("transformers")

from hypothesis import given, settings
from hypothesis import strategies as st

from babygpt import checkpoint, sampling
from babygpt.export import export_transformers
from babygpt.lora import LoRAConfig
from babygpt.models import build_model
from babygpt.runs import new_finetune
from babygpt.tokenizer import CharTokenizer, load_tokenizer

from conftest import randomize_, variant_config


def same_logits(ours, directory, vocab_size, block_size):
    reference = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    idx = torch.randint(0, vocab_size, (3, block_size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, actual = reference(idx).logits, ours.eval()(idx)[0]
    assert expected.abs().max() > 1.0, "logits too small for a sharp comparison"
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    return reference


def save(model, directory):
    tokenizer = CharTokenizer([chr(ord("a") + i) for i in range(model.config.vocab_size)])
    checkpoint.save_checkpoint(directory, model, tokenizer, {})
    return directory


@pytest.mark.parametrize("name, architecture", [
    ("gpt", "GPT2LMHeadModel"), ("gpt-untied-tanh-nobias", "GPT2LMHeadModel"),
    ("llama-gqa", "LlamaForCausalLM"), ("llama-mqa-tied", "LlamaForCausalLM"),
])
def test_exported_models_give_the_same_logits_in_transformers(name, architecture, tmp_path):
    torch.manual_seed(0)
    model = build_model(variant_config(name))
    randomize_(model, scale=0.3)
    out = export_transformers(save(model, tmp_path / "ckpt"), tmp_path / "hf")
    reference = same_logits(model, out, 20, 16)
    assert type(reference).__name__ == architecture
    assert sorted(p.name for p in out.iterdir()) == [
        "babygpt_tokenizer.json", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json"]


def test_the_shipped_models_and_a_merged_adapter_export(tmp_path):
    for name in ("gpt", "llama"):
        model = checkpoint.load_checkpoint(checkpoint.find_checkpoint(name)).model
        same_logits(model, export_transformers(name, tmp_path / name), 62, 64)
    adapter = checkpoint.load_checkpoint(checkpoint.find_checkpoint("gpt-kjv-lora")).model
    same_logits(adapter, export_transformers("gpt-kjv-lora", tmp_path / "kjv"), 62, 64)


def test_an_adapted_head_tied_to_the_embedding_cannot_be_merged_into_one_model(tmp_path):
    trainer = new_finetune("gpt", "kjv", LoRAConfig(r=2, targets=("head",)), {"max_iters": 1, "eval_iters": 1},
                           tmp_path / "adapter", drop_unknown=True)
    for _ in trainer.run():
        pass
    with pytest.raises(ValueError, match="tied to the embedding"):
        export_transformers(tmp_path / "adapter", tmp_path / "hf")
    assert not (tmp_path / "hf").exists(), "nothing half-written"


@pytest.mark.parametrize("name, message", [("gpt-time-weighted", "time_weighting"), ("gpt-low-rank", "attn_rank=4"),
                                           ("gpt-single-head", "feed_forward=False, layer_norm=False"),
                                           ("bigram", "transformers has no bigram model")])
def test_what_transformers_cannot_express_is_refused(name, message, tmp_path):
    out = save(build_model(variant_config(name)), tmp_path / "ckpt")
    with pytest.raises(ValueError, match=message):
        export_transformers(out, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    with pytest.raises(ValueError, match="already exists"):
        export_transformers(out, tmp_path / "ckpt")


def adapter_on(name, targets, directory, seed=0):
    """A base checkpoint of variant ``name`` and a LoRA adapter on it with non-zero B, saved."""
    from babygpt.lora import apply_lora, lora_layers

    torch.manual_seed(seed)
    model = build_model(variant_config(name))
    randomize_(model, scale=0.3)
    base = save(model, directory / "base")
    adapted = apply_lora(checkpoint.load_checkpoint(base).model, LoRAConfig(r=2, alpha=3.0, targets=targets))
    with torch.no_grad():
        for layer in lora_layers(adapted):
            for b in layer.lora_B.values():
                b.normal_(0, 0.5)
    info = {"base": str(base.resolve()), "base_sha256": checkpoint.file_sha256(base / "model.safetensors")}
    checkpoint.save_adapter(directory / "adapter", adapted, {}, info)
    return directory / "adapter"


@pytest.mark.parametrize("name, targets", [("gpt", ("q", "v")), ("gpt", ("k", "o", "mlp")),
                                           ("gpt-untied-tanh-nobias", ("q", "k", "v", "head")),
                                           ("llama-gqa", ("q", "k", "v", "o", "mlp", "head"))])
def test_a_peft_export_loads_onto_the_exported_base_with_the_same_logits(name, targets, tmp_path):
    peft = pytest.importorskip("peft")
    from babygpt.export import export_peft

    adapter = adapter_on(name, targets, tmp_path)
    out = export_peft(adapter, tmp_path / "hf")
    base = transformers.AutoModelForCausalLM.from_pretrained(out / "base").eval()
    idx = torch.randint(0, 20, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = base(idx).logits  # before PEFT wraps the base's layers in place
    model = peft.PeftModel.from_pretrained(base, out / "adapter").eval()
    ours = checkpoint.load_checkpoint(adapter).model.eval()
    with torch.no_grad():
        expected, actual = model(idx).logits, ours(idx)[0]
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    assert (expected - plain).abs().max() > 0.1, "the adapter changes the logits"
    with pytest.raises(ValueError, match="not a LoRA adapter"):
        export_peft(tmp_path / "base", tmp_path / "other")


def test_the_shipped_adapter_exports_to_peft(tmp_path):
    peft = pytest.importorskip("peft")
    from babygpt.export import export_peft

    out = export_peft("gpt-kjv-lora", tmp_path / "hf")
    model = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(out / "base"),
                                           out / "adapter").eval()
    ours = checkpoint.load_checkpoint(checkpoint.find_checkpoint("gpt-kjv-lora")).model.eval()
    idx = torch.randint(0, 62, (2, 64), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], model(idx).logits, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def exported_shipped(tmp_path_factory):
    """The shipped gpt and llama exported once (character vocabularies), and a BPE model."""
    from babygpt.data import load_text
    from babygpt.tokenizer import BPETokenizer

    root = tmp_path_factory.mktemp("exported")
    out = {name: export_transformers(name, root / name) for name in ("gpt", "llama")}
    bpe = BPETokenizer.train(load_text("shakespeare")[:200_000], vocab_size=300)
    torch.manual_seed(0)
    model = build_model(variant_config("gpt", vocab_size=bpe.vocab_size))
    checkpoint.save_checkpoint(root / "bpe-ckpt", model, bpe, {})
    out["bpe"] = export_transformers(root / "bpe-ckpt", root / "bpe")
    return out


SHIPPED_CHARS = checkpoint.load_checkpoint(checkpoint.find_checkpoint("gpt")).tokenizer.chars


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=SHIPPED_CHARS, max_size=80),
       bpe_text=st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_auto_tokenizer_encodes_every_text_as_babygpt_does(exported_shipped, text, bpe_text):
    for name, sample in (("gpt", text), ("bpe", bpe_text + text)):
        ours, theirs = both_tokenizers(exported_shipped[name])
        ids = ours.encode(sample)
        assert theirs(sample)["input_ids"] == ids
        assert theirs.decode(ids) == ours.decode(ids)


@functools.cache
def both_tokenizers(directory):
    """BabyGPT's tokenizer (the export keeps its file) and transformers' reading of the export."""
    return (load_tokenizer(directory / "babygpt_tokenizer.json"),
            transformers.AutoTokenizer.from_pretrained(directory))


@pytest.mark.parametrize("name", ["gpt", "llama"])
def test_pipeline_greedy_text_equals_babygpts_up_to_the_context_length(exported_shipped, name):
    loaded = checkpoint.load_checkpoint(checkpoint.find_checkpoint(name))
    pipe = transformers.pipeline("text-generation", model=str(exported_shipped[name]), device="cpu")
    prompt = "ROMEO:\nWhat say you"
    # every token until the text is one longer than the context was chosen from a full window at most
    room = loaded.model.config.block_size + 1 - len(loaded.tokenizer.encode(prompt))
    theirs = pipe(prompt, max_new_tokens=room, do_sample=False)[0]["generated_text"]
    assert theirs == sampling.sample_text(loaded.model, loaded.tokenizer, prompt, room, temperature=0)
    assert len(theirs) == len(prompt) + room
    if name == "gpt":  # past it GPT-2 has no position embedding left; BabyGPT slides its window
        with pytest.raises(IndexError):
            pipe(prompt, max_new_tokens=room + 1, do_sample=False)
