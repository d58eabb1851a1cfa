"""Studies: one-off investigations behind a default of lid-dask (not part of the installed library).

    python -m studies.short_context_answers --manifest DIR/manifest.csv --split dev

Run from the repository root. See studies/README.md.
"""
