"""`lyra import`: a reference codec's checkpoint (SNAC, DAC, ...) as a Lyra run directory.

The importer named by `--from` reads the reference's configuration and weights, gives the
experiment spec that builds the same model, and maps the weights onto it. The spec is validated
like any other, the model built and the weights loaded strictly (every tensor used, none
missing, shapes equal); then the run directory gets the spec and `checkpoints/last.pt`, so
`lyra reconstruct --run DIR` uses the model and `lyra run SPEC --init DIR` fine-tunes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from lyra_core.context import BuildContext
from lyra_core.discovery import Plugins
from lyra_core.errors import LyraError
from lyra_core.experiment import ExperimentSpec
from lyra_core.interfaces import Importer
from lyra_core.loader import resolved, validate_data
from lyra_core.services import checkpoint
from lyra_core.services.rundir import RunDir, versions


def importer(plugins: Plugins, name: str) -> Importer:
    registry = plugins.registry
    component = registry.get("importer", name)  # unknown name: lists the known ones
    built = component.spec().build(BuildContext(registry=registry))
    if not isinstance(built, Importer):
        raise LyraError(f"importer '{name}' built a {type(built).__name__}, not an Importer")
    return built


def build_model(spec: ExperimentSpec, registry: Any) -> torch.nn.Module:
    ctx = spec.context(registry)
    return spec.model.build(ctx)


def import_checkpoint(
    plugins: Plugins,
    name: str,
    source: str,
    out: Path,
    config: dict[str, Any] | None = None,
) -> RunDir:
    """Convert `source` with importer `name` into the run directory `out`; returns it."""
    imp = importer(plugins, name)
    try:
        ref_config, ref_state = imp.read(source, config)
    except TypeError as exc:  # the reference's constructor refused an argument of --config
        if config is None:
            raise
        raise LyraError(
            f"--config: the {name} reference does not take these arguments ({exc})"
        ) from None
    data = imp.experiment(ref_config)
    spec: ExperimentSpec = validate_data(data, plugins.registry, f"the spec for {name}")
    model = build_model(spec, plugins.registry)
    state = imp.convert(ref_state, ref_config, model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise LyraError(f"{source}: the {name} weights do not fit the Lyra model: {exc}") from exc
    data = resolved(spec, plugins.registry)
    imported = {"from": name, "source": str(source), "config": ref_config}
    run = RunDir.create(data, versions(plugins, imported=imported), out)
    state_out = {
        "format": checkpoint.FORMAT,
        "step": 0,
        "model": model.state_dict(),
        "spec": run.spec_text(),
        "plugins": plugins.versions(),
        "imported": json.dumps(imported),
    }
    run.save(state_out, step=0, keep=1)
    return run
