"""In-process fakes of the ports, for running the graphs without services."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters import CapabilityMissingError, PermanentError, RecoverableError
from graphs import LocalWriter, Ports, ProductionOptions


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the graph catches it."""


@dataclass
class FakeTasks:
    """Task Service fake: scripted story scores, failing task types, a crash on a chosen step."""

    scores: list[float] = field(default_factory=lambda: [85.0])
    failing_types: set[str] = field(default_factory=set)
    crash_on: str = ""
    submits: Counter[str] = field(default_factory=Counter)
    _score_iter: Any = None

    async def run_task(self, step_key: str, task_type: str, task_data: dict[str, Any]) -> dict[str, Any]:
        if self.crash_on and step_key.startswith(self.crash_on):
            self.crash_on = ""
            raise Crash(step_key)
        self.submits[step_key] += 1
        if task_type in self.failing_types:
            reason = "'Context' object has no attribute 'started_at'"
            msg = f"task-service {task_type} job j-1 for step {step_key!r} failed: {reason}"
            raise RecoverableError(msg).about(
                service="task-service", operation=task_type, step=step_key, reason=reason
            )
        if task_type == "evaluate_department":
            assert all(isinstance(item, dict) for item in task_data["gather_data"]), (
                "gather_data is a list of objects"
            )
            if task_data["department_slug"] == "story":
                if self._score_iter is None:
                    self._score_iter = itertools.chain(self.scores, itertools.repeat(self.scores[-1]))
                return {"task_id": step_key, "rating": next(self._score_iter), "status": "completed"}
            return {"task_id": step_key, "rating": 80, "status": "completed"}
        ext = {"generate_image": "png", "process_audio": "wav", "generate_video": "mp4"}[task_type]
        return {"task_id": step_key, "result_url": f"http://media/{step_key}.{ext}", "status": "completed"}


@dataclass
class FakeBrain:
    """Brain fake with real ids and a trivial similarity; like the deployed Brain, it has only the two tools."""

    characters: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)

    async def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        self.calls[tool] += 1
        if tool == "create_character":
            cid = f"c{len(self.characters) + 1}"
            self.characters[cid] = args
            return {"status": "success", "character_id": cid}
        if tool == "find_similar_characters":
            return {"status": "success", "results": [{"id": k, "name": v["name"], "similarity_score": 0.5}
                                                     for k, v in self.characters.items()]}  # fmt: skip
        msg = f"brain {tool} refused: Unknown tool: {tool}"
        raise CapabilityMissingError(msg).about(
            service="brain", operation=tool, reason=f"Unknown tool: {tool}"
        )


@dataclass
class FakeAutoMovie:
    """Auto-Movie fake recording progress and status."""

    progress: list[tuple[str, float]] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    missing: bool = False

    async def get_project(self, project_id: str) -> dict[str, Any]:
        if self.missing:
            msg = "auto-movie answered 404: Project not found"
            raise PermanentError(msg)
        return {"id": project_id, "genre": "scifi", "projectSettings": {"aspectRatio": "16:9"}}

    async def write_progress(self, project_id: str, phase: str, completed: list[str], percent: float) -> None:
        self.progress.append((phase, percent))

    async def set_status(self, project_id: str, status: str) -> None:
        self.statuses.append(status)


@dataclass
class FakeMemo:
    """Memo in a dict."""

    data: dict[str, Any] = field(default_factory=dict)

    async def get(self, key: str) -> Any | None:
        return self.data.get(key)

    async def put(self, key: str, value: Any) -> None:
        self.data[key] = json.loads(json.dumps(value))


@dataclass
class FakeFiles:
    """Files in a folder."""

    root: Path

    async def write_file(self, name: str, content: str | bytes) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return str(path)


@dataclass
class World:
    """All the fakes of one test, and the Ports made of them."""

    root: Path
    tasks: FakeTasks = field(default_factory=FakeTasks)
    brain: FakeBrain = field(default_factory=FakeBrain)
    auto_movie: FakeAutoMovie = field(default_factory=FakeAutoMovie)
    memo: FakeMemo = field(default_factory=FakeMemo)
    agent_events: list[tuple[str, str, Mapping[str, str]]] = field(default_factory=list)
    # The run's options, as a workflow's record would hold them (the engine parses them into the ports).
    options: dict[str, Any] = field(default_factory=dict)

    def ports(self) -> Ports:
        return Ports(
            workflow_id="wf-test",
            project_id="p1",
            tasks=self.tasks,
            brain=self.brain,
            auto_movie=self.auto_movie,
            writer=LocalWriter(),
            memo=self.memo,
            files=FakeFiles(self.root),
            on_agent=lambda a, o, d: self.agent_events.append((a, o, d)),
            options=ProductionOptions.model_validate(self.options),
        )
