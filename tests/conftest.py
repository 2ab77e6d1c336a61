import os
import signal

import pytest
from hypothesis import settings

from twinbayes import Patient, load_spec
from twinbayes.inputs.library import data_path

# Property-based tests are deterministic in the default run: every example is derived from the
# test itself (``derandomize``), none from a database of earlier failures, so a run that passes
# passes on every machine.  Exploratory fuzzing with fresh random examples runs with
# ``-m slow`` (tests marked slow apply ``EXPLORE``) or with TWINBAYES_HYPOTHESIS=explore.
settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, max_examples=1000)
settings.load_profile(os.environ.get("TWINBAYES_HYPOTHESIS", "deterministic"))


@pytest.fixture(scope="session")
def theoph4():
    return Patient.from_csv(data_path("theophylline.csv"), subject=4)


@pytest.fixture
def write(tmp_path):
    """Write text to a file in tmp_path and return its path."""

    def _write(name: str, text: str):
        p = tmp_path / name
        p.write_text(text)
        return p

    return _write


@pytest.fixture(scope="session")
def spec_text():
    """The bundled 1-compartment oral spec's text, with literal replacements."""
    base = load_spec("pk_1cmt_oral").text

    def _text(**replace) -> str:
        text = base
        for old, new in replace.items():
            assert old in text, old
            text = text.replace(old, new)
        return text

    return _text


@pytest.fixture
def ctrl_c():
    """SIGINT raises KeyboardInterrupt in this process and in the processes it starts, as in a
    terminal.  A test run started in the background (``nohup ... &``) inherits SIGINT ignored,
    and so would every process it starts."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def leaks():
    """``leaks(folder, needles)``: where in the folder's files any needle appears.

    Every file is searched as bytes; in addition NetCDF files are opened and every group's
    attributes, variable and coordinate names and text values searched, and PNG files' text
    chunks (also compressed ones) read with Pillow.  Returns ``["FILE: NEEDLE", ...]``.
    """

    def find(folder, needles) -> list[str]:
        from pathlib import Path

        hits = []
        for path in sorted(Path(folder).rglob("*")):
            if not path.is_file():
                continue
            texts = [path.read_bytes().decode("latin-1")]
            if path.suffix == ".nc":
                texts.append(_netcdf_text(path))
            if path.suffix == ".png":
                from PIL import Image

                with Image.open(path) as img:
                    texts.append(repr(img.info))
            hits += [
                f"{path.relative_to(folder)}: {n}" for n in needles if any(n in t for t in texts)
            ]
        return hits

    return find


def _netcdf_text(path) -> str:
    """Attributes, names and text values of every group of a NetCDF file, as one string."""
    import numpy as np
    import xarray as xr

    parts = []
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        for node in tree.subtree:
            ds = node.to_dataset()
            parts += [repr(node.attrs), node.path]
            for name, var in ds.variables.items():
                parts += [str(name), repr(var.attrs)]
                if var.dtype.kind in "OSU":
                    parts += [str(v) for v in np.asarray(var.values).ravel()]
    return "\n".join(parts)
