"""CSV ingest (SPEC §3).

- `reader`: open an upload, detect encoding and delimiter, stream its rows.
- `fields`: the canonical lead fields, header synonyms, regions and countries.
- `validate`: one row in, one verdict out (and every verdict's wording).

These three are pure (no database); the pipeline that stores batches builds on them.
"""
