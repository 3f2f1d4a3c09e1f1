"""Model cards (babygpt/card.py): generated from the checkpoint, signed, and never written over a person's edits."""

import json
import shutil

import torch
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from babygpt import checkpoint
from babygpt.card import card_for, generate_card, is_generated_and_unedited
from babygpt.models import build_model
from babygpt.tokenizer import CharTokenizer
from babygpt.ui.models import shipped_checkpoints

from conftest import variant_config


def test_a_card_is_signed_and_any_edit_breaks_the_signature(tmp_path):
    torch.manual_seed(0)
    model = build_model(variant_config("llama-gqa"))
    tokenizer = CharTokenizer([chr(ord("a") + i) for i in range(20)])  # no newline to start samples from
    checkpoint.save_checkpoint(tmp_path, model, tokenizer, {"history": [], "steps": 0})
    card = generate_card(tmp_path, "bob/tiny", sample_tokens=10)
    data = ModelCard(card).data
    assert data.library_name == "babygpt" and "model-index" not in card  # no val loss measured yet
    assert is_generated_and_unedited(card)
    assert not is_generated_and_unedited(card.replace("bob/tiny", "bob/other"))
    assert not is_generated_and_unedited("# my own card\n")
    kept, fresh = card_for(tmp_path, "bob/tiny", "# my own card\n")
    assert (kept, fresh) == ("# my own card\n", False)
    regenerated, fresh = card_for(tmp_path, "bob/tiny", card)
    assert fresh and is_generated_and_unedited(regenerated)


def test_the_metadata_round_trips_through_huggingface_hub_and_an_edited_card_gets_only_new_numbers(tmp_path):
    shutil.copytree(shipped_checkpoints()["gpt"], tmp_path / "gpt")
    card = generate_card(tmp_path / "gpt", "alice/gpt", sample_tokens=10)
    data = ModelCard(card).data
    assert (data.library_name, data.license, data.pipeline_tag, data.datasets) == (
        "babygpt", "mit", "text-generation", ["shakespeare"])
    assert data.tags == ["babygpt", "gpt", "char-tokenizer", "text-generation"]
    # model-index as huggingface_hub parses it (the Hub's own reading of a card)
    name, results = model_index_to_eval_results(data.to_dict()["model-index"])
    assert name == "alice/gpt" and len(results) == 1
    result = results[0]
    assert (result.task_type, result.dataset_name, result.dataset_split, result.metric_type) == (
        "text-generation", "shakespeare", "validation", "loss")
    assert result.metric_value == round(json.loads((tmp_path / "gpt" / "metrics.json").read_text())["val_loss"], 4)
    assert ModelCardData(**data.to_dict()).to_dict() == data.to_dict(), "the metadata round-trips"
    # Someone edits the card; the model trains on and its val loss changes: text kept, number updated.
    edited = card.replace("## Samples", "## Samples\n\nMy own notes.")
    metrics = json.loads((tmp_path / "gpt" / "metrics.json").read_text())
    (tmp_path / "gpt" / "metrics.json").write_text(json.dumps({**metrics, "val_loss": 1.5}))
    updated, fresh = card_for(tmp_path / "gpt", "alice/gpt", edited)
    assert not fresh and ModelCard(updated).text == ModelCard(edited).text, "the person's text, as they left it"
    assert [r.metric_value for r in ModelCard(updated).data.eval_results] == [1.5]
    again, _ = card_for(tmp_path / "gpt", "alice/gpt", updated)
    assert again == updated, "nothing new: nothing to write"
