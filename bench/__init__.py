"""Benchmarks: each script runs alone; ``python -m bench`` runs them all (bench/run.py)."""
