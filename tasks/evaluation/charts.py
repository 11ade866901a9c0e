"""The comparison charts of an evaluation, as PNG data URLs for its markdown artifact.

Three charts, drawn large enough to read at the Prefect UI's 100 % zoom:

- score per agent, with its bootstrap 95 % interval as error bars and, when there is a
  baseline, the baseline's score on the same samples as a marker;
- cost against score (tokens against score when some answer's price is unknown);
- the latency of fresh answers per agent, as box plots (replayed answers say nothing of
  a model's speed, so they are left out).

Example:
    ```python
    from aiorch.tasks.evaluation.charts import score_chart
    from aiorch.tasks.evaluation.metrics import agent_metrics

    print(score_chart([agent_metrics("echo", [])])[:22])  # data:image/png;base64,
    ```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from aiorch.tasks.evaluation.metrics import AgentMetrics
from aiorch.tasks.monitoring.charts import png_data_url

FIGURE_SIZE = (8.0, 4.0)
TEXT_SIZE = 12
TITLE_SIZE = 14
BAR_COLOUR = "#2563eb"
BASELINE_COLOUR = "#dc2626"


def score_chart(agents: Sequence[AgentMetrics], baseline: Mapping[str, float] | None = None) -> str:
    """Mean score per agent with its interval; ``baseline`` maps agents to then-scores."""
    figure = Figure(figsize=FIGURE_SIZE)
    axes = figure.subplots()
    names = [m.agent for m in agents]
    means = [m.mean or 0.0 for m in agents]
    below = [
        max(0.0, (m.mean or 0.0) - (m.ci_low if m.ci_low is not None else 0.0)) for m in agents
    ]
    above = [
        max(0.0, (m.ci_high if m.ci_high is not None else 0.0) - (m.mean or 0.0)) for m in agents
    ]
    positions = list(range(len(names)))
    axes.bar(positions, means, width=0.5, color=BAR_COLOUR, label="score (95 % interval)")
    axes.errorbar(
        positions, means, yerr=[below, above], fmt="none", ecolor="black", capsize=8, linewidth=2
    )
    if baseline:
        marked = [(p, baseline[n]) for p, n in zip(positions, names, strict=True) if n in baseline]
        axes.scatter(
            [p for p, _ in marked],
            [score for _, score in marked],
            marker="D",
            s=90,
            color=BASELINE_COLOUR,
            zorder=3,
            label="baseline",
        )
    for position, mean in zip(positions, means, strict=True):
        axes.annotate(
            f"{mean:.2f}",
            (position, mean),
            xytext=(14, 4),
            textcoords="offset points",
            fontsize=TEXT_SIZE,
        )
    axes.set_xticks(positions, names)
    axes.set_ylim(0, 1.1)
    axes.set_ylabel("mean score")
    # Below the plot, not beside it: beside, it widened the image past the artifact's
    # column, and the browser shrank all of its text to fit.
    axes.legend(fontsize=TEXT_SIZE, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    _style(axes, "Score per agent")
    return png_data_url(figure)


def cost_chart(agents: Sequence[AgentMetrics]) -> str:
    """Each agent's new cost (or tokens, when a price is unknown) against its score."""
    figure = Figure(figsize=FIGURE_SIZE)
    axes = figure.subplots()
    priced = all(m.cost is not None for m in agents)
    spent = [(m.cost or 0.0) if priced else float(m.input_tokens + m.output_tokens) for m in agents]
    scores = [m.mean or 0.0 for m in agents]
    axes.scatter(spent, scores, s=120, color=BAR_COLOUR, zorder=3)
    for (x, y), names in shared_points([m.agent for m in agents], spent, scores).items():
        axes.annotate(
            "\n".join(names), (x, y), xytext=(8, 6), textcoords="offset points", fontsize=TEXT_SIZE
        )
    axes.set_ylabel("mean score")
    axes.set_ylim(0, 1.1)
    if max(spent, default=0.0) > 0:
        axes.set_xlabel("new cost (USD)" if priced else "new tokens (some prices unknown)")
        axes.set_xlim(left=0, right=max(spent) * 1.3)
        axes.ticklabel_format(axis="x", style="plain", useOffset=False)
    else:
        axes.set_xlabel("nothing new spent: answers replayed, or a model without usage")
        axes.set_xlim(-0.5, 2.5)
        axes.set_xticks([])
    _style(axes, "Cost against score")
    return png_data_url(figure)


def shared_points(
    names: Sequence[str], xs: Sequence[float], ys: Sequence[float]
) -> dict[tuple[float, float], list[str]]:
    """The names at each distinct point, so agents that spent and scored alike share a label.

    Their own labels would be drawn over each other, and neither could be read.
    """
    points: dict[tuple[float, float], list[str]] = {}
    for name, x, y in zip(names, xs, ys, strict=True):
        points.setdefault((x, y), []).append(name)
    return points


def latency_chart(latencies: Mapping[str, Sequence[float]]) -> str | None:
    """Box plots of each agent's fresh-answer latencies; None when every answer replayed."""
    if not any(latencies.values()):
        return None
    figure = Figure(figsize=FIGURE_SIZE)
    axes = figure.subplots()
    names = list(latencies)
    axes.boxplot([list(latencies[name]) or [0.0] for name in names], widths=0.5)
    axes.set_xticks(list(range(1, len(names) + 1)), names)
    axes.set_ylabel("seconds per answer")
    axes.set_ylim(bottom=0)
    _style(axes, "Latency of fresh answers")
    return png_data_url(figure)


def _style(axes: Axes, title: str) -> None:
    axes.set_title(title, fontsize=TITLE_SIZE)
    axes.tick_params(labelsize=TEXT_SIZE)
    axes.xaxis.label.set_fontsize(TEXT_SIZE)
    axes.yaxis.label.set_fontsize(TEXT_SIZE)
    axes.grid(axis="y", alpha=0.3)
