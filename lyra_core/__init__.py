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
    Activation,
    Adversarial,
    Augmentation,
    Block,
    Bottleneck,
    Dataset,
    Decoder,
    Discriminator,
    Encoder,
    Filterbank,
    Loss,
    Model,
    Optimizer,
    Scheduler,
    Tracker,
    WeightSchedule,
)
from lyra_core.registry import Registry, RegistryView
from lyra_core.spec import Ref, param

try:
    __version__ = version("lyra-audio")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "Activation",
    "Adversarial",
    "Augmentation",
    "Block",
    "Bottleneck",
    "BuildContext",
    "BuildError",
    "Dataset",
    "Decoder",
    "Discriminator",
    "DuplicateComponentError",
    "Encoder",
    "Filterbank",
    "Loss",
    "LyraError",
    "Model",
    "Optimizer",
    "PluginLoadError",
    "Ref",
    "Registry",
    "RegistryView",
    "Scheduler",
    "SpecError",
    "Tracker",
    "UnknownComponentError",
    "WeightSchedule",
    "__version__",
    "hookimpl",
    "param",
]
