"""CIE-10 (WHO ICD-10) codes: lookup, validation and search by code or words, in Spanish and English.

The list ships in the repository (records/data/cie10.tsv.gz, built by records/data/build_cie10.py): no
run-time download and no package to install. It is read once per process, on first use, and kept in memory
(~12,000 entries, a few MB); a search scans it linearly, which on this machine stays well under the 50 ms
p95 target (bench/cie10_search.py) and avoids an index to keep in step with the file.
"""

from __future__ import annotations

import functools
import gzip
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

DATA_FILE = Path(__file__).resolve().parent / "data" / "cie10.tsv.gz"

# What a typed code looks like: a letter, two digits, then up to two more characters with or without the
# dot ("J06", "j069", "J06.9", "B18.00"). Anything else is searched as words.
_NOT_WORD = re.compile(r"[^0-9a-z]+")
_CODE_LIKE = re.compile(r"^[A-Z](?:[0-9]{1,2}|[0-9]{2}[0-9A-Z]{1,2})?$")


@dataclass(frozen=True, slots=True)
class Cie10Entry:
    code: str  # with the dot, as printed: "J06.9"
    title_es: str  # the Spanish title; WHO's English one for the few codes the Spanish list lacks
    title_en: str

    def title(self, language: str = "es-pe") -> str:
        return self.title_en if language.lower().startswith("en") else self.title_es


@dataclass(frozen=True, slots=True)
class _Indexed:
    entry: Cie10Entry
    compact: str  # the code without the dot, for prefix matching: "J069"
    # Folded titles with a leading space, so " word" finds a word start: "neumonia" must not match "pneumonia".
    folded_es: str
    folded_en: str


def fold(text: str) -> str:
    """Lower-case words without accents or punctuation: "Tos ferina [tos convulsiva]" → "tos ferina tos convulsiva"."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return " ".join(_NOT_WORD.sub(" ", bare).split())


def normalise(code: str) -> str:
    """The printed form of a typed code: "j069" → "J06.9", " J06.9 " → "J06.9". Not a validity check."""
    compact = "".join(str(code or "").split()).upper().replace(".", "")
    return f"{compact[:3]}.{compact[3:]}" if len(compact) > 3 else compact


@functools.cache
def _load() -> tuple[dict[str, Cie10Entry], tuple[_Indexed, ...]]:
    by_code: dict[str, Cie10Entry] = {}
    indexed: list[_Indexed] = []
    with gzip.open(DATA_FILE, "rt", encoding="utf-8") as lines:
        next(lines)  # header
        for line in lines:
            code, title_es, title_en = line.rstrip("\n").split("\t")
            entry = Cie10Entry(code=code, title_es=title_es or title_en, title_en=title_en)
            by_code[code] = entry
            indexed.append(_Indexed(entry, code.replace(".", ""), " " + fold(entry.title_es), " " + fold(title_en)))
    return by_code, tuple(indexed)


def lookup(code: str) -> Cie10Entry | None:
    """The entry for a code in any usual spelling ("j069", "J06.9"), or None when it is not a CIE-10 code."""
    return _load()[0].get(normalise(code))


def is_valid(code: str) -> bool:
    return lookup(code) is not None


# Ranks, best first.
_EXACT_CODE, _CODE_PREFIX, _TITLE_START, _TITLE_WORDS = range(4)


def search(text: str, *, language: str = "es-pe", limit: int = 20) -> list[Cie10Entry]:
    """Entries matching a code prefix or every word of `text` (accents and case ignored), best first:
    the exact code, codes starting with it, titles starting with the words, then other titles. Words are
    matched in the requested language's title and, failing that, in the other language's (clinicians
    often know an English term)."""
    if not text or not text.strip() or limit <= 0:
        return []
    english = language.lower().startswith("en")
    compact = "".join(text.split()).upper().replace(".", "")
    code_like = bool(_CODE_LIKE.match(compact))
    # Each word must start a word of the title: "infec resp" finds "infección ... respiratorias".
    words = [" " + word for word in fold(text).split()]
    if not words and not code_like:
        return []
    phrase = "".join(words)
    ranked: list[tuple[int, str, Cie10Entry]] = []
    for item in _load()[1]:
        if code_like and item.compact.startswith(compact):
            rank = _EXACT_CODE if item.compact == compact else _CODE_PREFIX
            ranked.append((rank, item.entry.code, item.entry))
            continue
        first, second = (item.folded_en, item.folded_es) if english else (item.folded_es, item.folded_en)
        if all(word in first for word in words):
            title = first
        elif all(word in second for word in words):
            title = second
        else:
            continue
        rank = _TITLE_START if title.startswith(phrase) else _TITLE_WORDS
        ranked.append((rank, item.entry.code, item.entry))
    ranked.sort(key=lambda found: (found[0], found[1]))
    return [entry for _rank, _code, entry in ranked[:limit]]
