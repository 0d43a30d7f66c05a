"""Benchmarks and correctness checks of the fast paths; scripts/README.md says which doc quotes each."""
