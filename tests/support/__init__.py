"""Helpers the tests (and the benchmarks) share but descend itself never ships."""
