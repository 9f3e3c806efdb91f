"""English verbs written once and matched in every inflected form.

A pattern that lists "smother" misses "smothering" and "smothered", and one that lists "stab" misses
"stabbed". In a policy pattern, `<<verb:kill|stab|beat up>>` stands for each verb's base form, -s, -ed and
-ing forms (with a final e dropped, y turned into i, and a final consonant doubled: strangling, buried,
stabbed) and, for irregular verbs, their past forms (shot, hung, beaten, ran over). In a verb of several
words the first one is inflected ("beating up", "blew up").

A form that English does not have ("murderred" from doubling) is harmless: no text holds it.
"""

from __future__ import annotations

import re

# Past forms the -ed rule does not make, for the verbs policy patterns name.
IRREGULAR = {
    "beat": ("beaten",),
    "bind": ("bound",),
    "bite": ("bit", "bitten"),
    "blow": ("blew", "blown"),
    "break": ("broke", "broken"),
    "build": ("built",),
    "burn": ("burnt",),
    "buy": ("bought",),
    "cut": (),
    "do": ("did", "done"),
    "drive": ("drove", "driven"),
    "feed": ("fed",),
    "fight": ("fought",),
    "forget": ("forgot", "forgotten"),
    "hang": ("hung",),
    "hide": ("hid", "hidden"),
    "hit": (),
    "make": ("made",),
    "override": ("overrode", "overridden"),
    "put": (),
    "run": ("ran",),
    "sell": ("sold",),
    "set": (),
    "shoot": ("shot",),
    "show": ("shown",),
    "slit": (),
    "steal": ("stole", "stolen"),
    "take": ("took", "taken"),
    "throw": ("threw", "thrown"),
}
_WORD = re.compile(r"[a-z]+")
_CVC = re.compile(r"[^aeiou][aeiou][bdgklmnprst]$")


def forms(verb: str) -> list[str]:
    """The verb's forms, base form first: stab -> stab, stabs, stabbed, stabbing (and stabed, stabing)."""
    first, _, rest = verb.strip().partition(" ")
    if not _WORD.fullmatch(first):
        raise ValueError(f"English verb {verb!r} must start with a word of letters a-z (kill, beat up)")
    tail = f" {rest}" if rest else ""
    return [word + tail for word in _inflections(first)]


def _inflections(word: str) -> list[str]:
    if word.endswith("ie"):  # tie -> tying
        stems = [word[:-2] + "y"]
    elif word.endswith("e") and not word.endswith("ee"):  # strangle -> strangling
        stems = [word[:-1]]
    else:
        stems = [word]
    if _CVC.search(word):  # stab -> stabbing; also the undoubled form, for longer verbs (kidnaping)
        stems.append(word + word[-1])
    consonant_y = re.search(r"[^aeiou]y$", word) is not None  # bury -> buries, buried
    if re.search(r"(?:s|x|z|ch|sh|o)$", word):
        third = word + "es"
    elif consonant_y:
        third = word[:-1] + "ies"
    else:
        third = word + "s"
    if word.endswith("e"):
        past = [word + "d"]
    elif consonant_y:
        past = [word[:-1] + "ied"]
    else:
        past = [s + "ed" for s in stems]
    found = [word, third, *past, *(s + "ing" for s in stems), *IRREGULAR.get(word, ())]
    return list(dict.fromkeys(found))
