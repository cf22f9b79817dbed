"""Stats: bootstrap confidence intervals, paired tests between runs, group aggregates.

Imports the core and `results` (to read members' per-sample logs); nothing upstream of scores.
"""
