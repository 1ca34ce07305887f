"""Drug knowledge behind prescription alerts: which ingredients a drug name holds, allergy matches, interactions.

`DrugKnowledge` is the interface; `drug_knowledge()` returns the backend named by the DRUG_KNOWLEDGE_BACKEND
setting (a dotted path to a class taking no arguments), so a full commercial or national knowledge base can
replace the default without touching the callers. The default, `TableDrugKnowledge`, reads the small starter
table shipped in records/data/drug_knowledge.json (scope and sources: docs/drug-knowledge.md).

Keys are plain strings: an ingredient is its English INN in snake case ("amoxicillin"), a class is prefixed
("class:penicillins"). Severities are "high", "moderate" or "low".
"""

from __future__ import annotations

import functools
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils.module_loading import import_string

from records.cie10 import fold

DEFAULT_BACKEND = "records.drug_knowledge.TableDrugKnowledge"
TABLE_FILE = Path(__file__).resolve().parent / "data" / "drug_knowledge.json"
CLASS_PREFIX = "class:"


class Severity:
    HIGH = "high"
    MODERATE = "moderate"
    LOW = "low"


@dataclass(frozen=True)
class AllergyMatch:
    allergy_key: str
    ingredient: str
    relation: str  # "ingredient": the same ingredient; "class": same allergy class; "cross_reactivity"
    severity: str
    explanation_es: str
    explanation_en: str


@dataclass(frozen=True)
class Interaction:
    key: str  # stable: the rule and the two ingredients, e.g. "warfarin-nsaid:ibuprofen+warfarin"
    ingredient_a: str
    ingredient_b: str
    severity: str
    explanation_es: str
    explanation_en: str


class DrugKnowledge(ABC):
    """What the prescription alerts need from a drug knowledge base."""

    @abstractmethod
    def ingredients(self, drug: str) -> frozenset[str]:
        """Ingredient keys named in a free-text drug name or brand ("Amoxicilina + ác. clavulánico 875/125")."""

    @abstractmethod
    def allergy_key(self, substance: str) -> str:
        """The ingredient or class key for a recorded allergy's substance, "" when the substance is unknown."""

    @abstractmethod
    def label(self, key: str, language: str = "es-pe") -> str:
        """A readable name for an ingredient or class key."""

    @abstractmethod
    def allergy_matches(self, drug_ingredients: Iterable[str], allergy_keys: Iterable[str]) -> list[AllergyMatch]:
        """Allergies (by key) that a drug with these ingredients matches, strongest relation first."""

    @abstractmethod
    def interactions(self, ingredients_a: Iterable[str], ingredients_b: Iterable[str]) -> list[Interaction]:
        """Known interactions between any ingredient of one drug and any of the other."""


@dataclass(frozen=True)
class _Rule:
    id: str
    a: frozenset[str]
    b: frozenset[str]
    severity: str
    es: str
    en: str


class TableDrugKnowledge(DrugKnowledge):
    """The starter table: ~50 essential medicines, their allergy classes and ~30 well-known interactions."""

    def __init__(self, path: Path = TABLE_FILE) -> None:
        table = json.loads(path.read_text(encoding="utf-8"))
        self._drugs: dict[str, dict] = table["drugs"]
        self._classes: dict[str, dict] = table["classes"]
        self._drug_classes = {key: frozenset(drug["classes"]) for key, drug in self._drugs.items()}
        # Names as tuples of folded words → the keys they stand for. Class names resolve allergies only:
        # "AINE" on a prescription is not a drug.
        self._drug_names: dict[tuple[str, ...], tuple[str, ...]] = {}
        for key, drug in self._drugs.items():
            for name in drug["names"]:
                self._drug_names[tuple(fold(name).split())] = (key,)
        for name, keys in table["combinations"].items():
            self._drug_names[tuple(fold(name).split())] = tuple(keys)
        self._class_names = {
            tuple(fold(name).split()): CLASS_PREFIX + key for key, cls in self._classes.items() for name in cls["names"]
        }
        self._longest = max(len(name) for name in [*self._drug_names, *self._class_names])
        self._rules = [
            _Rule(r["id"], frozenset(r["a"]), frozenset(r["b"]), r["severity"], r["es"], r["en"])
            for r in table["interactions"]
        ]

    def _names_in(self, text: str, *, with_classes: bool) -> list[tuple[int, tuple[str, ...]]]:
        """(length in words, keys) of each name found in the text, longest match first at each position, so
        "penicilina g benzatínica" is one drug and not also "penicilina g"."""
        words = fold(text).split()
        found: list[tuple[int, tuple[str, ...]]] = []
        position = 0
        while position < len(words):
            for length in range(min(self._longest, len(words) - position), 0, -1):
                candidate = tuple(words[position : position + length])
                keys = self._drug_names.get(candidate)
                if keys is None and with_classes and candidate in self._class_names:
                    keys = (self._class_names[candidate],)
                if keys is not None:
                    found.append((length, keys))
                    position += length
                    break
            else:
                position += 1
        return found

    def ingredients(self, drug: str) -> frozenset[str]:
        return frozenset(key for _length, keys in self._names_in(drug, with_classes=False) for key in keys)

    def allergy_key(self, substance: str) -> str:
        found = self._names_in(substance, with_classes=True)
        if not found:
            return ""
        _length, keys = max(found, key=lambda match: match[0])
        if len(keys) == 1:
            return keys[0]
        # A combination ("cotrimoxazol"): the allergy is taken to be to the ingredient with an allergy class
        # (the sulfonamide), the usual culprit.
        with_class = [k for k in keys if self._drug_classes.get(k, frozenset()) & self._classes.keys()]
        return (with_class or list(keys))[0]

    def label(self, key: str, language: str = "es-pe") -> str:
        field = "label_en" if language.lower().startswith("en") else "label_es"
        if key.startswith(CLASS_PREFIX):
            cls = self._classes.get(key.removeprefix(CLASS_PREFIX))
            return cls[field] if cls else key.removeprefix(CLASS_PREFIX).replace("_", " ")
        drug = self._drugs.get(key)
        return drug[field] if drug else key.replace("_", " ")

    def _allergy_classes_of(self, ingredient: str) -> frozenset[str]:
        # Only classes the table describes as allergy classes: sharing "statins" is not an allergy signal.
        return self._drug_classes.get(ingredient, frozenset()) & self._classes.keys()

    def allergy_matches(self, drug_ingredients: Iterable[str], allergy_keys: Iterable[str]) -> list[AllergyMatch]:
        ingredients = sorted(set(drug_ingredients))
        matches: list[AllergyMatch] = []
        for allergy_key in sorted(set(allergy_keys)):
            if not allergy_key:
                continue
            if allergy_key.startswith(CLASS_PREFIX):
                allergy_classes = frozenset({allergy_key.removeprefix(CLASS_PREFIX)})
            else:
                allergy_classes = self._allergy_classes_of(allergy_key)
            for ingredient in ingredients:
                match = self._allergy_match(allergy_key, allergy_classes, ingredient)
                if match:
                    matches.append(match)
        order = {"ingredient": 0, "class": 1, "cross_reactivity": 2}
        return sorted(matches, key=lambda m: (order[m.relation], m.allergy_key, m.ingredient))

    def _allergy_match(self, allergy_key: str, allergy_classes: frozenset[str], ingredient: str) -> AllergyMatch | None:
        if ingredient == allergy_key:
            return AllergyMatch(allergy_key, ingredient, "ingredient", Severity.HIGH, "", "")
        shared = sorted(allergy_classes & self._allergy_classes_of(ingredient))
        if shared:
            cls = self._classes[shared[0]]
            return AllergyMatch(
                allergy_key, ingredient, "class", Severity.HIGH, cls.get("note_es", ""), cls.get("note_en", "")
            )
        for allergy_class in sorted(allergy_classes):
            for cross in self._classes[allergy_class]["cross_reactive"]:
                if cross["class"] in self._allergy_classes_of(ingredient):
                    return AllergyMatch(
                        allergy_key, ingredient, "cross_reactivity", cross["severity"], cross["es"], cross["en"]
                    )
        return None

    def _side_matches(self, side: frozenset[str], ingredient: str) -> bool:
        return ingredient in side or any(
            CLASS_PREFIX + cls in side for cls in self._drug_classes.get(ingredient, frozenset())
        )

    def interactions(self, ingredients_a: Iterable[str], ingredients_b: Iterable[str]) -> list[Interaction]:
        found: dict[tuple[str, str], Interaction] = {}
        for x in sorted(set(ingredients_a)):
            for y in sorted(set(ingredients_b)):
                pair = (min(x, y), max(x, y))
                if pair in found:
                    continue
                # The first matching rule wins: the table lists specific rules before class-wide ones.
                for rule in self._rules:
                    if (self._side_matches(rule.a, x) and self._side_matches(rule.b, y)) or (
                        self._side_matches(rule.a, y) and self._side_matches(rule.b, x)
                    ):
                        found[pair] = Interaction(
                            f"{rule.id}:{pair[0]}+{pair[1]}", x, y, rule.severity, rule.es, rule.en
                        )
                        break
        return list(found.values())


@functools.cache
def _backend(path: str) -> DrugKnowledge:
    backend = import_string(path)()
    if not isinstance(backend, DrugKnowledge):
        raise TypeError(f"{path} is not a DrugKnowledge implementation.")
    return backend


def drug_knowledge() -> DrugKnowledge:
    """The configured backend, built once per process (the table is read on first use)."""
    return _backend(getattr(settings, "DRUG_KNOWLEDGE_BACKEND", DEFAULT_BACKEND))
