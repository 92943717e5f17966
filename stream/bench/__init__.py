"""Benchmarks of the running pipeline (``tweetwatch bench pipeline``); torch-free like the rest
of ``stream``. The model-alone benchmark lives in ``model_export.bench_model``."""
