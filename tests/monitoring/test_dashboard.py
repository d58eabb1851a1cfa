"""The Grafana dashboard and the rules name only metrics lid-dask serves, and the dashboard shows all
of them, filtered by the run chosen.

The metrics are what lid_dask.monitor's collector writes for figures holding every kind of answer
(rendered and parsed as a /metrics page is), so a renamed or misspelt metric fails here, without a
cluster; tests/monitoring/test_prometheus.py runs every query against a real Prometheus.
"""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from lid_dask.figures import DRIFT, WATCH, RunFigures, summary
from lid_dask.monitor import prometheus
from lid_dask.results import FileResult, ModelVerdict

from .promql import dashboard, dashboard_queries, metric_names, panels, rules

PROMETHEUS_SERIES = {"ALERTS", "up"}  # what Prometheus itself writes


def every_kind_of_answer(i: int) -> FileResult:
    """Identified (agreeing or split, rechecked or not, some for review), no speech, failed."""
    if i % 50 == 7:
        return FileResult(f"f{i}", error_kind="corrupt", error="bad header")
    if i % 50 == 8:
        return FileResult(f"f{i}", error_kind="no_speech", needs_review=True, review_reasons=("no_speech",),
                          duration=3.0)
    language, confidence = ("en", "de", "fr")[i % 3], 0.3 + (i % 7) / 10
    low = ("low_confidence",) if confidence < 0.5 else ()
    models = (ModelVerdict("a", language, confidence, {language: confidence}),
              ModelVerdict("b", "de" if i % 5 == 0 else language, 0.6, {language: 0.6}))
    return FileResult(f"f{i}", language, confidence, "split" if i % 5 == 0 else "unanimous", needs_review=bool(low),
                      review_reasons=low, duration=4.0, speech_seconds=3.0, models=models,
                      extra={"rechecked_windows": [0]} if i % 4 == 0 else {})


@pytest.fixture(scope="module")
def exposed() -> set[str]:
    """The sample names of a /metrics page with figures of 2,000 files (drift scores included)."""
    figures = RunFigures("archive")
    for start in range(0, 2000, 25):
        figures.add(summary([every_kind_of_answer(i) for i in range(start, start + 25)], ["lost"],
                            remaining=2000 - start, workers={"w1": [], "w2": ["lid-dask 0.9 != 1.0"]}))

    class Figures(Collector):
        def collect(self):
            families = prometheus._families()
            prometheus._add(families, figures)
            yield from families.values()

    registry = CollectorRegistry()
    registry.register(Figures())
    names = {sample.name for family in text_string_to_metric_families(generate_latest(registry).decode())
             for sample in family.samples}
    assert {"lid_dask_drift_psi", "lid_dask_errors_total", "lid_dask_review_reasons_total"} <= names  # all there
    return names


@pytest.mark.parametrize("expr, names", [
    ('sum by (le) (rate(lid_dask_confidence_bucket{run=~"$run"}[$__rate_interval]))', {"lid_dask_confidence_bucket"}),
    ("increase(lid_dask_errors_total[1h] offset 10m) / ignoring (kind) group_left sum without (outcome) "
     "(increase(lid_dask_files_total[1h] offset 10m))", {"lid_dask_errors_total", "lid_dask_files_total"}),
    ("run:lid_dask_review:ratio10m > 2 * other_series and time() - x_total >= 1e-3",
     {"run:lid_dask_review:ratio10m", "other_series", "x_total"}),
    ('sort_desc(sum by (language) (lid_dask_answer_total{run="a {b} [c]"}))', {"lid_dask_answer_total"}),
])
def test_metric_names_are_read_from_promql(expr, names):
    assert metric_names(expr) == names


def test_a_misspelt_metric_would_show(exposed):
    assert metric_names('sum(rate(lid_dask_file_total{run=~"$run"}[5m]))') - exposed == {"lid_dask_file_total"}


def test_the_dashboard_reads_only_metrics_lid_dask_serves_and_shows_them_all(exposed):
    read = set().union(*(metric_names(expr) for _, expr in dashboard_queries(dashboard())))
    assert read - exposed - PROMETHEUS_SERIES == set()
    assert exposed - read == set()


def test_every_dashboard_query_follows_the_run_variable():
    """A panel that ignored the run picker would mix runs."""
    for where, expr in dashboard_queries(dashboard()):
        selectors = re.findall(r"\b(lid_dask_\w+|ALERTS)(\{[^}]*\})?", expr)
        assert selectors, where
        for name, matchers in selectors:
            assert 'run=~"$run"' in matchers, f"{where}: {name} is not filtered by run"


def test_the_rules_read_only_metrics_lid_dask_serves_and_their_own_records(exposed):
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    read = {rule.get("alert") or rule["record"]: metric_names(rule["expr"]) for rule in rules()}
    assert set().union(*read.values()) - exposed - recorded - PROMETHEUS_SERIES == set()
    used_by_alerts = set().union(*(names for name, names in read.items() if name not in recorded))
    used_by_records = set().union(*(read[name] for name in recorded))
    assert recorded - used_by_alerts - used_by_records == set()  # no recorded series goes unused


def test_the_dashboard_is_a_grafana_dashboard_with_a_run_picker():
    board = dashboard()
    assert board["schemaVersion"] == 39 and board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    run = variables["run"]
    assert run["definition"] == "label_values(lid_dask_files_total, run)" == run["query"]["query"]
    assert run["multi"] and run["includeAll"]
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in panels(board):
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"] and all(t["datasource"] == panel["datasource"] for t in panel["targets"])


def test_the_dashboard_has_the_panels_a_run_is_watched_by():
    by_title = {panel["title"]: panel for panel in panels(dashboard())}
    kinds = {title: panel["type"] for title, panel in by_title.items()}
    assert kinds["Files per second, by outcome"] == "timeseries"
    assert kinds["Language mix"] == "timeseries"
    assert kinds["Confidence of the files identified"] == "heatmap"
    assert by_title["Confidence of the files identified"]["targets"][0]["format"] == "heatmap"
    assert kinds["Agreement, review and recheck rates"] == "timeseries"
    assert kinds["Failed files per second, by error class"] == "timeseries"
    assert kinds["Drifted workers"] == "stat"
    drift = by_title["Drift: PSI of the last 1,000 files against the baseline (absent while too few)"]
    steps = [step["value"] for step in drift["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, WATCH, DRIFT]  # the watch and drift lines, as lid_dask.figures reads PSI
    assert drift["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"
