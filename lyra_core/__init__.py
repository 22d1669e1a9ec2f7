"""Lyra's stable API: hooks, registry, spec building blocks and errors.

Plugins import from here: `hookimpl`, `Ref`, `param`, `BuildContext` and the errors.
`lyra_core` never imports the built-in plugins (`lyra_plugins`); they load through entry points.
"""

from importlib.metadata import PackageNotFoundError, version

from lyra_core.context import BuildContext
from lyra_core.errors import (
    BuildError,
    DuplicateComponentError,
    LyraError,
    PluginLoadError,
    SpecError,
    UnknownComponentError,
)
from lyra_core.hookspecs import hookimpl
from lyra_core.kinds import (
    ActivationRef,
    AdversarialRef,
    AugmentationRef,
    BlockRef,
    BottleneckRef,
    DatasetRef,
    DecoderRef,
    DiscriminatorRef,
    EncoderRef,
    FilterbankRef,
    LossRef,
    ModelRef,
    OptimizerRef,
    PriorRef,
    SchedulerRef,
    TrackerRef,
    WeightScheduleRef,
)
from lyra_core.registry import Registry, RegistryView
from lyra_core.spec import Ref, param

try:
    __version__ = version("lyra-audio")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "ActivationRef",
    "AdversarialRef",
    "AugmentationRef",
    "BlockRef",
    "BottleneckRef",
    "BuildContext",
    "BuildError",
    "DatasetRef",
    "DecoderRef",
    "DiscriminatorRef",
    "DuplicateComponentError",
    "EncoderRef",
    "FilterbankRef",
    "LossRef",
    "LyraError",
    "ModelRef",
    "OptimizerRef",
    "PluginLoadError",
    "PriorRef",
    "Ref",
    "Registry",
    "RegistryView",
    "SchedulerRef",
    "SpecError",
    "TrackerRef",
    "UnknownComponentError",
    "WeightScheduleRef",
    "__version__",
    "hookimpl",
    "param",
]
