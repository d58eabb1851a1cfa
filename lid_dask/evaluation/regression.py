"""Did this change make anything worse? Compare an evaluation with the previous one on the same set.

For each model and language the accuracy (recall on that language's files) before and after,
its change, a 95 % interval and a p-value, and a flag when it dropped by at least `threshold`
and the drop is significant. Two more rows per model, over the languages both evaluations have:
``(all)`` for overall accuracy and ``(macro)`` for macro accuracy.

The tests, and why:
- When the same files were evaluated both times and the per-file answers are at hand
  (`paired_counts` of the two evaluation frames), McNemar's exact test: only files whose
  correctness changed carry information, and pairing removes the variance of which files are
  easy. That is the standard test for two classifiers on one test set.
- Otherwise, from the two Datasets alone: two independent samples of files, so Fisher's exact
  test on the 2x2 table of correct/wrong before and after (exact, so it holds for the long tail's
  small languages too).
- The 95 % interval is a bootstrap of the accuracy difference in every case. Per language,
  resampling files with replacement gives Binomial(n, accuracy) correct answers exactly (with
  pairs: a multinomial over right->wrong, wrong->right, unchanged), so the bootstrap needs only
  the counts, never the rows. Bootstrap p-values are not used where an exact test exists: their
  resolution (1 / draws) times a Holm factor of hundreds of languages would hide real drops.
- ``(macro)`` (a mean of per-language differences, no exact test) takes its p-value from the
  normal approximation of its bootstrap distribution.
Many languages are tested at once, so p-values are Holm-adjusted within each model: with 100
languages a 5 % test would otherwise flag about five that did not change, and a CI gate that
fails on noise gets switched off.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import numpy as np
import pandas as pd
import xarray as xr
from scipy.stats import binom, fisher_exact, norm

from lid_dask.evaluation.metrics import as_dask

ALL, MACRO = "(all)", "(macro)"


@dataclass
class Comparison:
    """Per model and language: accuracy before/after, delta, CI, p-values, regression flag."""

    table: pd.DataFrame
    threshold: float
    alpha: float

    @property
    def regressions(self) -> pd.DataFrame:
        return self.table[self.table["regression"]]

    def exit_code(self) -> int:
        """1 when any regression is flagged (for CI), else 0."""
        return int(bool(self.table["regression"].any()))

    def summary(self) -> str:
        rule = f"drop >= {self.threshold:.1%}, Holm-adjusted p < {self.alpha}"
        if not len(self.regressions):
            return f"no regression ({rule})"
        lines = [f"{len(self.regressions)} regression(s) ({rule}):"]
        for row in self.regressions.itertuples():
            lines.append(f"  {row.model} {row.language}: {row.before:.1%} -> {row.after:.1%} ({row.delta:+.1%}, "
                         f"95% CI {row.ci_low:+.1%}..{row.ci_high:+.1%}, p={row.p_adjusted:.2g}, {row.test})")
        return "\n".join(lines)


def paired_counts(current, previous) -> pd.DataFrame:
    """Per model and language, over files in both evaluation frames: n, and b (right before,
    wrong now) and c (wrong before, right now). A Dask join and group-by: scales with the frames."""
    def correctness(frame):
        ddf = as_dask(frame)[["uri", "model", "label", "predicted"]]
        ok = (ddf["predicted"] == ddf["label"]).fillna(False).astype("int64")
        return ddf.assign(ok=ok)[["uri", "model", "label", "ok"]]

    both = correctness(current).merge(correctness(previous), on=["uri", "model"], suffixes=("", "_before"))
    both = both.assign(n=1, b=both["ok_before"] * (1 - both["ok"]), c=(1 - both["ok_before"]) * both["ok"],
                       correct=both["ok"], correct_before=both["ok_before"])
    (table,) = dask.compute(both.groupby(["model", "label"])[["n", "b", "c", "correct", "correct_before"]].sum())
    return table.rename_axis(["model", "language"]).astype("int64")


def compare(current: xr.Dataset, previous: xr.Dataset, paired: pd.DataFrame | None = None, *,
            threshold: float = 0.02, alpha: float = 0.05, n_boot: int = 10_000, seed: int = 0) -> Comparison:
    """Compare two `evaluate` Datasets (see the module docstring); `paired` from `paired_counts`
    switches languages present in it to McNemar on the matched files."""
    rng = np.random.default_rng(seed)
    tables = []
    for model in sorted(set(current["model"].values) & set(previous["model"].values)):
        now, before = _counts(current, model), _counts(previous, model)
        languages = sorted(set(now.index[now["support"] > 0]) & set(before.index[before["support"] > 0]))
        if not languages:
            continue
        pairs = _pairs_of(paired, model)
        results, draws = [], []
        for language in languages:
            if language in pairs.index:
                result, draw = _paired(pairs.loc[language], rng, n_boot)
            else:
                result, draw = _unpaired(now.loc[language], before.loc[language], rng, n_boot)
            results.append({"language": language, **result})
            draws.append(draw)
        table = pd.DataFrame(results)
        if set(languages) <= set(pairs.index):
            overall, _ = _paired(pairs.loc[languages].sum(), rng, n_boot)
        else:
            overall, _ = _unpaired(now.loc[languages].sum(), before.loc[languages].sum(), rng, n_boot)
        macro_draws = np.mean(draws, axis=0)
        macro_delta = table["delta"].mean()
        spread = macro_draws.std()
        macro_p = 2 * norm.sf(abs(macro_delta) / spread) if spread > 0 else float(macro_delta == 0)
        macro = _from_draws(table["before"].mean(), table["after"].mean(), macro_delta, macro_draws, "bootstrap",
                            macro_p)
        macro.update(n_before=overall["n_before"], n_after=overall["n_after"])
        table = pd.concat([table, pd.DataFrame([{"language": ALL, **overall}, {"language": MACRO, **macro}])],
                          ignore_index=True)
        table.insert(0, "model", model)
        table["p_adjusted"] = _holm(table["p_value"].to_numpy())
        tables.append(table)
    columns = ["model", "language", "n_before", "n_after", "before", "after", "delta", "ci_low", "ci_high",
               "p_value", "p_adjusted", "test"]
    table = pd.concat(tables, ignore_index=True)[columns] if tables else pd.DataFrame(columns=columns)
    table["regression"] = (table["delta"] <= -threshold) & (table["p_adjusted"] < alpha)
    table["improvement"] = (table["delta"] >= threshold) & (table["p_adjusted"] < alpha)
    return Comparison(table, threshold, alpha)


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: under no change, b ~ Binomial(b + c, 1/2)."""
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2 * binom.cdf(min(b, c), b + c, 0.5)))


def _pairs_of(paired: pd.DataFrame | None, model: str) -> pd.DataFrame:
    """The model's rows of `paired_counts` (by language), empty when there are none."""
    if paired is None or model not in paired.index.get_level_values("model"):
        return pd.DataFrame(columns=["n", "b", "c", "correct", "correct_before"])
    return paired.xs(model, level="model")


def _counts(ds: xr.Dataset, model: str) -> pd.DataFrame:
    table = ds["per_language"].sel(model=model, metric=["support", "correct"]).to_pandas()
    return table.fillna(0).astype("int64")


def _unpaired(now: pd.Series, before: pd.Series, rng, n_boot: int) -> tuple[dict, np.ndarray]:
    n_now, n_before = int(now["support"]), int(before["support"])
    acc_now, acc_before = now["correct"] / n_now, before["correct"] / n_before
    draws = rng.binomial(n_now, acc_now, n_boot) / n_now - rng.binomial(n_before, acc_before, n_boot) / n_before
    k_now, k_before = int(now["correct"]), int(before["correct"])
    p_value = fisher_exact([[k_before, n_before - k_before], [k_now, n_now - k_now]]).pvalue
    result = _from_draws(acc_before, acc_now, acc_now - acc_before, draws, "fisher", p_value)
    return {**result, "n_before": n_before, "n_after": n_now}, draws


def _paired(counts: pd.Series, rng, n_boot: int) -> tuple[dict, np.ndarray]:
    n, b, c = int(counts["n"]), int(counts["b"]), int(counts["c"])
    after, before = counts["correct"] / n, counts["correct_before"] / n
    cells = rng.multinomial(n, [b / n, c / n, 1 - (b + c) / n], n_boot)
    draws = (cells[:, 1] - cells[:, 0]) / n
    result = _from_draws(before, after, (c - b) / n, draws, "mcnemar", mcnemar_p(b, c))
    return {**result, "n_before": n, "n_after": n}, draws


def _from_draws(before: float, after: float, delta: float, draws: np.ndarray, test: str, p_value: float) -> dict:
    """A result row: the delta with its 95 % percentile bootstrap interval and the test's p-value."""
    low, high = np.quantile(draws, [0.025, 0.975])
    return {"before": float(before), "after": float(after), "delta": float(delta), "ci_low": float(low),
            "ci_high": float(high), "p_value": float(p_value), "test": test}


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (family-wise error control, no independence assumed)."""
    order = np.argsort(p)
    adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(adjusted)
    out[order] = np.minimum(adjusted, 1.0)
    return out
