"""Trạm's benchmark harness (`python -m bench ...`); results are appended to bench/RESULTS.md."""
