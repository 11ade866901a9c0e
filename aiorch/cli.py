"""The ``aiorch`` command: run workflows, build images, set up and promote environments.

Examples:
    ```bash
    aiorch run data-pipeline --runner docker --param image=busybox:1.36
    aiorch run demo --param top=3
    aiorch server start   # or status, stop: the local server `aiorch run` shares
    aiorch runners
    aiorch image busybox
    aiorch image python-base && aiorch image flows --base aiorch/python-base:trixie
    aiorch model capabilities openai.gpt-4.1-mini
    aiorch model probe generic.my-model --provider my-endpoint
    aiorch model serve --host 0.0.0.0 --port 8080   # AIORCH_LOCAL_MODEL_URL elsewhere
    aiorch environment apply dev
    aiorch block create agent aiorch-assistant --model generic.smollm2 --provider aiorch-local
    aiorch compare 3f2a... 9c41...
    aiorch breakers --artifact
    aiorch breaker "engine:docker:default" open
    aiorch messages dead-letters && aiorch messages redeliver 3
    aiorch eval run tests/data/eval/capitals.jsonl --agent aiorch-assistant --min-score 0.8
    aiorch eval run tests/data/eval/capitals.jsonl --agent aiorch-assistant --baseline RUN_ID
    aiorch promote ask-agent --from dev --evaluation RUN_ID   # to staging, if it passed
    aiorch auth token create --role operator --expires 30d --name ci
    aiorch gateway --upstream http://127.0.0.1:4200
    ```
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, cast
from uuid import UUID

from prefect import Flow
from prefect.client.schemas.objects import State

from aiorch.backup.commands import add_commands as add_backup_commands
from aiorch.core.ui import v2_base
from aiorch.gateway.commands import add_commands as add_gateway_commands
from aiorch.metrics.commands import add_commands as add_metrics_commands
from aiorch.tasks.container.select import runner_statuses

Loader = Callable[[], Flow[..., Any]]


def _demo() -> Flow[..., Any]:
    from aiorch.flows.demo import demo_flow

    return demo_flow


def _data_pipeline() -> Flow[..., Any]:
    from aiorch.flows.data_pipeline import data_pipeline

    return data_pipeline


def _breaker_states() -> Flow[..., Any]:
    from aiorch.flows.breaker_states import breaker_states

    return breaker_states


def _ask_agent() -> Flow[..., Any]:
    from aiorch.flows.ask_agent import ask_agent

    return ask_agent


def _dagger_check() -> Flow[..., Any]:
    from aiorch.flows.dagger_check import dagger_check

    return dagger_check


WORKFLOWS: dict[str, Loader] = {
    "demo": _demo,
    "data-pipeline": _data_pipeline,
    "dagger-check": _dagger_check,
    "breaker-states": _breaker_states,
    "ask-agent": _ask_agent,
}


def _parameter(text: str) -> tuple[str, Any]:
    name, separator, raw = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"--param {text!r} must look like NAME=VALUE")
    try:
        return name, json.loads(raw)
    except json.JSONDecodeError:
        return name, raw


def _run(arguments: argparse.Namespace) -> int:
    workflow = WORKFLOWS[arguments.workflow]()
    parameters = dict(arguments.param)
    if arguments.runner is not None:
        if "runner" not in workflow.parameters.properties:
            print(f"{arguments.workflow} takes no runner", file=sys.stderr)
            return 2
        parameters["runner"] = arguments.runner
    unknown = set(parameters) - set(workflow.parameters.properties)
    if unknown:
        known = ", ".join(sorted(workflow.parameters.properties))
        print(
            f"unknown parameter(s) {sorted(unknown)}; {arguments.workflow} takes: {known}",
            file=sys.stderr,
        )
        return 2
    from aiorch.core.local_server import LocalServer, on_local_server
    from aiorch.core.ui import ui_link

    with on_local_server(LocalServer.configured()) as server:
        if server is not None:
            print(f"Prefect API: {server.api_url} (aiorch's local server; `aiorch server stop`)")
        state = cast(State[Any], workflow(**parameters, return_state=True))
        run_id = state.state_details.flow_run_id
        print(f"flow run id: {run_id}")
        print(f"state: {state.name}{f' ({state.message})' if state.message else ''}")
        link = ui_link(f"runs/flow-run/{run_id}")
        if link:
            print(f"Prefect UI: {link}")
    return 0 if state.is_completed() else 1


def _eval(arguments: argparse.Namespace) -> int:
    import functools

    import anyio

    from aiorch.agent_blocks import Agent
    from aiorch.core.errors import AiorchError
    from aiorch.core.local_server import LocalServer, on_local_server
    from aiorch.core.prefect_internals import run_sync
    from aiorch.core.ui import ui_link
    from aiorch.flows.evaluate import EvaluationReport, evaluate_flow
    from aiorch.tasks.blocks import load_block
    from aiorch.tasks.evaluation.baseline import aload_baseline
    from aiorch.tasks.evaluation.datasets import load_dataset
    from aiorch.tasks.evaluation.gate import BAD_INPUT, summary_markdown
    from aiorch.tasks.evaluation.run import EvaluationRecording, check_arguments

    ks = arguments.pass_at or [1]
    # Checked before the flow starts: a bad dataset or option is two lines here, not a
    # failed flow run with Prefect's tracebacks.
    check_arguments(
        arguments.agent, epochs=arguments.epochs, max_concurrency=arguments.concurrency, ks=ks
    )
    # aiorch's own loader of a local file, not Hugging Face's (bandit matches the name).
    dataset = load_dataset(arguments.dataset)  # nosec B615
    replay = None
    if arguments.replay is not None:
        replay = EvaluationRecording.model_validate_json(arguments.replay.read_text())
    with on_local_server(LocalServer.configured()) as server:
        if server is not None:
            print(f"Prefect API: {server.api_url} (aiorch's local server; `aiorch server stop`)")
        for name in arguments.agent:
            try:
                load_block(Agent, name)
            except AiorchError as error:
                print(f"aiorch eval: --agent {name}: {error}", file=sys.stderr)
                return BAD_INPUT
        if arguments.baseline is not None:
            try:
                earlier = run_sync(
                    aload_baseline(arguments.baseline, evaluation=arguments.name or dataset.name)
                )
                earlier.check_fits(arguments.agent, [sample.id for sample in dataset.samples])
            except AiorchError as error:
                print(f"aiorch eval: --{error}", file=sys.stderr)
                return BAD_INPUT
        evaluation_run = functools.partial(
            evaluate_flow,
            dataset=str(Path(arguments.dataset).resolve()),
            agents=arguments.agent,
            epochs=arguments.epochs,
            name=arguments.name,
            max_concurrency=arguments.concurrency,
            min_score=arguments.min_score,
            max_errors=arguments.max_errors,
            pass_at=ks,
            seed=arguments.seed,
            replay=replay,
            baseline=arguments.baseline,
            return_state=True,
        )
        state = cast(State[EvaluationReport], anyio.run(evaluation_run))
        run_id = state.state_details.flow_run_id
        report = state.result()
        link = ui_link(f"runs/flow-run/{run_id}")
    evaluation, verdict = report.evaluation, report.verdict
    print(summary_markdown(evaluation.name, evaluation.agents, verdict))
    if report.baseline_source is not None:
        print(report.baseline_markdown() + "\n")
    print(f"flow run id: {run_id}")
    if link:
        print(f"Prefect UI: {link}")
    if arguments.output:
        arguments.output.write_text(report.model_dump_json(indent=2))
        print(f"results: {arguments.output}")
    if arguments.record:
        arguments.record.write_text(EvaluationRecording.of(evaluation).model_dump_json(indent=2))
        print(f"recording: {arguments.record} (replay it with --replay)")
    return verdict.exit_code


def _server(arguments: argparse.Namespace) -> int:
    from aiorch.core.errors import ServiceUnavailable
    from aiorch.core.local_server import LocalServer

    server = LocalServer.configured()
    if arguments.action == "stop":
        print("stopped" if server.stop() else "no local server was running")
        return 0
    state = server.running()
    if arguments.action == "start":
        try:
            state = server.ensure()
        except ServiceUnavailable as error:
            print(f"aiorch server: {error}", file=sys.stderr)
            return 1
    if state is None:
        print(f"no local server runs for PREFECT_HOME={server.home}")
        return 1
    print(f"PREFECT_API_URL={state.api_url}")
    print(
        f"Prefect UI: {v2_base(state.ui_url)} "
        f"(stops after {server.idle_seconds:g} s without flow runs)"
    )
    return 0


def _runners(arguments: argparse.Namespace) -> int:
    for status in runner_statuses():
        print(f"{status.kind:<7} {'yes' if status.available else 'no ':<4} {status.detail}")
    return 0


def _image(arguments: argparse.Namespace) -> int:
    import docker

    from aiorch.core.errors import ConfigurationError
    from aiorch.deploy import images

    client = docker.from_env()
    try:
        if arguments.kind == "busybox":
            busybox = arguments.busybox or images.busybox_binary()
            if busybox is None:
                raise ConfigurationError(
                    "no busybox binary found: install busybox-static or pass --busybox"
                )
            tag = arguments.tag or images.BUSYBOX_IMAGE
            image_id = images.build_busybox_image(client, busybox, tag)
        elif arguments.kind == "python-base":
            tag = arguments.tag or images.PYTHON_BASE_IMAGE
            image_id = images.build_python_base_image(client, tag, arguments.suite)
        elif arguments.kind == "postgres":
            tag = arguments.tag or images.POSTGRES_IMAGE
            image_id = images.build_postgres_image(client, tag)
        elif arguments.kind == "rabbitmq":
            tag = arguments.tag or images.RABBITMQ_IMAGE
            image_id = images.build_rabbitmq_image(client, tag)
        else:
            tag = arguments.tag or images.FLOW_IMAGE
            image_id = images.build_flow_image(
                client, Path.cwd(), arguments.base, tag, arguments.extras
            )
    except ConfigurationError as error:
        print(f"aiorch image: {error}", file=sys.stderr)
        return 2
    print(f"built {tag} ({image_id})")
    return 0


def _environment(arguments: argparse.Namespace) -> int:
    from aiorch.core.errors import ConfigurationError
    from aiorch.core.prefect_internals import run_sync
    from aiorch.deploy.environments import apply_environment, load_environment

    try:
        environment = load_environment(arguments.name)
        for line in run_sync(apply_environment(environment)):
            print(line)
    except ConfigurationError as error:
        print(f"aiorch environment: {error}", file=sys.stderr)
        return 2
    print(f"environment {environment.name} applied")
    return 0


def _promote(arguments: argparse.Namespace) -> int:
    from aiorch.core.local_server import LocalServer, on_local_server
    from aiorch.core.prefect_internals import run_sync
    from aiorch.deploy.promotion import aplan_promotion, deploy

    # The evaluation ran on the source's server: aiorch's local one when none is set.
    with on_local_server(LocalServer.configured()):
        promotion = run_sync(
            aplan_promotion(
                arguments.deployment,
                source=arguments.source,
                evaluation=arguments.evaluation,
                prefect_file=arguments.prefect_file,
            )
        )
        record = promotion.record
        print(
            f"evaluation {record.evaluation} passed its gate ({', '.join(record.agents)}); "
            f"deploying {promotion.deployment} to {promotion.target}"
            + (f" (Prefect profile {promotion.target_profile})" if promotion.target_profile else "")
        )
        deploy(promotion, arguments.prefect_file)
    print(f"promoted {promotion.deployment}: {promotion.source} -> {promotion.target}")
    return 0


def _block(arguments: argparse.Namespace) -> int:
    from aiorch.core.errors import ConfigurationError
    from aiorch.core.prefect_internals import run_sync
    from aiorch.deploy.environments import AgentSpec, ProviderSpec, agent_block, provider_block

    name = arguments.name
    try:
        if arguments.kind == "agent":
            fields = {"model": arguments.model, "instruction": arguments.instruction}
            spec = AgentSpec(provider=arguments.provider, **fields)
            block: Any = run_sync(agent_block(name, spec))
        elif arguments.kind == "provider":
            fields = {"kind": arguments.provider_kind, "base_url": arguments.base_url}
            provider = ProviderSpec(api_key_env=arguments.api_key_env, **fields)
            block = provider_block(name, provider)
        else:
            from prefect.blocks.system import Secret
            from pydantic import SecretStr

            from aiorch.deploy.environments import env_value

            block = Secret(value=SecretStr(env_value(arguments.from_env, "--from-env")))
    except ConfigurationError as error:
        print(f"aiorch block create {arguments.kind}: {error}", file=sys.stderr)
        return 2
    block.save(name, overwrite=True)
    print(f"block {block.get_block_type_slug()}/{name} saved")
    return 0


def _model(arguments: argparse.Namespace) -> int:
    from aiorch.agent_blocks import ModelProvider
    from aiorch.agent_blocks.agent import check_model, check_provider
    from aiorch.core.errors import ConfigurationError
    from aiorch.tasks.agents.capabilities import model_capabilities, probe_capabilities

    provider: ModelProvider | None = None
    try:
        check_model(arguments.model)
        if arguments.provider:
            provider = cast(ModelProvider, ModelProvider.load(arguments.provider))
        check_provider(arguments.model, provider)
        if arguments.action == "probe":
            if provider is None:
                raise ConfigurationError("probe needs --provider: the ModelProvider block to reach")
            capabilities = probe_capabilities(arguments.model, provider)
        else:
            capabilities = model_capabilities(arguments.model, provider)
    except ValueError as error:
        print(f"aiorch model: {error}", file=sys.stderr)
        return 2
    print(capabilities.model_dump_json(indent=2))
    return 0


def _model_serve(arguments: argparse.Namespace) -> int:
    import importlib.util
    import os

    from aiorch.tasks.agents.local_model import INSTALL_HINT, model_file, server_command

    model = model_file()
    if model is None or importlib.util.find_spec("llama_cpp") is None:
        print(
            f"aiorch model serve: the local model is not installed: {INSTALL_HINT}", file=sys.stderr
        )
        return 2
    command = server_command(model, arguments.host, arguments.port)
    # Replaced, not wrapped: the server gets the container's signals and exit status.
    os.execv(command[0], command)


def _compare(arguments: argparse.Namespace) -> int:
    import anyio

    from aiorch.flows.compare_runs import compare_runs_flow
    from aiorch.tasks.monitoring.compare import render_comparison

    try:
        before, after = UUID(arguments.before), UUID(arguments.after)
    except ValueError:
        print("aiorch compare: give two flow run ids (UUIDs)", file=sys.stderr)
        return 2
    # Checked before the comparison flow starts: a flow run for ids that do not exist
    # would only fail, with Prefect's tracebacks.
    anyio.run(_existing_runs, before, after)
    comparison = anyio.run(compare_runs_flow, before, after)
    print(render_comparison(comparison))
    return 0


async def _existing_runs(*run_ids: UUID) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from aiorch.core.errors import ConfigurationError

    async with get_client() as client:
        for run_id in run_ids:
            try:
                await client.read_flow_run(run_id)
            except ObjectNotFound:
                raise ConfigurationError(
                    f"flow run {run_id} does not exist on {client.api_url}; "
                    "`prefect flow-run ls` lists the runs there"
                ) from None


def _messages(arguments: argparse.Namespace) -> int:
    import anyio

    from aiorch.tasks.messaging.bus import MessageBus
    from aiorch.tasks.messaging.envelope import Envelope

    bus = MessageBus.from_settings()

    async def redeliver() -> Envelope:
        try:
            return await bus.redeliver(arguments.seq)
        finally:
            await bus.close()

    if arguments.action == "redeliver":
        envelope = anyio.run(redeliver)
        print(f"dead letter {arguments.seq} ({envelope.id}) sent again to {envelope.recipient}")
        return 0
    letters = anyio.run(bus.transport.dead_letters)
    if not letters:
        print("no dead letters")
    for letter in letters:
        print(f"{letter.seq:>5}  {letter.queue}  {letter.id}  {letter.reason}")
    return 0


def _breakers(arguments: argparse.Namespace) -> int:
    from aiorch.flows.breaker_states import breaker_states
    from aiorch.tasks.resilience.breaker_report import breaker_rows

    rows = breaker_rows()
    if not rows:
        print("no circuit breaker has been used yet")
    for row in rows:
        print(f"{row['state']:<12} {row['breaker']}  (opened {row['opened at'] or '-'})")
    if arguments.artifact:
        print(f"published artifact aiorch-breakers ({breaker_states()})")
    return 0


def _breaker(arguments: argparse.Namespace) -> int:
    import difflib

    from aiorch.core.errors import ConfigurationError
    from aiorch.tasks.resilience.breaker import CircuitBreaker
    from aiorch.tasks.resilience.breaker_store import BreakerStore

    targets: dict[str, Literal["forced_open", "closed", "disabled"]] = {
        "open": "forced_open",
        "close": "closed",
        "disable": "disabled",
    }
    target = targets[arguments.action]
    known = sorted(str(row["name"]) for row in BreakerStore.default().states())
    if arguments.name not in known and not arguments.create:
        close = difflib.get_close_matches(arguments.name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigurationError(
            f"no breaker named {arguments.name!r} has been used here; {hint}"
            "`aiorch breakers` lists them; pass --create to set one before its first use"
        )
    CircuitBreaker(arguments.name).force(target)
    print(f"breaker {arguments.name!r} is now {target}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    from aiorch.deploy.images import (
        BUSYBOX_IMAGE,
        FLOW_IMAGE,
        POSTGRES_IMAGE,
        PYTHON_BASE_IMAGE,
        RABBITMQ_IMAGE,
    )

    root = argparse.ArgumentParser(prog="aiorch", description=__doc__.splitlines()[0])
    root.add_argument(
        "--debug", action="store_true", help="show the traceback of an error, not one line"
    )
    commands = root.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a workflow as a Prefect flow run")
    run.add_argument("workflow", choices=sorted(WORKFLOWS))
    run.add_argument("--runner", choices=["auto", "dagger", "docker", "local"])
    run.add_argument(
        "--param",
        type=_parameter,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a flow parameter; VALUE is read as JSON when it parses, else as text",
    )
    run.set_defaults(handler=_run)

    server = commands.add_parser(
        "server",
        help="the local Prefect server aiorch's commands share when no PREFECT_API_URL is set",
    )
    server.add_argument("action", choices=["start", "stop", "status"])
    server.set_defaults(handler=_server)

    runners = commands.add_parser("runners", help="which runners work here, and why not")
    runners.set_defaults(handler=_runners)

    image = commands.add_parser(
        "image",
        help="build an image locally, without a registry",
        description=(
            "busybox: a tiny image for shell steps; python-base: minimal Debian with "
            "Python (debootstrap, root); flows: the Docker work pool's image from "
            "./Dockerfile; postgres, rabbitmq: Debian's PostgreSQL or RabbitMQ with the "
            "official image's environment contract, for the compose stack (debootstrap, root)"
        ),
    )
    image.add_argument("kind", choices=["busybox", "python-base", "flows", "postgres", "rabbitmq"])
    image.add_argument(
        "--tag",
        help=(
            f"image name (default {BUSYBOX_IMAGE}, {PYTHON_BASE_IMAGE}, {FLOW_IMAGE}, "
            f"{POSTGRES_IMAGE} or {RABBITMQ_IMAGE})"
        ),
    )
    image.add_argument("--busybox", help="busybox: a static busybox binary (default: from PATH)")
    image.add_argument("--suite", default="trixie", help="python-base: the Debian release")
    image.add_argument(
        "--base",
        default=PYTHON_BASE_IMAGE,
        help="flows: the base image (any with Python >= 3.12, venv and zoneinfo)",
    )
    image.add_argument("--extras", default="", help="flows: project extras, e.g. model")
    image.set_defaults(handler=_image)

    environment = commands.add_parser(
        "environment",
        help="apply deployments/environments/NAME.yaml: work pools, variables, blocks",
    )
    environment.add_argument("action", choices=["apply"])
    environment.add_argument("name", help="dev, staging, prod, or a path to an environment file")
    environment.set_defaults(handler=_environment)

    promote = commands.add_parser(
        "promote",
        help="deploy a deployment to the next environment if its evaluation passed",
    )
    promote.add_argument("deployment", help="a deployment's name in prefect.yaml")
    promote.add_argument(
        "--from",
        dest="source",
        required=True,
        help="the environment it comes from (dev, staging, or an environment file)",
    )
    promote.add_argument(
        "--evaluation",
        required=True,
        help="the evaluation that allows it: its flow run id, or its --output JSON file",
    )
    promote.add_argument(
        "--prefect-file", type=Path, default=Path("prefect.yaml"), help="(prefect.yaml)"
    )
    promote.set_defaults(handler=_promote)

    block = commands.add_parser("block", help="create the blocks deployments name")
    block.add_argument("action", choices=["create"])
    kinds = block.add_subparsers(dest="kind", required=True)
    agent = kinds.add_parser("agent", help="an Agent block")
    agent.add_argument("name")
    agent.add_argument("--model", required=True, help="FastAgent model string")
    agent.add_argument("--provider", help="name of a ModelProvider block")
    agent.add_argument("--instruction", default="You are a helpful assistant.")
    provider = kinds.add_parser("provider", help="a ModelProvider block")
    provider.add_argument("name")
    provider.add_argument("--kind", dest="provider_kind", required=True)
    provider.add_argument("--base-url", help="endpoint of a generic (OpenAI-compatible) server")
    provider.add_argument("--api-key-env", help="environment variable holding the API key")
    secret = kinds.add_parser("secret", help="a Secret block")
    secret.add_argument("name")
    secret.add_argument("--from-env", required=True, help="environment variable holding the value")
    block.set_defaults(handler=_block)

    model = commands.add_parser(
        "model", help="what a model can do (capabilities), or serve the bundled local model"
    )
    model_actions = model.add_subparsers(dest="action", required=True)
    for action, summary in (
        ("capabilities", "what aiorch knows the model can do"),
        ("probe", "ask the model's endpoint what it can do"),
    ):
        asked = model_actions.add_parser(action, help=summary)
        asked.add_argument("model", help="FastAgent model string, e.g. generic.smollm2")
        asked.add_argument("--provider", help="name of a saved ModelProvider block")
        asked.set_defaults(handler=_model)
    serve = model_actions.add_parser(
        "serve",
        help="serve the bundled local model in the foreground (a container's command)",
        description=(
            "Runs llama.cpp's OpenAI-compatible server for the bundled model, with "
            "aiorch's tool calling, until stopped. Point other processes at it with "
            "AIORCH_LOCAL_MODEL_URL=http://HOST:PORT/v1."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.set_defaults(handler=_model_serve)

    compare = commands.add_parser("compare", help="compare two flow runs (and publish it)")
    compare.add_argument("before", help="flow run id of the earlier run")
    compare.add_argument("after", help="flow run id of the later run")
    compare.set_defaults(handler=_compare)

    breakers = commands.add_parser("breakers", help="the state of every circuit breaker")
    breakers.add_argument("--artifact", action="store_true", help="also publish it")
    breakers.set_defaults(handler=_breakers)

    messages = commands.add_parser(
        "messages", help="the message bus's dead letters: list them, or deliver one again"
    )
    message_actions = messages.add_subparsers(dest="action", required=True)
    message_actions.add_parser("dead-letters", help="list every dead letter and why")
    redeliver = message_actions.add_parser("redeliver", help="send a dead letter again")
    redeliver.add_argument("seq", type=int, help="the number `dead-letters` lists")
    messages.set_defaults(handler=_messages)

    evaluation = commands.add_parser(
        "eval", help="evaluate agents on a dataset; exit 1, 3 or 4 when the gate fails"
    )
    eval_actions = evaluation.add_subparsers(dest="action", required=True)
    eval_run = eval_actions.add_parser(
        "run", help="answer every sample with every agent, score, and apply the gate"
    )
    eval_run.add_argument("dataset", help="a .jsonl, .csv or .yaml dataset")
    eval_run.add_argument(
        "--agent", action="append", required=True, help="a saved Agent block (repeat to compare)"
    )
    eval_run.add_argument("--epochs", type=int, default=1, help="answers per sample (default 1)")
    eval_run.add_argument("--min-score", type=float, help="the lowest mean score that passes")
    eval_run.add_argument(
        "--max-errors", type=int, default=0, help="unscored results allowed per agent (default 0)"
    )
    eval_run.add_argument(
        "--pass-at", type=int, action="append", help="report pass@K (repeatable; K <= epochs)"
    )
    eval_run.add_argument("--name", help="the evaluation's name (default: the dataset's)")
    eval_run.add_argument("--concurrency", type=int, default=4, help="answers at once (4)")
    eval_run.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (0)")
    eval_run.add_argument("--output", type=Path, help="write every result here as JSON")
    eval_run.add_argument(
        "--baseline",
        help="an earlier evaluation (its flow run id or --output file): exit 4 on a regression",
    )
    eval_run.add_argument(
        "--record", type=Path, help="write the answers' model and tool calls here (a fixture)"
    )
    eval_run.add_argument(
        "--replay", type=Path, help="answer from this fixture: no model, key or MCP server"
    )
    evaluation.set_defaults(handler=_eval)

    breaker = commands.add_parser("breaker", help="force a breaker open, closed or off")
    breaker.add_argument("name", help="the breaker's name, as `aiorch breakers` lists it")
    breaker.add_argument(
        "action",
        choices=["open", "close", "disable"],
        help="open: reject calls until closed; close: reset to closed; disable: never trip",
    )
    breaker.add_argument(
        "--create",
        action="store_true",
        help="set a breaker that has not been used yet (a typo otherwise makes a new one)",
    )
    breaker.set_defaults(handler=_breaker)
    add_gateway_commands(commands)
    add_metrics_commands(commands)
    add_backup_commands(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aiorch`` command.

    An error is one or two lines naming what was wrong and the fix, with exit code 2
    for bad input and 1 for anything else; ``--debug`` shows the traceback instead.
    """
    from pydantic import ValidationError

    from aiorch.core.errors import AiorchError, ConfigurationError, validation_problems
    from aiorch.core.redaction import redact

    arguments = parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = arguments.handler
    where = f"aiorch {arguments.command}"
    try:
        return handler(arguments)
    except Exception as error:
        if arguments.debug:
            raise
        if isinstance(error, ValidationError):
            print(f"{where}: {validation_problems(error, error.title)}", file=sys.stderr)
            return 2
        if isinstance(error, AiorchError):
            print(f"{where}: {error}", file=sys.stderr)
            return 2 if isinstance(error, ConfigurationError) else 1
        print(
            f"{where}: unexpected {type(error).__name__}: {redact(str(error))}\n"
            "run again with --debug for the traceback, and report it if it persists",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
