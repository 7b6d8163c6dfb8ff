"""A real GigE Vision camera for tests (``tools/fake_gige.py``), skipped with the reason where Aravis is missing."""

from __future__ import annotations

import pytest

from tools.fake_gige import FakeGigECamera as _Camera
from tools.fake_gige import aravis_missing

__all__ = ["FakeGigECamera", "aravis_missing"]


class FakeGigECamera(_Camera):
    def __init__(self) -> None:
        reason = aravis_missing()
        if reason:
            pytest.skip(reason)
        super().__init__()
