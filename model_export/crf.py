"""Linear-chain CRF loss for the NER heads (``--crf``).

The heads' per-token softmax scores each tag on its own; a CRF scores whole tag paths, so a
type decided at ``B-`` carries through ``I-`` and the typical tag sequences of each corpus are
learnt as transition scores. The encoder and the ONNX graph do not change: the graph still
outputs per-token scores (the emissions), and the learnt start and transition scores travel
in ``labels.json``, where the runtime's Viterbi decoding adds them to the BIO constraints.

Partial labels are native here: the loss is ``log Z`` over all paths minus ``log Z`` over the
paths whose tag at every position lies in that position's allowed set, so a gold tag is a set
of one, an unlabelled position (or an @mention in BTC transfer) allows every tag, and BTC's
``PER`` allows WNUT16's ``person`` and ``musicartist`` alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from stream.inference import bio_constraints

# Stands for log(0) in the sums; finite so that impossible paths give no NaN gradients.
_IMPOSSIBLE = -1e4


def constraint_tensors(tags: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The runtime's hard BIO start and transition scores (0 or forbidden) as tensors."""
    start, trans = bio_constraints(tags)
    return torch.from_numpy(np.asarray(start)), torch.from_numpy(np.asarray(trans))


def log_partition(emissions: torch.Tensor, lengths: torch.Tensor, start: torch.Tensor,
                  transitions: torch.Tensor) -> torch.Tensor:
    """``log`` of the summed scores of every tag path of each sequence: ``[B]``.

    ``emissions [B,T,K]`` (disallowed tags already at :data:`_IMPOSSIBLE`), ``start [K]``,
    ``transitions [K,K]`` (from row tag to column tag); steps beyond a length are skipped.
    """
    alpha = emissions[:, 0] + start
    for t in range(1, emissions.shape[1]):
        step = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emissions[:, t]
        alpha = torch.where((t < lengths).unsqueeze(1), step, alpha)
    return torch.logsumexp(alpha, dim=1)


def crf_nll(emissions: torch.Tensor, allowed: torch.Tensor, lengths: torch.Tensor,
            start: torch.Tensor, transitions: torch.Tensor) -> torch.Tensor:
    """Per-sequence negative log-likelihood that the path stays within ``allowed [B,T,K]``.

    Sequences whose allowed sets admit no path under ``start``/``transitions`` (a label
    sequence the BIO constraints forbid) get a zero loss instead of a huge one.
    """
    emissions = emissions.float()
    total = log_partition(emissions, lengths, start, transitions)
    kept = log_partition(emissions.masked_fill(~allowed, _IMPOSSIBLE), lengths, start,
                         transitions)
    # A forbidden step costs 1e4; a legal path never comes close to half of that.
    feasible = (total - kept) < -_IMPOSSIBLE / 2
    nll = torch.where(feasible, total - kept, torch.zeros_like(total))
    return nll * (lengths > 0)
