import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from babygpt.tokenizer import BPETokenizer, CharTokenizer, load_tokenizer, save_tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def bpe(shakespeare):
    return BPETokenizer.train(shakespeare[:300_000], vocab_size=400)


@pytest.fixture(scope="module")
def char(shakespeare):
    return CharTokenizer.train(shakespeare)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_char_round_trip_for_every_representable_text(char, data):
    text = data.draw(st.text(alphabet=st.sampled_from(char.chars), max_size=200))
    assert char.decode(char.encode(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_bpe_round_trip_for_any_text(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_round_trips_odd_text(bpe):
    for text in ["", " ", "  leading", "trailing  ", "\t\r\n", "emoji 🙂👍🏽", "日本語", "a\u0301", "\x00\x7f"]:
        assert bpe.decode(bpe.encode(text)) == text


def test_bpe_vocabulary_size_is_configurable_and_compresses(shakespeare):
    small = BPETokenizer.train(shakespeare[:100_000], vocab_size=300)
    large = BPETokenizer.train(shakespeare[:100_000], vocab_size=600)
    assert small.vocab_size == 300 and large.vocab_size == 600
    sample = shakespeare[:5000]
    assert len(large.encode(sample)) < len(small.encode(sample)) < len(sample)


def test_bpe_vocabulary_below_the_byte_alphabet_is_refused():
    with pytest.raises(ValueError, match="at least 256"):
        train_tokenizer("bpe", "some text", vocab_size=100)


def test_unknown_characters_are_named(char):
    with pytest.raises(ValueError, match=r"2 character\(s\) not in this model's vocabulary.*'\\t'.*'🙂'"):
        char.encode("hello\t🙂")


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_save_and_load_one_json_file(tmp_path, shakespeare, kind):
    tokenizer = train_tokenizer(kind, shakespeare[:50_000], vocab_size=300)
    path = tmp_path / "tokenizer.json"
    save_tokenizer(tokenizer, path)
    loaded = load_tokenizer(path)
    assert loaded.kind == kind and loaded.vocab_size == tokenizer.vocab_size
    sample = shakespeare[1000:3000]
    assert loaded.encode(sample) == tokenizer.encode(sample)


@pytest.mark.parametrize(
    "content, message",
    [("not json", "cannot read"), ('{"kind": "word"}', "unknown kind"), ('{"kind": "char", "chars": 5}', "chars"),
     ('{"kind": "bpe", "tokenizer": {"model": 1}}', "malformed"), ("[1, 2]", "JSON object")],
)
def test_malformed_tokenizer_files_are_refused(tmp_path, content, message):
    path = tmp_path / "tokenizer.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_tokenizer(path)
