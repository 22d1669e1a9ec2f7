"""Each kind of spec mistake gives one message at the exact JSON path."""

from __future__ import annotations

import copy
import json

import attrs
import pytest

from lyra_core.errors import LyraError, SpecError
from lyra_core.loader import apply_overrides, load_spec, read_spec_file, resolved, validate_data


def problems(data, registry) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        validate_data(data, registry)
    return info.value.problems


def mutate(spec: dict, fn) -> dict:
    spec = copy.deepcopy(spec)
    fn(spec)
    return spec


def test_valid_spec_structures_with_defaults(tiny_spec, registry):
    spec = validate_data(tiny_spec, registry)
    assert spec.training.steps == 5
    assert spec.model.activation.alpha == 1.0
    data = resolved(spec, registry)
    assert data["model"] == {
        "type": "tiny",
        "channels": 8,
        "activation": {"type": "snake", **data["model"]["activation"]},
    }
    assert data["training"]["optimizer"]["betas"] == [0.9, 0.999]
    # the resolved spec is itself a valid spec that resolves to the same thing
    assert resolved(validate_data(data, registry), registry) == data


def test_unknown_name_has_path_and_suggestion(tiny_spec, registry):
    spec = mutate(tiny_spec, lambda s: s["model"]["activation"].update(type="snek"))
    [(path, msg)] = problems(spec, registry)
    assert path == "$.model.activation.type"
    assert "unknown activation 'snek'; did you mean 'snake'?" in msg
    assert "snake_beta" in msg  # lists the known names


def test_typo_field(tiny_spec, registry):
    spec = mutate(tiny_spec, lambda s: s["model"].update(chanels=4))
    assert problems(spec, registry) == [
        ("$.model", "unexpected field 'chanels'; did you mean 'channels'?")
    ]


def test_wrong_type(tiny_spec, registry):
    spec = mutate(tiny_spec, lambda s: s["model"]["activation"].update(alpha="big"))
    assert problems(spec, registry) == [
        ("$.model.activation.alpha", "'big' is not of type 'number'")
    ]


def test_missing_required_field(tiny_spec, registry):
    spec = mutate(tiny_spec, lambda s: s["model"].pop("activation"))
    assert problems(spec, registry) == [("$.model", "missing required field 'activation'")]


def test_missing_type(tiny_spec, registry):
    spec = mutate(tiny_spec, lambda s: s["model"]["activation"].pop("type"))
    [(path, msg)] = problems(spec, registry)
    assert path == "$.model.activation"
    assert msg.startswith("missing 'type': name an activation")


def test_wrong_nesting(tiny_spec, registry):
    # the optimizer put inside data instead of training
    spec = mutate(tiny_spec, lambda s: s["data"].update(optimizer=s["training"].pop("optimizer")))
    assert sorted(problems(spec, registry)) == [
        ("$.data", "unexpected field 'optimizer'"),
        ("$.training", "missing required field 'optimizer'"),
    ]


def test_component_given_as_a_string(tiny_spec, registry):
    spec = mutate(tiny_spec, lambda s: s["model"].update(activation="snake"))
    [(path, msg)] = problems(spec, registry)
    assert path == "$.model.activation"
    assert "expected an object naming an activation" in msg


def test_typo_inside_optional_slot(tiny_spec, registry):
    spec = mutate(
        tiny_spec, lambda s: s["training"].update(scheduler={"type": "cosine", "warmup": 3})
    )
    assert problems(spec, registry) == [
        ("$.training.scheduler", "unexpected field 'warmup'; did you mean 'warmup_steps'?")
    ]


def test_errors_in_lists_have_indices(tiny_spec, registry):
    spec = mutate(tiny_spec, lambda s: s["training"]["optimizer"].update(betas=[0.9, "x"]))
    assert problems(spec, registry) == [
        ("$.training.optimizer.betas[1]", "'x' is not of type 'number'")
    ]


def test_all_errors_reported_sorted(tiny_spec, registry):
    def several(s):
        s["model"]["channels"] = "wide"
        s["training"]["steps"] = -1.5
        s["data"]["sampel_rate"] = 1

    paths = [p for p, _ in problems(mutate(tiny_spec, several), registry)]
    assert paths == ["$.data", "$.model.channels", "$.training.steps"]


def test_value_validator_reports_field(tiny_spec, registry):
    spec = mutate(tiny_spec, lambda s: s["model"].update(channels=0))
    [(path, msg)] = problems(spec, registry)
    assert path.startswith("$.model")
    assert "channels" in msg


def test_schema_key_is_allowed(tiny_spec, registry):
    spec = dict(tiny_spec, **{"$schema": "../schemas/experiment.schema.json"})
    assert validate_data(spec, registry).seed == 0


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "a spec must be a JSON object, not list"),
        ('{"a": 1, "a": 2}', "duplicate key(s) 'a'"),
        ('{"seed": NaN}', "NaN is not valid JSON"),
        ("", "not valid JSON"),
    ],
)
def test_bad_files(tmp_path, content, expected):
    path = tmp_path / "spec.json"
    path.write_text(content)
    with pytest.raises(LyraError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        read_spec_file(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(LyraError, match="no such spec file"):
        read_spec_file(tmp_path / "nope.json")
    with pytest.raises(LyraError, match="is a directory"):
        read_spec_file(tmp_path)


def test_binary_file(tmp_path):
    path = tmp_path / "spec.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(LyraError, match="cannot read the spec"):
        read_spec_file(path)


def test_overrides(tmp_path, tiny_spec, registry):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(tiny_spec))
    spec = load_spec(
        path, registry, ["training.steps=10", "model.activation.type=elu", "name=run one"]
    )
    assert spec.training.steps == 10
    assert spec.name == "run one"
    assert type(spec.model.activation).__name__ == "ELUSpec"
    with pytest.raises(SpecError, match=r"\$\.training\.steps: 'ten' is not of type 'integer'"):
        load_spec(path, registry, ["training.steps=ten"])
    with pytest.raises(LyraError, match="expected KEY=VALUE"):
        apply_overrides(tiny_spec, ["training.steps"])
    with pytest.raises(LyraError, match="not an object or list"):
        apply_overrides(tiny_spec, ["training.steps.x=1"])


@pytest.mark.parametrize(
    ("section", "field", "value", "path"),
    [
        ("optimizer", "betas", [1e30, 0.999], "$.training.optimizer.betas[0]"),
        ("optimizer", "betas", [0.9, 1.0], "$.training.optimizer.betas[1]"),
        ("optimizer", "betas", [-0.1, 0.9], "$.training.optimizer.betas[0]"),
        ("data", "num_workers", -1, "$.data.num_workers"),
        ("training", "grad_clip", -1.0, "$.training.grad_clip"),
    ],
)
def test_values_training_would_refuse_or_misuse_are_refused_where_read(
    tiny_spec, registry, section, field, value, path
):
    def change(s):
        node = s["training"]["optimizer"] if section == "optimizer" else s[section]
        node[field] = value

    found = problems(mutate(tiny_spec, change), registry)
    assert [p for p, _ in found] == [path], found


@pytest.mark.parametrize(
    ("section", "field", "value", "message"),
    [
        ("optimizer", "betas", (0.9, 1.5), "betas: each must be in [0, 1), got [0.9, 1.5]"),
        ("data", "num_workers", -2, "num_workers must be >= 0, got -2"),
        ("training", "grad_clip", -0.5, "grad_clip must be >= 0, got -0.5"),
    ],
)
def test_the_attrs_classes_refuse_them_too(tiny_spec, registry, section, field, value, message):
    """Specs built in Python (not read from JSON) get the same rule, with the field named."""
    spec = validate_data(tiny_spec, registry)
    target = {"optimizer": spec.training.optimizer, "data": spec.data, "training": spec.training}
    with pytest.raises(ValueError) as info:
        attrs.evolve(target[section], **{field: value})
    assert str(info.value) == message


def test_a_grad_clip_of_zero_means_no_clipping_and_validates(tiny_spec, registry):
    spec = validate_data(mutate(tiny_spec, lambda s: s["training"].update(grad_clip=0)), registry)
    assert spec.training.grad_clip == 0
