"""Benchmarks: programs that measure and report, run by hand (not tests)."""
