"""Benchmarks: casstore next to the SDK's storage drivers, on the same servers.

``python -m benchmarks`` (or ``make bench``) starts the servers it needs, runs
every scenario for every driver, and writes a markdown table to stdout plus a
JSON results file and a PNG chart to the output directory. See
docs/benchmarks.md for what each scenario models and how to read the results.
"""
