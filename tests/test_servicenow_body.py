"""A page's body is read in one call and parsed here (``answers.json_body``), decoded as
``requests.Response.json`` decodes it: the declared charset with bad bytes replaced, else JSON's own
detection; a body that is not JSON is still a SourceBadResponse, never "no changes"."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import responses

from connector.errors import SourceBadResponse
from connector.servicenow.client import ServiceNowSource

BASE = "https://acme.service-now.com"
URL = f"{BASE}/api/now/v2/table/change_request"


@pytest.fixture
def rs() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def page(rs: responses.RequestsMock, body: bytes, content_type: str) -> list[dict[str, object]]:
    rs.add(responses.GET, URL, body=body, content_type=content_type, headers={"X-Total-Count": "1"})
    src = ServiceNowSource(url=BASE, username="svc", password="body-test-password", page_size=5)
    return src.fetch_page("", ["sys_id", "short_description"]).records


def test_declared_utf8_with_a_bad_byte_is_replaced_not_refused(rs: responses.RequestsMock) -> None:
    body = '{"result": [{"sys_id": "a1", "short_description": "점검 \xff"}]}'.encode()
    body = body.replace("\xff".encode(), b"\xff")  # one byte that is not UTF-8
    (record,) = page(rs, body, "application/json;charset=UTF-8")
    assert record["short_description"] == "점검 \ufffd"


def test_no_charset_is_detected_like_json_does(rs: responses.RequestsMock) -> None:
    """(requests assumes UTF-8 for application/json: a type it has no default for is guessed.)"""
    body = json.dumps({"result": [{"sys_id": "a1", "short_description": "데이터베이스"}]}).encode("utf-16")
    (record,) = page(rs, body, "application/octet-stream")
    assert record["short_description"] == "데이터베이스"


def test_truncated_body_is_a_bad_response(rs: responses.RequestsMock) -> None:
    with pytest.raises(SourceBadResponse, match="truncated or invalid JSON"):
        page(rs, b'{"result": [{"sys_id": "a1", "short_desc', "application/json;charset=UTF-8")
