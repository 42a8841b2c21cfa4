"""MBROLA's voices of other languages reading English: the engine ``mbrola_accented`` (ours).

The keyword victims' gap on engines they never heard shrinks with every recorded speaker they train on
(docs/results.md, section 2.1), and Debian's non-free section has MBROLA diphone voices of dozens of speakers of
other languages. MBROLA only turns phones into sound, so festival's English front end (``kal_diphone``'s lexicon,
durations and intonation) says which phones, how long and on what pitch; each English phone then becomes the
nearest one the voice's language has (a German voice has no /th/ and says /s/, a Spanish one says /b/ for /v/), and
the voice speaks them: English with the speaker's accent, as ``festival_accented`` does with respelled words.

Which phones a voice has is asked of MBROLA itself, once per voice, so a voice of any language maps its own way.
This module knows the voices and their phones; the engine that runs festival and MBROLA is ``tts.MbrolaEngine``.

``mbrola_british`` (also ours) is the same speakers reading through festival's British front end (``rab_diphone``:
RP vowels from the OALD lexicon, a British speaker's durations and intonation): the GOAT vowel as [@U], a rounded
LOT, no r after a vowel. A diphthong a voice lacks is spoken as its two halves where the voice has both (``"@ U"``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import NamedTuple

from lit_app.data.synth.errors import TTSError

MBROLA_FOLDER = Path("/usr/share/mbrola")
#: The voices (MBROLA databases), each a speaker of its own: name -> speaks with a female voice. Left out: the
#: English ones (festival_extra has us1-us3; en1 may be rab); Italian and Czech, whose speakers festival's accented
#: voices may already be; and those that lack a phone every English word needs a stand-in for (the Arabic, Breton,
#: Chinese, Farsi, Hindi, Indonesian, Japanese, Korean, Malay, Maori and Telugu voices, hb2, hu1, nl1, vz1).
MBROLA_ACCENTED_VOICES = {
    "af1": False, "br1": False, "br2": True, "br3": False, "br4": True, "ca1": False, "ca2": False, "cr1": False,
    "de1": True, "de2": False, "de3": True, "de4": False, "de5": True, "de6": False, "de7": True, "ee1": False,
    "es1": False, "es2": False, "es3": True, "es4": False, "fr1": False, "fr2": True, "fr3": False, "fr4": True,
    "fr5": False, "fr6": False, "fr7": False, "gr1": False, "gr2": False, "hb1": False, "ic1": False, "la1": False,
    "lt1": False, "lt2": False, "mx1": False, "mx2": False, "nl2": False, "nl3": True, "pl1": True, "pt1": True,
    "ro1": False, "sw1": False, "sw2": True, "tr1": False, "tr2": True,
}
#: The front end's intonation is a man's; a female voice speaks it this much higher.
FEMALE_PITCH_RATIO = 1.7


class FrontEnd(NamedTuple):
    """The festival voice whose front end says an MBROLA engine's English, and whether its phones are British."""

    voice: str
    british: bool


#: Each MBROLA engine -> its front end: American phones (``radio``) for ``mbrola_accented``, British ones (``mrpa``)
#: for ``mbrola_british``.
FRONT_ENDS = {"mbrola_accented": FrontEnd("kal_diphone", british=False),
              "mbrola_british": FrontEnd("rab_diphone", british=True)}

#: Consonants, in the names both of festival's phone sets use (its American ``radio`` and British ``mrpa``) ->
#: the SAMPA phones that stand in for each, nearest first.
_CONSONANTS = {
    "b": ("b",), "ch": ("tS", "ts", "S", "t"), "d": ("d",), "dh": ("D", "d", "z"), "f": ("f",), "g": ("g", "k"),
    "h": ("h", "x", "X", "_"), "jh": ("dZ", "Z", "j", "d"), "k": ("k",), "l": ("l",), "m": ("m",), "n": ("n",),
    "ng": ("N", "n"), "p": ("p",), "r": ("r\\", "R", "r", "l"), "s": ("s",), "sh": ("S", "s"), "t": ("t",),
    "th": ("T", "s", "t", "f"), "v": ("v", "b", "f"), "w": ("w", "u", "v", "b"), "y": ("j", "i", "I", "e"),
    "z": ("z", "s"), "zh": ("Z", "S", "z", "s"),
}
#: Festival's English phones (its ``radio`` set) -> the SAMPA phones that stand in for each, nearest first.
ENGLISH_TO_SAMPA = {
    "aa": ("A", "a:", "a", "A:"), "ae": ("{", "E", "a", "e"), "ah": ("V", "6", "a", "@"),
    "ao": ("O:", "O", "o:", "o", "a"), "aw": ("aU", "au", "a", "A"), "ax": ("@", "6", "e", "E", "a"),
    "axr": ("6", "@", "9", "e", "a"), "ay": ("aI", "ai", "a", "A"), "dx": ("4", "d", "t"), "eh": ("E", "e", "a"),
    "el": ("l",), "em": ("m",), "en": ("n",), "er": ("3:", "9", "6", "@", "e", "a"), "ey": ("EI", "eI", "e:", "e", "E"),
    "hh": _CONSONANTS["h"], "hv": _CONSONANTS["h"], "ih": ("I", "i", "e"), "iy": ("i:", "i", "I"), "nx": ("n",),
    "ow": ("@U", "oU", "o:", "o", "O"), "oy": ("OY", "OI", "Oy", "o", "O"), "uh": ("U", "u", "o"), "uw": ("u:", "u", "U"),
    "pau": ("_",), "brth": ("_",), **{phone: stand_ins for phone, stand_ins in _CONSONANTS.items() if phone != "h"},
}
#: The American phone whose stand-ins follow a British vowel's own: every voice says one of them (see phone_map).
_AMERICAN_EQUIVALENT = {"a": "ae", "aa": "aa", "ai": "ay", "au": "aw", "@": "ax", "@@": "er", "e": "eh", "e@": "eh",
                        "ei": "ey", "i": "ih", "i@": "ih", "ii": "iy", "o": "aa", "oi": "oy", "oo": "ao", "ou": "ow",
                        "u": "uh", "u@": "uh", "uh": "ah", "uu": "uw"}
_BRITISH_VOWELS = {
    "a": ("{", "a", "E"), "aa": ("A:", "a:", "A", "a"), "ai": ("aI", "ai", "a I"), "au": ("aU", "au", "a U"),
    "@": ("@", "6"), "@@": ("3:", "9", "2", "@"), "e": ("e", "E"), "e@": ("E@", "E:", "E @"), "ei": ("eI", "EI", "e I"),
    "i": ("I", "i"), "i@": ("I@", "i@", "I @", "i @"), "ii": ("i:", "i"), "o": ("Q", "O", "o"),
    "oi": ("OI", "OY", "Oy", "O I"), "oo": ("O:", "O", "o:"), "ou": ("@U", "@u", "@ U", "@ u"), "u": ("U", "u"),
    "u@": ("U@", "u@", "U @", "u @"), "uh": ("V", "6", "a"), "uu": ("u:", "u"),
}
#: Festival's British English phones (``mrpa``, said by ``rab_diphone``'s front end) -> SAMPA stand-ins, nearest
#: first; two phones with a space between are a diphthong's halves, each spoken for half its duration.
BRITISH_TO_SAMPA = {
    **_CONSONANTS, "#": ("_",),
    **{vowel: tuple(dict.fromkeys(own + ENGLISH_TO_SAMPA[_AMERICAN_EQUIVALENT[vowel]]))
       for vowel, own in _BRITISH_VOWELS.items()},
}
_CONTEXTS = ("_", "a", "A", "a:", "e", "i", "o")  # vowels between which a consonant is asked for


def database(voice: str) -> Path:
    """The MBROLA database file of ``voice``."""
    return MBROLA_FOLDER / voice / voice


def mbrola_voices() -> tuple[str, ...]:
    """The voices of :data:`MBROLA_ACCENTED_VOICES` installed here (none without the ``mbrola`` program)."""
    if shutil.which("mbrola") is None:
        return ()
    return tuple(name for name in MBROLA_ACCENTED_VOICES if database(name).is_file())


def _speaks(voice: str, phones: list[str], folder: str) -> bool:
    pho = os.path.join(folder, "probe.pho")
    Path(pho).write_text("".join(f"{phone} 80\n" for phone in phones))
    result = subprocess.run(["mbrola", str(database(voice)), pho, os.path.join(folder, "probe.wav")],
                            capture_output=True)
    return result.returncode == 0


@cache
def phone_map(voice: str) -> dict[str, str]:
    """Each English phone -> the first of its :data:`ENGLISH_TO_SAMPA` stand-ins that ``voice`` can say.

    A phone counts as the voice's when MBROLA speaks it after silence or between two of the voice's vowels (a
    German voice has no /d/ before a pause).

    Raises:
        TTSError: the voice can say none of an English phone's stand-ins.
    """
    return _stand_ins(voice, ENGLISH_TO_SAMPA, "ENGLISH_TO_SAMPA")


@cache
def british_phone_map(voice: str) -> dict[str, str]:
    """Each British English phone -> the first of its :data:`BRITISH_TO_SAMPA` stand-ins that ``voice`` can say
    (a diphthong's halves: when it can say both), as :func:`phone_map`."""
    return _stand_ins(voice, BRITISH_TO_SAMPA, "BRITISH_TO_SAMPA")


def _stand_ins(voice: str, table: dict[str, tuple[str, ...]], table_name: str) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="lit-app-mbrola-") as folder:
        contexts = [c for c in _CONTEXTS if _speaks(voice, ["_", c, "_"], folder)]
        known: dict[str, bool] = {}

        def has(phone: str) -> bool:
            if phone not in known:
                known[phone] = any(_speaks(voice, ["_", c, phone, c, "_"], folder) for c in contexts)
            return known[phone]

        mapping = {}
        for english, stand_ins in table.items():
            found = next((phones for phones in stand_ins if phones == "_" or all(map(has, phones.split()))), None)
            if found is None:
                raise TTSError(f"MBROLA voice {voice!r} can say none of {stand_ins} for English /{english}/; "
                             "drop it from MBROLA_ACCENTED_VOICES")
            mapping[english] = found
    return mapping


def halves(fields: list[str], phones: list[str]) -> list[list[str]]:
    """One ``.pho`` line (phone, duration in ms, pitch targets as position-percent and Hz pairs) spoken as two
    phones, each for half the duration and with the pitch targets of its half, re-expressed within it."""
    duration, targets = int(fields[1]), list(zip(fields[2::2], fields[3::2]))
    first, second = duration // 2, duration - duration // 2
    lines = [[phones[0], str(first)], [phones[1], str(second)]]
    for position, hertz in targets:
        half = int(float(position) >= 50)
        lines[half] += [f"{(float(position) - 50 * half) * 2:g}", hertz]
    return lines


def accented_pho(pho: str, voice: str, british: bool = False) -> str:
    """Festival's ``.pho`` phones (its American or, with ``british``, its British ones) rewritten into ``voice``'s
    own phones."""
    mapping, table = (british_phone_map(voice), "BRITISH_TO_SAMPA") if british else (phone_map(voice), "ENGLISH_TO_SAMPA")
    lines = []
    for line in pho.splitlines():
        fields = line.split()
        if fields:
            if fields[0] not in mapping:
                raise TTSError(f"festival said a phone we have no stand-in for: {fields[0]!r} (add it to {table})")
            phones = mapping[fields[0]].split()
            spoken = [[phones[0], *fields[1:]]] if len(phones) == 1 else halves(fields, phones)
            lines += [" ".join(line_fields) for line_fields in spoken]
    return "\n".join(lines) + "\n"
