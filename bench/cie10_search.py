"""CIE-10 search by code and by words, in Spanish and English: target p95 <= 50 ms.

No database: the code list is the shipped file (records/data/cie10.tsv.gz), read once per process. Prints
the one-off load time, then p50/p95/max of `search()` over a mix of what a clinician types — code
prefixes of every length, one to four words with and without accents, Spanish and English, common and
rare terms, and queries that find nothing (a full scan with no early exit).
Usage: .venv/bin/python -m bench.cie10_search [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

QUERIES = [
    # (text, language)
    ("j", "es-pe"),
    ("J0", "es-pe"),
    ("j06", "es-pe"),
    ("J069", "es-pe"),
    ("E11.9", "es-pe"),
    ("a97", "es-pe"),
    ("z00", "es-pe"),
    ("i10", "en"),
    ("infeccion", "es-pe"),
    ("infección respiratoria aguda", "es-pe"),
    ("infec resp sup", "es-pe"),
    ("faringitis", "es-pe"),
    ("amigdalitis aguda", "es-pe"),
    ("neumonía", "es-pe"),
    ("diabetes mellitus", "es-pe"),
    ("diabetes mellitus no insulinodependiente sin complicacion", "es-pe"),
    ("hipertensión esencial", "es-pe"),
    ("dengue con signos de alarma", "es-pe"),
    ("gastroenteritis", "es-pe"),
    ("diarrea", "es-pe"),
    ("dolor abdominal", "es-pe"),
    ("cefalea", "es-pe"),
    ("lumbago", "es-pe"),
    ("infección de vías urinarias", "es-pe"),
    ("embarazo", "es-pe"),
    ("anemia por deficiencia de hierro", "es-pe"),
    ("tuberculosis pulmonar", "es-pe"),
    ("asma", "es-pe"),
    ("depresivo", "es-pe"),
    ("ansiedad", "es-pe"),
    ("obesidad", "es-pe"),
    ("covid", "es-pe"),
    ("a", "es-pe"),
    ("de", "es-pe"),
    ("xyzzy inexistente", "es-pe"),
    ("upper respiratory infection", "en"),
    ("pneumonia", "en"),
    ("type 2 diabetes", "en"),
    ("essential hypertension", "en"),
    ("urinary tract infection", "en"),
    ("low back pain", "en"),
    ("iron deficiency anaemia", "en"),
    ("pneumonia unspecified", "es-pe"),
    ("fever", "en"),
    ("headache", "en"),
    ("no such disease at all", "en"),
]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20, help="passes over the query mix")
    args = parser.parse_args()
    from records import cie10

    started = time.perf_counter()
    entries = len(cie10._load()[1])
    load_ms = (time.perf_counter() - started) * 1000
    timings: list[float] = []
    for _ in range(args.runs):
        for text, language in QUERIES:
            started = time.perf_counter()
            cie10.search(text, language=language, limit=20)
            timings.append((time.perf_counter() - started) * 1000)
    print(f"CIE-10 list: {entries} codes, loaded once in {load_ms:.0f} ms")
    print(
        f"CIE-10 search ({len(timings)} queries, {len(QUERIES)} distinct): "
        f"p50 {statistics.median(timings):.1f} ms, p95 {_percentile(timings, 0.95):.1f} ms, "
        f"max {max(timings):.1f} ms (target p95 <= 50 ms)"
    )


if __name__ == "__main__":
    main()
