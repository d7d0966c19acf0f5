"""Makes ``venues`` importable before the editable install maps it (the venue wing adds ``venues*`` to
pyproject's package list; until that is merged, the repository root on ``sys.path`` is enough: ``venues`` is a
namespace package here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("venues") is None:  # pragma: no cover - depends on the install
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
