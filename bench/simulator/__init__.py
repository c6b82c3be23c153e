"""The rule simulator benchmark (``python -m bench.simulator``)."""
