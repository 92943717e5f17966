"""Where a worker's CPU goes: a py-spy sample of the live process, folded into pipeline stages.

py-spy samples every thread of a running process from outside (no instrumentation, ~1 %
overhead at 50 Hz with ``--nonblocking``), so the model's thread pool shows up beside the
event loop. Each sampled stack is given to the first stage, walking from the innermost frame
outwards, whose source file matches, so a ``json.loads`` inside record validation counts as
validation and ``session.run`` inside ``Analyzer.analyze`` as inference.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

# (stage, substrings of a frame "function (file:line)"), innermost match wins.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # The event loop blocked in epoll: waiting for the broker, the database or the model
    # thread. py-spy cannot always tell this wait from work, so it gets its own line.
    ("idle: event loop waiting (select)", ("selectors.py",)),
    ("inference (onnxruntime session.run)", ("onnxruntime_inference_collection.py",)),
    ("tokenise + encode (textproc)", ("stream/textproc.py",)),
    ("decode (Viterbi, spans)", ("stream/inference.py", "stream/predictions.py")),
    ("validation + JSON (records)", ("stream/records.py",)),
    ("database (SQLAlchemy + psycopg)", ("sqlalchemy/", "psycopg/", "psycopg_binary")),
    ("Kafka client (aiokafka)", ("aiokafka/", "kafka/")),
    ("Faust stream machinery", ("faust/", "mode/")),
    ("agent: rows, batching", ("stream/analyze_agent.py", "stream/storage.py")),
    ("asyncio event loop", ("asyncio/", "uvloop")),
)
OTHER = "other"


def py_spy_available() -> bool:
    return shutil.which("py-spy") is not None


class Sampler:
    """``py-spy record`` attached to one process until ``stop()``."""

    def __init__(self, pid: int, output: Path, rate: int = 50) -> None:
        self.output = output
        command = ["py-spy", "record", "--pid", str(pid), "--rate", str(rate), "--format",
                   "raw", "--output", str(output), "--nonblocking"]
        self._log = open(output.with_suffix(".log"), "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self, timeout: float = 30.0) -> Path | None:
        """Stop sampling (SIGINT makes py-spy write its file); the folded stacks or None."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
        return self.output if self.output.is_file() else None


def classify(stack: str) -> str:
    """The stage of one folded stack (frames separated by ``;``, outermost first)."""
    for frame in reversed(stack.split(";")):
        for stage, needles in STAGES:
            if any(n in frame for n in needles):
                return stage
    return OTHER


def fold(path: Path) -> dict[str, float]:
    """Share of samples per stage from a py-spy ``--format raw`` file."""
    counts: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[classify(stack)] += int(count)
    total = sum(counts.values())
    return {stage: n / total for stage, n in counts.most_common()} if total else {}
