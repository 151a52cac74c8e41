"""Benchmarks (not tests): ``python -m tests.bench [--quick]`` or ``make bench``.

Every benchmark reports a ratio against a baseline measured in the same run, never absolute
timings compared to constants. Modules are named ``bench_*.py`` so pytest never collects them.
"""
