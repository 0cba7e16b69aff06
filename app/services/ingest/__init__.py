"""CSV and Excel ingest (SPEC §3).

- `reader`: open a CSV upload, detect encoding and delimiter, stream its rows.
- `workbook`: the same for an Excel workbook; `sources.open_upload` opens either.
- `fields`: the canonical lead fields, header synonyms, regions and countries.
- `validate`: one row in, one verdict out (and every verdict's wording).

These are pure (no database); the pipeline that stores batches builds on them.
"""
