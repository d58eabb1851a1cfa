"""The accept rule in force: which answers go out without a person (numpy-free, for the engine).

A rule (fitted by `lid_dask.evaluation.acceptance.fit_accept_run`; stored by ``lid-dask calibrate
--target-precision``) accepts an answer when no other review reason holds (models or windows
disagreeing, no speech) and its confidence is at least the rule's threshold; it replaces the fixed
`ConsensusConfig.low_confidence`. Its promise holds only for the confidence it was fitted on: the
same models and weights, under the same calibrations, with the same settings that decide answers
(`RULE_SETTINGS`). `Run.create` puts the newest such rule into a new run's settings (`choose`); the
engine refuses one fitted on other weights (`refusal`), as it refuses calibrations, and the
default rule then applies. A rule changes only which answers go to review, never the answers: early
stop still judges by ``low_confidence``, in the runs a rule is fitted on and in those it is applied
to alike.
"""

from __future__ import annotations

from lid_dask.config import IdentifyConfig
from lid_dask.vocabulary import ReviewReason

RULE_SETTINGS = ("models", "windows", "languages", "vad", "consensus")


def rule_settings(config: IdentifyConfig | dict) -> dict:
    """The engine settings a rule is fitted under and holds for (calibrations apart), normalised."""
    data = (config if isinstance(config, IdentifyConfig) else IdentifyConfig.from_dict(config)).to_dict()
    return {key: data[key] for key in RULE_SETTINGS}


def calibration_ids(config: IdentifyConfig, names: list[str]) -> dict[str, int | None]:
    """The stored calibration each model's confidence goes through in `config` (None: its own)."""
    return {name: ((config.calibrations or {}).get(name) or {}).get("id") for name in names}


def choose(rows: list[dict], config: IdentifyConfig, names: list[str]) -> tuple[dict | None, str | None]:
    """The newest of `rows` (stored rules of these models, newest first) that holds for a new run
    of `config`, as its run-settings entry; else None and, when there was a rule, why it does not."""
    settings, calibrations = rule_settings(config), calibration_ids(config, names)
    for row in rows:
        if rule_settings(row["settings"]) == settings and row["calibrations"] == calibrations:
            rule = row["params"]
            return {"id": row["id"], "threshold": rule["threshold"], "target": rule["target"],
                    "confidence_level": rule["confidence_level"], "dataset": row["dataset"],
                    "models": {m["name"]: m.get("model_sha256") for m in row["models"]}}, None
    if not rows:
        return None, None
    newest = rows[0]
    if newest["calibrations"] != calibrations:
        return None, (f"accept rule {newest['id']} was fitted under other calibrations "
                      f"({_calibrations(newest['calibrations'])}; this run applies {_calibrations(calibrations)}): "
                      "refit it with lid-dask calibrate --target-precision")
    old = rule_settings(newest["settings"])
    differ = "; ".join(f"{key}: the rule's {old[key]}, this run's {settings[key]}" for key in RULE_SETTINGS
                       if old[key] != settings[key])
    return None, f"accept rule {newest['id']} was fitted with other settings ({differ})"


def _calibrations(ids: dict[str, int | None]) -> str:
    return ", ".join(f"{model}: {f'calibration {i}' if i else 'none'}" for model, i in sorted(ids.items()))


def refusal(rule: dict, loaded: dict[str, str | None]) -> str | None:
    """Why `rule` (a run-settings entry) does not hold for the models loaded ({name: model_sha256}),
    or None when it does."""
    fitted = rule["models"]
    if set(fitted) != set(loaded):
        return (f"accept rule {rule.get('id')} was fitted on models {', '.join(sorted(fitted))}, not "
                f"{', '.join(sorted(loaded))}")
    for name, sha in sorted(fitted.items()):
        if sha and loaded[name] and sha != loaded[name]:
            return (f"accept rule {rule.get('id')} was fitted on other weights of {name} ({sha[:12]}, loaded "
                    f"{loaded[name][:12]})")
    return None


def in_force(config: dict, fingerprint: dict | None) -> tuple[dict | None, str | None]:
    """The accept rule a run's answers go through (None: the default rule), from its stored
    settings and fingerprint; and why a rule in its settings was refused by the weights it loaded."""
    rule = config.get("identify", {}).get("accept_rule")
    loaded = {m.get("name"): m.get("model_sha256") for m in (fingerprint or {}).get("models", [])}
    why = refusal(rule, loaded) if rule and loaded else None  # no fingerprint yet: nothing loaded to refuse it
    return (None, why) if why else (rule, None)


def review_reasons(reasons: tuple[str, ...], confidence: float, rule: dict) -> tuple[str, ...]:
    """A file's review reasons under `rule`: its confidence is judged by the rule's threshold
    instead of ``low_confidence``; a rule that promises nothing (no threshold) accepts nothing."""
    kept = tuple(r for r in reasons if not ReviewReason(r).from_confidence)
    if rule["threshold"] is None or confidence < rule["threshold"]:
        kept += (ReviewReason.BELOW_ACCEPT_THRESHOLD,)
    return kept
