"""Prompting: Samples -> Requests (sandboxed jinja2 rendering, few-shot assembly, chat messages)
and Responses -> Outputs (answer extraction).

Imports the core, `spec` and `data`; nothing downstream.
"""
