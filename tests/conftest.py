import signal

import pytest

from twinbayes import Patient, load_spec
from twinbayes.library import data_path


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
