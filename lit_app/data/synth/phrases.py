"""Built-in English vocabulary and a sentence generator for the synthetic speech-recognition corpus.

Sentences come from templates (voice-assistant commands, digit strings, everyday phrases, questions) whose
slots are filled from word lists; all text is already in the recogniser's alphabet (a-z, space,
apostrophe). :func:`generate_sentences` is deterministic for a given generator state.
"""

from __future__ import annotations

import re

import numpy as np

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "last", "next")

SLOTS: dict[str, tuple[str, ...]] = {
    "device": (
        "light", "lights", "lamp", "fan", "heater", "radio", "television", "music", "oven", "kettle", "alarm",
        "camera", "speaker", "computer", "printer", "washing machine", "dishwasher", "air conditioner", "door",
        "window", "blinds", "curtains", "coffee machine", "vacuum cleaner", "microwave", "fridge", "screen",
    ),
    "room": (
        "kitchen", "bedroom", "bathroom", "living room", "garage", "garden", "hallway", "office", "basement",
        "attic", "dining room", "nursery", "study", "porch", "cellar", "laundry",
    ),
    "switch": ("turn on", "turn off", "switch on", "switch off", "start", "stop", "open", "close", "lock", "unlock",
               "pause", "reset", "check", "fix", "clean", "dim"),
    "direction": ("left", "right", "up", "down", "forward", "backward", "north", "south", "east", "west",
                  "ahead", "back", "around", "over", "under", "inside", "outside", "away", "home"),
    "unit": ("seconds", "minutes", "hours", "days", "weeks", "months", "years", "steps", "meters", "miles",
             "degrees", "percent", "points", "pounds", "dollars", "euros", "pages", "times"),
    "colour": ("red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "grey",
               "golden", "silver", "dark", "bright", "pale"),
    "adjective": (
        "big", "small", "old", "new", "young", "tall", "short", "long", "warm", "cold", "hot", "cool", "quiet",
        "loud", "happy", "sad", "angry", "tired", "busy", "empty", "full", "clean", "dirty", "heavy", "light",
        "soft", "hard", "quick", "slow", "early", "late", "cheap", "expensive", "fresh", "sweet", "bitter",
        "strange", "simple", "friendly", "lovely", "nice", "funny", "careful", "famous", "gentle", "honest",
        "narrow", "wide", "deep", "rich", "poor", "lucky", "brave", "clever", "calm", "proud", "real", "safe",
        "sharp", "smooth", "thick", "thin", "wet", "dry", "wild", "wooden", "tiny", "huge", "open", "ready",
    ),
    "animal": (
        "dog", "cat", "bird", "horse", "cow", "sheep", "pig", "duck", "goose", "rabbit", "mouse", "fox", "wolf",
        "bear", "lion", "tiger", "monkey", "elephant", "snake", "frog", "fish", "owl", "eagle", "deer", "goat",
        "chicken", "donkey", "camel", "whale", "dolphin", "spider", "bee",
    ),
    "food": (
        "bread", "butter", "cheese", "apple", "banana", "orange", "lemon", "potato", "tomato", "carrot", "onion",
        "rice", "pasta", "soup", "salad", "pizza", "sandwich", "cake", "cookie", "egg", "chicken", "fish",
        "steak", "sugar", "salt", "pepper", "honey", "jam", "cereal", "yogurt", "chocolate", "pie", "beans",
        "grapes", "cherries", "strawberries", "peas", "noodles", "toast", "muffin",
    ),
    "drink": ("tea", "coffee", "water", "milk", "juice", "lemonade", "wine", "beer", "soda", "cocoa", "smoothie"),
    "container": ("cup", "glass", "bottle", "bowl", "plate", "slice", "piece", "box", "bag", "jar", "can", "pot"),
    "thing": (
        "book", "pen", "pencil", "letter", "phone", "key", "keys", "wallet", "bag", "hat", "coat", "shoe", "shoes",
        "umbrella", "ticket", "map", "picture", "chair", "table", "bed", "clock", "watch", "bicycle", "car", "bus",
        "train", "boat", "plane", "ball", "box", "basket", "bucket", "ladder", "rope", "candle", "mirror",
        "blanket", "pillow", "towel", "brush", "scissors", "hammer", "bottle", "newspaper", "magazine", "card",
        "parcel", "gift", "guitar", "piano", "drum", "violin", "kite", "doll", "toy", "jacket", "sweater",
        "scarf", "glove", "gloves", "ring", "necklace", "notebook", "envelope", "stamp", "suitcase", "flower",
        "flowers", "tree", "stone", "shell", "leaf", "feather",
    ),
    "place": (
        "school", "office", "station", "airport", "hospital", "library", "museum", "market", "shop", "bank",
        "park", "beach", "church", "cinema", "theatre", "restaurant", "cafe", "hotel", "farm", "forest", "river",
        "lake", "mountain", "village", "city", "bridge", "harbour", "island", "castle", "stadium", "zoo",
        "garden", "bakery", "pharmacy", "post office", "supermarket", "playground", "university", "factory",
    ),
    "person": (
        "mother", "father", "sister", "brother", "friend", "neighbour", "teacher", "doctor", "nurse", "driver",
        "farmer", "baker", "boss", "uncle", "aunt", "cousin", "grandmother", "grandfather", "daughter", "son",
        "wife", "husband", "child", "children", "baby", "pilot", "painter", "singer", "waiter", "student",
        "captain", "guard", "king", "queen", "family", "team", "manager", "visitor", "stranger", "postman",
    ),
    "name": (
        "anna", "ben", "carl", "diana", "emma", "frank", "grace", "harry", "isabel", "jack", "kate", "leo", "maria",
        "nick", "olivia", "peter", "rosa", "sam", "tom", "victor", "wendy", "lucy", "james", "sophie", "daniel",
        "laura", "martin", "helen", "oscar", "julia",
    ),
    "city": (
        "london", "paris", "berlin", "madrid", "rome", "vienna", "dublin", "oslo", "tokyo", "sydney", "toronto",
        "chicago", "boston", "denver", "seattle", "delhi", "cairo", "lisbon", "prague", "warsaw", "athens",
        "moscow", "lima", "nairobi", "bangkok",
    ),
    "day": ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "today", "tomorrow",
            "tonight", "yesterday", "weekend"),
    "month": ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
              "november", "december"),
    "time": ("now", "later", "soon", "today", "tonight", "tomorrow", "this morning", "this afternoon",
             "this evening", "next week", "at noon", "at midnight", "in the morning", "in the evening",
             "every day", "right away", "after lunch", "before dinner", "on monday", "on the weekend"),
    "weather": ("rain", "snow", "sun", "wind", "fog", "storm", "thunder", "frost", "hail", "clouds"),
    "activity": (
        "reading", "cooking", "running", "swimming", "dancing", "singing", "painting", "walking", "driving",
        "fishing", "shopping", "cleaning", "gardening", "writing", "sleeping", "studying", "working", "playing",
        "travelling", "climbing", "skating", "sailing",
    ),
    "verb": (
        "bring", "take", "find", "buy", "sell", "send", "carry", "move", "hold", "keep", "open", "close", "wash",
        "paint", "fix", "build", "cook", "bake", "cut", "fold", "read", "write", "draw", "show", "give", "hide",
        "catch", "throw", "pack", "push", "pull", "lift", "drop", "fill", "pour", "check", "count", "clean",
        "wrap", "order", "borrow", "return", "share", "choose", "sort", "print", "copy", "save", "delete",
    ),
    "verb_past": (
        "brought", "took", "found", "bought", "sold", "sent", "carried", "moved", "held", "kept", "opened",
        "closed", "washed", "painted", "fixed", "built", "cooked", "baked", "cut", "folded", "read", "wrote",
        "drew", "showed", "gave", "hid", "caught", "threw", "packed", "pushed", "pulled", "lifted", "dropped",
        "filled", "lost", "forgot", "liked", "loved", "saw", "heard", "needed", "wanted", "cleaned", "ordered",
        "borrowed", "returned", "shared", "chose", "noticed", "missed",
    ),
    "motion": ("went", "walked", "drove", "ran", "flew", "sailed", "cycled", "travelled", "hurried", "came back",
               "moved", "rode"),
    "feeling": ("like", "love", "hate", "enjoy", "miss", "need", "want", "prefer", "remember", "understand"),
    "greeting": ("hello", "hi", "good morning", "good afternoon", "good evening", "good night", "goodbye",
                 "welcome back", "thank you", "thanks a lot", "excuse me", "sorry", "congratulations",
                 "happy birthday", "see you later", "nice to meet you"),
    "answer": ("yes", "no", "okay", "sure", "maybe", "of course", "not yet", "never", "always", "sometimes",
               "certainly", "probably", "absolutely", "not really", "i think so", "i don't know", "please do",
               "no thanks", "that's right", "that's wrong", "i'm not sure", "let's go", "wait a moment",
               "go ahead", "cancel that", "repeat that", "stop it", "help me"),
    "quantity": ("some", "more", "less", "a little", "a lot of", "enough", "too much", "plenty of", "half the",
                 "all the", "no more", "another"),
    "pronoun": ("i", "you", "we", "they", "he", "she"),
    "app": ("calendar", "camera", "calculator", "messages", "music", "radio", "weather", "news", "maps",
            "settings", "contacts", "notes", "email", "browser", "timer", "stopwatch", "podcast", "photos"),
}

TEMPLATES = (
    "{switch} the {room} {device}",
    "please {switch} the {device}",
    "{switch} the {device} in the {room}",
    "set a timer for {number} {unit}",
    "set an alarm for {clock}",
    "wake me up at {clock} {day}",
    "remind me to {verb} the {thing} {time}",
    "call {digits}",
    "dial {digits} please",
    "my number is {digits}",
    "the code is {digits}",
    "move {direction} {number} {unit}",
    "go {direction} and then {direction}",
    "turn {direction} at the {ordinal} {place}",
    "open {app}",
    "show me the {app} for {day}",
    "play some music in the {room}",
    "what is the weather in {city} {day}",
    "will there be {weather} in {city} {day}",
    "what time is it in {city}",
    "how far is the {place} from here",
    "where is the nearest {place}",
    "take me to the {place} in {city}",
    "book a table for {small_number} at {clock}",
    "i would like a {container} of {drink}",
    "can i have {quantity} {food} please",
    "we need {quantity} {food} and a {container} of {drink}",
    "add {food} and {food} to the shopping list",
    "{greeting} {name}",
    "{greeting} how are you {time}",
    "{answer}",
    "{answer} {name}",
    "{answer} i will {verb} the {thing} {time}",
    "{name} {verb_past} the {adjective} {thing}",
    "my {person} {verb_past} a {colour} {thing} at the {place}",
    "the {adjective} {animal} is {preposition} the {thing}",
    "the {colour} {animal} ran {direction}",
    "{pronoun} {motion} to the {place} {time}",
    "{name} {motion} to {city} in {month}",
    "my {person} and i {motion} to the {place}",
    "{pronoun} {feeling} {activity} in {month}",
    "do you {feeling} {activity}",
    "{name} will {verb} the {thing} {time}",
    "please {verb} the {adjective} {thing}",
    "could you {verb} the {thing} for my {person}",
    "where did you put the {colour} {thing}",
    "the {thing} is {preposition} the {thing}",
    "there are {number} {animal_plural} in the {place}",
    "it costs {number} {money}",
    "the meeting is on {weekday} the {ordinal} of {month}",
    "the train to {city} leaves at {clock}",
    "it is {adjective} and {adjective} {time}",
    "the {food} tastes {adjective}",
    "i {feeling} the {adjective} {food} from the {place}",
    "is the {place} open on {weekday}",
    "why is the {device} so {adjective}",
    "how many {unit} until {weekday}",
    "send a message to {name} saying {answer}",
    "ask {name} to bring the {thing}",
    "{name} is a {adjective} {person}",
    "the {person} found a {adjective} {animal} near the {place}",
    "we saw {number} {animal_plural} by the {place}",
    "read me the {ordinal} page of the {thing}",
    "page {number}",
    "channel {small_number}",
    "volume {small_number}",
    "increase the volume by {small_number}",
    "lower the temperature to {number} degrees",
    "room {digits}",
    "flight {digits} to {city}",
)

PREPOSITIONS = ("on", "under", "behind", "near", "beside", "inside", "next to", "in front of", "above", "below")
MONEY = ("dollars", "euros", "pounds", "cents")
CLOCK_SUFFIX = ("", " o'clock", " thirty", " fifteen", " forty five", " am", " pm")
IRREGULAR_PLURALS = {"mouse": "mice", "sheep": "sheep", "fish": "fish", "deer": "deer", "goose": "geese",
                     "fox": "foxes", "wolf": "wolves"}
_SLOT = re.compile(r"\{(\w+)\}")


def number_words(n: int) -> str:
    """English words for ``0 <= n < 10000`` ("three hundred and twelve")."""
    if not 0 <= n < 10000:
        raise ValueError(f"number_words handles 0 to 9999, got {n}")
    if n < 10:
        return DIGITS[n]
    if n < 20:
        return TEENS[n - 10]
    if n < 100:
        tens, unit = divmod(n, 10)
        return TENS[tens - 2] + (f" {DIGITS[unit]}" if unit else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{DIGITS[hundreds]} hundred" + (f" and {number_words(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    joiner = " and " if 0 < rest < 100 else " "
    return f"{DIGITS[thousands]} thousand" + (f"{joiner}{number_words(rest)}" if rest else "")


def plural(noun: str) -> str:
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    return noun + ("es" if noun.endswith(("s", "sh", "ch", "x")) else "s")


def _pick(options: tuple[str, ...], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _number(rng: np.random.Generator) -> str:
    # Mostly small numbers, as people say them; sometimes hundreds and thousands.
    high = (21, 100, 1000, 10000)[int(rng.choice(4, p=(0.45, 0.3, 0.15, 0.1)))]
    return number_words(int(rng.integers(1, high)))


# Slots drawn by a rule of their own; every other slot picks one of its SLOTS entries.
_FILLERS = {
    "digits": lambda rng: " ".join(DIGITS[int(d)] for d in rng.integers(0, 10, size=int(rng.integers(3, 8)))),
    "number": _number,
    "small_number": lambda rng: number_words(int(rng.integers(1, 21))),
    "clock": lambda rng: number_words(int(rng.integers(1, 13))) + _pick(CLOCK_SUFFIX, rng),
    "ordinal": lambda rng: _pick(ORDINALS, rng),
    "preposition": lambda rng: _pick(PREPOSITIONS, rng),
    "money": lambda rng: _pick(MONEY, rng),
    "weekday": lambda rng: _pick(SLOTS["day"][:7], rng),
    "animal_plural": lambda rng: plural(_pick(SLOTS["animal"], rng)),
}


def _fill(slot: str, rng: np.random.Generator) -> str:
    filler = _FILLERS.get(slot)
    return filler(rng) if filler is not None else _pick(SLOTS[slot], rng)


def generate_sentence(rng: np.random.Generator) -> str:
    """One sentence from a random template with random slot fillers."""
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    return _SLOT.sub(lambda match: _fill(match.group(1), rng), template)


def generate_sentences(count: int, rng: np.random.Generator, max_words: int = 12) -> list[str]:
    """``count`` distinct sentences of at most ``max_words`` words, in generation order.

    Raises:
        ValueError: the grammar cannot produce that many distinct sentences in a reasonable number of draws.
    """
    seen: dict[str, None] = {}
    attempts = 0
    while len(seen) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise ValueError(f"could only generate {len(seen)} distinct sentences of at most {max_words} words")
        sentence = generate_sentence(rng)
        if len(sentence.split()) <= max_words:
            seen.setdefault(sentence, None)
    return list(seen)


def vocabulary() -> set[str]:
    """Every word the generator can produce."""
    words: set[str] = {"hundred", "thousand", "and"}
    for options in (DIGITS, TEENS, TENS, ORDINALS, PREPOSITIONS, MONEY, CLOCK_SUFFIX, *SLOTS.values()):
        for phrase in options:
            words.update(phrase.split())
    words.update(plural(animal) for animal in SLOTS["animal"])
    for template in TEMPLATES:
        words.update(w for w in _SLOT.sub(" ", template).split())
    return words
