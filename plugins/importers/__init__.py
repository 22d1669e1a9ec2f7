"""Importers of reference codecs (`lyra import --from snac|dac|rave`): config -> spec, weights.

Contract (kind `importer`): `build(ctx)` returns a `lyra_core.interfaces.Importer`.

A reference's generator is rebuilt from Lyra components whose parameters are created in the
same order as the reference's (input conv, blocks, attention, output conv; quantizer levels;
decoder), so the weights map by position: the i-th parameter of the reference goes to the i-th
parameter of the Lyra model, after checking that both have the same shape and the same role
(Snake α, bias, weight-norm magnitude g, direction v, plain weight). A mismatch names both
tensors. Checkpoints are read with `torch.load(weights_only=True)`.

Sources: SNAC, a directory with `config.json` and `pytorch_model.bin` (its Hugging Face layout)
or a weights file with `--config`; DAC, the `.pth` file `DAC.save` writes (its kwargs inside);
either, `default`: the installed package's model with random weights (SNAC: also `24khz` and
`32khz`, its published configurations); RAVE, a v2.gin Lightning checkpoint (`.ckpt`) or its
`state_dict` saved alone.
"""

from __future__ import annotations

import attrs

from lyra_core import BuildContext, hookimpl
from lyra_core.interfaces import Importer
from lyra_plugins.importers.codecs import SNAC_CONFIGS, DACImporter, SNACImporter
from lyra_plugins.importers.rave import RAVEImporter
from lyra_plugins.importers.weights import map_by_position, signature_defaults

__all__ = ["SNAC_CONFIGS", "map_by_position", "signature_defaults"]


@attrs.frozen(kw_only=True)
class RAVEImporterSpec:
    """Import RAVE v2 checkpoints (encoder + generator) as the `rave_v2` spec."""

    def build(self, ctx: BuildContext) -> Importer:
        return RAVEImporter()


@attrs.frozen(kw_only=True)
class SNACImporterSpec:
    """Import SNAC checkpoints (24/32/44 kHz configs) as `autoencoder` + `rvq` specs."""

    def build(self, ctx: BuildContext) -> Importer:
        return SNACImporter()


@attrs.frozen(kw_only=True)
class DACImporterSpec:
    """Import DAC checkpoints (`DAC.save` files) as `autoencoder` + `rvq` specs."""

    def build(self, ctx: BuildContext) -> Importer:
        return DACImporter()


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("importer", "snac", SNACImporterSpec)
    registry.add("importer", "dac", DACImporterSpec)
    registry.add("importer", "rave", RAVEImporterSpec)
