"""The ``aiorch`` command: run workflows, see runners, build images, models, breakers.

Examples:
    ```bash
    aiorch run data-pipeline --runner docker --param image=busybox:1.36
    aiorch run demo --param top=3
    aiorch runners
    aiorch image busybox
    aiorch model capabilities openai.gpt-4.1-mini
    aiorch model probe generic.my-model --provider my-endpoint
    aiorch compare 3f2a... 9c41...
    aiorch breakers --artifact
    aiorch breaker "engine:docker:default" open
    ```
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast
from uuid import UUID

from prefect import Flow
from prefect.client.schemas.objects import State

from tasks.container.select import runner_statuses

Loader = Callable[[], Flow[..., Any]]


def _demo() -> Flow[..., Any]:
    from flows.demo import demo_flow

    return demo_flow


def _data_pipeline() -> Flow[..., Any]:
    from flows.data_pipeline import data_pipeline

    return data_pipeline


def _breaker_states() -> Flow[..., Any]:
    from flows.breaker_states import breaker_states

    return breaker_states


def _dagger_check() -> Flow[..., Any]:
    from flows.dagger_check import dagger_check

    return dagger_check


WORKFLOWS: dict[str, Loader] = {
    "demo": _demo,
    "data-pipeline": _data_pipeline,
    "dagger-check": _dagger_check,
    "breaker-states": _breaker_states,
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
    state = cast(State[Any], workflow(**parameters, return_state=True))
    print(f"flow run id: {state.state_details.flow_run_id}")
    print(f"state: {state.name}{f' ({state.message})' if state.message else ''}")
    return 0 if state.is_completed() else 1


def _runners(arguments: argparse.Namespace) -> int:
    for status in runner_statuses():
        print(f"{status.kind:<7} {'yes' if status.available else 'no ':<4} {status.detail}")
    return 0


def _image(arguments: argparse.Namespace) -> int:
    import docker

    from tasks.container.images import build_busybox_image, busybox_binary

    busybox = arguments.busybox or busybox_binary()
    if busybox is None:
        print("no busybox binary found: install busybox-static or pass --busybox", file=sys.stderr)
        return 1
    image_id = build_busybox_image(docker.from_env(), busybox, arguments.tag)
    print(f"built {arguments.tag} ({image_id})")
    return 0


def _model(arguments: argparse.Namespace) -> int:
    from agent_blocks import ModelProvider
    from agent_blocks.agent import check_model, check_provider
    from tasks.agents.capabilities import model_capabilities, probe_capabilities

    provider: ModelProvider | None = None
    try:
        check_model(arguments.model)
        if arguments.provider:
            provider = cast(ModelProvider, ModelProvider.load(arguments.provider))
        check_provider(arguments.model, provider)
        if arguments.action == "probe":
            if provider is None:
                raise ValueError("probe needs --provider: the ModelProvider block to reach")
            capabilities = probe_capabilities(arguments.model, provider)
        else:
            capabilities = model_capabilities(arguments.model, provider)
    except ValueError as error:
        print(f"aiorch model: {error}", file=sys.stderr)
        return 2
    print(capabilities.model_dump_json(indent=2))
    return 0


def _compare(arguments: argparse.Namespace) -> int:
    import anyio

    from flows.compare_runs import compare_runs_flow
    from tasks.monitoring.compare import render_comparison

    try:
        before, after = UUID(arguments.before), UUID(arguments.after)
    except ValueError:
        print("aiorch compare: give two flow run ids (UUIDs)", file=sys.stderr)
        return 2
    comparison = anyio.run(compare_runs_flow, before, after)
    print(render_comparison(comparison))
    return 0


def _breakers(arguments: argparse.Namespace) -> int:
    from flows.breaker_states import breaker_states
    from tasks.resilience.breaker_report import breaker_rows

    rows = breaker_rows()
    if not rows:
        print("no circuit breaker has been used yet")
    for row in rows:
        print(f"{row['state']:<12} {row['breaker']}  (opened {row['opened at'] or '-'})")
    if arguments.artifact:
        print(f"published artifact aiorch-breakers ({breaker_states()})")
    return 0


def _breaker(arguments: argparse.Namespace) -> int:
    from tasks.resilience.breaker import CircuitBreaker

    targets: dict[str, Literal["forced_open", "closed", "disabled"]] = {
        "open": "forced_open",
        "close": "closed",
        "disable": "disabled",
    }
    target = targets[arguments.action]
    CircuitBreaker(arguments.name).force(target)
    print(f"breaker {arguments.name!r} is now {target}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    from tasks.container.images import BUSYBOX_IMAGE

    root = argparse.ArgumentParser(prog="aiorch", description=__doc__.splitlines()[0])
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

    runners = commands.add_parser("runners", help="which runners work here, and why not")
    runners.set_defaults(handler=_runners)

    image = commands.add_parser("image", help="build an image locally, without a registry")
    image.add_argument("kind", choices=["busybox"])
    image.add_argument("--tag", default=BUSYBOX_IMAGE)
    image.add_argument("--busybox", help="a static busybox binary (default: from PATH)")
    image.set_defaults(handler=_image)

    model = commands.add_parser("model", help="what a model can do (capabilities)")
    model.add_argument("action", choices=["capabilities", "probe"])
    model.add_argument("model", help="FastAgent model string, e.g. generic.smollm2")
    model.add_argument("--provider", help="name of a saved ModelProvider block")
    model.set_defaults(handler=_model)

    compare = commands.add_parser("compare", help="compare two flow runs (and publish it)")
    compare.add_argument("before", help="flow run id of the earlier run")
    compare.add_argument("after", help="flow run id of the later run")
    compare.set_defaults(handler=_compare)

    breakers = commands.add_parser("breakers", help="the state of every circuit breaker")
    breakers.add_argument("--artifact", action="store_true", help="also publish it")
    breakers.set_defaults(handler=_breakers)

    breaker = commands.add_parser("breaker", help="force a breaker open, closed or off")
    breaker.add_argument("name", help="the breaker's name, as `aiorch breakers` lists it")
    breaker.add_argument(
        "action",
        choices=["open", "close", "disable"],
        help="open: reject calls until closed; close: reset to closed; disable: never trip",
    )
    breaker.set_defaults(handler=_breaker)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aiorch`` command."""
    arguments = parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = arguments.handler
    return handler(arguments)


if __name__ == "__main__":
    sys.exit(main())
