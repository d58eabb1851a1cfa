"""Ground truth: the language of each file, from the layouts labelled speech is published in.

Every loader returns a `LabelSet`: a pandas frame [uri, language, raw_label] and the count of
files whose label could not be mapped to a language. Labels are normalised exactly as model
predictions are (`to_code`, then `base_language`: models predict languages, not regions), so a
Common Voice ``zh-CN`` and a Whisper ``<|zh|>`` compare equal. Files with unmappable labels are
kept out of the frame but counted in `LabelSet.unknown`: a silently shrinking test set would
make accuracy look better than it is.

Roots are fsspec URLs (a local folder, ``s3://bucket/prefix``, ...). URIs come back in the form
the run's sources register (absolute local paths, URLs with their protocol), see `canonical_uri`.
"""

from __future__ import annotations

import csv
import functools
import os
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd
from fsspec.core import url_to_fs

from lid_dask.languages import UNKNOWN, base_language, to_code
from lid_dask.sources import is_audio_name

TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet")
COLUMNS = ["uri", "language", "raw_label"]


@dataclass
class LabelSet:
    """Labelled files plus what could not be used.

    `frame`: one row per file (uri, language, raw_label, and any extra columns asked for);
    `unknown`: raw label -> number of files left out because it names no language;
    `conflicts`: files listed more than once with different languages (the first is kept).
    """

    frame: pd.DataFrame
    unknown: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    source: str = ""

    def summary(self) -> str:
        text = f"{len(self.frame)} labelled files in {self.frame['language'].nunique()} languages from {self.source}"
        if self.unknown:
            top = ", ".join(f"{label!r} ({n})" for label, n in sorted(self.unknown.items(), key=lambda kv: -kv[1])[:10])
            text += f"; {sum(self.unknown.values())} files with unknown labels: {top}"
        if self.conflicts:
            text += f"; {self.conflicts} files listed with conflicting languages (first kept)"
        return text


@functools.lru_cache(maxsize=4096)
def normalise_label(raw: str) -> str | None:
    """The base language of a dataset label, or None when it names no language."""
    try:
        language = base_language(to_code(raw))
    except ValueError:
        return None
    return None if language == UNKNOWN else language


def canonical_uri(uri: str) -> str:
    """One spelling per file so labels join predictions: URLs as they are, local paths absolute."""
    if "://" in uri and not uri.startswith("file://"):
        return uri
    return posixpath.normpath(os.path.abspath(uri.removeprefix("file://")))


def label_set(frame: pd.DataFrame, source: str) -> LabelSet:
    """Normalise a [uri, raw_label, ...] frame into a LabelSet (mapping each distinct label once)."""
    raw = frame["raw_label"].fillna("").astype(str).str.strip()
    mapping = {label: normalise_label(label) for label in raw.unique()}
    language = raw.map(mapping)
    known = language.notna()
    unknown = raw[~known].value_counts()
    out = frame.assign(raw_label=raw, language=language)[known]
    out = out[COLUMNS + [c for c in frame.columns if c not in COLUMNS]]
    conflicts = int((out.drop_duplicates(["uri", "language"])["uri"].value_counts() > 1).sum())
    out = out.drop_duplicates("uri").reset_index(drop=True)
    return LabelSet(out, {str(k): int(v) for k, v in unknown.items()}, conflicts, source)


def load_labels(source: str, kind: str = "auto", storage_options: dict | None = None, **options) -> LabelSet:
    """Load ground truth of any supported kind; `kind` auto-detects from the layout.

    kinds: ``table`` (CSV/TSV/Parquet file), ``commonvoice``, ``fleurs``, ``voxlingua``.
    `options` go to the loader (e.g. ``split="test"``).
    """
    loaders = {"table": load_table, "commonvoice": load_common_voice, "fleurs": load_fleurs,
               "voxlingua": load_voxlingua}
    if kind == "auto":
        kind = detect_kind(source, storage_options)
    if kind not in loaders:
        raise ValueError(f"unknown label kind {kind!r}; choose one of {sorted(loaders)}")
    return loaders[kind](source, storage_options=storage_options, **options)


def load_common_voice(root: str, split: str = "test", locales: Iterable[str] | None = None,
                      storage_options: dict | None = None) -> LabelSet:
    """Mozilla Common Voice: ``<root>/<locale>/<split>.tsv`` with audio in ``<locale>/clips/``.

    `root` is a release folder (all locales, or those in `locales`) or one locale's folder.
    The label is the TSV's ``locale`` column (older releases lack it: the folder name).
    Sentences hold stray quotes, so the TSV is read with quoting off, as Mozilla writes it.
    """
    fs, root_path = url_to_fs(root, **(storage_options or {}))
    frames = []
    for folder, locale in _locale_folders(fs, root_path, split, locales):
        with fs.open(f"{folder}/{split}.tsv", "rb") as handle:
            table = pd.read_csv(handle, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False,
                                usecols=lambda c: c in ("path", "locale"))
        raw = table["locale"] if "locale" in table.columns else locale
        frames.append(pd.DataFrame({"uri": [_uri(fs, f"{folder}/clips/{p}") for p in table["path"]],
                                    "raw_label": raw}))
    return label_set(_concat(frames), f"Common Voice {split} at {root}")


def load_fleurs(root: str, split: str = "test", locales: Iterable[str] | None = None,
                storage_options: dict | None = None) -> LabelSet:
    """FLEURS: ``<root>/<lang_locale>/<split>.tsv`` (no header; the 2nd column is the file name),
    audio in ``<lang_locale>/audio/<split>/``. The label is the folder name (``en_us``, ``cmn_hans_cn``).
    """
    fs, root_path = url_to_fs(root, **(storage_options or {}))
    frames = []
    for folder, locale in _locale_folders(fs, root_path, split, locales):
        with fs.open(f"{folder}/{split}.tsv", "rb") as handle:
            table = pd.read_csv(handle, sep="\t", header=None, quoting=csv.QUOTE_NONE, dtype=str,
                                keep_default_na=False, usecols=[1])
        frames.append(pd.DataFrame({"uri": [_uri(fs, f"{folder}/audio/{split}/{name}") for name in table[1]],
                                    "raw_label": locale}))
    return label_set(_concat(frames), f"FLEURS {split} at {root}")


def load_voxlingua(root: str, storage_options: dict | None = None) -> LabelSet:
    """VoxLingua107 layout: one folder per language (``<root>/<code>/**/<audio>``); the folder
    name is the label. Audio files directly under `root` have no label and are ignored.
    """
    fs, root_path = url_to_fs(root, **(storage_options or {}))
    root_path = root_path.rstrip("/")
    rows = []
    for path in sorted(fs.find(root_path)):
        relative = path[len(root_path) + 1:]
        if "/" in relative and is_audio_name(path):
            rows.append((_uri(fs, path), relative.split("/", 1)[0]))
    return label_set(pd.DataFrame(rows, columns=["uri", "raw_label"]), f"folders at {root}")


def load_table(path: str, uri_column: str = "uri", language_column: str = "language", keep: Sequence[str] = (),
               storage_options: dict | None = None) -> LabelSet:
    """Any CSV/TSV/Parquet with a uri and a language column; relative uris are relative to the
    table's folder (as in `lid_dask.sources` manifests). `keep` names extra columns to carry
    (e.g. ``split``, ``engine`` of the synthetic set) for filtering before evaluation.
    """
    fs, table_path = url_to_fs(path, **(storage_options or {}))
    columns = [uri_column, language_column, *keep]
    if table_path.endswith(".parquet"):
        with fs.open(table_path, "rb") as handle:
            table = pd.read_parquet(handle, columns=columns)
    else:
        separator = "\t" if table_path.endswith((".tsv", ".tsv.gz")) else ","
        with fs.open(table_path, "rb", compression="infer") as handle:
            table = pd.read_csv(handle, sep=separator, dtype=str, usecols=columns, keep_default_na=False)
    folder = table_path.rsplit("/", 1)[0]

    def resolve(uri: str) -> str:
        if "://" in uri or uri.startswith("/"):
            return canonical_uri(uri)
        return _uri(fs, posixpath.normpath(f"{folder}/{uri}"))

    frame = pd.DataFrame({"uri": table[uri_column].astype(str).map(resolve), "raw_label": table[language_column]})
    for column in keep:
        frame[column] = table[column].to_numpy()
    return label_set(frame, f"table {path}")


def _locale_folders(fs, root_path: str, split: str, locales: Iterable[str] | None) -> list[tuple[str, str]]:
    """(folder, locale) for each locale that has `<split>.tsv`; `root_path` may be one locale's folder."""
    root_path = root_path.rstrip("/")
    if fs.exists(f"{root_path}/{split}.tsv"):
        found = [root_path]
    else:
        found = sorted(p.rsplit("/", 1)[0] for p in fs.glob(f"{root_path}/*/{split}.tsv"))
    wanted = set(locales) if locales is not None else None
    pairs = [(folder, folder.rsplit("/", 1)[-1]) for folder in found]
    pairs = [(f, loc) for f, loc in pairs if wanted is None or loc in wanted]
    if not pairs:
        raise FileNotFoundError(f"no {split}.tsv under {root_path} or its locale folders")
    return pairs


def _uri(fs, path: str) -> str:
    """A URL with its protocol, or an absolute local path (fsspec paths have the protocol stripped)."""
    return canonical_uri(fs.unstrip_protocol(path))


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["uri", "raw_label"])


def detect_kind(source: str, storage_options: dict | None) -> str:
    if source.lower().endswith(TABLE_SUFFIXES):
        return "table"
    fs, path = url_to_fs(source, **(storage_options or {}))
    path = path.rstrip("/")
    if fs.glob(f"{path}/*/clips") or fs.exists(f"{path}/clips"):
        return "commonvoice"
    if fs.glob(f"{path}/*/audio") or fs.exists(f"{path}/audio"):
        return "fleurs"
    return "voxlingua"
