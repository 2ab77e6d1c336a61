"""The fields of a TOML table: which are required, which are allowed, and a hint for a typo."""

from __future__ import annotations

import difflib

from ..error import SpecError

__all__ = ["check_keys"]


def check_keys(raw: dict, where: str, required: set[str], optional: set[str]) -> None:
    """Raise :class:`~twinbayes.error.SpecError` at ``where`` for missing or unknown fields
    (with the closest allowed name as a hint: :func:`difflib.get_close_matches`)."""
    missing = sorted(required - set(raw))
    extra = sorted(set(raw) - required - optional)
    problems = []
    if missing:
        problems.append(f"missing required field(s): {', '.join(missing)}")
    if extra:
        hints = [
            f"{e!r} -> {m[0]!r}?"
            for e in extra
            if (m := difflib.get_close_matches(e, required | optional, 1))
        ]
        problems.append(
            f"unknown field(s): {', '.join(extra)}; allowed: {', '.join(sorted(required | optional))}"
            + (f" (did you mean {', '.join(hints)})" if hints else "")
        )
    if problems:
        raise SpecError(where, "; ".join(problems))
