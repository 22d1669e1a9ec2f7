"""The experiment spec: the top-level sections of a JSON spec file and their defaults."""

from __future__ import annotations

from typing import Literal

import attrs

from lyra_core.kinds import Augmentation, Dataset, Loss, Model, Optimizer, Scheduler, Tracker
from lyra_core.spec import param


def _positive(_: object, a: attrs.Attribute, value: float | int | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{a.name} must be positive, got {value}")


@attrs.frozen(kw_only=True)
class DataSpec:
    """Where the audio comes from, its format, and how it is batched and augmented."""

    dataset: Dataset = param(doc="the dataset component")
    sample_rate: int = param(44100, doc="sample rate the model works at (Hz)", validator=_positive)
    channels: int = param(1, doc="audio channels the model works with", validator=_positive)
    segment_length: int = param(32768, doc="samples per training example", validator=_positive)
    batch_size: int = param(8, doc="examples per optimizer step", validator=_positive)
    num_workers: int = param(0, doc="DataLoader worker processes")
    augmentations: tuple[Augmentation, ...] = param(
        (), doc="augmentations applied to each batch on the device, in this order"
    )


@attrs.frozen(kw_only=True)
class TrainingSpec:
    """The optimisation loop: steps, optimizer, precision, checkpoints and validation."""

    steps: int = param(1000, doc="optimizer steps to train for", validator=_positive)
    optimizer: Optimizer = param(doc="the generator's optimizer")
    scheduler: Scheduler | None = param(None, doc="learning-rate scheduler (none: constant)")
    precision: Literal["32", "bf16", "fp16"] = param(
        "32", doc="32: float32; bf16/fp16: autocast (fp16 with a GradScaler on CUDA)"
    )
    grad_clip: float | None = param(None, doc="clip the gradients' global norm to this value")
    accumulate: int = param(1, doc="batches per optimizer step", validator=_positive)
    compile: bool = param(False, doc="run the model through torch.compile")
    checkpoint_every: int = param(500, doc="steps between 'last' checkpoints", validator=_positive)
    keep_checkpoints: int = param(3, doc="step checkpoints to keep", validator=_positive)
    validate_every: int = param(500, doc="steps between validations", validator=_positive)
    log_every: int = param(10, doc="steps between training-metric log lines", validator=_positive)
    validation_batches: int = param(
        4, doc="validation batches averaged per validation", validator=_positive
    )
    validation_examples: int = param(
        2, doc="examples written as WAV and spectrogram PNG per validation"
    )
    best_metric: str = param(
        "val/mr_stft", doc="validation metric that picks the 'best' checkpoint"
    )
    best_mode: Literal["min", "max"] = param("min", doc="whether lower or higher is better")
    max_nonfinite: int = param(
        5, doc="consecutive non-finite steps (skipped) before the run stops", validator=_positive
    )


@attrs.frozen(kw_only=True)
class ExperimentSpec:
    """A whole experiment: data, model, losses, training and tracking."""

    name: str = param("experiment", doc="a name for runs of this spec")
    seed: int = param(0, doc="one seed for every random number generator")
    data: DataSpec = param(doc="the data section")
    model: Model = param(doc="the model")
    losses: tuple[Loss, ...] = param((), doc="weighted losses summed into the objective")
    training: TrainingSpec = param(doc="the training section")
    tracking: Tracker | None = param(None, doc="experiment tracker (none: the default mlflow)")
