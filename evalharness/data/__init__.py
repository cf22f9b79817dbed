"""Data: task spec -> Samples (local JSONL/CSV/Parquet/Arrow, `pkg:` data packages, the hub) and few-shot draws.

Imports the core and `spec`; nothing downstream.
"""
