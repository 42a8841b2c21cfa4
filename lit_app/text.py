"""Characters of the speech recognisers: alphabet, transcript normalisation and CTC decoding.

Index 0 is the CTC blank; the other symbols are space, apostrophe and ``a``-``z`` (DeepSpeech's English
output layer). Transcripts from real corpora are folded onto that alphabet (case, accents, typographic
apostrophes, punctuation); what cannot be folded (digits, symbols, other scripts) is refused with an error
that names the utterance, because silently dropping characters would teach the model wrong spellings.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence

import torch

BLANK = "<blank>"
DEFAULT_SYMBOLS = (BLANK, " ", "'", *string.ascii_lowercase)

# Typographic apostrophes and quotes that stand for the apostrophe inside words ("don’t").
APOSTROPHES = "\u2019\u2018\u02bc\u0060\u00b4\u2032"
# Punctuation that carries no spoken word; symbols such as "&", "%" or "/" do ("and", "percent"), so they
# are refused rather than dropped.
SILENT_PUNCTUATION = frozenset('.,!?;:"()[]{}\u00ab\u00bb\u201c\u201d\u201e\u2026\u00a1\u00bf\u2039\u203a')
_SPACES = re.compile(r"\s+")


class TranscriptError(ValueError):
    """A transcript that cannot be written with the alphabet; the message names the item and the fix."""


class Alphabet:
    """The output symbols of a CTC model, blank first.

    Args:
        symbols: every output symbol in index order; ``symbols[0]`` must be the blank ``"<blank>"`` and the
            others single characters.
    """

    def __init__(self, symbols: Sequence[str] = DEFAULT_SYMBOLS) -> None:
        symbols = list(symbols)
        if not symbols or symbols[0] != BLANK:
            raise ValueError(f"the first symbol of a CTC alphabet must be the blank {BLANK!r}, got {symbols[:1]}")
        others = symbols[1:]
        if any(len(s) != 1 for s in others) or len(set(others)) != len(others):
            raise ValueError(f"alphabet symbols after the blank must be distinct single characters, got {others}")
        self.symbols = symbols
        self.index = {s: i for i, s in enumerate(symbols) if i > 0}

    def __len__(self) -> int:
        return len(self.symbols)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Alphabet) and other.symbols == self.symbols

    def normalise(self, text: str, item: str = "transcript") -> str:
        """Fold ``text`` onto the alphabet: lower case, accents removed, punctuation dropped, spaces collapsed.

        Hyphens and other dashes become spaces ("well-known" is two words); sentence punctuation disappears;
        an apostrophe is kept only inside a word (so quotes such as 'yes' lose theirs).

        Args:
            text: the transcript as the corpus gives it.
            item: what the transcript belongs to (a file or a corpus line), for error messages.

        Raises:
            TranscriptError: characters outside the alphabet remain, or nothing is left.
        """
        folded = unicodedata.normalize("NFKD", text.lower())
        out = []
        for char in folded:
            if unicodedata.combining(char):
                continue
            if char in APOSTROPHES:
                char = "'"
            category = unicodedata.category(char)
            if char.isspace() or category == "Pd":
                out.append(" ")
            elif char == "'" or char in self.index:
                out.append(char)
            elif char in SILENT_PUNCTUATION:
                out.append(" ")
            else:
                out.append(char)
        words = [word.strip("'") for word in _SPACES.split("".join(out))]
        normalised = " ".join(word for word in words if word)
        bad = sorted({c for c in normalised if c not in self.index})
        if bad:
            shown = ", ".join(repr(c) for c in bad)
            raise TranscriptError(
                f"{item}: transcript {text!r} has characters outside the alphabet ({shown}). Spell numbers and "
                "symbols out in words (e.g. '3' -> 'three'), fix the transcript, or skip the utterance "
                "(skip_bad_items=True)."
            )
        if not normalised:
            raise TranscriptError(
                f"{item}: empty transcript (after normalisation: {text!r}). A CTC model cannot learn from "
                "an utterance without text; add its transcript or remove the utterance from the corpus."
            )
        return normalised

    def encode(self, text: str, item: str = "transcript") -> torch.Tensor:
        """Normalise ``text`` and return its symbol indices (int64, no blanks)."""
        normalised = self.normalise(text, item)
        return torch.tensor([self.index[c] for c in normalised], dtype=torch.long)

    def decode(self, indices: Sequence[int] | torch.Tensor) -> str:
        """Indices to text, blanks dropped (no CTC collapsing: use :func:`greedy_decode` for model output)."""
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        return "".join(self.symbols[i] for i in indices if i != 0)


def ctc_frames_needed(targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """The fewest output frames that can align each target: its length plus one blank per repeated pair.

    CTC must put a blank between two equal neighbours ("ll" in "hello"), so those need an extra frame.

    Args:
        targets: ``[batch, max_target_length]`` padded symbol indices.
        target_lengths: ``[batch]`` true lengths.
    """
    positions = torch.arange(targets.shape[1], device=targets.device)
    inside = positions.unsqueeze(0) < target_lengths.unsqueeze(1)
    repeats = (targets[:, 1:] == targets[:, :-1]) & inside[:, 1:]
    return target_lengths + repeats.sum(1)


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, alphabet: Alphabet) -> list[str]:
    """Best-path CTC decoding: most likely symbol per frame, repeats merged, blanks dropped.

    Args:
        log_probs: ``[batch, frames, symbols]`` model output.
        lengths: ``[batch]`` valid frames of each row.
        alphabet: the model's output symbols.
    """
    best = log_probs.argmax(-1).cpu()
    texts = []
    for row, length in zip(best, lengths.tolist()):
        path = row[:length]
        keep = torch.ones_like(path, dtype=torch.bool)
        keep[1:] = path[1:] != path[:-1]
        text = alphabet.decode(path[keep & (path != 0)])
        texts.append(" ".join(text.split()))
    return texts


class BeamSearchDecoder:
    """CTC prefix beam search (flashlight-text through torchaudio), optionally with a lexicon and KenLM model.

    Needs the ``flashlight-text`` package (``pip install flashlight-text``); without a language model it
    gains little over greedy decoding, so the app uses greedy decoding unless a beam width is asked for.

    Args:
        alphabet: the model's output symbols (must include the space).
        beam_size: hypotheses kept per frame.
        lexicon: optional lexicon file (word, then its spelling) restricting output to known words.
        lm: optional KenLM binary language model.
        lm_weight: weight of the language model score.
        word_score: score added per word.
    """

    def __init__(
        self,
        alphabet: Alphabet,
        beam_size: int = 32,
        lexicon: str | None = None,
        lm: str | None = None,
        lm_weight: float = 2.0,
        word_score: float = 0.0,
    ) -> None:
        try:
            from torchaudio.models.decoder import ctc_decoder

            self._decoder_factory = ctc_decoder
        except ImportError as err:  # pragma: no cover - depends on the torchaudio build
            raise ImportError(f"torchaudio's CTC decoder is unavailable ({err}); use greedy decoding") from err
        if " " not in alphabet.index:
            raise ValueError("beam search needs a space symbol in the alphabet to separate words")
        self.alphabet = alphabet
        # flashlight separates words with a silence token; "|" stands for the space, "-" for the blank.
        tokens = ["-" if s == "<blank>" else "|" if s == " " else s for s in alphabet.symbols]
        try:
            self.decoder = ctc_decoder(
                lexicon=lexicon,
                tokens=tokens,
                lm=lm,
                beam_size=beam_size,
                lm_weight=lm_weight,
                word_score=word_score,
                blank_token="-",
                sil_token="|",
            )
        except RuntimeError as err:
            if "flashlight" in str(err):
                raise ImportError(
                    "beam search needs the flashlight-text package: `pip install flashlight-text`, or decode "
                    "greedily (beam width 0)"
                ) from err
            raise

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Best hypothesis for each row of ``[batch, frames, symbols]`` log-probabilities."""
        results = self.decoder(log_probs.detach().float().cpu().contiguous(), lengths.cpu().int())
        texts = []
        for hypotheses in results:
            tokens = hypotheses[0].tokens.tolist() if hypotheses else []
            texts.append(" ".join(self.alphabet.decode(tokens).split()))
        return texts
