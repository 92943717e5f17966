"""Benchmarks (``tweetwatch bench ...``, docs/benchmarks.md): the model alone (``model``), the
running pipeline (``pipeline``, with ``load``, ``profile`` and ``report``), the watchlist
matcher (``matcher``) and the dashboard's queries (``api``). Results land in
``benchmarks/results``.

Not part of the installed package: the benchmarks run from a checkout, and nothing shipped
imports them (``stream.cli`` names ``bench`` as a lazy command).
"""
