"""The `python -m dharma_train` command line around Hydra: help, version, env, plan, recipe files, one-line errors.

Nothing here imports torch at module level, so `--help`, `--version` and error messages stay fast.
"""
