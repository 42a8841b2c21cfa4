"""Alphabet, transcript normalisation, CTC decoding and the WER/CER metrics of the speech recogniser."""

import pytest
import torch
from torchmetrics.text import CharErrorRate, WordErrorRate

from lit_app.text import BLANK, Alphabet, BeamSearchDecoder, TranscriptError, ctc_frames_needed, greedy_decode

ALPHABET = Alphabet()


def test_alphabet_layout():
    assert ALPHABET.symbols[0] == BLANK and len(ALPHABET) == 29
    assert ALPHABET.symbols[1:3] == [" ", "'"] and "".join(ALPHABET.symbols[3:]) == "abcdefghijklmnopqrstuvwxyz"
    with pytest.raises(ValueError, match="blank"):
        Alphabet(["a", "b"])
    with pytest.raises(ValueError, match="distinct single"):
        Alphabet([BLANK, "a", "a"])


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("HELLO WORLD", "hello world"),
        ("It’s  “fine”, isn't it?", "it's fine isn't it"),
        ("Well-known — café", "well known cafe"),
        ("'quoted' words", "quoted words"),
        ("  Tabs\tand\nnewlines ", "tabs and newlines"),
    ],
)
def test_normalise_folds_onto_the_alphabet(raw, expected):
    assert ALPHABET.normalise(raw) == expected


@pytest.mark.parametrize("raw, shown", [("call 911 now", "'1', '9'"), ("rock & roll", "'&'"), ("привет", "'в'")])
def test_characters_outside_the_alphabet_name_the_item(raw, shown):
    with pytest.raises(TranscriptError) as err:
        ALPHABET.normalise(raw, "clips/x.mp3")
    message = str(err.value)
    assert message.startswith("clips/x.mp3:") and shown in message and "skip_bad_items" in message


@pytest.mark.parametrize("raw", ["", "   ", "?!", "''"])
def test_empty_transcripts_are_refused(raw):
    with pytest.raises(TranscriptError, match=r"^utt-7: empty transcript"):
        ALPHABET.encode(raw, "utt-7")


def test_encode_decode_round_trip():
    indices = ALPHABET.encode("Don't stop")
    assert indices.dtype == torch.long and indices.tolist()[:3] == [6, 17, 16]
    assert ALPHABET.decode(indices) == "don't stop"


def frames_for(path, alphabet=ALPHABET):
    """Peaked log-probabilities that follow ``path`` (symbols, '_' for blank)."""
    indices = [0 if c == "_" else alphabet.index[c] for c in path]
    logits = torch.full((len(indices), len(alphabet)), -10.0)
    logits[torch.arange(len(indices)), torch.tensor(indices)] = 10.0
    return logits.log_softmax(-1)


def test_greedy_decode_merges_repeats_and_drops_blanks():
    paths = ["__hh_ee_ll_llo__ _wworrld", "aa_a"]
    batch = torch.nn.utils.rnn.pad_sequence([frames_for(p) for p in paths], batch_first=True)
    lengths = torch.tensor([len(p) for p in paths])
    assert greedy_decode(batch, lengths, ALPHABET) == ["hello world", "aa"]
    # frames beyond a row's length are ignored
    assert greedy_decode(batch, torch.tensor([6, 2]), ALPHABET) == ["he", "a"]


def test_ctc_frames_needed_counts_repeats():
    targets = torch.nn.utils.rnn.pad_sequence([ALPHABET.encode("hello"), ALPHABET.encode("ab"), ALPHABET.encode("aaa")],
                                              batch_first=True)
    assert ctc_frames_needed(targets, torch.tensor([5, 2, 3])).tolist() == [6, 2, 5]
    # padding zeros (== blank) never count as repeats
    assert ctc_frames_needed(targets, torch.tensor([5, 1, 1])).tolist() == [6, 1, 1]


def test_wer_and_cer_on_known_strings():
    wer, cer = WordErrorRate(), CharErrorRate()
    assert wer(["hello word"], ["hello world"]).item() == pytest.approx(0.5)
    assert cer(["hello word"], ["hello world"]).item() == pytest.approx(1 / 11)
    assert wer(["turn on the light", "stop"], ["turn off the light", "stop"]).item() == pytest.approx(1 / 5)
    assert cer(["abc"], ["abc"]).item() == 0.0


def test_beam_search_agrees_with_greedy_on_peaked_output():
    pytest.importorskip("flashlight.lib.text", reason="beam search needs flashlight-text (a pinned dependency)")
    decoder = BeamSearchDecoder(ALPHABET, beam_size=8)
    log_probs = frames_for("__tt_uu_rn  _lleft_").unsqueeze(0)
    assert decoder(log_probs, torch.tensor([log_probs.shape[1]])) == ["turn left"]
