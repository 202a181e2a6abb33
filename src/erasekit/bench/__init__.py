"""Benchmarks: a spec of methods x concepts x attacks x seeds, run as cells on Ray, into a leaderboard."""
