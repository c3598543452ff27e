"""The ingest stage: finding and reading input files, the row rules and rejects, format adapters, the synthetic shop."""
