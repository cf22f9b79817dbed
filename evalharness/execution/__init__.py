"""Execution: `evaluate()` (the pipeline), the runner that batches requests to a backend, the
response cache, launcher ranks and the Ray executor, suites, and scoring of predictions files.

The room that drives the flow: it may import every stage (spec, data, prompting, backends,
metrics, judging, stats, results); only `cli` imports it.
"""
