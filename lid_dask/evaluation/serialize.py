"""An evaluation Dataset as JSON, so it fits in one database row (the ledger's JSON column).

Strict JSON: NaN becomes null (PostgreSQL's JSON type rejects NaN), and each variable keeps its
dtype so `from_json` gives back the same arrays. For files, xarray's own ``to_netcdf`` (the
``scipy`` engine needs nothing else) or ``to_zarr`` work on the same Dataset.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr


def to_json(ds: xr.Dataset) -> str:
    def encode(variables) -> dict:
        return {name: {"dims": list(var.dims), "shape": list(var.shape), "attrs": var.attrs,
                       "dtype": var.dtype.str if var.dtype.kind in "biuf" else "str",
                       "data": _nulls(var.values.tolist())}
                for name, var in variables.items()}

    return json.dumps({"attrs": ds.attrs, "coords": encode(ds.coords), "data_vars": encode(ds.data_vars)},
                      ensure_ascii=False, allow_nan=False, default=_scalar)


def from_json(text: str) -> xr.Dataset:
    raw = json.loads(text)

    def decode(variables: dict) -> dict:
        out = {}
        for name, var in variables.items():
            data = np.array(var["data"], dtype=object).reshape(var["shape"])
            if var["dtype"] == "str":
                data = data.astype(str)
            else:
                data = np.where(data == None, np.nan, data).astype(var["dtype"])  # noqa: E711 - elementwise
            out[name] = xr.Variable(var["dims"], data, var["attrs"])
        return out

    return xr.Dataset(decode(raw["data_vars"]), coords=decode(raw["coords"]), attrs=raw["attrs"])


def _nulls(value):
    if isinstance(value, list):
        return [_nulls(v) for v in value]
    return None if isinstance(value, float) and np.isnan(value) else value


def _scalar(value):
    """numpy scalars in attrs."""
    return value.item() if isinstance(value, np.generic) else str(value)
