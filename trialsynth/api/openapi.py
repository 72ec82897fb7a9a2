"""The committed OpenAPI spec (``trialsynth/api/openapi.json``) and how it is made again.

Regenerate after changing a route or a schema: ``trialsynth api openapi`` (``--check`` only compares).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

SPEC_PATH = Path(__file__).with_name("openapi.json")
REGENERATE = ".venv/bin/trialsynth api openapi"


def spec_text() -> str:
    """The app's spec as committed: sorted keys, 2-space indent, trailing newline. Built on a throwaway
    data folder: the spec does not depend on the settings."""
    from trialsynth.api.app import create_app
    from trialsynth.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp) / "data"), check_tenant_keys=False)
        spec = app.openapi()
        app.state.ctx.engine.dispose()
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"
