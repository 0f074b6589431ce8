from __future__ import annotations

import pytest

from fmops.platform import Platform
from support.annotation_world import World, make_world


@pytest.fixture
def world(platform: Platform) -> World:
    return make_world(platform)
