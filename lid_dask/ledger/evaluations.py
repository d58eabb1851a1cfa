"""The ledger's evaluation store: evaluations, calibrations, accept rules and reviewed ground truth."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pandas as pd
import sqlalchemy as sa
from toolz import partition_all

from lid_dask.ledger import schema as s
from lid_dask.ledger.database import CHUNK, Database, transient, utcnow


class EvaluationStore:
    """Reads and writes of the tables that evaluation adds (revisions 0002 and 0004)."""

    def __init__(self, db: Database):
        self.db = db

    @transient
    def save_evaluation(self, dataset: str, run_id: int | None, models: list[str], fingerprints: dict | None,
                        summary: dict, result_json: str) -> int:
        row = dict(dataset=dataset, run_id=run_id, created_at=utcnow(), models=models, fingerprints=fingerprints,
                   summary=summary, result=result_json)
        with self.db.engine.begin() as connection:
            return connection.execute(s.evaluations.insert().values(row).returning(s.evaluations.c.id)).scalar()

    @transient
    def evaluations_frame(self, dataset: str | None = None) -> pd.DataFrame:
        e = s.evaluations
        query = sa.select(e.c.id, e.c.dataset, e.c.run_id, e.c.created_at, e.c.models, e.c.summary).order_by(e.c.id)
        if dataset:
            query = query.where(e.c.dataset == dataset)
        with self.db.engine.connect() as connection:
            return pd.read_sql(query, connection)

    @transient
    def evaluation_result(self, evaluation_id: int) -> str:
        with self.db.engine.connect() as connection:
            return connection.execute(sa.select(s.evaluations.c.result)
                                      .where(s.evaluations.c.id == evaluation_id)).scalar_one()

    @transient
    def previous_evaluation(self, dataset: str, before_id: int) -> int | None:
        """The evaluation of `dataset` just before `before_id`, to compare against."""
        e = s.evaluations
        with self.db.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.max(e.c.id))
                                      .where(e.c.dataset == dataset, e.c.id < before_id)).scalar()

    @transient
    def save_calibration(self, model: str, model_sha256: str | None, method: str, params: dict, dataset: str,
                         ece_before: float | None, ece_after: float | None) -> int:
        row = dict(model=model, model_sha256=model_sha256, method=method, params=params, dataset=dataset,
                   ece_before=ece_before, ece_after=ece_after, created_at=utcnow())
        with self.db.engine.begin() as connection:
            return connection.execute(s.calibrations.insert().values(row).returning(s.calibrations.c.id)).scalar()

    @transient
    def latest_calibrations(self, models: list[str]) -> dict[str, dict]:
        """The newest calibration of each model name: {model: {"params", "model_sha256", ...}}."""
        c = s.calibrations
        out = {}
        with self.db.engine.connect() as connection:
            for model in models:
                row = connection.execute(sa.select(c).where(c.c.model == model).order_by(c.c.id.desc()).limit(1)
                                         ).first()
                if row is not None:
                    out[model] = {"params": row.params, "model_sha256": row.model_sha256, "id": row.id}
        return out

    @transient
    def calibrations_frame(self, model: str | None = None) -> pd.DataFrame:
        """Stored calibrations, oldest first. ``in_use``: the newest of its model, the one new runs apply."""
        c = s.calibrations
        query = sa.select(c).order_by(c.c.id)
        if model:
            query = query.where(c.c.model == model)
        with self.db.engine.connect() as connection:
            frame = pd.read_sql(query, connection)
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)  # SQLite gives it back without a zone
        frame["in_use"] = ~frame["model"].duplicated(keep="last")
        return frame

    @transient
    def remove_calibration(self, calibration_id: int) -> dict:
        """Delete a stored calibration, so new runs fall back on the model's previous one (or none);
        runs already made keep the one in their settings. Returns the deleted row."""
        return self._delete(s.calibrations, calibration_id, "calibration")

    @transient
    def save_accept_rule(self, models: list[dict], calibrations: dict, settings: dict, params: dict, dataset: str,
                         run_id: int | None, labels_sha256: str) -> int:
        """Store an accept rule: `models` [{name, model_sha256}] and `calibrations` {model: id or
        None} say whose confidence it was fitted on, `settings` the engine settings it holds for."""
        row = dict(models_key=models_key([m["name"] for m in models]), models=models, calibrations=calibrations,
                   settings=settings, params=params, dataset=dataset, run_id=run_id, labels_sha256=labels_sha256,
                   created_at=utcnow())
        with self.db.engine.begin() as connection:
            return connection.execute(s.accept_rules.insert().values(row).returning(s.accept_rules.c.id)).scalar()

    @transient
    def accept_rules(self, names: list[str]) -> list[dict]:
        """The stored rules of exactly these models, newest first."""
        a = s.accept_rules
        query = sa.select(a).where(a.c.models_key == models_key(names)).order_by(a.c.id.desc())
        with self.db.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    @transient
    def accept_rules_frame(self, model: str | None = None) -> pd.DataFrame:
        """Stored accept rules, oldest first. ``in_use``: the newest of its models and settings
        among those fitted under the calibrations new runs apply, the one new runs apply."""
        with self.db.engine.connect() as connection:
            frame = pd.read_sql(sa.select(s.accept_rules).order_by(s.accept_rules.c.id), connection)
        if model:
            frame = frame[frame["models_key"].map(lambda key: model in key.split(",")).astype(bool)]
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        latest = {m: c["id"] for m, c in self.latest_calibrations(sorted({n for key in frame["models_key"]
                                                                          for n in key.split(",")})).items()}
        current = frame["calibrations"].map(lambda ids: all(latest.get(m) == i for m, i in ids.items()))
        group = frame["models_key"] + frame["settings"].map(lambda v: json.dumps(v, sort_keys=True))
        frame["in_use"] = current & ~group.where(current).duplicated(keep="last")
        return frame.reset_index(drop=True)

    @transient
    def remove_accept_rule(self, rule_id: int) -> dict:
        """Delete a stored accept rule: new runs fall back on the previous one that holds for them,
        or the default rule; runs already made keep theirs. Returns the deleted row."""
        return self._delete(s.accept_rules, rule_id, "accept rule")

    def _delete(self, table: sa.Table, row_id: int, what: str) -> dict:
        """Delete one stored row by id and return it; a clear LookupError when there is none."""
        with self.db.engine.begin() as connection:
            row = connection.execute(sa.delete(table).where(table.c.id == row_id).returning(*table.c)).first()
        if row is None:
            raise LookupError(f"no {what} {row_id} in the ledger (`lid-dask calibration list`)")
        return dict(row._mapping)

    @transient
    def save_labels(self, dataset: str, rows: Iterable[dict], source: str) -> int:
        """Upsert reviewed ground truth: rows of uri, language and optionally reviewer."""
        now = utcnow()
        count = 0
        with self.db.engine.begin() as connection:
            for chunk in partition_all(CHUNK, rows):
                records = [dict(dataset=dataset, uri=r["uri"], language=r["language"], source=source,
                                reviewer=r.get("reviewer"), created_at=now) for r in chunk]
                connection.execute(self.db.upsert(s.labels, ["dataset", "uri"]), records)
                count += len(records)
        return count

    @transient
    def labels_frame(self, dataset: str) -> pd.DataFrame:
        with self.db.engine.connect() as connection:
            return pd.read_sql(sa.select(s.labels.c.uri, s.labels.c.language)
                               .where(s.labels.c.dataset == dataset), connection)


def models_key(names: Iterable[str]) -> str:
    return ",".join(sorted(names))
