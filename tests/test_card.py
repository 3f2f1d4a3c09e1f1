"""Model cards (babygpt/card.py): generated from the checkpoint, signed, and never written over a person's edits."""

import torch

from babygpt import checkpoint
from babygpt.card import card_for, generate_card, is_generated_and_unedited
from babygpt.models import build_model
from babygpt.tokenizer import CharTokenizer

from conftest import variant_config


def test_a_card_is_signed_and_any_edit_breaks_the_signature(tmp_path):
    torch.manual_seed(0)
    model = build_model(variant_config("llama-gqa"))
    tokenizer = CharTokenizer([chr(ord("a") + i) for i in range(20)])  # no newline to start samples from
    checkpoint.save_checkpoint(tmp_path, model, tokenizer, {"history": [], "steps": 0})
    card = generate_card(tmp_path, "bob/tiny", sample_tokens=10)
    assert card.startswith("---\nlibrary_name: babygpt\n") and "model-index" not in card  # no val loss measured yet
    assert is_generated_and_unedited(card)
    assert not is_generated_and_unedited(card.replace("bob/tiny", "bob/other"))
    assert not is_generated_and_unedited("# my own card\n")
    kept, fresh = card_for(tmp_path, "bob/tiny", "# my own card\n")
    assert (kept, fresh) == ("# my own card\n", False)
    regenerated, fresh = card_for(tmp_path, "bob/tiny", card)
    assert fresh and is_generated_and_unedited(regenerated)
