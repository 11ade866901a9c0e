"""The aiorch demo: the project's main job, run by ``scripts/demo``.

It surveys the platform, counts words in a text with one task per chunk (a fan-out the
Prefect UI shows as parallel task runs), merges the counts, asks an agent what the text
is about (the bundled local model when the ``model`` extra is installed, otherwise
FastAgent's passthrough model, with a notice saying so), runs the data pipeline
(container steps, on the local runner unless told otherwise) as a subflow, lets an
agent team talk over the message bus (the ``agent-team`` subflow: a broadcast, drafts by
RPC, a review routed by capability; its run report draws the conversation), and publishes
a markdown artifact, keyed ``aiorch-demo``, that says what it did. While it counts,
the progress artifact ``aiorch-demo-progress`` follows the fan-out; when it ends, the
run report (``aiorch-demo-run-report``: table, dependency graph, timeline) is published.

Example:
    ```python
    from aiorch.flows.demo import demo_flow

    result = demo_flow(top=3)
    print(result.flow_run_id, result.stats.top)
    ```
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from typing import Annotated, Literal, cast
from uuid import UUID

import docker
from docker.errors import DockerException, ImageNotFound
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.runtime import flow_run
from prefect.settings import get_current_settings
from pydantic import Field

from aiorch.agent_blocks import Agent, ModelProvider
from aiorch.agent_blocks.provider import LOCAL_MODEL
from aiorch.core.local_server import LocalServer, LocalServerState, on_local_server
from aiorch.core.markdown import table_cell
from aiorch.core.models import AiorchModel
from aiorch.core.prefect_internals import run_sync
from aiorch.core.settings import load_settings
from aiorch.core.ui import ui_link
from aiorch.deploy.images import BUSYBOX_IMAGE, build_busybox_image, busybox_binary
from aiorch.flows.agent_team import TeamResult, agent_team
from aiorch.flows.data_pipeline import PipelineResult, data_pipeline
from aiorch.tasks.agents.local_model import INSTALL_HINT, local_model_installed
from aiorch.tasks.agents.task import AgentResult, run_agent
from aiorch.tasks.container import RunnerKind
from aiorch.tasks.monitoring.alerts import evaluate_alerts
from aiorch.tasks.monitoring.progress import wait_with_progress
from aiorch.tasks.monitoring.run_report import publish_run_report
from aiorch.tasks.platform import PlatformSurvey, survey_platform

ARTIFACT_KEY = "aiorch-demo"
PROGRESS_KEY = "aiorch-demo-progress"

DEFAULT_TEXT = """\
aiorch runs containerised steps and language model agents as Prefect flows.
Every step is a Prefect task: retries, caching and logs come from Prefect.
Container steps run on Dagger, on Docker, or as local processes.
Agent calls run through FastAgent, configured by Prefect blocks.
Completed steps and model calls replay from cache when a flow is retried.
Artifacts and events make every run visible in the Prefect UI.
"""


class WordStats(AiorchModel):
    """Word counts merged from every chunk of the demo text."""

    chunks: int
    words: int
    distinct: int
    top: list[tuple[str, int]]


AgentChoice = Literal["auto", "local", "passthrough"]
SUMMARY_INSTRUCTION = "You describe texts in one short sentence."
TEAM_BRIEF = "Suggest a name for a tool that runs AI agents as durable workflows."


class AgentStep(AiorchModel):
    """What the demo's agent call did."""

    result: AgentResult
    notice: str | None = Field(
        default=None, description="Why the passthrough model stood in for the local one."
    )


class DemoResult(AiorchModel):
    """What one demo run produced."""

    flow_run_id: UUID
    artifact_key: str
    survey: PlatformSurvey
    stats: WordStats
    agent: AgentStep
    pipeline: PipelineResult
    team: TeamResult


def demo_agent(choice: AgentChoice) -> tuple[Agent, str | None]:
    """The agent the demo asks, and a notice when the local model is not used."""
    if choice == "local" or (choice == "auto" and local_model_installed()):
        local = Agent(
            instruction=SUMMARY_INSTRUCTION,
            model=LOCAL_MODEL,
            provider=ModelProvider(kind="local"),
            temperature=0,
            max_tokens=48,
        )
        return local, None
    notice = None
    if choice == "auto":
        notice = (
            f"the local model is not installed, so the passthrough model answered: {INSTALL_HINT}"
        )
    return Agent(instruction=SUMMARY_INSTRUCTION, model="passthrough"), notice


@task(name="survey-platform", tags=["aiorch", "demo"])
def survey() -> PlatformSurvey:
    """Record versions, the Prefect API and the runners usable from this run."""
    return survey_platform()


@task(name="count-words", tags=["aiorch", "demo"])
def count_words(chunk: str) -> dict[str, int]:
    """Count the words of one chunk, case-insensitively."""
    return dict(Counter(re.findall(r"[a-z][a-z'-]*", chunk.lower())))


@task(name="merge-counts", tags=["aiorch", "demo"])
def merge_counts(counts: list[dict[str, int]], top: int) -> WordStats:
    """Merge per-chunk counts; ties in the top list are broken alphabetically."""
    total: Counter[str] = Counter()
    for chunk_counts in counts:
        total.update(chunk_counts)
    ranked = sorted(total.items(), key=lambda item: (-item[1], item[0]))
    return WordStats(
        chunks=len(counts),
        words=sum(total.values()),
        distinct=len(total),
        top=ranked[:top],
    )


def render_report(
    run_id: UUID,
    survey: PlatformSurvey,
    stats: WordStats,
    agent: AgentStep,
    pipeline: PipelineResult,
    team: TeamResult,
) -> str:
    """The markdown the demo publishes: steps, a task graph, the platform and the words."""
    fan_out = "\n".join(
        f"    count{index}[count-words {index}] --> merge[merge-counts]"
        for index in range(stats.chunks)
    )
    runners = "\n".join(
        f"| {runner.kind} | {'yes' if runner.available else 'no'} | {table_cell(runner.detail)} |"
        for runner in survey.runners
    )
    packages = ", ".join(f"{name} {version}" for name, version in survey.packages.items())
    words = "\n".join(f"| {table_cell(word)} | {count} |" for word, count in stats.top)
    runner = pipeline.steps[0].runner.value if pipeline.steps else "none"
    zones = sum(region.zones for region in pipeline.regions)
    pipeline_summary = (
        f"summarised {zones} time zones in {len(pipeline.regions)} regions with "
        f"{len(pipeline.steps)} container steps on the {runner} runner, "
        f"{pipeline.cache_hits} from cache"
    )
    answer = agent.result
    agent_summary = (
        f"{answer.model} answered in {answer.latency_seconds:.2f} s "
        f"({answer.usage.total_tokens} tokens): {table_cell(answer.text.strip())}"
    )
    team_summary = (
        f"{len(team.drafts)} writers drafted over the message bus; the reviewer said: "
        f"{table_cell(team.review.strip())}"
    )
    notice = f"\n> **Notice:** {agent.notice}\n" if agent.notice else ""
    return f"""# aiorch demo

Flow run `{run_id}` ran {stats.chunks + 4} tasks.
{notice}
| step | what it did |
|---|---|
| survey-platform | found Python {survey.python}; Prefect API: {table_cell(survey.prefect_api)} |
| count-words x {stats.chunks} | counted {stats.words} words, one task per chunk |
| merge-counts | merged them into {stats.distinct} distinct words |
| agent-call | {agent_summary} |
| aiorch-data-pipeline | {pipeline_summary} |
| agent-team | {team_summary} |
| publish-report | published this artifact |

```mermaid
flowchart LR
    survey[survey-platform] --> report[publish-report]
{fan_out}
    merge --> agent[agent-call] --> report
    pipeline[[aiorch-data-pipeline subflow]] --> report
    team[[agent-team subflow]] --> report
```

## Runners for container steps

| runner | available | detail |
|---|---|---|
{runners}

Packages: {packages}.

## Most frequent words

| word | count |
|---|---|
{words}
"""


@task(name="publish-report", tags=["aiorch", "demo"])
def publish_report(
    survey: PlatformSurvey,
    stats: WordStats,
    agent: AgentStep,
    pipeline: PipelineResult,
    team: TeamResult,
) -> UUID:
    """Publish the run's markdown report as the keyed ``aiorch-demo`` artifact."""
    run_id = UUID(flow_run.get_id())
    # Called from a sync task, Prefect's sync/async dual function returns the id itself.
    return cast(
        UUID,
        create_markdown_artifact(
            key=ARTIFACT_KEY,
            markdown=render_report(run_id, survey, stats, agent, pipeline, team),
            description="What the aiorch demo flow did in this run.",
        ),
    )


@flow(
    name="aiorch-demo",
    on_completion=[publish_run_report, evaluate_alerts],
    on_failure=[publish_run_report, evaluate_alerts],
)
def demo_flow(
    text: Annotated[str, Field(min_length=1, description="Text to count words in.")] = DEFAULT_TEXT,
    chunk_lines: Annotated[int, Field(ge=1, description="Lines of text per task.")] = 2,
    top: Annotated[int, Field(ge=1, description="How many frequent words to report.")] = 5,
    runner: RunnerKind = RunnerKind.LOCAL,
    agent_model: AgentChoice = "auto",
) -> DemoResult:
    """Survey the platform, count words in parallel tasks, ask an agent, run the pipeline.

    ``runner`` is where the data pipeline's container steps run: ``local`` works on any
    machine; ``docker`` needs the image (``aiorch image busybox``). ``agent_model``:
    ``local`` is the bundled model (the ``model`` extra), ``passthrough`` FastAgent's
    echo model, ``auto`` the local model when it is installed.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    chunks = ["\n".join(lines[i : i + chunk_lines]) for i in range(0, len(lines), chunk_lines)]
    platform_survey = survey.submit()
    counts = wait_with_progress(
        count_words.map(chunks), key=PROGRESS_KEY, description="Chunks counted"
    )
    stats = merge_counts(counts, top)
    agent, notice = demo_agent(agent_model)
    if notice:
        get_run_logger().warning("Notice: %s", notice)
    words = ", ".join(word for word, _ in stats.top)
    answer = run_agent(agent, f"A text's most frequent words are: {words}. What is it about?")
    agent_step = AgentStep(result=answer, notice=notice)
    pipeline = data_pipeline(runner=runner)
    team = run_sync(
        agent_team(
            brief=TEAM_BRIEF,
            writers=2,
            agent_model="passthrough" if agent.model == "passthrough" else "local",
        )
    )
    publish_report(platform_survey.result(), stats, agent_step, pipeline, team)
    return DemoResult(
        flow_run_id=UUID(flow_run.get_id()),
        artifact_key=ARTIFACT_KEY,
        survey=platform_survey.result(),
        stats=stats,
        agent=agent_step,
        pipeline=pipeline,
        team=team,
    )


def ui_instructions(run_id: UUID, server: LocalServerState | None) -> str:
    """How to look at this run in the Prefect UI."""
    link = ui_link(f"runs/flow-run/{run_id}")
    if link is None:
        return f"The Prefect API has no UI to show flow run {run_id} in."
    if server is None:
        return f"See the run in the Prefect UI: {link}"
    idle = load_settings().local_server_idle_seconds
    return (
        f"See the run in the Prefect UI: {link}\n"
        f"(aiorch's local Prefect server for PREFECT_HOME={get_current_settings().home}; "
        f"it stops after {idle / 60:g} min without flow runs, or with `aiorch server stop`)"
    )


def demo_runner() -> tuple[RunnerKind, str]:
    """Docker when an engine answers (its small image built on first use), else local."""
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except DockerException:
        return RunnerKind.LOCAL, "no Docker engine answers: container steps run as local processes"
    try:
        client.images.get(BUSYBOX_IMAGE)
    except ImageNotFound:
        busybox = busybox_binary()
        if busybox is None:
            return RunnerKind.LOCAL, (
                f"Docker is up but {BUSYBOX_IMAGE} is missing and no busybox binary can build "
                "it (apt-get install busybox-static): container steps run as local processes"
            )
        build_busybox_image(client, busybox, BUSYBOX_IMAGE)
        return RunnerKind.DOCKER, f"container steps run in Docker ({BUSYBOX_IMAGE}, built now)"
    finally:
        client.close()
    return RunnerKind.DOCKER, f"container steps run in Docker ({BUSYBOX_IMAGE})"


def summary(result: DemoResult) -> str:
    """What a person wants to see of a run: the answer, the words, where steps ran."""
    steps = result.pipeline.steps
    where = Counter(step.runner.value for step in steps)
    placed = ", ".join(f"{count} on {runner}" for runner, count in sorted(where.items()))
    words = ", ".join(f"{word} ({count})" for word, count in result.stats.top)
    answer = " ".join(result.agent.result.text.split())
    return "\n".join(
        [
            f"agent ({result.agent.result.model}): {answer}",
            f"top words: {words}",
            f"container steps: {len(steps)} ({placed}), "
            f"{result.pipeline.cache_hits} served from cache",
            f"agent team: {len(result.team.drafts)} drafts over the message bus; review: "
            + " ".join(result.team.review.split()),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Run the demo, check its artifact through the API, print what it did and a UI link."""
    parser = argparse.ArgumentParser(description="Run the aiorch demo flow.")
    parser.add_argument(
        "--quick", action="store_true", help="FastAgent's passthrough model, not the local one"
    )
    arguments = parser.parse_args(argv)
    runner, reason = demo_runner()
    print(f"demo: {reason}")
    with on_local_server(LocalServer.configured()) as server:
        if server is not None:
            print(f"demo: Prefect API {server.api_url} (aiorch's local server)")
        state = demo_flow(
            runner=runner,
            agent_model="passthrough" if arguments.quick else "auto",
            return_state=True,
        )
        run_id = state.state_details.flow_run_id
        print(f"flow run id: {run_id}")
        if not state.is_completed() or run_id is None:
            print(f"demo flow ended {state.name}: {state.message}", file=sys.stderr)
            return 1
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[ARTIFACT_KEY]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
                )
            )
        if not artifacts:
            print(f"artifact {ARTIFACT_KEY!r} is missing from the Prefect API", file=sys.stderr)
            return 1
        print(f"artifact {ARTIFACT_KEY!r} ({artifacts[0].id}) is visible through the Prefect API")
        print(summary(state.result()))
        print(ui_instructions(run_id, server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
