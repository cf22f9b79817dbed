"""Gate: compare a run with a baseline (paired tests per metric), render the verdict, exit code.

Imports the core, `spec` (the gate config), `stats` and `results`.
"""
