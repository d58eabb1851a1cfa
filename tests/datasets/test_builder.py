"""Tests of the synthetic speech set builder (datasets/build_synthetic.py).

Unit tests of sentence cleaning and planning run anywhere; the build tests need the
Debian packages festival, festvox-kallpc16k, festvox-czech-dita, espeak-ng, sox, ffmpeg.
"""

from __future__ import annotations

import csv
import random
import shutil
import subprocess
import sys
from pathlib import Path

import polib
import pytest

from datasets.synth import sentences
from datasets.synth.builder import COLUMNS, HOLDOUT_PERCENT, split_of
from datasets.synth.sentences import SentencePool, clean, is_reversed_hebrew, load_sentences
from datasets.synth.voices import FESTIVAL_BY_NAME, espeak_iso, festival_accepts

ROOT = Path(__file__).resolve().parents[2]  # `python -m datasets.build_synthetic` runs from here

TOOLS = ("text2wave", "espeak-ng", "sox", "ffmpeg", "ffprobe")
needs_tools = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in TOOLS), reason="needs festival, espeak-ng, sox and ffmpeg"
)


@pytest.mark.parametrize(
    "text",
    [
        "Impossible d'ouvrir le fichier %s pour la lecture",
        "Не удалось открыть файл {0} для чтения данных",
        "Die Datei %(name)s konnte nicht gelesen werden, bitte prüfen",
        "Der Ordner $HOME konnte nicht gelesen werden, bitte prüfen",
        "Weitere Informationen finden Sie unter https://example.org/hilfe",
        "Es wurden 12 Dateien gefunden, die gelöscht werden können",
        "Verwendung: programm --hilfe zeigt diese Hilfe und beendet sich",
        "Zápis obsahu archivu do terminálu se zamítá (nechybí přepínač -f?)",
        "Die Datei <dateiname> konnte nicht gelesen werden, bitte prüfen",
        "Zu kurz, wirklich",
    ],
)
def test_clean_drops_non_sentences(text):
    assert clean(text) is None


def test_clean_removes_markup_and_accelerators():
    assert clean("<b>_Speichern</b> Sie die Datei, bevor Sie das Fenster schließen") == (
        "Speichern Sie die Datei, bevor Sie das Fenster schließen"
    )
    assert clean("&Öffnen Sie die Datei in einem neuen Fenster, bitte") == (
        "Öffnen Sie die Datei in einem neuen Fenster, bitte"
    )
    assert clean("打开文件之前请先检查您的设置是否正确(_O)") == "打开文件之前请先检查您的设置是否正确"
    assert clean("„Speichern“ — die Datei wurde  noch nicht\ngespeichert") == (
        '"Speichern" - die Datei wurde noch nicht gespeichert'
    )


def test_reversed_hebrew_is_detected():
    text = "לא ניתן לפתוח את הקובץ המבוקש כעת"
    assert not is_reversed_hebrew(text)
    assert is_reversed_hebrew(text[::-1])
    assert clean(text[::-1]) is None


def _catalog(locale_dir: Path, locale: str, pairs: list[tuple[str, str]]) -> None:
    po = polib.POFile()
    po.metadata = {"Content-Type": "text/plain; charset=UTF-8"}
    for msgid, msgstr in pairs:
        po.append(polib.POEntry(msgid=msgid, msgstr=msgstr))
    folder = locale_dir / locale / "LC_MESSAGES"
    folder.mkdir(parents=True)
    po.save_as_mofile(str(folder / "test.mo"))


def test_english_leaking_into_a_translation_is_dropped(tmp_path):
    _catalog(
        tmp_path,
        "ru",
        [
            ("Could not open the requested file", "Не удалось открыть запрошенный файл"),
            ("The printer is out of paper right now", "The printer is out of paper right now"),  # untranslated
            ("Show hidden files in the list", "Show hidden files in the file list"),  # English, edited
            ("Open the file in Firefox now", "Открыть этот файл в Firefox Developer Edition"),  # mostly Latin
            ("Print", "Печать"),  # too short
        ],
    )
    _catalog(tmp_path, "ru@petr1708", [("Could not open", "Не удалось открыть запрошенный файлъ")])
    assert load_sentences("ru", tmp_path) == ["Не удалось открыть запрошенный файл"]


def test_english_comes_from_english_locales(tmp_path):
    _catalog(tmp_path, "en_GB", [("The colour of the selected text", "The colour of the selected text")])
    assert load_sentences("en", tmp_path) == ["The colour of the selected text"]


def test_pool_is_seeded_and_draws_without_replacement():
    pool_sentences = [f"Satz Nummer {chr(65 + i)} mit genug Buchstaben darin" for i in range(10)]
    draws = []
    for _ in range(2):
        pool = SentencePool(pool_sentences, random.Random("7|pool|de"))
        draws.append([pool.draw(lambda s: True) for _ in range(10)])
    assert draws[0] == draws[1]
    assert sorted(draws[0]) == sorted(pool_sentences)
    text = SentencePool(pool_sentences, random.Random(1)).compose(6.0, 9.0, lambda s: True)
    assert 6.0 <= sentences.estimated_seconds(text) <= 9.5
    assert text.endswith(".")


def test_voice_text_rules_and_language_codes():
    assert festival_accepts(FESTIVAL_BY_NAME["czech_dita"], "Příliš žluťoučký kůň úpěl ďábelské ódy")
    assert not festival_accepts(FESTIVAL_BY_NAME["czech_dita"], "打开文件")
    assert not festival_accepts(FESTIVAL_BY_NAME["hindi_NSK_diphone"], "यह PDF फ़ाइल है")
    assert espeak_iso("cmn") == "zh"
    assert espeak_iso("en-gb-scotland") == "en"
    assert espeak_iso("fa-latn") is None


def test_split_is_deterministic_and_about_30_percent():
    texts = [f"sentence {i}" for i in range(2000)]
    splits = [split_of("en", t) for t in texts]
    assert splits == [split_of("en", t) for t in texts]
    share = splits.count("holdout") / len(splits)
    assert abs(share - HOLDOUT_PERCENT / 100) < 0.04


def _build(out: Path, jobs: int) -> list[dict]:
    subprocess.run(
        [sys.executable, "-m", "datasets.build_synthetic", "--out", str(out), "--jobs", str(jobs),
         "--festival-voices", "kal_diphone,czech_dita", "--festival-per-voice", "1",
         "--espeak-langs", "is", "--espeak-per-lang", "1", "--long", "1", "--long-minutes", "0.25"],
        check=True, capture_output=True, cwd=ROOT,
    )  # fmt: skip
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return out, _build(out, jobs=2)


@needs_tools
def test_build_writes_labelled_files(built):
    out, rows = built
    assert list(rows[0]) == list(COLUMNS)
    assert sorted((r["engine"], r["language"], r["kind"]) for r in rows if r["kind"] == "clip") == [
        ("espeak-ng", "is", "clip"),
        ("festival", "cs", "clip"),
        ("festival", "en", "clip"),
    ]
    for row in rows:
        assert (out / row["uri"]).stat().st_size == int(row["bytes"])
        assert float(row["duration_s"]) > 0
        assert row["split"] in ("dev", "holdout")
        assert row["text"]
    long = next(r for r in rows if r["kind"] == "long")
    assert abs(float(long["duration_s"]) - 15.0) < 0.2
    assert long["prefix"].split(":")[0] in ("silence", "noise", "tones", "speech")


@needs_tools
def test_build_is_reproducible(built, tmp_path):
    _, rows = built
    assert _build(tmp_path, jobs=1) == rows  # same texts, parameters and file checksums


def test_make_samples_runs_as_a_module_and_targets_the_committed_samples():
    from datasets import make_samples

    assert make_samples.SAMPLE_DIR == ROOT / "lid_dask" / "samples"
    done = subprocess.run([sys.executable, "-m", "datasets.make_samples", "--help"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    assert "python -m datasets.make_samples" in done.stdout
