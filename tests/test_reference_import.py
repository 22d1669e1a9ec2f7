"""`lyra import`: SNAC and DAC models (their own packages, random weights) become Lyra runs that
encode, quantize and decode exactly as the references do; the shipped reference specs are what
the importers produce; a reference spec trains at a reduced size, and fine-tunes with --init."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from dac.model import DAC
from dac.model.discriminator import Discriminator as DACDiscriminator
from snac import SNAC

from lyra_core.cli import main
from lyra_core.inference.importing import importer
from lyra_core.loader import load_spec, resolved, validate_data
from lyra_core.services import checkpoint, compress
from lyra_core.services.model import load_model
from lyra_plugins.importers import SNAC_CONFIGS, map_by_position, signature_defaults

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "experiments" / "reference"

# Small enough to run in a second; odd strides, attention and every SNAC option on.
SNAC_SMALL = {
    "sampling_rate": 24000,
    "encoder_dim": 8,
    "encoder_rates": [2, 3, 4],
    "decoder_dim": 64,
    "decoder_rates": [4, 3, 2],
    "attn_window_size": 4,
    "codebook_size": 64,
    "codebook_dim": 4,
    "vq_strides": [4, 2, 1],
    "noise": True,
    "depthwise": True,
}
# DAC's transposed convs have no output padding, so it keeps its length only with even rates.
DAC_SMALL = {
    "encoder_dim": 8,
    "encoder_rates": [2, 4, 2],
    "decoder_dim": 64,
    "decoder_rates": [2, 4, 2],
    "n_codebooks": 3,
    "codebook_size": 64,
    "codebook_dim": 4,
}
SNAC_24KHZ, SNAC_32KHZ = SNAC_CONFIGS["24khz"], SNAC_CONFIGS["32khz"]


def lyra(*args: str) -> int:
    return main([*map(str, args)])


@pytest.fixture(scope="module")
def plugins():
    from lyra_core.discovery import load_plugins

    return load_plugins()


@pytest.fixture(scope="module")
def snac_pair(tmp_path_factory, plugins):
    """A random SNAC saved in its Hugging Face layout, and the Lyra model `lyra import` made."""
    torch.manual_seed(0)
    ref = SNAC(**SNAC_SMALL).eval()
    folder = tmp_path_factory.mktemp("snac")
    (folder / "config.json").write_text(json.dumps(SNAC_SMALL))
    torch.save(ref.state_dict(), folder / "pytorch_model.bin")
    out = tmp_path_factory.mktemp("imported") / "snac"
    assert lyra("import", "--from", "snac", folder, "-o", out) == 0
    return ref, load_model(out, plugins, device="cpu"), out


@pytest.fixture(scope="module")
def dac_pair(tmp_path_factory, plugins):
    """A random DAC saved by `DAC.save(package=False)`, and the imported Lyra model."""
    torch.manual_seed(0)
    ref = DAC(**DAC_SMALL).eval()
    path = tmp_path_factory.mktemp("dac") / "dac.pth"
    ref.save(str(path), package=False)
    out = tmp_path_factory.mktemp("imported") / "dac"
    assert lyra("import", "--from", "dac", path, "-o", out) == 0
    return ref, load_model(out, plugins, device="cpu"), out


@torch.no_grad()
def test_an_imported_snac_compresses_its_own_codes_into_a_lyra_file(snac_pair, monkeypatch):
    """The `.lyra` file of an imported SNAC holds exactly SNAC's codes at its three rates, and
    decodes to the model's decoding of them."""
    ref, lm, _ = snac_pair
    monkeypatch.setattr(compress, "MAX_FIT_EXAMPLES", 8)  # the fit: a few examples suffice here
    codec = compress.open_codec(lm, log=lambda _: None)
    x = 0.3 * torch.sin(torch.arange(24000 * 2) / 24000 * 2 * torch.pi * 220)[None, None]
    codes = ref.encode(ref.preprocess(x))
    data = codec.encode(x)
    sent = compress.rows_codes(codec.symbols(x, 1.0), lm.codes_per_frame)
    for ours, theirs in zip(sent, codes, strict=True):
        assert np.array_equal(ours, theirs[0].numpy())
    torch.manual_seed(1)  # the noise blocks draw from the global generator, in the same order
    decoded = codec.decode(data, "x.lyra")
    torch.manual_seed(1)
    assert torch.equal(decoded, codec.decode_symbols(codec.symbols(x, 1.0), 1.0, x.shape[-1]))
    assert len(data) * 8 < sum(c.numel() for c in codes) * np.log2(SNAC_SMALL["codebook_size"])


def test_snac_import_encodes_quantizes_and_decodes_like_snac(snac_pair):
    ref, lm, _ = snac_pair
    x = torch.randn(2, 1, 1000)  # not a multiple of hop · lcm(window, stride): both pad
    codes = ref.encode(x)
    z, lyra_codes, _ = lm.quantizer.quantize(lm.model.features(x))
    assert len(lyra_codes) == len(codes) == 3
    for ours, theirs in zip(lyra_codes, codes, strict=True):
        assert torch.equal(ours, theirs)
    torch.testing.assert_close(z, ref.quantizer.from_codes(codes), atol=1e-5, rtol=1e-5)
    torch.manual_seed(1)  # the noise blocks draw from the global generator, in the same order
    expected = ref.decode(codes)
    torch.manual_seed(1)
    torch.testing.assert_close(lm.model.decode(z), expected, atol=1e-5, rtol=1e-5)
    torch.manual_seed(2)
    expected, _ = ref(x)
    torch.manual_seed(2)
    torch.testing.assert_close(lm.model(x).reconstruction, expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_dac_import_encodes_quantizes_and_decodes_like_dac(dac_pair):
    ref, lm, _ = dac_pair
    x = torch.randn(2, 1, 16 * 40)
    z, codes, _, commitment, codebook = ref.encode(x)
    ours, lyra_codes, terms = lm.quantizer.quantize(lm.model.features(x))
    assert torch.equal(torch.stack(lyra_codes, 1), codes)
    torch.testing.assert_close(ours, z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(terms["commitment"], commitment, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(terms["codebook"], codebook, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lm.model.decode(ours), ref.decode(z), atol=1e-5, rtol=1e-5)


def test_lyra_encode_writes_codes_that_lyra_decode_turns_into_the_references_audio(
    dac_pair, tmp_path
):
    ref, lm, run = dac_pair
    rng = np.random.default_rng(0)
    audio = (0.3 * rng.standard_normal(16 * 50)).astype(np.float32)
    sf.write(tmp_path / "in.wav", audio, lm.sample_rate, subtype="FLOAT")
    assert lyra("encode", "--run", run, tmp_path / "in.wav", "-o", tmp_path / "enc") == 0
    with np.load(tmp_path / "enc" / "in.codes.npz") as data:
        codes = np.stack([data[f"level{i}"] for i in range(3)])
    with torch.no_grad():
        _, expected, *_ = ref.encode(torch.from_numpy(audio)[None, None])
    assert np.array_equal(codes, expected[0].numpy())
    out = tmp_path / "dec"
    code = lyra(
        "decode", "--run", run, tmp_path / "enc" / "in.codes.npz", "-o", out, "--bits", "float"
    )
    assert code == 0
    decoded, rate = sf.read(out / "in.wav", dtype="float32")
    with torch.no_grad():
        want = ref.decode(ref.quantizer.from_codes(expected)[0])[0, 0, : audio.size].numpy()
    assert rate == lm.sample_rate and decoded.shape == want.shape
    np.testing.assert_allclose(decoded, want, atol=1e-5)


def test_codes_outside_the_codebook_are_refused_with_the_level(dac_pair, tmp_path, capsys):
    _, _, run = dac_pair
    np.savez(tmp_path / "bad.codes.npz", level0=np.array([1, 99]), level1=np.array([0, 1]))
    assert lyra("decode", "--run", run, tmp_path / "bad.codes.npz", "-o", tmp_path) == 2
    assert "level0 has codes outside 0..63" in capsys.readouterr().err


def test_weights_from_another_configuration_are_refused_naming_the_tensors(tmp_path, capsys):
    torch.manual_seed(0)
    folder = tmp_path / "snac"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**SNAC_SMALL, "codebook_dim": 8}))
    torch.save(SNAC(**SNAC_SMALL).state_dict(), folder / "pytorch_model.bin")
    assert lyra("import", "--from", "snac", folder, "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "does not fit Lyra" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_pickled_package_is_refused_without_running_it(tmp_path, capsys):
    torch.manual_seed(0)
    DAC(**DAC_SMALL).save(str(tmp_path / "packaged.pth"))  # DAC's default: a torch.package
    assert lyra("import", "--from", "dac", tmp_path / "packaged.pth", "-o", tmp_path / "o") == 2
    assert "package=False" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("reference", "config", "spec"),
    [
        ("snac", SNAC_24KHZ, "snac_24khz.json"),
        ("snac", SNAC_32KHZ, "snac_32khz.json"),
        ("dac", {"quantizer_dropout": 0.5}, "dac_44khz.json"),
        ("rave", {}, "rave_v2.json"),
    ],
)
def test_the_shipped_reference_specs_are_what_the_importers_produce(
    plugins, reference, config, spec
):
    imp = importer(plugins, reference)
    if reference == "dac":  # the package's defaults, with the dropout DAC trained with
        config = {**signature_defaults(DAC), **config}
    made = resolved(validate_data(imp.experiment(config), plugins.registry), plugins.registry)
    shipped = resolved(load_spec(REFERENCE / spec, plugins.registry), plugins.registry)
    assert made == shipped


def test_a_reference_spec_trains_at_a_reduced_size_and_fine_tunes_with_init(
    snac_pair, plugins, tmp_path
):
    """SNAC's spec as shipped (DAC's GAN recipe), on the CPU with small widths, then --init."""
    small = [
        "model.encoder.base_channels=4",
        "model.bottleneck.dim=64",
        "model.bottleneck.codebook_size=32",
        "model.decoder.base_channels=4",
        "model.encoder.block.activation.implementation=eager",  # no Snake compile in a test
        "model.decoder.block.activation.implementation=eager",
        "model.decoder.activation.implementation=eager",
        "data.segment_length=4096",
        "data.batch_size=2",
        "data.dataset.train_examples=8",
        "data.dataset.validation_examples=2",
        "training.steps=2",
        "training.validate_every=2",
        "training.checkpoint_every=2",
        "training.validation_batches=1",
        'training.adversarial.discriminator.members=[{"type": "mpd", "periods": [2, 3], '
        '"channels": [4, 8]}, {"type": "mrsd", "channels": 4}]',
        'tracking={"type": "none"}',
    ]
    spec = REFERENCE / "snac_24khz.json"
    sets = [a for s in small for a in ("--set", s)]
    assert lyra("run", spec, *sets, "--run-dir", tmp_path / "run", "--device", "cpu") == 0
    state = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["step"] == 2 and state["adversarial"] is not None

    _, _, imported = snac_pair  # fine-tune the imported model: its weights are the start
    tune = [*small[4:11], "training.steps=1", "training.adversarial=null", small[-1]]
    tune = [a for s in tune for a in ("--set", s)]
    run = tmp_path / "tuned"
    code = lyra("run", imported / "spec.json", *tune, "--init", imported, "--run-dir", run)
    assert code == 0
    start = checkpoint.load(imported / "checkpoints" / "last.pt")["model"]
    after = checkpoint.load(run / "checkpoints" / "last.pt")["model"]
    moved = [k for k in start if not torch.equal(start[k], after[k])]
    assert moved and set(after) == set(start)  # trained from the imported weights


def test_a_rave_v2_checkpoint_imports_every_generator_weight_to_its_place(plugins, tmp_path):
    """acids-rave cannot be installed here (see README), so its v2 encoder + generator state
    dict is the key list and shapes recorded from the package (tests/data, 113 entries: 16,056,928
    + 15,479,072 parameters), filled with random values, in a Lightning-style checkpoint."""
    recorded = json.loads((ROOT / "tests" / "data" / "rave_v2_generator.json").read_text())
    gen = torch.Generator().manual_seed(0)
    state = {key: torch.randn(shape, generator=gen) for key, shape in recorded}
    state["discriminator.conv.weight"] = torch.zeros(3)  # not imported
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "rave.ckpt")
    assert lyra("import", "--from", "rave", tmp_path / "rave.ckpt", "-o", tmp_path / "run") == 0
    lm = load_model(tmp_path / "run", plugins, device="cpu")
    model = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    counts = {"encoder.": 0, "decoder.": 0}
    for name, value in model.items():
        for prefix in counts:
            counts[prefix] += value.numel() if name.startswith(prefix) else 0
    assert counts == {"encoder.": 16_056_928, "decoder.": 15_479_072}
    g = "parametrizations.weight.original0"
    assert torch.equal(model[f"encoder.input_conv.{g}"], state["encoder.encoder.net.0.weight_g"])
    assert torch.equal(model[f"decoder.output.conv.{g}"], state["decoder.net.21.weight_g"])
    audio = lm.model(torch.randn(1, 1, 4096)).reconstruction
    assert audio.shape == (1, 1, 4096) and bool(torch.isfinite(audio).all())


def test_a_rave_checkpoint_of_another_configuration_is_refused(tmp_path, capsys):
    recorded = json.loads((ROOT / "tests" / "data" / "rave_v2_generator.json").read_text())
    state = {key: torch.zeros(shape) for key, shape in recorded[:-2]}  # the output conv lost
    torch.save(state, tmp_path / "rave.pt")
    assert lyra("import", "--from", "rave", tmp_path / "rave.pt", "-o", tmp_path / "run") == 2
    assert "weight tensors" in capsys.readouterr().err


@torch.no_grad()
def test_the_recipes_discriminator_is_dacs(plugins):
    """The reference specs' MPD + MRSD (DAC's padding, STFT framing and input normalisation)
    judge like DAC's Discriminator() with the same weights: 42,519,760 parameters, same maps."""
    torch.manual_seed(0)
    ref = DACDiscriminator(sample_rate=44100).eval()
    spec = load_spec(REFERENCE / "dac_44khz.json", plugins.registry)
    ours = spec.training.adversarial.discriminator.build(spec.context(plugins.registry)).eval()
    params = {k: p.detach() for k, p in ours.named_parameters()}
    assert sum(p.numel() for p in params.values()) == 42_519_760
    ours.load_state_dict({**ours.state_dict(), **map_by_position(ref.state_dict(), params, "d")})
    for length in (8192, 5001):  # a multiple of every period's and hop's, and not
        x = 0.3 * torch.randn(2, 1, length) + 0.1
        for theirs, critique in zip(ref(x), ours(x), strict=True):
            torch.testing.assert_close(critique.logits, theirs[-1], atol=1e-4, rtol=1e-5)
            for a, b in zip(critique.features, theirs[:-1], strict=True):
                torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)


@torch.no_grad()
def test_snac_without_depthwise_convs_imports_and_decodes_like_snac(tmp_path, plugins):
    """depthwise=false: dense encoder output and decoder input convs (conv kind 'dense')."""
    config = {**SNAC_SMALL, "depthwise": False}
    torch.manual_seed(0)
    ref = SNAC(**config).eval()
    (tmp_path / "config.json").write_text(json.dumps(config))
    torch.save(ref.state_dict(), tmp_path / "pytorch_model.bin")
    out = tmp_path / "imported"
    assert lyra("import", "--from", "snac", tmp_path, "-o", out) == 0
    model = json.loads((out / "spec.json").read_text())["model"]
    assert model["encoder"]["output_conv"] == "dense"
    assert model["decoder"]["input_conv"] == "dense"
    lm = load_model(out, plugins, device="cpu")
    x = torch.randn(1, 1, 1000)
    torch.manual_seed(3)
    expected, _ = ref(x)
    torch.manual_seed(3)
    torch.testing.assert_close(lm.model(x).reconstruction, expected, atol=1e-5, rtol=1e-5)
