"""An evaluation: every (sample, epoch, agent) answered by a cached task run, then scored.

Each answer is one ``answer-sample`` task run that makes the durable agent call. Its
result is stored under a key made of:

- the agent's configuration (model, fallbacks, instruction, temperature, output schema,
  MCP servers, and which endpoint and credential, never the credential itself);
- the sample's input;
- the epoch;
- the evaluation's name.

So a killed evaluation run again with the same arguments replays the answers it had
(the task runs are ``Cached``) and calls the model only for the rest. A changed agent or
input is a miss. The checks are not part of the key: changing how answers are scored
re-scores them without calling the model. Epochs are independent draws: each epoch's
model requests are stored under their own tenant, so epoch 2 never replays epoch 1.

Example:
    ```python
    from prefect import flow

    from aiorch.agent_blocks import Agent
    from aiorch.tasks.evaluation.datasets import load_dataset
    from aiorch.tasks.evaluation.run import aevaluate

    @flow
    async def check_echo() -> float | None:
        dataset = load_dataset("tests/data/eval/capitals.jsonl")
        echo = Agent(instruction="Repeat the user.", model="passthrough")
        evaluation = await aevaluate(dataset, [echo], epochs=1)
        return evaluation.agents[0].mean
    ```
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import anyio
from prefect import task
from prefect.context import FlowRunContext
from pydantic import ConfigDict, Field

from aiorch.agent_blocks import Agent
from aiorch.core.errors import ConfigurationError
from aiorch.core.models import AiorchModel
from aiorch.tasks.agents.conversation import parse_history
from aiorch.tasks.agents.endpoints import credential_fingerprint
from aiorch.tasks.agents.recording import Recorder, Recording, RecordingDrift, recording, replaying
from aiorch.tasks.agents.task import AgentResult, arun_agent
from aiorch.tasks.blocks import aload_block
from aiorch.tasks.durable import CallOptions, PrecomputedKey, call_stored
from aiorch.tasks.evaluation.checks import ScorerSet
from aiorch.tasks.evaluation.datasets import Dataset
from aiorch.tasks.evaluation.metrics import AgentMetrics, SampleResult, agent_metrics
from aiorch.tasks.evaluation.samples import Check, Sample
from aiorch.tasks.evaluation.scoring import Answer, Scorer, ToolCallRecord
from aiorch.tasks.resilience.problems import problem_from_exception

ANSWER_KEY_VERSION = "aiorch-eval-answer-v2"
EVALUATION_RECORDING_VERSION = "aiorch-evaluation-recording-v1"
DEFAULT_CHECKS = (Check(type="includes", options={"ignore_case": True}),)


class Evaluation(AiorchModel):
    """An evaluation's figures per agent and every result they come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    dataset: str
    dataset_fingerprint: str
    epochs: int
    flow_run_id: str | None = None
    agents: list[AgentMetrics]
    results: list[SampleResult] = Field(description="Sorted by agent, sample, epoch.")


def agent_label(agent: Agent | str) -> str:
    """How results name an agent: its block's name, else its model."""
    if isinstance(agent, str):
        return agent
    return getattr(agent, "_block_document_name", None) or agent.model


def agent_fingerprint(agent: Agent) -> str:
    """What of ``agent`` changes its answers, hashed (the credential only fingerprinted)."""
    settings = agent.model_dump(mode="json", exclude={"provider"})
    settings["endpoint"] = credential_fingerprint(agent.provider)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def answer_key(evaluation: str, agent: Agent, sample: Sample, epoch: int) -> str:
    """The storage key of one answer (see the module's docstring for what is in it)."""
    payload = {
        "version": ANSWER_KEY_VERSION,
        "evaluation": evaluation,
        "agent": agent_fingerprint(agent),
        "input": sample.model_dump(mode="json", include={"input"}),
        "epoch": epoch,
    }
    encoded = json.dumps(payload, sort_keys=True).encode()
    return f"eval-answer-{hashlib.sha256(encoded).hexdigest()}"


def answer_from(result: AgentResult) -> Answer:
    """The parts of an agent call's result scorers read; tool calls from its history."""
    calls = [
        ToolCallRecord(name=call.params.name, arguments=dict(call.params.arguments or {}))
        for message in parse_history(result.history_json)
        for call in (message.tool_calls or {}).values()
    ]
    return Answer(
        text=result.text,
        output=result.output,
        model=result.model,
        usage=result.usage,
        estimated_cost=0.0 if result.cache_hit else result.estimated_cost,
        latency_seconds=result.latency_seconds,
        tool_calls=calls,
        cache_hit=result.cache_hit,
    )


@task(name="answer-sample", cache_policy=PrecomputedKey(), persist_result=True)
async def _answer(agent: Agent, prompt: str, tenant: str, cache_key: str | None) -> Answer:
    recorder = Recorder()
    with recording(recorder):
        result = await arun_agent(agent, prompt, cache_scope="tenant", tenant=tenant)
    return answer_from(result).model_copy(update={"recording": recorder.recording()})


class EvaluationRecording(AiorchModel):
    """Every agent's recorded answer (its first epoch) to every sample: a fixture.

    Replayed (``aevaluate(..., replay=...)``), the agents answer from it with no model,
    no provider key and no MCP server; an agent that asks what was not recorded has
    drifted, and that sample's result is the ``recording-drift`` error saying how.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = EVALUATION_RECORDING_VERSION
    evaluation: str
    dataset_fingerprint: str
    answers: dict[str, dict[str, Recording]] = Field(
        description="Agent, then sample id, to what its answer asked and got."
    )

    @classmethod
    def of(cls, evaluation: Evaluation) -> EvaluationRecording:
        """The recording of ``evaluation``'s first epoch."""
        answers: dict[str, dict[str, Recording]] = {m.agent: {} for m in evaluation.agents}
        for result in evaluation.results:
            if result.epoch == 1 and result.answer and result.answer.recording:
                answers[result.agent][result.sample_id] = result.answer.recording
        return cls(
            evaluation=evaluation.name,
            dataset_fingerprint=evaluation.dataset_fingerprint,
            answers=answers,
        )


def check_arguments(
    agents: Sequence[object], *, epochs: int, max_concurrency: int, ks: Sequence[int]
) -> None:
    """Refuse arguments an evaluation cannot run with, naming the field and the fix."""
    if epochs < 1:
        raise ConfigurationError("epochs: must be at least 1")
    if max_concurrency < 1:
        raise ConfigurationError("max_concurrency: must be at least 1")
    if not agents:
        raise ConfigurationError("agents: pass at least one Agent block or block name")
    for k in ks:
        if not 1 <= k <= epochs:
            raise ConfigurationError(
                f"pass@k: k={k} must be between 1 and the epochs ({epochs}); run more "
                "epochs or ask for a smaller k"
            )


async def aevaluate(
    dataset: Dataset,
    agents: Sequence[Agent | str],
    *,
    epochs: int = 1,
    name: str | None = None,
    max_concurrency: int = 4,
    scorers: Sequence[Scorer] = (),
    default_checks: Sequence[Check] = DEFAULT_CHECKS,
    ks: Sequence[int] = (1,),
    seed: int = 0,
    replay: EvaluationRecording | None = None,
) -> Evaluation:
    """Answer every sample with every agent ``epochs`` times, score, and sum up.

    Call it inside a flow. At most ``max_concurrency`` answers are made at once. A
    sample's checks (else ``default_checks``: the answer includes the target, any case)
    name scorers of the built-in set, the ``aiorch.scorers`` entry point or ``scorers``.
    With ``replay``, the agents answer from that recording instead of their models.

    Raises:
        ConfigurationError: bad arguments, a check naming no known scorer, or an agent
            block that cannot be loaded; before any model is called.
    """
    check_arguments(agents, epochs=epochs, max_concurrency=max_concurrency, ks=ks)
    known = ScorerSet.installed(scorers)
    checks = {s.id: list(s.checks or default_checks) for s in dataset.samples}
    for sample in dataset.samples:
        for index, check in enumerate(checks[sample.id]):
            known.validate(check, f"sample {sample.id}: checks.{index}")
    evaluation = name or dataset.name
    loaded = [
        (agent_label(agent), agent if isinstance(agent, Agent) else await aload_block(Agent, agent))
        for agent in agents
    ]
    labels = [label for label, _ in loaded]
    if len(set(labels)) != len(labels):
        raise ConfigurationError(
            "agents: two agents have the same name; save them as blocks with their own names"
        )
    slots = anyio.Semaphore(max_concurrency)
    results: list[SampleResult] = []

    async def one(label: str, agent: Agent, sample: Sample, epoch: int) -> None:
        async with slots:
            results.append(
                await _evaluate_one(
                    known, evaluation, label, agent, sample, epoch, checks[sample.id], replay
                )
            )

    async with anyio.create_task_group() as group:
        for label, agent in loaded:
            for sample in dataset.samples:
                for epoch in range(1, epochs + 1):
                    group.start_soon(one, label, agent, sample, epoch)
    results.sort(key=lambda r: (labels.index(r.agent), r.sample_id, r.epoch))
    context = FlowRunContext.get()
    return Evaluation(
        name=evaluation,
        dataset=dataset.source,
        dataset_fingerprint=dataset.fingerprint,
        epochs=epochs,
        flow_run_id=str(context.flow_run.id) if context and context.flow_run else None,
        agents=[
            agent_metrics(label, [r for r in results if r.agent == label], ks=ks, seed=seed)
            for label in labels
        ],
        results=results,
    )


async def _evaluate_one(
    known: ScorerSet,
    evaluation: str,
    label: str,
    agent: Agent,
    sample: Sample,
    epoch: int,
    checks: list[Check],
    replay: EvaluationRecording | None,
) -> SampleResult:
    tenant = f"aiorch-eval/{evaluation}/epoch-{epoch}"
    run_name = f"{label} · {sample.id} · epoch {epoch}"
    try:
        if replay is not None:
            recorded = replay.answers.get(label, {}).get(sample.id)
            if recorded is None:
                raise RecordingDrift(
                    f"sample {sample.id} of agent {label} is not in the recording (a new "
                    "sample or agent: record it)"
                )
            # Replays are not stored: they cost nothing, and a stored one would hide drift.
            with replaying(recorded):
                stored = await call_stored(
                    _answer,
                    CallOptions(run_name=f"{run_name} · replay", cache=False),
                    agent,
                    sample.prompt(),
                    tenant,
                    cache_key=None,
                )
        else:
            stored = await call_stored(
                _answer,
                CallOptions(run_name=run_name),
                agent,
                sample.prompt(),
                tenant,
                cache_key=answer_key(evaluation, agent, sample, epoch),
            )
    except Exception as error:  # one sample's failure is its own result, not the run's
        problem = problem_from_exception(error)
        return SampleResult(
            sample_id=sample.id,
            epoch=epoch,
            agent=label,
            error=f"{problem.kind}: {problem.detail}",
        )
    answer: Answer = stored.value
    if stored.cache_hit:  # replayed from an earlier run: nothing new was spent
        answer = answer.model_copy(update={"cache_hit": True, "estimated_cost": 0.0})
    scores = [
        await known.resolve(check.type, "check").score(sample, answer, check) for check in checks
    ]
    return SampleResult(
        sample_id=sample.id,
        epoch=epoch,
        agent=label,
        answer=answer,
        scores=scores,
        weights=[check.weight for check in checks],
    )
