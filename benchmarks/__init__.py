"""genflow's benchmarks: `python -m benchmarks [names...]` prints a table.

These are measurements, not tests: nothing here asserts a time. Each workload
verifies its own result before it is timed.
"""
