"""The public API of twinbayes/__init__.py."""

import pytest


def test_public_api_is_lazy_but_complete():
    import twinbayes as tb

    for name in tb.__all__:
        assert getattr(tb, name) is not None
    with pytest.raises(AttributeError):
        tb.no_such_thing
