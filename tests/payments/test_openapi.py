"""Schemathesis against the ledger's OpenAPI document: generated requests (valid and invalid) must
never cause a 5xx, and every response must match the documented status codes, media types and
schemas (problem+json included). Bounded to a few examples per operation to stay fast."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.payments.conftest import Ledger

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]


@pytest.mark.parametrize(
    "mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"]
)
def test_openapi_contract(world: Ledger, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", world.app)
    headers = {"Authorization": f"Bearer {world.admin_key}"}
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/v1/events/stream":
            continue  # stays open by design; its contract is tested in test_feed.py

        raw = operation.definition.raw
        if mode is GenerationMode.NEGATIVE and not raw.get("parameters") and "requestBody" not in raw:
            continue  # nothing but headers to make invalid (e.g. GET /v1/info)

        # A long-poll legitimately waits up to wait_s; pin it to 0 so examples stay fast.
        # (Negative cases are rejected before the handler runs, so they never wait.)
        pinned = operation.path == "/v1/events" and mode is GenerationMode.POSITIVE
        query = {"wait_s": 0} if pinned else None
        strategy = operation.as_strategy(generation_mode=mode, query=query)

        @given(case=strategy)
        @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case) -> None:  # type: ignore[no-untyped-def]
            if mode is GenerationMode.NEGATIVE:
                # We always send a valid Authorization header, so a case whose only invalid part is
                # its headers may have become valid; header validation is covered in test_validation.
                invalid = [loc for loc in case.meta.components if case.meta.is_negative_at(loc)]
                assume(any(str(loc.value) != "header" for loc in invalid))
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except Unsatisfiable:
            # No invalid input exists for an operation without parameters or body (e.g. GET /v1/info).
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        checked += 1
    assert checked >= (23 if mode is GenerationMode.POSITIVE else 18), checked


def test_problem_responses_are_documented(world: Ledger) -> None:
    document = world.http.get("/openapi.json").json()
    hold = document["paths"]["/v1/holds"]["post"]["responses"]
    for status in ("401", "403", "404", "409", "422"):
        assert "application/problem+json" in hold[status]["content"], status
    assert "Problem" in document["components"]["schemas"]
