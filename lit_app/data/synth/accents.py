"""Festival's voices of other languages as accented English speakers.

Debian packages only three English festival voices, and two of their speakers are also flite voices; the keyword
victims' gap on engines they never heard is a gap of speakers (docs/results.md, section 2.1). Festival's Italian,
Catalan, Czech, Finnish, Telugu and Russian voices are eleven more recorded speakers. Each reads the Speech Commands
words from a phonetic respelling in its own orthography ("right" as Czech ``rajt``, Telugu ``రైట్``), as a speaker
of that language would say the English word; read from English spelling, a keyword victim recognised "right" from
none of them.

Debian's Hindi and Marathi voices are the Telugu voice's speaker (NSK) again: a speaker must stay in one split, so
only the Telugu voice is one of them (the Hindi voice also crashes on the letter for /f/).
"""

from __future__ import annotations

#: Festival's non-English voices in Debian: voice -> (package, language of its respellings).
ACCENTED_VOICES = {
    "lp_diphone": ("festvox-italp16k", "italian"),
    "pc_diphone": ("festvox-itapc16k", "italian"),
    "upc_ca_ona_hts": ("festvox-ca-ona-hts", "catalan"),
    "czech_dita": ("festvox-czech-dita", "czech"),
    "czech_krb": ("festvox-czech-krb", "czech"),
    "czech_machac": ("festvox-czech-machac", "czech"),
    "czech_ph": ("festvox-czech-ph", "czech"),
    "hy_fi_mv_diphone": ("festvox-suopuhe-mv", "finnish"),
    "suo_fi_lj_diphone": ("festvox-suopuhe-lj", "finnish"),
    "telugu_NSK_diphone": ("festvox-te-nsk", "telugu"),
    "msu_ru_nsh_clunits": ("festvox-ru", "russian"),
}
#: The text encoding each language's festival voices read (Czech's letters are not in Latin-1).
ENCODINGS = {"czech": "iso-8859-2", "finnish": "latin-1", "italian": "latin-1", "catalan": "latin-1",
             "telugu": "utf-8", "russian": "utf-8"}
#: Scheme run after selecting a voice of the language: the Czech voices draw random pause lengths unless told not
#: to, and a rebuilt clip must come out as it did the first time.
SETTINGS = {"czech": "(set! czech-randomize nil)"}

# Czech and Finnish spell sounds alike (j as in "yes", a e i o u as in Latin); the other two change what differs.
_PHONETIC = {
    "yes": "jes", "no": "nou", "up": "ap", "down": "daun", "left": "left", "right": "rajt", "on": "on", "off": "of",
    "stop": "stop", "go": "gou", "zero": "zírou", "one": "uan", "two": "tú", "three": "trí", "four": "fór",
    "five": "fajv", "six": "siks", "seven": "seven", "eight": "ejt", "nine": "najn", "bed": "bed", "bird": "bérd",
    "cat": "ket", "dog": "dog", "happy": "hepi", "house": "haus", "marvin": "márvin", "sheila": "šíla",
    "tree": "trí", "wow": "uau", "backward": "bekvord", "forward": "fórvord", "follow": "folou", "learn": "lérn",
    "visual": "vižual",
}
_FINNISH = {
    "zero": "siirou", "two": "tuu", "three": "trii", "four": "foor", "five": "faiv", "eight": "eit", "nine": "nain",
    "right": "rait", "bird": "beerd", "marvin": "maarvin", "sheila": "siila", "tree": "trii", "backward": "bekvord",
    "forward": "foorvord", "learn": "leern", "visual": "visual",
}
_ITALIAN = {
    "yes": "ies", "right": "rait", "zero": "ziro", "two": "tu", "three": "tri", "four": "for", "five": "faiv",
    "six": "sics", "eight": "eit", "nine": "nain", "bird": "berd", "cat": "chet", "marvin": "marvin",
    "sheila": "scila", "tree": "tri", "backward": "becuord", "forward": "foruord", "learn": "lern",
    "visual": "visciual",
}
_CATALAN = dict(_ITALIAN, cat="quet", sheila="xila", visual="visual", backward="bècuord", forward="fòruord")
# As Telugu and Russian newspapers write the English words (Telugu ending on a virama, so no vowel follows).
_TELUGU = {
    "yes": "యెస్", "no": "నో", "up": "అప్", "down": "డౌన్", "left": "లెఫ్ట్", "right": "రైట్", "on": "ఆన్",
    "off": "ఆఫ్", "stop": "స్టాప్", "go": "గో", "zero": "జీరో", "one": "వన్", "two": "టూ", "three": "త్రీ",
    "four": "ఫోర్", "five": "ఫైవ్", "six": "సిక్స్", "seven": "సెవెన్", "eight": "ఎయిట్", "nine": "నైన్",
    "bed": "బెడ్", "bird": "బర్డ్", "cat": "క్యాట్", "dog": "డాగ్", "happy": "హ్యాపీ", "house": "హౌస్",
    "marvin": "మార్విన్", "sheila": "షీలా", "tree": "ట్రీ", "wow": "వావ్", "backward": "బ్యాక్వర్డ్",
    "forward": "ఫార్వర్డ్", "follow": "ఫాలో", "learn": "లెర్న్", "visual": "విజువల్",
}
_RUSSIAN = {
    "yes": "йес", "no": "ноу", "up": "ап", "down": "даун", "left": "лефт", "right": "райт", "on": "он",
    "off": "оф", "stop": "стоп", "go": "гоу", "zero": "зироу", "one": "уан", "two": "ту", "three": "сри",
    "four": "фо", "five": "файв", "six": "сикс", "seven": "сэвэн", "eight": "эйт", "nine": "найн",
    "bed": "бэд", "bird": "бёрд", "cat": "кэт", "dog": "дог", "happy": "хэппи", "house": "хаус",
    "marvin": "марвин", "sheila": "шила", "tree": "три", "wow": "уау", "backward": "бэквард",
    "forward": "форвард", "follow": "фолоу", "learn": "лёрн", "visual": "вижуал",
}
RESPELLINGS = {
    "czech": _PHONETIC,
    "finnish": {**_PHONETIC, **_FINNISH},
    "italian": {**_PHONETIC, **_ITALIAN},
    "catalan": {**_PHONETIC, **_CATALAN},
    "telugu": _TELUGU,
    "russian": _RUSSIAN,
}


def festival_request(text: str, voice: str) -> tuple[str, str, str]:
    """What festival is sent for ``voice`` to say ``text``: the respelled text, its encoding and the voice's Scheme
    settings (:data:`SETTINGS`)."""
    language = ACCENTED_VOICES[voice][1]
    return respell(text, voice), ENCODINGS[language], SETTINGS.get(language, "")


def respell(text: str, voice: str) -> str:
    """``text`` (Speech Commands words) as ``voice``'s language spells how it sounds.

    Raises:
        ValueError: a word has no respelling (accented voices speak keyword corpora only, not sentences).
    """
    language = ACCENTED_VOICES[voice][1]
    spelled = RESPELLINGS[language]
    missing = [word for word in text.lower().split() if word not in spelled]
    if missing:
        raise ValueError(f"no {language} respelling of {missing} for the accented voice {voice}: accented voices "
                         f"speak the Speech Commands words only; drop 'festival_accented' from the engines")
    return " ".join(spelled[word] for word in text.lower().split())
