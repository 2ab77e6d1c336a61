"""Spec files: bundled library, validation errors, and exactness of the dynamics."""

import pytest

from twinbayes.inputs.library import list_specs
from twinbayes.model.checks import check_exact_solution
from twinbayes.spec import SpecError, load_spec

BUNDLED = ["pk_1cmt_iv", "pk_1cmt_oral", "pk_1cmt_oral_lag", "pk_2cmt_iv", "pk_2cmt_oral"]


def test_bundled_library_is_complete_and_documented():
    assert set(BUNDLED) <= set(list_specs())
    assert all(load_spec(name).linear for name in BUNDLED)
    for name in list_specs():
        spec = load_spec(name)
        assert (
            spec.name == name
            and spec.references
            and spec.hypothesis
            and (spec.linear or spec.solution or spec.initial)
        )
        for p in spec.parameters.values():
            assert p.unit and p.description


@pytest.mark.parametrize(
    "name", [n for n in list_specs() if load_spec(n).linear or load_spec(n).solution]
)
def test_exact_solution_matches_reference_ode_solve(name):
    """Closed forms and matrix exponentials vs scipy's Radau on the spec's own ODEs: 1e-6 relative.

    (Specs without a closed form: the ODE engine is checked in tests/test_ode.py.)"""
    assert check_exact_solution(load_spec(name)) < 1e-6


def test_check_catches_a_wrong_closed_form(spec_text):
    wrong = spec_text(
        **{'solution.central = "ka / (ka - ke)': 'solution.central = "1.01 * ka / (ka - ke)'}
    )
    assert check_exact_solution(load_spec("wrong.toml", text=wrong)) > 1e-3


def _raises(text, field, *fragments, file="bad.toml"):
    with pytest.raises(SpecError) as err:
        load_spec(file, text=text)
    msg = str(err.value)
    assert msg.startswith(f"{file}: {field}:"), msg
    for f in fragments:
        assert f in msg, msg
    return msg


@pytest.mark.parametrize(
    "old, new, field, token",
    [
        (
            'rhs.central = "ka * depot - ke * central"',
            "rhs.central = \"__import__('os').getcwd()\"",
            "dynamics.rhs.central",
            "__import__",
        ),
        (
            'rhs.central = "ka * depot - ke * central"',
            'rhs.central = "ka.real * depot"',
            "dynamics.rhs.central",
            "'ka.real'",
        ),
        (
            'expression = "CL / V"',
            'expression = "(lambda q: q)(CL)"',
            "derived.ke.expression",
            "'lambda q: q'",
        ),
        (
            'expression = "central / V"',
            'expression = "central[0] / V"',
            "observations.concentration.expression",
            "'central[0]'",
        ),
        (
            'solution.depot = "exp(-ka * tad)"',
            'solution.depot = "gamma(-ka * tad)"',
            "routes.oral.solution.depot",
            "'gamma'",
        ),
    ],
)
def test_spec_with_code_is_rejected_naming_file_field_token(spec_text, old, new, field, token):
    _raises(spec_text(**{old: new}), field, token)


def test_malformed_specs_give_clear_errors(spec_text, write):
    _raises("format = 1\n[model\n", "<toml>", "not valid TOML")
    _raises(
        spec_text(
            **{
                'prior = { distribution = "lognormal", mu = 0.0, sigma = 1.0 }': 'prior = { distribution = "cauchyish", mu = 0.0 }'
            }
        ),
        "parameters.ka.prior.distribution",
        "choose one of",
    )
    _raises(
        spec_text(**{"sigma = 1.0 }\n\n[parameters.CL]": "sigma = -1.0 }\n\n[parameters.CL]"}),
        "parameters.ka.prior.sigma",
        "> 0",
    )
    _raises(
        spec_text(**{'unit = "1/h"\nprior': 'unit = "1/fortnight"\nprior'}),
        "parameters.ka.unit",
        "unknown unit symbol 'fortnight'",
    )
    _raises(
        spec_text(**{'rhs.depot = "-ka * depot"\n': ""}),
        "dynamics.rhs",
        "one right-hand side per state",
    )
    _raises(
        spec_text(
            **{
                'rhs.central = "ka * depot - ke * central"': 'rhs.central = "ka * depot - ke * central**2"'
            }
        ),
        "dynamics.linear",
        "not linear",
    )
    _raises(
        spec_text(
            **{'description = "first-order absorption rate constant"': 'descripton = "typo"'}
        ),
        "parameters.ka",
        "unknown field(s): descripton",
        "missing required field(s): description",
    )
    _raises(
        spec_text(**{'additive = "sigma_add"': 'additive = "sigma_addd"'}),
        "observations.concentration.error.additive",
        "not a parameter",
    )
    _raises(
        spec_text(**{'time_unit = "h"': 'time_unit = "mg"'}), "model.time_unit", "not a time unit"
    )
    _raises(spec_text(**{"format = 1": "format = 7"}), "format", "format = 1")
    missing = write("nope.toml", "")
    missing.unlink()
    with pytest.raises(SpecError, match="file not found"):
        load_spec(missing)


def test_error_from_file_names_the_file(spec_text, write):
    path = write(
        "team_b.toml", spec_text(**{'expression = "central / V"': 'expression = "central / W"'})
    )
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value).startswith(
        f"{path}: observations.concentration.expression:"
    ) and "'W'" in str(err.value)


def test_time_in_a_linear_system_is_a_spec_error_naming_the_field():
    """Issue 37: the fuzz drew ``rhs.depot = "t"`` in a linear spec and got an ExpressionError;
    every error a spec can cause is a SpecError naming file and field."""
    import re

    from twinbayes.inputs.library import spec_path

    text = re.sub(r'rhs\.depot = "[^"]*"', 'rhs.depot = "t"', spec_path("pk_1cmt_oral").read_text())
    with pytest.raises(SpecError, match=r"x\.toml: dynamics\.linear: .*free of time"):
        load_spec("x.toml", text=text)
