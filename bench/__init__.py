"""dtmon benchmarks: `python -m bench [NAME ...]` runs them and prints one table each.

Each module ``bench/<name>.py`` exposes ``run() -> list[dict]``: one row per figure with keys
``metric``, ``value``, ``unit`` and optionally ``baseline`` (the same figure for the baseline
measured in the same run), ``ratio`` and ``target``.
"""
