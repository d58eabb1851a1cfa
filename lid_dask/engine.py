"""The LID engine: files in, one `FileResult` per file out, no cluster needed.

Per batch of files: decode the planned windows and measure their speech in a thread pool
(FFmpeg and ONNX release the GIL, so this overlaps with inference), run each model once over all
speech windows of the batch, then combine windows and models by consensus. `identify_batch` is
the unit a Dask worker runs; `identify` is the one-call API for scripts and notebooks.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from toolz import partition_all

from lid_dask import languages as lang
from lid_dask.acceptance import refusal, review_reasons
from lid_dask.audio import DecodedAudio, load_windows
from lid_dask.calibration import from_dict
from lid_dask.config import IdentifyConfig
from lid_dask.consensus import ConsensusConfig, ModelOutput, calibrate, combine_models, combine_windows, settled
from lid_dask.errors import AudioError, ErrorKind
from lid_dask.models import Backend, load_model
from lid_dask.results import FileResult
from lid_dask.sources import expand_sources
from lid_dask.speech import speech_spans
from lid_dask.vocabulary import ReviewReason
from lid_dask.windows import Window, WindowPlan, covered_seconds

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


@dataclass
class _Prepared:
    """A decoded file with the speech seconds of each window (their votes' weights) and of the
    file (the union of its windows' speech: windows of a short file overlap)."""

    audio: DecodedAudio
    speech: list[float]
    speech_total: float
    rechecked: int = 0  # windows a model listened to again

    @classmethod
    def measure(cls, audio: DecodedAudio, vad: str) -> _Prepared:
        spans = [speech_spans(samples, vad) for samples in audio.samples]
        return cls(audio, [sum(end - start for start, end in s) for s in spans],
                   covered_seconds((w.start + start, w.start + end) for w, s in zip(audio.windows, spans)
                                   for start, end in s))


class Identifier:
    """Loaded models plus settings; reuse one instance for many files (models load once).

    ``Identifier(models=[...], windows="spread:3x10", ...)`` takes the fields of `IdentifyConfig`
    as keywords, or a whole config: ``Identifier(config)``.
    """

    def __init__(self, config: IdentifyConfig | None = None, **settings):
        self.config = config.replace(**settings) if config else IdentifyConfig.from_dict(settings)
        self.plan = WindowPlan.parse(self.config.windows)
        self.backends: list[Backend] = [load_model(spec, self.config.device) for spec in self.config.models]
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            raise ValueError(f"the same model is listed twice: {names}")
        lang.check_allow_list(self.languages, {b.name: b.labels for b in self.backends})
        self.calibrations = self._check_calibrations(self.config.calibrations or {})
        self.accept_rule = self._check_accept_rule(self.config.accept_rule)

    @property
    def consensus(self) -> ConsensusConfig:
        return self.config.consensus

    @property
    def languages(self) -> list[str] | None:
        return list(self.config.languages) if self.config.languages else None

    # -- the public entry points -------------------------------------------------------------

    def identify_batch(self, uris: list[str]) -> list[FileResult]:
        """Identify a list of files; one result per file, in order. Bad files fail alone."""
        with ThreadPoolExecutor(self.config.decode_threads) as pool:
            prepared = list(pool.map(self._prepare, uris))
        return self._infer(uris, prepared)

    def iter_results(self, uris: Iterable[str], on_result: Callable[[FileResult], None] | None = None
                     ) -> Iterator[FileResult]:
        """Stream results; decoding of the next batch overlaps inference of the current one."""
        with ThreadPoolExecutor(self.config.decode_threads) as pool:
            batches = map(list, partition_all(self.config.chunk_files, uris))
            pending = None
            for batch in itertools.chain(batches, [None]):
                submitted = (batch, [pool.submit(self._prepare, u) for u in batch]) if batch else None
                if pending is not None:
                    done_uris, futures = pending
                    for result in self._infer(done_uris, [f.result() for f in futures]):
                        if on_result:
                            on_result(result)
                        yield result
                pending = submitted

    def fingerprint(self) -> list[dict]:
        return [b.fingerprint() for b in self.backends]

    def _check_calibrations(self, calibrations: dict[str, dict]) -> dict:
        """Calibrations by model name, kept only where they were fitted on these very weights."""
        if not calibrations:
            return {}
        usable = {}
        for backend in self.backends:
            entry = calibrations.get(backend.name)
            if entry is None:
                continue
            fitted_on, loaded = entry.get("model_sha256"), backend.fingerprint().get("model_sha256")
            if fitted_on and loaded and fitted_on != loaded:
                log.warning("calibration of %s was fitted on other weights (%s, loaded %s); not applied",
                            backend.name, fitted_on[:12], loaded[:12])
                continue
            usable[backend.name] = from_dict(entry["params"])
        return usable

    def _check_accept_rule(self, rule: dict | None) -> dict | None:
        """The accept rule, unless it was fitted on other models or weights: its promise is about
        their confidence. Refused, the default rule applies."""
        if not rule:
            return None
        why = refusal(rule, {b.name: b.fingerprint().get("model_sha256") for b in self.backends})
        if why:
            log.warning("%s; not applied: answers under %s confidence go to review, as without a rule", why,
                        self.consensus.low_confidence)
            return None
        return rule

    # -- steps ------------------------------------------------------------------------------

    def _prepare(self, uri: str) -> _Prepared | AudioError:
        if not any(b.needs_audio for b in self.backends):
            speech = self.consensus.min_window_speech  # enough to vote; nothing was listened to
            return _Prepared(DecodedAudio(uri, None, [Window(0.0, 0.0)], [np.zeros(0, np.float32)]), [speech], speech)
        try:
            audio = load_windows(uri, self.plan, self.config.storage_options,
                                 allow_private_network=self.config.allow_private_network)
            return _Prepared.measure(audio, self.config.vad)
        except AudioError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - a bug must fail the file, not the batch
            return AudioError(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}")

    def _infer(self, uris: list[str], prepared: list[_Prepared | AudioError]) -> list[FileResult]:
        """Run the models on a batch; if the batch fails, retry file by file so one file fails alone."""
        try:
            return self._infer_batch(uris, prepared)
        except Exception as exc:  # noqa: BLE001 - e.g. a model running out of memory on one window
            if len(uris) == 1:
                return [_error_result(uris[0], AudioError(ErrorKind.INTERNAL, f"model failed: {type(exc).__name__}: {exc}"))]
            return [result for uri, item in zip(uris, prepared) for result in self._infer([uri], [item])]

    def _infer_batch(self, uris: list[str], prepared: list[_Prepared | AudioError]) -> list[FileResult]:
        good = [i for i, p in enumerate(prepared) if isinstance(p, _Prepared)]
        outputs: dict[int, list[ModelOutput]] = {i: [] for i in good}
        skipped_by_model: dict[int, dict[str, int]] = {i: {} for i in good}
        for backend in self.backends:
            probabilities_by_item, skipped_by_item = self._run_backend(backend, [prepared[i] for i in good])
            for i, probabilities in probabilities_by_item.items():
                item = prepared[good[i]]
                skipped = skipped_by_item[i]
                if skipped:
                    skipped_by_model[good[i]][backend.name] = len(skipped)
                out = combine_windows(backend.name, backend.labels, probabilities, item.speech,
                                      item.audio.windows, self.consensus, skipped)
                if out is not None and backend.name in self.calibrations:
                    out = calibrate(out, self.calibrations[backend.name])
                if out is not None:
                    outputs[good[i]].append(out)
        return [_error_result(uri, item) if isinstance(item, AudioError)
                else self._file_result(uri, item, outputs[i], skipped_by_model[i])
                for i, (uri, item) in enumerate(zip(uris, prepared))]

    def _run_backend(self, backend: Backend, items: list[_Prepared]
                     ) -> tuple[dict[int, np.ndarray], dict[int, frozenset[int]]]:
        """Window probabilities per item, and the windows not run because the item was `settled`.

        Only windows with speech are sent to the model. Long files under the ``auto`` plan run
        their two windows with the most speech first and the rest only if those two do not settle
        the file; both rounds are batched over all items.
        """
        rounds: dict[int, tuple[list[int], list[int]]] = {}  # item -> (windows run first, the rest)
        for i, item in enumerate(items):
            voting = [w for w, s in enumerate(item.speech) if s >= self.consensus.min_window_speech]
            if self._may_settle_early(item, voting):
                first = sorted(voting, key=lambda w, speech=item.speech: -speech[w])[:2]
                rounds[i] = (first, [w for w in voting if w not in first])
            else:
                rounds[i] = (voting, [])
        per_item = {i: np.zeros((len(item.speech), len(backend.labels)), dtype=np.float32)
                    for i, item in enumerate(items)}
        self._predict(backend, items, [(i, w) for i, (first, _) in rounds.items() for w in first], per_item)
        skipped = {}
        for i, (first, rest) in rounds.items():
            speech = items[i].speech
            if rest and settled(per_item[i][first], [speech[w] for w in first], sum(speech[w] for w in rest),
                                self.consensus):
                skipped[i] = frozenset(rest)
        self._predict(backend, items, [(i, w) for i, (_, rest) in rounds.items() if i not in skipped
                                       for w in rest], per_item)
        return per_item, {i: skipped.get(i, frozenset()) for i in rounds}

    def _may_settle_early(self, item: _Prepared, voting: list[int]) -> bool:
        return (self.consensus.early_stop is not None and len(voting) > 2
                and self.plan.auto_spreads(item.audio.duration))

    def _predict(self, backend: Backend, items: list[_Prepared], jobs: list[tuple[int, int]],
                 per_item: dict[int, np.ndarray]) -> None:
        """Fill `per_item` with the model's probabilities for each (item, window) job, in batches."""
        for start in range(0, len(jobs), backend.max_batch):
            chunk = jobs[start:start + backend.max_batch]
            probabilities = backend.predict([items[i].audio.samples[w] for i, w in chunk])
            for job in backend.rechecked():
                items[chunk[job][0]].rechecked += 1
            probabilities = lang.restrict(probabilities, backend.labels, self.languages)
            for (i, w), row in zip(chunk, probabilities):
                per_item[i][w] = row

    def _file_result(self, uri: str, item: _Prepared, outputs: list[ModelOutput],
                     skipped: dict[str, int]) -> FileResult:
        audio = item.audio
        extra = {"codec": audio.codec, "container": audio.container, "sample_rate": audio.sample_rate}
        if skipped:  # windows each model did not run because the file was settled without them
            extra["windows_skipped"] = skipped
        if item.rechecked:  # windows a model listened to again (see `Backend.rechecked`)
            extra["rechecked_windows"] = item.rechecked
        base = dict(uri=uri, duration=audio.duration, speech_seconds=item.speech_total,
                    decoded_seconds=audio.decoded_seconds, extra=extra)
        if not outputs:
            listened = sum(w.duration for w in audio.windows)
            return FileResult(**base, needs_review=True, review_reasons=(ReviewReason.NO_SPEECH,),
                              error_kind=ErrorKind.NO_SPEECH,
                              error=f"no speech in the {len(audio.windows)} window(s) analysed ({listened:.1f} s)")
        decision = combine_models(outputs, self.consensus)
        reasons = (decision.reasons if self.accept_rule is None
                   else review_reasons(decision.reasons, decision.confidence, self.accept_rule))
        return FileResult(**base, language=decision.language, confidence=decision.confidence,
                          agreement=decision.agreement, needs_review=bool(reasons), review_reasons=reasons,
                          models=tuple(o.verdict for o in outputs))


def _error_result(uri: str, error: AudioError) -> FileResult:
    reasons = (ReviewReason(error.kind),) if error.kind.is_answer else ()  # a person may listen for speech
    return FileResult(uri=uri, needs_review=bool(reasons), review_reasons=reasons,
                      error_kind=error.kind, error=error.message, retryable=error.retryable)


def identify(sources: str | Iterable[str], progress: bool = False, allowed_roots: Iterable[str] = (),
             **settings) -> pd.DataFrame:
    """Identify the language of each audio file in `sources` (paths, folders, globs, fsspec URLs,
    manifests; see `lid_dask.sources`).

    Returns one row per file: ``language``, ``confidence``, ``agreement``, ``needs_review`` and its
    ``review_reasons``, each model's answer, and ``error_kind``/``error`` for files that failed.
    Keyword settings are the fields of `IdentifyConfig` (``models``, ``windows``, ``languages``,
    ``vad``, ``consensus``, ``device``, ``storage_options``...); `allowed_roots` widens what a
    manifest may name.
    """
    import pandas as pd  # only for the table: a worker, or a script of Identifier's, never loads it

    identifier = Identifier(**settings)
    uris = list(expand_sources(sources, identifier.config.storage_options, allowed_roots))
    if progress:
        from lid_dask.progress import track

        rows = [r.to_row() for r in track(identifier.iter_results(uris), total=len(uris))]
    else:
        rows = [r.to_row() for r in identifier.iter_results(uris)]
    return pd.DataFrame(rows, columns=_columns(rows))


def _columns(rows: list[dict]) -> list[str]:
    columns = list(FileResult(uri="").to_row())
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    return columns
