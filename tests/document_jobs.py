"""A document file as a job, the way `pipeline run` submits it: its bytes as base64 `content`.

Stage tests use this rather than `{"path": ...}`, which extract reads only inside the folders
PIPELINE_FILES_ROOT opens (tests/test_stage_extract.py covers paths).
"""

from __future__ import annotations

import base64
from pathlib import Path


def document_job(path: Path) -> dict[str, str]:
    return {"content": base64.b64encode(path.read_bytes()).decode("ascii"), "filename": path.name}
