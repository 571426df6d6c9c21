"""The Auto-Movie client against the app's answers as its code gives them (respx; docs/contracts/auto-movie.md):
project reads, status PUT, Payload progress PATCH, 403 for an expired token, 500 for an unknown project."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from adapters import AutoMovieClient, PermanentError, TransientError, normalise_genre

BASE = "http://app.test"

PROJECT = {
    "id": "66f1c0de5a1b2c3d4e5f0001", "title": "Lighthouse", "description": "", "genre": "sci-fi", "status": "concept",
    "episodeCount": 3, "targetAudience": "teens",
    "createdBy": {"id": "u", "name": "N", "email": "e"}, "collaborators": [], "styleReferences": [],
    "projectSettings": {"aspectRatio": "16:9", "episodeDuration": 12, "qualityTier": "standard"},
    "progress": {"currentPhase": "story_development", "completedSteps": [], "overallProgress": 0},
    "createdAt": "c", "updatedAt": "u",
}  # fmt: skip


@pytest.fixture
async def client() -> AsyncIterator[AutoMovieClient]:
    """A client on a respx-mocked transport."""
    c = AutoMovieClient(
        BASE, api_token="tok", payload_email="o@x", payload_password="pw", http=httpx.AsyncClient()
    )
    yield c
    await c.aclose()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("sci-fi", "scifi"), ("scifi", "scifi"), ("Science Fiction", "scifi"), ("thriller", "thriller"),
     ("romance", "romance"), ("Drama", "drama"), ("telenovela", "other"), ("", "other"), (None, "other"), (7, "other")],
)  # fmt: skip
def test_genres_of_both_vocabularies_normalise(raw: object, expected: str) -> None:
    """Route and collection genres map to one vocabulary; unknown genres never raise."""
    assert normalise_genre(raw) == expected


@respx.mock
async def test_get_project_normalises_and_keeps_raw_genre(client: AutoMovieClient) -> None:
    """The project read carries settings and progress; genre is normalised with the original kept."""
    route = respx.get(f"{BASE}/api/v1/projects/p1").mock(return_value=httpx.Response(200, json=PROJECT))
    project = await client.get_project("p1", correlation_id="c-1")
    assert project["genre"] == "scifi"
    assert project["genre_raw"] == "sci-fi"
    assert project["projectSettings"]["episodeDuration"] == 12
    assert route.calls.last.request.headers["Authorization"] == "Bearer tok"
    assert route.calls.last.request.headers["X-Correlation-ID"] == "c-1"


@respx.mock
async def test_list_projects_caps_limit_at_50(client: AutoMovieClient) -> None:
    """The list route's limit is at most 50."""
    route = respx.get(f"{BASE}/api/v1/projects").mock(
        return_value=httpx.Response(200, json={"projects": [PROJECT], "pagination": {"page": 1, "limit": 50,
                                                                                      "total": 1, "pages": 1}})
    )  # fmt: skip
    projects = await client.list_projects(limit=500)
    assert route.calls.last.request.url.params["limit"] == "50"
    assert projects[0]["genre"] == "scifi"


@respx.mock
@pytest.mark.parametrize(
    ("status", "body", "error"),
    [(500, {"error": "Internal server error"}, PermanentError),
     (400, {"error": "Invalid project ID"}, PermanentError),
     (401, {"error": "Authentication required"}, PermanentError),
     (502, {"error": "Bad gateway"}, TransientError),
     (503, {"error": "Service unavailable"}, TransientError)],
)  # fmt: skip
async def test_error_shapes(
    client: AutoMovieClient, status: int, body: dict[str, object], error: type[Exception]
) -> None:
    """{"error"} answers map to the taxonomy with the app's message; its 500 on a project route means an unknown
    or malformed id (Payload's findByID throws before the route's 404): permanent, not an outage."""
    respx.get(f"{BASE}/api/v1/projects/p1").mock(return_value=httpx.Response(status, json=body))
    with pytest.raises(error, match=str(body["error"])):
        await client.get_project("p1")


@respx.mock
async def test_update_status_puts_only_the_status(client: AutoMovieClient) -> None:
    """Status goes through PUT with only accepted fields; an unknown status never leaves the process."""
    route = respx.put(f"{BASE}/api/v1/projects/p1").mock(return_value=httpx.Response(200, json=PROJECT))
    await client.update_status("p1", "production")
    assert json.loads(route.calls.last.request.content) == {"status": "production"}
    with pytest.raises(PermanentError, match="status 'shooting'"):
        await client.update_status("p1", "shooting")
    assert route.call_count == 1


@respx.mock
@pytest.mark.parametrize("refusal", [403, 401])
async def test_progress_logs_in_patches_and_logs_in_again_when_the_token_is_refused(
    client: AutoMovieClient, refusal: int
) -> None:
    """Progress: login, PATCH with JWT; an expired token (Payload: 403, not 401) logs in once more and retries."""
    tokens = iter(["jwt-1", "jwt-2"])
    login = respx.post(f"{BASE}/api/users/login").mock(
        side_effect=lambda _: httpx.Response(200, json={"token": next(tokens), "user": {}})
    )
    answers = iter([
        httpx.Response(200, json={"doc": {}}),
        httpx.Response(refusal, json={"errors": [{"message": "You are not allowed to perform this action."}]}),
        httpx.Response(200, json={"doc": {}}),
    ])  # fmt: skip
    patch = respx.patch(f"{BASE}/api/projects/p1").mock(side_effect=lambda _: next(answers))
    await client.write_progress("p1", "story_development", ["concept"], 12.345)
    await client.write_progress("p1", "character_creation", ["concept", "story"], 30)
    assert login.call_count == 2
    assert json.loads(login.calls[0].request.content) == {"email": "o@x", "password": "pw"}
    assert [c.request.headers["Authorization"] for c in patch.calls] == [
        "JWT jwt-1",
        "JWT jwt-1",
        "JWT jwt-2",
    ]
    assert json.loads(patch.calls[0].request.content) == {
        "progress": {
            "currentPhase": "story_development",
            "completedSteps": ["concept"],
            "overallProgress": 12.3,
        }
    }
    with pytest.raises(PermanentError, match="phase 'editing'"):
        await client.write_progress("p1", "editing", [], 1)
