"""Live model behaviour of lid-dask runs, on the scheduler: a dashboard page and Prometheus metrics.

Load it with one scheduler preload, ``dask scheduler --preload lid_dask.monitor`` (`connect` adds
it to local clusters). Importing this module, which Dask does before the dashboard starts, adds
the page ``/individual-lid-dask`` to distributed's dashboard applications (the name shows it in
the dashboard's "More..." menu and in dask-labextension) and lid-dask's collector to the
Prometheus registry that the scheduler's /metrics serves; `dask_setup` installs the plugin that
holds the figures (`lid_dask.monitor.plugin`). Nothing else on the scheduler changes.
"""

from __future__ import annotations

from lid_dask.monitor.plugin import MonitorPlugin

PAGE = "/individual-lid-dask"


def _register_page_and_metrics() -> None:
    try:
        from distributed.dashboard.scheduler import applications
    except ImportError:  # no bokeh: no dashboard, but /metrics still works
        applications = None
    if applications is not None and PAGE not in applications:
        from lid_dask.monitor.page import lid_dask_doc

        applications[PAGE] = lid_dask_doc
    from prometheus_client import REGISTRY

    from lid_dask.monitor.prometheus import LidDaskCollector

    REGISTRY.register(LidDaskCollector())  # once: a module is imported once per process


_register_page_and_metrics()


def dask_setup(scheduler) -> None:
    """Scheduler preload hook."""
    if MonitorPlugin.name not in scheduler.plugins:
        scheduler.add_plugin(MonitorPlugin(scheduler))


__all__ = ["PAGE", "MonitorPlugin", "dask_setup"]
