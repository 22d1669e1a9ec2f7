"""The adversarial losses: hinge and LSGAN against their formulas, feature matching's options,
detached real features, weights applied once (RAVE PR 358), errors, and a real D/G step."""

from __future__ import annotations

import pytest
import torch

from lyra_core import AdversarialRef, BuildContext, DiscriminatorRef, LyraError, SpecError
from lyra_core.interfaces import AdversarialLoss, Critique
from lyra_core.spec import make_converter, structure


def build(registry, data: dict) -> AdversarialLoss:
    loss = structure(data, AdversarialRef, registry).build(BuildContext(registry=registry))
    assert isinstance(loss, AdversarialLoss)
    return loss


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values).view(1, 1, -1)


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def relu(x: float) -> float:
    return max(x, 0.0)


# Two sub-discriminators with logits of different sizes, written out by hand.
REAL_LOGITS = [[0.5, 2.0, -1.0], [1.5, 0.2, -0.3, 0.9]]
FAKE_LOGITS = [[-2.0, 0.0, 0.5], [0.3, -1.5, 1.2, -0.1]]


def logit_critiques(rows: list[list[float]]) -> list[Critique]:
    return [Critique([], t(*row)) for row in rows]


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_hinge_matches_its_formula(registry, reduction):
    loss = build(registry, {"type": "hinge", "reduction": reduction})
    real, fake = logit_critiques(REAL_LOGITS), logit_critiques(FAKE_LOGITS)
    d_terms = [
        mean([relu(1 - v) for v in r]) + mean([relu(1 + v) for v in f])
        for r, f in zip(REAL_LOGITS, FAKE_LOGITS, strict=True)
    ]
    g_terms = [-mean(f) for f in FAKE_LOGITS]
    combine = sum if reduction == "sum" else mean
    assert loss.discriminator_loss(real, fake).item() == pytest.approx(combine(d_terms))
    assert loss.generator_loss(real, fake).item() == pytest.approx(combine(g_terms))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_lsgan_matches_its_formula(registry, reduction):
    loss = build(registry, {"type": "lsgan", "reduction": reduction})
    real, fake = logit_critiques(REAL_LOGITS), logit_critiques(FAKE_LOGITS)
    d_terms = [
        mean([(1 - v) ** 2 for v in r]) + mean([v**2 for v in f])
        for r, f in zip(REAL_LOGITS, FAKE_LOGITS, strict=True)
    ]
    g_terms = [mean([(1 - v) ** 2 for v in f]) for f in FAKE_LOGITS]
    combine = sum if reduction == "sum" else mean
    assert loss.discriminator_loss(real, fake).item() == pytest.approx(combine(d_terms))
    assert loss.generator_loss(real, fake).item() == pytest.approx(combine(g_terms))


@pytest.mark.parametrize("name", ["hinge", "lsgan"])
def test_logit_losses_are_float32_under_bf16_logits(registry, name):
    loss = build(registry, {"type": name})
    real = [Critique([], t(*r).bfloat16()) for r in REAL_LOGITS]
    fake = [Critique([], t(*f).bfloat16()) for f in FAKE_LOGITS]
    assert loss.discriminator_loss(real, fake).dtype == torch.float32
    assert loss.generator_loss(real, fake).dtype == torch.float32


# --- feature matching ----------------------------------------------------------------------------

# Sub-discriminator 0 has two feature maps, sub-discriminator 1 has three: sums and means over
# layers and over sub-discriminators then all differ.
REAL_FEATURES = [[[1.0, -2.0], [0.5, 0.5, 4.0]], [[3.0], [-1.0, 2.0], [0.25, -0.75]]]
FAKE_FEATURES = [[[0.0, -1.0], [1.5, 0.0, 1.0]], [[1.0], [-1.5, 0.0], [0.0, 0.25]]]


def feature_critiques(features, logits, requires_grad: bool = False) -> list[Critique]:
    def leaf(row):
        return t(*row).requires_grad_(requires_grad)

    return [
        Critique([leaf(f) for f in maps], leaf(lg))
        for maps, lg in zip(features, logits, strict=True)
    ]


def l1(a: list[float], b: list[float]) -> float:
    return mean([abs(x - y) for x, y in zip(a, b, strict=True)])


def relative_l1(a: list[float], b: list[float]) -> float:
    return l1(a, b) / mean([abs(x) for x in a])


def fm(registry, **options) -> float:
    loss = build(registry, {"type": "feature_matching", **options})
    real = feature_critiques(REAL_FEATURES, REAL_LOGITS)
    fake = feature_critiques(FAKE_FEATURES, FAKE_LOGITS)
    assert loss.discriminator_loss(real, fake) is None
    return loss.generator_loss(real, fake).item()


def test_feature_matching_defaults_are_dacs_l1_sums(registry):
    per_disc = [
        sum(l1(r, f) for r, f in zip(rs, fs, strict=True))
        for rs, fs in zip(REAL_FEATURES, FAKE_FEATURES, strict=True)
    ]
    assert fm(registry) == pytest.approx(sum(per_disc))


def test_feature_matching_raves_relative_l1_layer_mean(registry):
    per_disc = [
        mean([relative_l1(r, f) for r, f in zip(rs, fs, strict=True)])
        for rs, fs in zip(REAL_FEATURES, FAKE_FEATURES, strict=True)
    ]
    value = fm(registry, distance="relative_l1", over_layers="mean")
    assert value == pytest.approx(sum(per_disc))


def test_feature_matching_reductions(registry):
    sums = [
        [l1(r, f) for r, f in zip(rs, fs, strict=True)]
        for rs, fs in zip(REAL_FEATURES, FAKE_FEATURES, strict=True)
    ]
    assert fm(registry, over_layers="mean") == pytest.approx(sum(mean(s) for s in sums))
    assert fm(registry, over_discriminators="mean") == pytest.approx(mean([sum(s) for s in sums]))
    both = fm(registry, over_layers="mean", over_discriminators="mean")
    assert both == pytest.approx(mean([mean(s) for s in sums]))
    assert len({fm(registry), both, fm(registry, over_layers="mean")}) == 3


def test_feature_matching_include_logits_adds_the_logit_maps(registry):
    logit_terms = [l1(r, f) for r, f in zip(REAL_LOGITS, FAKE_LOGITS, strict=True)]
    with_logits = fm(registry, include_logits=True)
    assert with_logits == pytest.approx(fm(registry) + sum(logit_terms))
    per_disc = [
        mean([*(l1(r, f) for r, f in zip(rs, fs, strict=True)), lg])
        for rs, fs, lg in zip(REAL_FEATURES, FAKE_FEATURES, logit_terms, strict=True)
    ]
    assert fm(registry, include_logits=True, over_layers="mean") == pytest.approx(sum(per_disc))


def test_feature_matching_detaches_real_features(registry):
    loss = build(registry, {"type": "feature_matching", "include_logits": True})
    real = feature_critiques(REAL_FEATURES, REAL_LOGITS, requires_grad=True)
    fake = feature_critiques(FAKE_FEATURES, FAKE_LOGITS, requires_grad=True)
    loss.generator_loss(real, fake).backward()
    for critique in real:
        assert all(m.grad is None for m in [*critique.features, critique.logits])
    for critique in fake:
        assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in critique.features)
        assert critique.logits.grad is not None


@pytest.mark.parametrize("name", ["feature_matching", "hinge", "lsgan"])
def test_weight_is_the_trainers_to_apply_once(registry, name):
    """The value is unweighted: doubling the spec's weight doubles weight·value, and a weight
    of 20 is not applied inside (RAVE PR 358 turned 20 into 400)."""
    real = feature_critiques(REAL_FEATURES, REAL_LOGITS)
    fake = feature_critiques(FAKE_FEATURES, FAKE_LOGITS)
    data = {"type": name}
    values = {}
    for weight in (1.0, 2.0, 20.0):
        spec = structure({**data, "weight": weight}, AdversarialRef, registry)
        assert spec.weight == weight
        values[weight] = spec.build(BuildContext(registry=registry)).generator_loss(real, fake)
    unweighted = build(registry, data).generator_loss(real, fake)
    assert values[1.0].item() == values[2.0].item() == values[20.0].item() == unweighted.item()
    assert (2.0 * values[2.0]).item() == pytest.approx(2 * (1.0 * values[1.0]).item())


def test_specs_round_trip_with_schedule(registry):
    data = {
        "type": "feature_matching",
        "weight": 2.0,
        "schedule": {"type": "linear", "start_step": 0, "end_step": 100},
        "distance": "relative_l1",
    }
    spec = structure(data, AdversarialRef, registry)
    assert spec.schedule is not None and spec.distance == "relative_l1"
    again = make_converter(registry).unstructure(spec, AdversarialRef)
    assert structure(again, AdversarialRef, registry) == spec


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "hinge", "weight": -1}, r"\$\.weight: weight must be >= 0"),
        ({"type": "lsgan", "reduction": "max"}, r"\$\.reduction"),
        ({"type": "feature_matching", "distance": "l2"}, r"\$\.distance"),
        ({"type": "feature_matching", "over_layers": "median"}, r"\$\.over_layers"),
        ({"type": "feature_matching", "include_last": True}, r"unexpected field 'include_last'"),
    ],
)
def test_spec_errors_name_their_path(registry, data, message):
    with pytest.raises(SpecError, match=message):
        structure(data, AdversarialRef, registry)


@pytest.mark.parametrize("name", ["feature_matching", "hinge", "lsgan"])
def test_mismatched_critiques_are_clear_errors(registry, name):
    loss = build(registry, {"type": name})
    real = feature_critiques(REAL_FEATURES, REAL_LOGITS)
    fake = feature_critiques(FAKE_FEATURES, FAKE_LOGITS)
    with pytest.raises(LyraError, match="no critiques"):
        loss.generator_loss([], [])
    if name == "feature_matching":
        with pytest.raises(LyraError, match="2 critiques of real audio but 1"):
            loss.generator_loss(real, fake[:1])
        short = [Critique(c.features[:1], c.logits) for c in fake]
        with pytest.raises(LyraError, match="2 maps for real audio and 1"):
            loss.generator_loss(real, short)
        longer = [Critique([torch.zeros(1, 1, 5), *c.features[1:]], c.logits) for c in fake]
        with pytest.raises(LyraError, match=r"map 0: real \(1, 1, 2\) and generated \(1, 1, 5\)"):
            loss.generator_loss(real, longer)
    else:
        with pytest.raises(LyraError, match="2 critiques of real audio but 1"):
            loss.discriminator_loss(real, fake[:1])


def test_a_discriminator_step_learns_and_the_generator_gets_gradients(registry):
    """With a real MPD: D steps on detached fakes lower D's loss and leave the generator
    untouched; the generator's adversarial and feature-matching losses reach its parameters."""
    torch.manual_seed(0)
    ctx = BuildContext(registry=registry, channels=1)
    disc = structure(
        {"type": "mpd", "periods": [2, 3], "channels": [4, 8]}, DiscriminatorRef, registry
    ).build(ctx)
    gan, matching = (
        build(registry, {"type": "hinge"}),
        build(registry, {"type": "feature_matching"}),
    )
    real_audio = torch.sin(torch.linspace(0, 60, 512)).view(1, 1, -1)
    generated = torch.nn.Parameter(0.1 * torch.randn(1, 1, 512))
    optimizer = torch.optim.Adam(disc.parameters(), lr=1e-2)

    def d_loss() -> torch.Tensor:
        return gan.discriminator_loss(disc(real_audio), disc(generated.detach()))

    before = d_loss().item()
    for _ in range(3):
        optimizer.zero_grad()
        d_loss().backward()
        optimizer.step()
    assert d_loss().item() < before
    assert generated.grad is None

    disc.requires_grad_(False)
    real, fake = disc(real_audio), disc(generated)
    (gan.generator_loss(real, fake) + matching.generator_loss(real, fake)).backward()
    assert generated.grad is not None and generated.grad.abs().sum() > 0
