"""Dataset builders for testing and benchmarking lid-dask (not part of the installed library).

    python -m datasets.build_synthetic --out DIR     # the labelled synthetic speech set
    python -m datasets.make_samples                  # the committed samples, lid_dask/samples/

Run from the repository root. See datasets/README.md.
"""
