"""The tokenizer lab: pieces spell the text back, merges read as text, the report counts right."""

from tokenizers import pre_tokenizers

from babygpt.tokenizer import train_tokenizer
from babygpt.tokenizer_lab import (
    BYTE_OF_SYMBOL,
    compared_tokenizers,
    first_merges,
    lab_tokenizer,
    pieces,
    readable,
    tokenizer_report,
)

TEXT = "To be, or not to be: that is the question.\nWhether 'tis nobler — ünïcödé too 🙂"


def test_the_byte_table_is_the_byte_level_alphabet_and_reads_tokens_as_text():
    assert set(BYTE_OF_SYMBOL) == set(pre_tokenizers.ByteLevel.alphabet())
    assert sorted(BYTE_OF_SYMBOL.values()) == list(range(256))
    assert readable("Ġthe") == " the" and readable("Ċ") == "\n"
    assert readable("Ã") == "\\xc3", "half a character shows as its byte"


def test_pieces_spell_the_text_back_with_every_token_id():
    tokenizer = lab_tokenizer("shakespeare", 512)
    parts = pieces(tokenizer, TEXT)
    assert "".join(p.text for p in parts) == TEXT
    assert [i for p in parts for i in p.ids] == tokenizer.encode(TEXT)
    assert any(len(p.ids) > 1 for p in parts), "a character split into several byte tokens is one piece"
    char = train_tokenizer("char", "abc ")
    assert [(p.text, p.ids) for p in pieces(char, "cab a")] == [("c", [3]), ("a", [1]), ("b", [2]), (" ", [0]),
                                                              ("a", [1])]


def test_the_first_merges_come_in_learned_order_and_build_on_each_other():
    merges = first_merges(lab_tokenizer("shakespeare", 512), 40)
    assert [m[0] for m in merges] == list(range(1, 41))
    assert all(left + right == merged for _, left, right, merged in merges)
    learned = {merged for *_, merged in merges}
    later = [m for m in merges if len(m[1]) > 1 or len(m[2]) > 1]
    assert later and all(m[1] in learned or len(m[1]) == 1 for m in later), "longer pieces are earlier merges"


def test_the_report_counts_tokens_compression_and_vocabulary_use():
    tokenizers = compared_tokenizers("shakespeare")
    assert list(tokenizers) == ["characters", "BPE-256", "BPE-512", "BPE-1024"]
    text = "ROMEO:\nBut soft, what light through yonder window breaks?"
    reports = [tokenizer_report(name, t, text) for name, t in tokenizers.items()]
    assert reports[0]["tokens"] == len(text) and reports[0]["characters_per_token"] == 1.0
    assert reports[1]["tokens"] == len(text.encode()), "BPE-256 has no merges: one token per byte"
    assert reports[1]["tokens"] > reports[2]["tokens"] > reports[3]["tokens"], "a larger vocabulary compresses more"
    for report, tokenizer in zip(reports, tokenizers.values()):
        ids = tokenizer.encode(text)
        assert report["distinct_tokens"] == len(set(ids))
        assert report["vocabulary_used"] == len(set(ids)) / tokenizer.vocab_size
