"""The vLLM in-process engine backend and its data-parallel replicas."""
