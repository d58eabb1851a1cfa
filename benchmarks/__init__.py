"""lid-dask benchmarks: each module is run from the repository root as ``python -m benchmarks.<name>``.

Shared helpers live in ``benchmarks.common``; results and how to rerun them: benchmarks/README.md.
This file stays empty of imports: ``gpu_throughput`` runs on a bare GPU machine.
"""
