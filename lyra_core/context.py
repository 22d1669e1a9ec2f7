"""What the framework hands every `build()`: the audio format, the device, the registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from lyra_core.registry import Registry


@attrs.frozen(kw_only=True)
class BuildContext:
    registry: Registry | None = None
    sample_rate: int = 44100
    channels: int = 1
    segment_length: int = 32768
    device: str = "cpu"
    seed: int = 0
    causal: bool = False  # the model asks every component for its causal, streamable form
