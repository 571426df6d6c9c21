"""Auto-Movie's contract (docs/contracts/auto-movie.md), derived from its code (jomapps/auto-movie @ 89b700c).

It cannot run here (MongoDB, a Next build), so the suite runs against the stand-in; given
``AUTO_MOVIE_CONTRACT_URL`` (and ``_EMAIL``, ``_PASSWORD``, ``_PROJECT``) it runs against a real app. The same
answers, as respx fixtures, drive the adapter's own tests (tests/adapters/test_auto_movie_contract.py).
"""

from __future__ import annotations

import time

import httpx
import pytest

from adapters import AutoMovieClient, PermanentError
from tests.contracts.conftest import Target

UNKNOWN = "0123456789abcdef01234567"  # a well-formed ObjectId no project has
FORBIDDEN = {"errors": [{"message": "You are not allowed to perform this action."}]}


def _v1(target: Target, auth: str | None = "Bearer anything") -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=target.url, headers={"Authorization": auth} if auth else {}, timeout=30)


async def test_v1_takes_any_bearer_and_answers_500_for_an_unknown_or_malformed_project(
    auto_movie: Target,
) -> None:
    """The v1 routes only check the header's form; an unknown or malformed id is a 500, not a 404."""
    pid = auto_movie.extra["project"]
    async with _v1(auto_movie) as http, _v1(auto_movie, None) as anonymous:
        project = await http.get(f"/api/v1/projects/{pid}")
        unknown = await http.get(f"/api/v1/projects/{UNKNOWN}")
        malformed = await http.get("/api/v1/projects/demo-project")
        refused = await anonymous.get(f"/api/v1/projects/{pid}")
        patched = await http.patch(f"/api/v1/projects/{pid}", json={"status": "production"})
    assert project.status_code == 200
    body = project.json()
    assert {"id", "title", "genre", "status", "projectSettings", "progress", "createdBy", "createdAt"} <= set(
        body
    )
    assert (unknown.status_code, unknown.json()) == (500, {"error": "Internal server error"})
    assert (malformed.status_code, malformed.json()) == (500, {"error": "Internal server error"})
    assert (refused.status_code, refused.json()) == (401, {"error": "Authentication required"})
    assert patched.status_code == 405  # the v1 route has GET, PUT and DELETE only


async def test_v1_put_takes_status_ignores_progress_and_answers_500_for_a_bad_status(
    auto_movie: Target,
) -> None:
    """PUT sets status and answers the GET shape; progress is ignored; a status outside the enum is a 500."""
    pid = auto_movie.extra["project"]
    async with _v1(auto_movie) as http:
        before = (await http.get(f"/api/v1/projects/{pid}")).json()
        put = await http.put(f"/api/v1/projects/{pid}", json={"status": "production",
                                                               "progress": {"overallProgress": 99}})  # fmt: skip
        bad = await http.put(f"/api/v1/projects/{pid}", json={"status": "shooting"})
    assert put.status_code == 200
    assert put.json()["status"] == "production"
    assert put.json()["progress"] == before["progress"]
    assert (bad.status_code, bad.json()) == (500, {"error": "Internal server error"})


async def test_payload_login_then_patch_and_403_for_a_missing_or_invalid_token(auto_movie: Target) -> None:
    """Login answers a 2-hour JWT; PATCH with it updates progress; without a valid token it is 403, not 401."""
    pid, email, password = (auto_movie.extra[k] for k in ("project", "email", "password"))
    async with httpx.AsyncClient(base_url=auto_movie.url, timeout=30) as http:
        wrong = await http.post("/api/users/login", json={"email": email, "password": password + "-wrong"})
        login = await http.post("/api/users/login", json={"email": email, "password": password})
        token = login.json()["token"]
        progress = {"progress": {"currentPhase": "visual_design", "completedSteps": ["story_development"],
                                 "overallProgress": 45}}  # fmt: skip
        ok = await http.patch(
            f"/api/projects/{pid}", json=progress, headers={"Authorization": f"JWT {token}"}
        )
        invalid = await http.patch(
            f"/api/projects/{pid}", json=progress, headers={"Authorization": "JWT not-a-token"}
        )
        missing = await http.patch(f"/api/projects/{pid}", json=progress)
        phase = await http.patch(f"/api/projects/{pid}", json={"progress": {"currentPhase": "editing"}},
                                 headers={"Authorization": f"JWT {token}"})  # fmt: skip
        unknown = await http.patch(
            f"/api/projects/{UNKNOWN}", json=progress, headers={"Authorization": f"JWT {token}"}
        )
    assert (wrong.status_code, wrong.json()["errors"][0]["message"]) == (
        401, "The email or password provided is incorrect.")  # fmt: skip
    assert login.status_code == 200
    assert login.json()["message"] == "Authentication Passed"
    assert 7000 < login.json()["exp"] - time.time() <= 7200
    assert ok.status_code == 200
    assert ok.json()["message"] == "Updated successfully."
    assert ok.json()["doc"]["progress"]["currentPhase"] == "visual_design"
    assert (invalid.status_code, invalid.json()) == (403, FORBIDDEN)
    assert (missing.status_code, missing.json()) == (403, FORBIDDEN)
    assert phase.status_code == 400
    assert unknown.status_code == 404


async def test_five_failed_logins_lock_the_user(auto_movie: Target) -> None:
    """Payload's defaults: after 5 failures the user is locked for 10 minutes (stand-in only: never lock a real user)."""
    if auto_movie.real:
        pytest.skip("would lock the real user for 10 minutes")
    email, password = auto_movie.extra["email"], auto_movie.extra["password"]
    async with httpx.AsyncClient(base_url=auto_movie.url, timeout=30) as http:
        for _ in range(5):
            await http.post("/api/users/login", json={"email": email, "password": "nope"})
        locked = await http.post("/api/users/login", json={"email": email, "password": password})
    assert locked.status_code == 401
    assert "locked" in locked.json()["errors"][0]["message"]


async def test_our_client_reads_writes_and_logs_in_again_after_a_403(auto_movie: Target) -> None:
    """AutoMovieClient: the project, its status, progress (a refused token logs in again), an unknown
    project as permanent "not found" (never retried, never an outage)."""
    pid = auto_movie.extra["project"]
    client = AutoMovieClient(auto_movie.url, api_token=auto_movie.key, payload_email=auto_movie.extra["email"],
                             payload_password=auto_movie.extra["password"])  # fmt: skip
    try:
        project = await client.get_project(pid)
        await client.update_status(pid, "production")
        await client.write_progress(pid, "story_development", [], 10)
        client._jwt = "expired-or-invalid"  # what an expired token looks like to the client
        await client.write_progress(pid, "character_creation", ["story_development"], 30)
        with pytest.raises(PermanentError, match="treated as not found") as missing:
            await client.get_project(UNKNOWN)
    finally:
        await client.aclose()
    assert project["id"] == pid
    assert client.logins == 2
    assert missing.value.service == "auto-movie"
