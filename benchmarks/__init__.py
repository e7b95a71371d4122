"""edge-classify benchmarks: side-by-side latency, throughput, cold start and memory.

``edge-bench`` (run.py) produces report.md / report.json / PNG plots; ``pytest benchmarks/``
runs the pytest-benchmark micro suite. Benchmarks, not tests: nothing here asserts a time.

Layout: run.py conducts; lineup.py says which rows run; worker.py is the process each
system runs in and systems.py builds those systems; pool.py is the parent's side of the
workers; inference.py times latency, throughput and the isolation check across them;
preprocessing.py, cold_start.py and warm_bulk.py are the other sections; stats.py holds the
round-robin and percentiles, ratios.py the headline ratios and targets, peak.py the share
of the CPU's peak, env.py the machine, model_files.py the files timed; report.py writes and
validates report.json / report.md.
"""
