"""The server's OpenAPI spec fuzzed by schemathesis (in-process ASGI calls): >= 1,000 generated requests, no 5xx.

Every operation of the spec gets up to ``EXAMPLES`` generated requests
(valid and invalid parameters and bodies; an operation with few possible
inputs gets fewer); the test counts them and asserts no response is a 5xx and
every error is the one-line JSON ``{"error": ...}``.
"""

from __future__ import annotations

import numpy as np
import pytest

from toprec import models
from toprec.app import serving

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from toprec.serve import ServeConfig, create_app  # noqa: E402

EXAMPLES = 260
KEY = {"X-API-Key": "fuzz"}


def test_fuzzed_requests_never_get_a_5xx(dataset, tmp_path):
    path = serving.save_model(models.get("ease", l2=50.0).fit(dataset), dataset, tmp_path / "m")
    app = create_app(ServeConfig(model_dir=str(path), api_key="fuzz", watch_s=0))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=KEY)  # the spec needs the key too
    seen: dict[str, int] = {}
    bad: list = []

    for result in schema.get_all_operations():
        op = result.ok()
        label = f"{op.method.upper()} {op.path}"

        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def check(case):
            resp = case.call(headers=KEY)
            seen[label] = seen.get(label, 0) + 1
            if resp.status_code >= 500:
                bad.append((label, resp.status_code, resp.text[:200]))
            elif resp.status_code >= 400 and resp.status_code != 405:
                body = resp.json()
                if not (isinstance(body, dict) and isinstance(body.get("error"), str) and "\n" not in body["error"]):
                    bad.append((label, resp.status_code, resp.text[:200]))

        check()
    total = sum(seen.values())
    print(f"schemathesis: {total} requests", seen)
    assert not bad, bad[:5]
    assert total >= 1000, seen
    assert np.all([n > 0 for n in seen.values()]) and len(seen) >= 9
