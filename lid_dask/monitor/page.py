"""The "Lid Dask" page of the scheduler's dashboard (``/individual-lid-dask``).

One Bokeh document per browser tab, redrawn every second from the monitor plugin's figures of the
chosen run (the most recently updated by default): throughput overall and per worker, the language
mix and the confidence histogram now against the baseline, agreement, review and recheck rates
over time, error classes, drift states, and the workers' environments with drifted ones in red.
"""

from __future__ import annotations

import html
import time

from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, Div, FactorRange, Select
from bokeh.plotting import figure
from bokeh.transform import factor_cmap

from lid_dask.figures import AGREEING, CONFIDENCE_BINS, MEASURES, RunFigures, shares
from lid_dask.monitor.plugin import MonitorPlugin

REFRESH_MS = 1000
TIMELINE_SHOWN = 120  # minutes
COLOURS = {"stable": "#2a9d8f", "watch": "#e9c46a", "drift": "#e63946", "warming up": "#8d99ae"}


def lid_dask_doc(scheduler, extra, doc) -> None:
    """Bokeh application: the signature distributed's dashboard gives its pages."""
    page = Page(scheduler.plugins.get(MonitorPlugin.name))
    doc.title = "lid-dask: model behaviour"
    doc.add_root(page.layout)
    doc.add_periodic_callback(page.update, REFRESH_MS)
    page.update()


class Page:
    def __init__(self, monitor: MonitorPlugin | None):
        self.monitor = monitor
        self.select = Select(title="run", options=[], width=300)
        self.headline = Div(css_classes=["lid-dask-headline"], sizing_mode="stretch_width")
        self.timeline = ColumnDataSource(dict(minute=[], files_per_second=[], audio_hours_per_hour=[],
                                              agreement=[], review=[], recheck=[]))
        self.languages = ColumnDataSource(dict(x=[], share=[], side=[]))
        self.confidence = ColumnDataSource(dict(left=[], right=[], baseline=[], recent=[]))
        self.errors = ColumnDataSource(dict(kind=[], files=[]))
        self.workers = Div(css_classes=["lid-dask-workers"], sizing_mode="stretch_width")
        self.layout = column(row(self.select, self.headline, sizing_mode="stretch_width"),
                             row(self._throughput(), self._rates(), sizing_mode="stretch_width"),
                             row(self._language_mix(), self._confidence(), sizing_mode="stretch_width"),
                             row(self._errors(), self.workers, sizing_mode="stretch_width"),
                             sizing_mode="stretch_width")

    # -- layout ---------------------------------------------------------------------------------

    def _throughput(self):
        fig = figure(title="Throughput", x_axis_type="datetime", height=260, sizing_mode="stretch_width",
                     tools="", toolbar_location=None)
        for field, label, colour in (("files_per_second", "files/s", "#1d3557"),
                                     ("audio_hours_per_hour", "audio hours/hour", "#e76f51")):
            fig.line("minute", field, source=self.timeline, legend_label=label, line_width=2, color=colour)
            fig.scatter("minute", field, source=self.timeline, legend_label=label, size=5, color=colour)
        fig.legend.location = "top_left"
        return fig

    def _rates(self):
        fig = figure(title="Agreement, review and recheck rates", x_axis_type="datetime", y_range=(0, 1.05),
                     height=260, sizing_mode="stretch_width", tools="", toolbar_location=None)
        for field, colour in (("agreement", "#2a9d8f"), ("review", "#e63946"), ("recheck", "#6a4c93")):
            fig.line("minute", field, source=self.timeline, legend_label=field, line_width=2, color=colour)
            fig.scatter("minute", field, source=self.timeline, legend_label=field, size=5, color=colour)
        fig.legend.location = "bottom_left"
        return fig

    def _language_mix(self):
        self.language_figure = fig = figure(title="Language mix: baseline and recent files", height=280,
                                            x_range=FactorRange(), sizing_mode="stretch_width", tools="",
                                            toolbar_location=None)
        fig.vbar(x="x", top="share", source=self.languages, width=0.9, line_color=None, fill_alpha=0.85,
                 fill_color=factor_cmap("x", ["#a8dadc", "#1d3557"], ["baseline", "recent"], start=1, end=2))
        fig.xaxis.major_label_orientation = 1.0
        fig.y_range.start = 0
        return fig

    def _confidence(self):
        fig = figure(title="Confidence: baseline (outline) and recent", height=280, x_range=(0, 1),
                     sizing_mode="stretch_width", tools="", toolbar_location=None)
        fig.quad(left="left", right="right", top="recent", bottom=0, source=self.confidence, fill_color="#457b9d",
                 fill_alpha=0.7, line_color=None, legend_label="recent")
        fig.quad(left="left", right="right", top="baseline", bottom=0, source=self.confidence, fill_alpha=0,
                 line_color="#1d3557", line_width=2, legend_label="baseline")
        fig.legend.location = "top_left"
        return fig

    def _errors(self):
        self.errors_figure = fig = figure(title="Failed files by class", y_range=FactorRange(), height=260,
                                          width=380, tools="", toolbar_location=None)
        fig.hbar(y="kind", right="files", source=self.errors, height=0.8, fill_color="#e76f51", line_color=None)
        fig.x_range.start = 0
        return fig

    # -- update ---------------------------------------------------------------------------------

    def update(self) -> None:
        if self.monitor is None:
            self.headline.text = ("<b>The scheduler runs without the lid-dask monitor.</b> Start it with "
                                  "<code>dask scheduler --preload lid_dask.monitor</code>.")
            return
        names = list(reversed(self.monitor.runs))
        self.select.options = names
        if self.select.value not in names:
            self.select.value = names[0] if names else ""
        figures = self.monitor.runs.get(self.select.value)
        if figures is None:
            self.headline.text = "No lid-dask run has recorded answers on this scheduler yet."
            return
        self._update_headline(figures)
        self._update_timeline(figures)
        self._update_distributions(figures)
        self._update_errors(figures)
        self._update_workers(figures)

    def _update_headline(self, figures: RunFigures) -> None:
        answered = figures.answered
        identified = figures.files.get("identified", 0)
        failed = figures.files.get("failed", 0)
        last = figures.timeline[-1] if figures.timeline else None
        rate = (last["files"] / max(1.0, min(60.0, time.time() - last["minute"]))) if last else 0.0
        states = figures.to_dict()["drift_state"]
        scores = figures.drift()
        drift = " ".join(
            f'<span class="lid-dask-drift" data-measure="{m}" data-state="{states[m]}" '
            f'style="background:{COLOURS[states[m]]};color:white;padding:1px 6px;border-radius:3px">'
            f'{m.replace("_", " ")}: {states[m]}{"" if scores[m] is None else f" ({scores[m]:.2f})"}</span>'
            for m in MEASURES)
        self.headline.text = (
            f'<div><b class="lid-dask-run">{html.escape(figures.run)}</b>: '
            f'<span class="lid-dask-files" data-value="{answered + failed}">{answered + failed:,}</span> files recorded '
            f'({identified:,} identified, {answered - identified:,} without speech, {failed:,} failed), '
            f'{figures.audio_seconds / 3600:.2f} h of audio, {rate:.1f} files/s in the last minute'
            f'{"" if figures.remaining is None else f", {figures.remaining:,} to go"}.</div>'
            f'<div>review {figures.needs_review / max(1, answered):.1%} · agreement '
            f'{_agreeing(figures) / max(1, identified):.1%} · recheck {figures.rechecked / max(1, identified):.1%}'
            f' · drift against the {html.escape(figures.baseline_source)}: {drift}</div>')

    def _update_timeline(self, figures: RunFigures) -> None:
        buckets = list(figures.timeline)[-TIMELINE_SHOWN:]
        seconds = [max(1.0, min(60.0, time.time() - b["minute"])) for b in buckets]  # the last minute is young
        self.timeline.data = dict(
            minute=[b["minute"] * 1000 for b in buckets],
            files_per_second=[b["files"] / s for b, s in zip(buckets, seconds)],
            audio_hours_per_hour=[b["audio_seconds"] / s for b, s in zip(buckets, seconds)],
            agreement=[b["agreeing"] / b["identified"] if b["identified"] else None for b in buckets],
            review=[b["needs_review"] / b["files"] if b["files"] else None for b in buckets],
            recheck=[b["rechecked"] / b["identified"] if b["identified"] else None for b in buckets])

    def _update_distributions(self, figures: RunFigures) -> None:
        baseline, recent = figures.baseline, figures.recent
        languages = [k for k, _ in (baseline.languages + recent.languages).most_common()]
        x, share, sides = [], [], []
        for language in languages:
            for side, distribution in (("baseline", baseline), ("recent", recent)):
                total = sum(distribution.languages.values())
                x.append((language, side))
                share.append(distribution.languages[language] / total if total else 0.0)
                sides.append(side)
        self.language_figure.x_range.factors = x
        self.languages.data = dict(x=x, share=share, side=sides)
        edges = [i / CONFIDENCE_BINS for i in range(CONFIDENCE_BINS + 1)]
        self.confidence.data = dict(left=edges[:-1], right=edges[1:],
                                    baseline=shares(baseline.confidence).tolist(),
                                    recent=shares(recent.confidence).tolist())

    def _update_errors(self, figures: RunFigures) -> None:
        kinds = [k for k, _ in figures.errors.most_common()]
        self.errors_figure.y_range.factors = kinds
        self.errors.data = dict(kind=kinds, files=[figures.errors[k] for k in kinds])

    def _update_workers(self, figures: RunFigures) -> None:
        rows = []
        for name, worker in sorted(figures.active_workers().items()):
            last = worker["minutes"][-1] if worker["minutes"] else (0, 0.0, 0.0)
            elapsed = max(1.0, min(60.0, time.time() - last[0]))
            drifted = bool(worker["drift"])
            environment = html.escape("; ".join(worker["drift"])) if drifted else "same as the run"
            digest = self.monitor.fingerprints.get(name, {}).get("digest", "")  # what the worker itself reported
            style = ' style="background:#ffd6d9"' if drifted else ""
            rows.append(f'<tr class="lid-dask-worker" data-drifted="{str(drifted).lower()}"{style}>'
                        f"<td>{html.escape(name)}</td><td>{worker['files']:,.0f}</td><td>{last[1] / elapsed:.2f}</td>"
                        f"<td>{last[2] / elapsed:.2f}</td><td><code>{html.escape(digest)}</code></td>"
                        f"<td>{environment}</td></tr>")
        self.workers.text = (
            "<b>Workers</b> (answered in the last 15 minutes)<table style='border-collapse:collapse' cellpadding=3>"
            "<tr><th>worker</th><th>files</th><th>files/s</th><th>audio h/h</th><th>fingerprint</th>"
            "<th>environment</th></tr>"
            + "".join(rows) + "</table>")


def _agreeing(figures: RunFigures) -> int:
    return sum(n for kind, n in figures.agreement.items() if kind in AGREEING)
