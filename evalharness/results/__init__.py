"""Results: the results schema, run directories (results.json + samples/*.jsonl) and token usage.

Imports only the core; read by `stats`, `report`, `gate`, `judging` and `execution`.
"""
