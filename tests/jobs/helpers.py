"""Helpers of the in-process job tests."""

from __future__ import annotations


def start(api, model, body) -> int:
    """POST fine-tune as the model's owner; the new job's id."""
    response = api(model.owner).post(f"/api/model-management/models/{model.name}/fine-tune", body, format="json")
    assert response.status_code == 202, response.data
    return response.data["id"]
