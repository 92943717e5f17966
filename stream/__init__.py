"""tweetwatch runtime: Faust agents, ONNX inference, storage, alerts and the CLI."""

__version__ = "0.1.0"
