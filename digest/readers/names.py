"""The given name a greeting may call a reader by, taken from the name column.

Used when subscribers.csv is read (``subscribers``) and when a copy is personalised for a reader
recorded before ``first_name`` was kept.
"""

from __future__ import annotations

import re

# Family names that lead a name in Vietnamese and Chinese order, written without diacritics.
# Only ones that are rarely a given name in English are listed ("Kim", "Lee" are not).
_FAMILY_FIRST = frozenset({
    "nguyen", "tran", "pham", "hoang", "huynh", "phan", "vu", "vo", "dang", "bui", "duong", "ngo",
    "wang", "zhang", "liu", "chen", "yang", "huang", "zhao", "zhou", "xu", "sun", "zhu", "gao", "lin",
    "guo", "luo", "zheng", "liang", "xie", "song", "tang", "feng", "deng", "cao", "peng", "zeng",
    "xiao", "tian", "dong", "pan", "yuan", "cai", "jiang", "yu", "du", "ye", "cheng", "wei", "su",
    "lu", "ding", "ren", "shen", "yao", "jin", "cui", "zhong", "tan", "fan", "wan", "qian", "dai",
    "park", "choi", "jung", "kang", "cho", "yoon", "jang", "lim", "shin", "han", "oh", "seo", "kwon",
})
_SUFFIXES = frozenset({"jr", "jr.", "sr", "sr.", "ii", "iii", "iv", "phd", "ph.d.", "md", "m.d.", "esq", "esq."})
_JOINERS = "-'’"


# Letters of scripts whose names are written family name first, or that mark such a name: Han,
# Hiragana, Katakana, Hangul; Vietnamese letters (Latin Extended Additional, ă ơ ư đ); Hungarian
# ő ű. One regex search rather than a test per character: it runs for every row of the file.
_FAMILY_FIRST_SCRIPT = re.compile("[\u2e80-\u9fff\uac00-\ud7af\u1100-\u11ff\uf900-\ufaff"
                                  "\U00020000-\U0002fa1f\u1ea0-\u1ef9ĂăƠơƯưĐđŐőŰű]")


def _usable(word: str) -> bool:
    """A given name a greeting can print: letters (with inner hyphens and apostrophes), no
    initial ("J."), no title ("Dr."), nothing that would leave stray punctuation."""
    if len(word) < 2 or not (word[0].isalpha() and word[-1].isalpha()):
        return False
    return all(c.isalpha() or c in _JOINERS for c in word)


def greeting_name(name: str) -> str:
    """The given name a greeting may use, taken from the name column; '' when it cannot be told.

    "Ana Lucero" -> "Ana"; "Pruitt, Harriet" -> "Harriet"; "Martin King, Jr." -> "Martin" (the
    suffix is skipped), but "King, Jr." -> ''. A name written family name first (by its script, its letters, or a common
    family name leading it) cannot be told apart from one that is not, so it gets ''.
    The ``first_name`` column, when filled in, is used instead of this.
    """
    text = " ".join(name.split())
    if not text or _FAMILY_FIRST_SCRIPT.search(text):
        return ""
    words = _given_first(text).split()
    if not words:
        return ""
    if len(words) > 1 and words[0].casefold() in _FAMILY_FIRST:
        return ""
    return words[0] if _usable(words[0]) else ""


def _given_first(text: str) -> str:
    """``text`` with its commas read: the part that starts with the given name, or '' when none does."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 2 and parts[1].casefold() in _SUFFIXES:
        if len(parts[0].split()) < 2:
            return ""  # "King, Jr.": one word before a suffix is a family name
        return parts[0]  # "Martin King, Jr.": the name is in order before the suffix
    if len(parts) == 2 and parts[0] and parts[1]:
        return parts[1]  # "Pruitt, Harriet": family name, then given name
    if len(parts) > 1:
        return ""
    return text
