"""What a network F of the denoiser (:mod:`models.denoiser`) is: ``F(x, c_noise)`` on the stacked input channels
[B, C, H, W] (noisy image, sketch, [hints,] reference) and the noise-level input [B] -> the 3 output channels.

:class:`Network` is a Protocol, so any ``nn.Module`` with such a ``forward`` can be configured (a config's
``class_path``) without inheriting anything; to be saved in a checkpoint it also records its constructor's
arguments as ``init_args`` (:func:`models.checkpoint.spec`). The project's own networks (the registry
:data:`models.checkpoint.NETWORKS`) subclass it explicitly, and those are what ``--model.net``'s help lists (every
importable ``nn.Module`` would be some 700 lines).
"""
from __future__ import annotations

from typing import Protocol


class Network(Protocol):
    """A network F: ``forward(x, c_noise)``, both positional, returning the 3 output channels."""

    def forward(self, x, c_noise, /): ...
