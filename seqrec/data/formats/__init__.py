"""Click-file formats: named public layouts and generic CSV/Parquet/JSON-lines with a column mapping.

Every reader returns ``Clicks`` (docs/protocol.md, "Input formats"): ids as they are in the file,
times in unix seconds, only the requested event types, and the count of skipped bad lines.
"""
