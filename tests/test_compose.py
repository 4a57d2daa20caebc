"""docker-compose.yml as an operator deploys it: each service gets only the secrets it uses.

Read with PyYAML, which resolves the file's anchors and merge keys as Compose does; `.ci/run`
also validates the whole file with `docker compose config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return dict(loaded["services"])


def test_only_summarize_gets_the_model_endpoint_and_its_key() -> None:
    given = {
        name: sorted(key for key in (service.get("environment") or {}) if key.startswith("LLM_"))
        for name, service in services().items()
    }
    assert given.pop("summarize") == ["LLM_API_KEY", "LLM_BASE_URL", "LLM_MODEL"]
    assert all(not keys for keys in given.values()), given


def test_every_pipeline_service_reaches_redis() -> None:
    for name, service in services().items():
        if name != "redis":
            assert "REDIS_URL" in service["environment"], name
