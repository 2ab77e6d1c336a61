"""The bundled spec library (``model_specs/``) and example data (``twinbayes/data/``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["package_dir", "specs_dir", "spec_path", "list_specs", "data_path"]

_PKG = Path(__file__).resolve().parents[1]


def package_dir() -> Path:
    """The ``twinbayes`` package folder (its bundled data, studies and templates lie there)."""
    return _PKG


def specs_dir() -> Path:
    """Folder of the bundled specs: inside the installed package, else the source checkout."""
    for candidate in (_PKG / "model_specs", _PKG.parent / "model_specs"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("bundled model_specs/ folder not found; reinstall twinbayes")


def list_specs() -> list[str]:
    """Names of the bundled specs."""
    return sorted(p.stem for p in specs_dir().glob("*.toml"))


def spec_path(name: str) -> Path:
    """Path of a bundled spec by name, e.g. ``"pk_1cmt_oral"`` (a plain name, never a path)."""
    path = specs_dir() / f"{name}.toml"
    if not _plain(name) or not path.is_file():
        raise FileNotFoundError(
            f"no bundled spec named {name!r}; bundled: {', '.join(list_specs())}"
        )
    return path


def data_path(name: str) -> Path:
    """Path of a bundled data file, e.g. ``"theophylline.csv"`` (a plain name, never a path)."""
    path = _PKG / "data" / name
    if not _plain(name) or not path.is_file():
        raise FileNotFoundError(f"no bundled data file {name!r}")
    return path


def _plain(name: str) -> bool:
    """A file name without a folder, a drive or a leading dot (``bundled:../x`` names nothing)."""
    return (
        isinstance(name, str)
        and name == Path(name).name
        and not name.startswith(".")
        and "\\" not in name
    )
