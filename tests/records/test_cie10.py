"""CIE-10 (EHR-2): the shipped code list, lookup in any usual spelling, search by code prefix and by words in
Spanish and English, accents and case ignored; unknown codes refused."""

from __future__ import annotations

import pytest

from records import cie10


@pytest.mark.parametrize("typed", ["J06.9", "j069", " J06.9 ", "j06.9", "J 069"])
def test_lookup_accepts_the_usual_spellings(typed):
    entry = cie10.lookup(typed)
    assert entry is not None and entry.code == "J06.9"
    assert entry.title_es == "Infección aguda de las vías respiratorias superiores, no especificada"
    assert entry.title_en == "Acute upper respiratory infection, unspecified"
    assert entry.title("en") == entry.title_en and entry.title("es-pe") == entry.title_es


@pytest.mark.parametrize("code", ["", "J06.99", "X99.99", "J00-J06", "ABC", "Z", "U07.3", "123"])
def test_unknown_codes_are_refused(code):
    assert cie10.lookup(code) is None
    assert not cie10.is_valid(code)


def test_the_list_is_whos_icd10_with_spanish_titles():
    # Categories and subcategories only (not chapters or blocks), including Peru's everyday diagnoses.
    for code in ("A09", "A97.1", "E11.9", "I10", "J18.9", "K29.7", "N39.0", "O80", "U07.1", "Z00.0", "B18.00"):
        assert cie10.is_valid(code), code
    assert cie10.lookup("A97.1").title_es == "Dengue con signos de alarma"
    assert cie10.lookup("I10").title_es == "Hipertensión esencial (primaria)"
    # Codes the Spanish list lacks show the English title rather than nothing.
    entry = cie10.lookup("B48.5")
    assert entry.title_es == entry.title_en == "Pneumocystosis"


def test_search_by_code_ranks_the_exact_code_first_then_the_prefix():
    codes = [e.code for e in cie10.search("j06")]
    assert codes == ["J06", "J06.0", "J06.8", "J06.9"]
    assert [e.code for e in cie10.search("J069")] == ["J06.9"]
    assert [e.code for e in cie10.search("j06.9")] == ["J06.9"]
    assert all(e.code.startswith("J") for e in cie10.search("j", limit=50))


def test_search_by_words_in_spanish_ignores_accents_and_case():
    with_accents = cie10.search("INFECCIÓN aguda respiratorias superiores")
    without = cie10.search("infeccion aguda respiratorias superiores")
    assert with_accents == without
    assert "J06.9" in [e.code for e in without]
    # Every word must match, at the start of a word of the title.
    assert all("neumon" in cie10.fold(e.title_es) for e in cie10.search("neumonia"))
    assert cie10.search("neumonía inexistentísima") == []


def test_search_ranks_titles_starting_with_the_words_before_others():
    results = cie10.search("hipertension esencial")
    assert results[0].code == "I10"
    ranked = cie10.search("diabetes", limit=200)
    starts = [cie10.fold(e.title_es).startswith("diabetes") for e in ranked]
    # All titles that start with the word come before those that merely contain it.
    assert starts == sorted(starts, reverse=True)


def test_search_in_english_and_english_terms_from_spanish():
    english = cie10.search("upper respiratory infection", language="en")
    assert "J06.9" in [e.code for e in english]
    # "neumonia" does not match inside "pneumonia": words match at word starts.
    assert all(
        "pneumonia" not in cie10.fold(e.title_en) or "neumon" in cie10.fold(e.title_es)
        for e in cie10.search("neumonia", language="en", limit=100)
    )
    # A Spanish-speaking clinician typing the English term still finds the code.
    assert "J18.9" in [e.code for e in cie10.search("pneumonia unspecified", language="es-pe")]


def test_search_limits_and_empty_queries():
    assert len(cie10.search("a", limit=20)) == 20
    assert cie10.search("", limit=20) == []
    assert cie10.search("   ", limit=20) == []
    assert cie10.search("...", limit=20) == []
    assert cie10.search("fiebre", limit=0) == []
