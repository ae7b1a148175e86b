"""The committed OpenAPI document of the HTTP API matches the code."""

from tools.openapi import OUT, render


def test_committed_openapi_matches_the_code() -> None:
    assert OUT.read_text(encoding="utf-8") == render(), "run `make docs`"


def test_every_action_and_open311_path_is_documented() -> None:
    import json

    paths = json.loads(render())["paths"]
    assert "/api/v1/complaints/{tracking_id}/actions/{action}" in paths
    assert {"/open311/v2/services.{fmt}", "/open311/v2/requests.{fmt}"} <= set(paths)
    action = paths["/api/v1/complaints/{tracking_id}/actions/{action}"]["post"]
    assert {"401", "403", "404", "409", "422"} <= set(action["responses"])
