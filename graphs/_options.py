"""The options of each workflow: a typed contract with defaults and bounds, unknown keys refused.

Bounds come from the production's design (README, "Workflow options"):

- ``scenes`` 1-24: one production makes one episode (the breakdown yields episode 1); a 22-24 minute
  episode at about a minute a scene is ~24 scenes. Each scene is a parallel branch of 7 agents and 3
  Task Service jobs, so 24 keeps the widest step at 24 and the largest production at ~275 agent runs.
  A longer film is several productions (Auto-Movie projects have up to 50 episodes).
- ``characters`` 1-10: the Brain's ``find_similar_characters`` answers at most 10 results, so with a cast
  of up to 10 every other member can show up in one consistency check.
- ``concept_count`` 1-5: a human chooses among them; the writers have five distinct angles and tones,
  so a sixth concept would repeat one. "more" asks for another batch.
- ``max_revisions`` 0-5: each revision is a writer call and a Task Service evaluation; after K below the
  bar a human decides (and may ask for one more at a time).
- ``story_threshold`` 0-100: the evaluator's score scale (the registry's quality gates use the same).

Every workflow may also ask for less than the deployment's budgets (``max_*``; see server settings).

Stored workflows from before this contract keep running: `read_options` reads leniently (unknown keys
dropped, numbers clamped into their bounds, unreadable values replaced by the default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.errors import OptionError

__all__ = [
    "CharacterDevelopmentOptions",
    "DiagnosticLinearOptions",
    "EpisodeProductionOptions",
    "MovieProductionOptions",
    "PreviewOptions",
    "ProductionOptions",
    "WorkflowOptions",
    "allowed",
    "read_options",
    "repaired",
    "validate_options",
]

MAX_SCENES = 24
MAX_CHARACTERS = 10
MAX_CONCEPTS = 5
MAX_REVISIONS = 5

Genre = Literal[
    "action", "comedy", "drama", "scifi", "fantasy", "horror", "documentary", "animation", "thriller", "romance",
    "other",
]  # fmt: skip

Scenes = Annotated[
    int, Field(ge=1, le=MAX_SCENES, description="scenes of the episode, each produced in parallel")
]
Characters = Annotated[
    int, Field(ge=1, le=MAX_CHARACTERS, description="cast size; each character is developed in parallel")
]
ConceptCount = Annotated[
    int, Field(ge=1, le=MAX_CONCEPTS, description="concepts offered per round of the concept choice")
]
MaxRevisions = Annotated[
    int, Field(ge=0, le=MAX_REVISIONS, description="story revisions before a human decides")
]
StoryThreshold = Annotated[
    float, Field(ge=0, le=100, description="score (0-100) the story must reach to pass its quality gate")
]
AutoApprove = Annotated[
    bool, Field(description="take the recommended answer of every decision instead of asking a human")
]
GenreOption = Annotated[Genre, Field(description="genre used when the Auto-Movie project cannot be read")]
Title = Annotated[
    str, Field(min_length=1, max_length=200, description="working title (the brief is the concept)")
]


class WorkflowOptions(BaseModel):
    """Options every workflow takes: a request for less than the deployment's budgets."""

    # Strict at the door: a JSON client sends 6, not "6", and true, not 1; stored options are read laxly.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_agent_executions: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="stop after this many agent executions (at most the deployment's)",
    )
    max_outside_jobs: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="stop after this many Task Service jobs (at most the deployment's)",
    )
    max_fan_out: int | None = Field(
        default=None, ge=1, le=10_000, description="widest parallel step allowed (at most the deployment's)"
    )
    max_step_seconds: float | None = Field(
        default=None,
        gt=0,
        le=86_400,
        description="longest one step may run, in seconds (at most the deployment's)",
    )


class DiagnosticLinearOptions(WorkflowOptions):
    """Options of ``diagnostic_linear``: budgets only."""


class PreviewOptions(WorkflowOptions):
    """Options of ``preview``: budgets only."""


class CharacterDevelopmentOptions(WorkflowOptions):
    """Options of ``character_development``."""

    characters: Characters = 3
    genre: GenreOption = "drama"
    title: Title = "Episode"


class _StoryOptions(WorkflowOptions):
    """The options every production workflow takes, with their defaults (declared once)."""

    scenes: Scenes = 6
    characters: Characters = 3
    max_revisions: MaxRevisions = 2
    story_threshold: StoryThreshold = 70.0
    auto_approve: AutoApprove = False
    genre: GenreOption = "drama"


class EpisodeProductionOptions(_StoryOptions):
    """Options of ``episode_production``."""

    title: Title = "Episode"


class MovieProductionOptions(_StoryOptions):
    """Options of ``movie_production``."""

    concept_count: ConceptCount = 3


class ProductionOptions(_StoryOptions):
    """What the production graphs' shared nodes read: every production option, with its default.

    Callers never send this model; each workflow's own model (a subset) guards the door.
    """

    concept_count: ConceptCount = 3
    title: Title = "Episode"


M = TypeVar("M", bound=WorkflowOptions)


def _clamp(model: type[WorkflowOptions], name: str, value: Any) -> Any:
    """A number brought into the field's bounds, or None when that is not possible."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    lo: float | None = None
    hi: float | None = None
    for meta in model.model_fields[name].metadata:
        if isinstance(meta, annotated_types.Ge | annotated_types.Gt):
            lo = float(meta.ge if isinstance(meta, annotated_types.Ge) else meta.gt)  # type: ignore[arg-type]
        elif isinstance(meta, annotated_types.Le | annotated_types.Lt):
            hi = float(meta.le if isinstance(meta, annotated_types.Le) else meta.lt)  # type: ignore[arg-type]
    clamped = float(value)
    if lo is not None:
        clamped = max(lo, clamped)
    if hi is not None:
        clamped = min(hi, clamped)
    return int(clamped) if isinstance(value, int) or clamped.is_integer() else clamped


def read_options(model: type[M], raw: Mapping[str, Any] | BaseModel | None) -> M:
    """The options of a stored workflow, read leniently so that old records keep running.

    Options written since the contract exists validate as they are. Older ones are repaired: unknown
    keys are dropped, numbers are clamped into their bounds and anything else unreadable takes the
    default, so a record stored with ``scenes: 10**9`` runs with the largest allowed value instead.
    """
    if isinstance(raw, model):
        return raw
    data: dict[str, Any] = raw.model_dump() if isinstance(raw, BaseModel) else dict(raw or {})
    try:
        return model.model_validate(data, strict=False)
    except ValidationError:
        pass
    kept: dict[str, Any] = {}
    for name, value in data.items():
        if name not in model.model_fields:
            continue
        for candidate in (value, _clamp(model, name, value)):
            if candidate is None:
                continue
            try:
                model.model_validate({name: candidate}, strict=False)
            except ValidationError:
                continue
            kept[name] = candidate
            break
    return model.model_validate(kept, strict=False)


def repaired(model: type[WorkflowOptions], raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """What `read_options` changed in stored options, as {option: (stored, used)} (for a log line)."""
    data = dict(raw or {})
    used = read_options(model, data).model_dump()
    return {k: (v, used.get(k, "dropped")) for k, v in data.items() if used.get(k, "dropped") != v}


def allowed(model: type[WorkflowOptions], name: str) -> str:
    """What an option of `model` accepts, in words (from its JSON schema)."""
    prop: dict[str, Any] = model.model_json_schema()["properties"][name]
    branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
    schema = branches[0] if branches else prop
    kind = schema.get("type")
    if "enum" in schema:
        return f"one of {schema['enum']}"
    if kind == "boolean":
        return "true or false"
    if kind == "string":
        return f"text of {schema.get('minLength', 0)} to {schema.get('maxLength', 'any')} characters"
    noun = "an integer" if kind == "integer" else "a number"
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum", schema.get("exclusiveMaximum"))
    if lo is not None and hi is not None and "exclusiveMinimum" in schema:
        return f"{noun} above {lo:g} and at most {hi:g}"
    if lo is not None and hi is not None:
        return f"{noun} from {lo:g} to {hi:g}"
    return noun


def validate_options(workflow: str, model: type[M], raw: Mapping[str, Any] | None) -> M:
    """The options of a new workflow, strictly: every problem is refused.

    Raises:
        OptionError: the first option that is unknown or out of its bounds (the option, value, allowed).
    """
    if raw is not None and not isinstance(raw, Mapping):
        raise OptionError(workflow, "options", raw, "an object of option names to values")
    try:
        return model.model_validate(dict(raw or {}))
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "options"
        if err["type"] == "extra_forbidden" or name not in model.model_fields:
            names = ", ".join(sorted(model.model_fields))
            raise OptionError(workflow, name, err["input"], names, unknown=True) from None
        raise OptionError(workflow, name, err["input"], allowed(model, name)) from None
