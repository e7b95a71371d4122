"""edge-classify benchmarks: side-by-side latency, throughput, cold start and memory.

``edge-bench`` (run.py) produces report.md / report.json / PNG plots; ``pytest benchmarks/``
runs the pytest-benchmark micro suite. Benchmarks, not tests: nothing here asserts a time.
"""
