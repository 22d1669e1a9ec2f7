"""The experiment spec: the top-level sections of a JSON spec file and their defaults."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Literal

import attrs

from lyra_core.context import BuildContext
from lyra_core.kinds import (
    AdversarialRef,
    AugmentationRef,
    DatasetRef,
    DiscriminatorRef,
    LossRef,
    ModelRef,
    OptimizerRef,
    SchedulerRef,
    TrackerRef,
)
from lyra_core.spec import param
from lyra_core.validators import (
    MAX_CHANNELS,
    MAX_COUNT,
    MAX_SAMPLE_RATE,
    MAX_SAMPLES,
    MAX_WORKERS,
    between,
    each,
    non_negative,
    open_fraction,
    size,
)

MAX_BATCH = 65_536
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
MAX_MINUTES = 60.0 * 24 * 365  # a training time budget of at most a year
DEFAULT_TRACKER = "mlflow"  # the tracker of a spec without a tracking section

if TYPE_CHECKING:
    from lyra_core.registry import Registry


@attrs.frozen(kw_only=True)
class DataSpec:
    """Where the audio comes from, its format, and how it is batched and augmented."""

    dataset: DatasetRef = param(doc="the dataset component")
    sample_rate: int = param(
        44100, doc="sample rate the model works at (Hz)", validator=size(MAX_SAMPLE_RATE)
    )
    channels: int = param(
        1, doc="audio channels the model works with", validator=size(MAX_CHANNELS)
    )
    segment_length: int = param(
        32768, doc="samples per training example", validator=size(MAX_SAMPLES)
    )
    batch_size: int = param(8, doc="examples per optimizer step", validator=size(MAX_BATCH))
    num_workers: int = param(
        0,
        doc="DataLoader worker processes (0: load in the main process)",
        validator=size(MAX_WORKERS, minimum=0),
    )
    augmentations: tuple[AugmentationRef, ...] = param(
        (), doc="augmentations applied to each batch on the device, in this order"
    )


@attrs.frozen(kw_only=True)
class AdversarialSpec:
    """A discriminator, its losses and its own optimizer (see `training.phases` for when)."""

    discriminator: DiscriminatorRef = param(doc="the discriminator (e.g. combined mpd + mrsd)")
    losses: tuple[AdversarialRef, ...] = param(
        doc="adversarial objectives (hinge or lsgan) and feature matching, each with a weight"
    )
    optimizer: OptimizerRef | None = param(
        None, doc="the discriminator's optimizer (none: the same settings as the generator's)"
    )
    scheduler: SchedulerRef | None = param(None, doc="the discriminator's learning-rate scheduler")


@attrs.frozen(kw_only=True)
class PhaseSpec:
    """A stretch of training with its own losses, frozen modules and discriminator schedule."""

    name: str = param("phase", doc="shown in logs and tracked as train/phase")
    until: int | None = param(
        None,
        doc="the step this phase ends at (none: the end of training)",
        validator=size(MAX_COUNT),
    )
    loss_weights: dict[str, float] = param(
        factory=dict,
        doc="factors on the losses' weights by name, as logged (0 turns a loss off); "
        "unnamed losses keep their weights",
    )
    adversarial: bool = param(
        False, doc="the generator trains against the discriminator (adversarial losses on)"
    )
    discriminator_every: int = param(
        0,
        doc="train the discriminator on every k-th batch (0: never; 1: D then G each batch)",
        validator=size(MAX_COUNT, minimum=0),
    )
    frozen: tuple[str, ...] = param(
        (), doc="model submodules kept fixed in this phase, by name (e.g. 'encoder')"
    )
    lr_factor: float = param(
        1.0,
        doc="the generator's learning rate in this phase, as a factor on the optimizer's "
        "(after its scheduler); the optimizer's state carries over between phases",
        validator=between(0, 1e3),
    )
    betas: tuple[float, float] | None = param(
        None,
        doc="the generator's Adam betas in this phase (none: the optimizer's own)",
        validator=each(open_fraction, min_items=2, max_items=2),
    )


def _phases_in_order(_: object, __: attrs.Attribute, phases: tuple) -> None:
    ends = [p.until for p in phases]
    if None in ends[:-1]:
        raise ValueError("only the last phase may run to the end (until: null)")
    if any(b <= a for a, b in itertools.pairwise(ends) if b is not None):
        raise ValueError(f"phases must end at increasing steps, got {ends}")


@attrs.frozen(kw_only=True)
class EmaSpec:
    """An exponential moving average of the model's weights: what validation, the 'best'
    checkpoint, inference and export use (`--weights raw` gives the trained weights)."""

    decay: float = param(
        0.999,
        doc="how much of the average each update keeps (0 to 1, open): "
        "average = decay * average + (1 - decay) * weights",
        validator=between(0, 1, low_open=True, high_open=True),
    )
    start: int = param(
        0,
        doc="the optimizer step averaging begins at; up to and at it the average is a copy "
        "of the weights",
        validator=size(MAX_COUNT, minimum=0),
    )
    every: int = param(
        1,
        doc="after `start`, update the average every k-th optimizer step (start + k, "
        "start + 2k, ...)",
        validator=size(MAX_COUNT),
    )


@attrs.frozen(kw_only=True)
class BalancerSpec:
    """EnCodec's loss balancer: each loss that reaches the reconstruction contributes a gradient
    there whose norm is its weight's share of `total_norm`, whatever the loss's own scale; the
    losses that do not reach it (kl, commitment, ...) add their weighted gradients as usual."""

    total_norm: float = param(
        1.0,
        doc="the norm of the balanced gradient at the reconstruction",
        validator=between(0, 1e6, low_open=True),
    )
    decay: float = param(
        0.999,
        doc="each loss's gradient norm is a moving average with this decay (bias-corrected)",
        validator=between(0, 1, high_open=True),
    )
    per_example: bool = param(
        True, doc="a gradient's norm is the mean over the batch of each example's norm"
    )


@attrs.frozen(kw_only=True)
class TrainingSpec:
    """The optimisation loop: steps, optimizer, precision, checkpoints and validation."""

    steps: int = param(1000, doc="optimizer steps to train for", validator=size(MAX_COUNT))
    max_minutes: float | None = param(
        None,
        doc="stop cleanly after this many minutes of training, over all resumes (none: no limit)",
        validator=between(0, MAX_MINUTES, low_open=True),
    )
    budget_clock: Literal["wall", "cpu"] = param(
        "wall", doc="what max_minutes counts: wall-clock time or the process's CPU time"
    )
    optimizer: OptimizerRef = param(doc="the generator's optimizer")
    scheduler: SchedulerRef | None = param(None, doc="learning-rate scheduler (none: constant)")
    precision: Literal["32", "bf16", "fp16"] = param(
        "32", doc="32: float32; bf16/fp16: autocast (fp16 with a GradScaler on CUDA)"
    )
    grad_clip: float | None = param(
        None,
        doc="clip the gradients' global norm to this value (0 or none: no clipping)",
        validator=non_negative,
    )
    accumulate: int = param(1, doc="batches per optimizer step", validator=size(MAX_BATCH))
    compile: bool = param(False, doc="run the model through torch.compile")
    ema: EmaSpec | None = param(
        None, doc="keep a moving average of the weights (none: use the trained weights)"
    )
    balancer: BalancerSpec | None = param(
        None, doc="balance the losses' gradients at the reconstruction (none: a weighted sum)"
    )
    checkpoint_every: int = param(
        500, doc="steps between 'last' checkpoints", validator=size(MAX_COUNT)
    )
    keep_checkpoints: int = param(3, doc="step checkpoints to keep", validator=size(MAX_COUNT))
    validate_every: int = param(500, doc="steps between validations", validator=size(MAX_COUNT))
    log_every: int = param(
        10, doc="steps between training-metric log lines", validator=size(MAX_COUNT)
    )
    validation_batches: int = param(
        4, doc="validation batches averaged per validation", validator=size(MAX_COUNT)
    )
    validation_examples: int = param(
        2,
        doc="examples written as WAV and spectrogram PNG per validation",
        validator=size(MAX_BATCH, minimum=0),
    )
    best_metric: str = param(
        "val/mel_distance", doc="validation metric that picks the 'best' checkpoint"
    )
    best_mode: Literal["min", "max"] = param("min", doc="whether lower or higher is better")
    max_nonfinite: int = param(
        5,
        doc="consecutive non-finite steps (skipped) before the run stops",
        validator=size(MAX_COUNT),
    )
    adversarial: AdversarialSpec | None = param(
        None, doc="a discriminator and adversarial losses (none: reconstruction only)"
    )
    phases: tuple[PhaseSpec, ...] = param(
        (),
        doc="phases in order (none: one phase; with `adversarial`, D then G from step 0 as DAC)",
        validator=_phases_in_order,
    )

    def __attrs_post_init__(self) -> None:
        needs = [p.name for p in self.phases if p.adversarial or p.discriminator_every]
        if needs and self.adversarial is None:
            raise ValueError(
                f"phase(s) {', '.join(needs)} use a discriminator, but training.adversarial "
                "is not set"
            )


@attrs.frozen(kw_only=True)
class ExperimentSpec:
    """A whole experiment: data, model, losses, training and tracking."""

    name: str = param("experiment", doc="a name for runs of this spec")
    seed: int = param(
        0, doc="one seed for every random number generator", validator=between(0, MAX_SEED)
    )
    data: DataSpec = param(doc="the data section")
    model: ModelRef = param(doc="the model")
    losses: tuple[LossRef, ...] = param((), doc="weighted losses summed into the objective")
    training: TrainingSpec = param(doc="the training section")
    tracking: TrackerRef | None = param(
        None, doc=f"experiment tracker (none: the default {DEFAULT_TRACKER})"
    )

    def context(self, registry: Registry, device: str = "cpu") -> BuildContext:
        """The build context of this experiment's audio format and seed."""
        d = self.data
        return BuildContext(
            registry=registry,
            sample_rate=d.sample_rate,
            channels=d.channels,
            segment_length=d.segment_length,
            device=device,
            seed=self.seed,
        )


def default_tracker(registry: Registry, uri: str | None = None) -> Any:
    """The spec of the tracker a spec without a tracking section gets; `uri`: its store (as
    `--tracking-uri` gives it; None: the tracker's own default)."""
    return registry.get("tracker", DEFAULT_TRACKER).spec(**({"uri": uri} if uri else {}))
