"""Benchmarks, experiments and checks run from the checkout root as modules: python -m scripts.benchmarks.bench_training."""
