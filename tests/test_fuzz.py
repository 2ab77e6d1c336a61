"""Property-based tests: hostile and random spec, study and patient files.

Budgets: each generated input is handled within hypothesis' deadline of 2 s
(parsing and validation only, no fitting), and whatever happens only
twinbayes' own error types come out (``SpecError``, ``PatientDataError``),
nothing is written outside the temporary folder, and nothing there is
modified.  Memory: the peak resident memory of the test process grows by less
than 512 MB over the whole suite (checked at the end of the module); the size
limits under test keep it there (expressions of at most 4000 characters, 32
levels, 600 terms; patient files of at most 20 MB; at most 10 000 doses).
"""

import os
import resource
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinbayes import Patient, load_spec
from twinbayes.inputs.patient import PatientDataError
from twinbayes.run.study import load_study
from twinbayes.spec import SpecError

FUZZ = settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
BASE = load_spec("pk_1cmt_oral").text

TOKENS = st.sampled_from(
    ["ka", "CL", "V", "depot", "central", "t", "tad", "+", "-", "*", "/", "**", "(", ")", ",", "exp(", "log(",
     "max(", "sigmoid(", "__import__(", "os", ".", "[0]", "lambda x:", "1e308", "inf", "nan", "'", '"', "\\n",
     "0", "1.5", "-1", "__class__", "open(", "#", ";", "\x00", "é"]
)  # fmt: skip
EXPRESSIONS = st.one_of(
    st.lists(TOKENS, max_size=40).map(" ".join),
    st.text(max_size=200),
    st.integers(1, 400).map(lambda n: "max(" * n + "ka" + ", 1)" * n),
    st.integers(1, 3000).map(lambda n: "-" * n + "1"),
)
VALUES = st.one_of(
    st.text(max_size=30),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.just("/etc/passwd"),
    st.just("../../x"),
    st.just("<script>alert(1)</script>"),
)


REPO = Path(__file__).resolve().parents[1]
MEMORY_BUDGET_MB = 512


@pytest.fixture(scope="module", autouse=True)
def memory_budget():
    """Peak RSS growth over the module (ru_maxrss is in kB on Linux)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown < MEMORY_BUDGET_MB, f"peak memory grew by {grown:.0f} MB"


def _files(roots: list[Path], skip: Path) -> dict[str, float]:
    out = {}
    for root in roots:
        for p in root.rglob("*"):
            if (
                p.is_file()
                and skip not in p.parents
                and ".hypothesis" not in p.parts
                and "__pycache__" not in p.parts
            ):
                out[str(p)] = p.stat().st_mtime_ns
    return out


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A working directory for the inputs; after the module: nothing new or modified in the repository or HOME."""
    tmp = tmp_path_factory.mktemp("fuzz")
    roots = [REPO, tmp.parent]  # where a relative path such as ../../x from the sandbox would land
    before = _files(roots, tmp)
    cwd = os.getcwd()
    os.chdir(tmp)
    yield tmp
    os.chdir(cwd)
    after = _files(roots, tmp)
    changed = sorted(p for p in after if before.get(p) != after[p])
    assert not changed, f"files created or modified outside the sandbox: {changed[:5]}"


@FUZZ
@given(
    field=st.sampled_from(["rhs.depot", "rhs.central", "solution", "lag", "expression"]),
    expr=EXPRESSIONS,
)
def test_hostile_expressions_give_spec_errors(sandbox, field, expr):
    anchors = {
        "rhs.depot": 'rhs.depot = "-ka * depot"',
        "rhs.central": 'rhs.central = "ka * depot - ke * central"',
        "solution": "[routes.oral]",
        "lag": "[routes.oral]",
        "expression": 'expression = "central / V"',
    }
    anchor = anchors[field]
    if anchor not in BASE:
        return
    key = anchor.split(" = ")[0] if " = " in anchor else None
    text = BASE.replace(
        anchor, f"{key} = {_toml_string(expr)}" if key else anchor + f"\nlag = {_toml_string(expr)}"
    )
    try:
        load_spec("fuzz.toml", text=text)
    except SpecError:
        pass


@FUZZ
@given(
    key=st.sampled_from(
        ["name", "time_unit", "title", "references", "format", "linear", "unit", "prior"]
    ),
    value=VALUES,
)
def test_wrong_values_in_spec_fields_give_spec_errors(sandbox, key, value):
    lines = BASE.splitlines()
    idx = next((i for i, ln in enumerate(lines) if ln.startswith(f"{key} =")), None)
    if idx is None:
        return
    lines[idx] = f"{key} = {_toml_value(value)}"
    try:
        load_spec("fuzz.toml", text="\n".join(lines))
    except SpecError:
        pass


@FUZZ
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["1", "Jane Doe", "", "1,5"]),
            st.one_of(
                st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=5)
            ),
            st.sampled_from(["h", "min", "d", "parsec", ""]),
            st.sampled_from(["dose", "observation", "covariate", "input", "Observation", ""]),
            st.sampled_from(["concentration", "oral", "weight", "conc", "<b>", ""]),
            st.one_of(
                st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=5)
            ),
            st.sampled_from(["mg", "mg/L", "kg", "ug/mL", "furlong", ""]),
        ),
        max_size=12,
    ),
    raw=st.binary(max_size=64),
)
def test_hostile_patient_files_give_patient_data_errors(sandbox, rows, raw):
    path = sandbox / "p.csv"
    body = "\n".join(",".join(r) for r in rows)
    path.write_bytes(
        b"subject,time,time_unit,event,name,value,unit\n"
        + body.encode("utf-8", "replace")
        + b"\n"
        + raw
    )
    try:
        Patient.from_csv(path, subject="1")
    except PatientDataError:
        pass


@FUZZ
@given(
    section=st.sampled_from(["study", "sampler", "gate", "comparison", "patient"]),
    key=st.sampled_from(
        [
            "name",
            "seed",
            "draws",
            "chains",
            "rhat_max",
            "include_unconverged",
            "ladder",
            "subject",
            "data",
        ]
    ),
    value=VALUES,
)
def test_hostile_study_files_give_spec_errors(sandbox, section, key, value):
    text = (
        f'[study]\nname = "s"\nseed = 1\n[patient]\ndata = "bundled:theophylline.csv"\nsubject = "1"\n'
        f'[twins]\nspecs = ["pk_1cmt_oral"]\n[{section}]\n{key} = {_toml_value(value)}\n'
    )
    path = sandbox / "study.toml"
    path.write_text(text)
    try:
        load_study(path)
    except (SpecError, PatientDataError, FileNotFoundError):
        pass


def _toml_string(s: str) -> str:
    return (
        '"'
        + "".join(
            c if c in string.printable and c not in '"\\\n\r\x0b\x0c' else f"\\u{ord(c):04x}"
            for c in s
        )
        + '"'
    )


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return (
            "nan"
            if v != v
            else ("inf" if v == float("inf") else ("-inf" if v == float("-inf") else repr(v)))
        )
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v)) + "]"
    return _toml_string(str(v))
