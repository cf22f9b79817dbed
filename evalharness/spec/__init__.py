"""Spec: the YAML families (task, group, suite, judge, gate config) as validated pydantic models.

The first stage of the flow: files in, typed specs out. Imports only the core (errors, types,
registry) and the prompt renderer used to check templates at load time; nothing downstream.
"""
