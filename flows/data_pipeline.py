"""A data-processing workflow on a real data set: the world's time zones by region.

The data is the IANA time zone table ``zone1970.tab`` that the ``tzdata`` package ships
(one row per zone: country codes, coordinates, name). The flow partitions it by region
(Africa, America, Asia, ...), summarises every partition in its own container step
(zones, countries, latitude range, with POSIX awk, so any image with a shell works: the
default is busybox), merges the summaries in one more step and publishes a table and a
markdown artifact. Every step is content-cached: rerunning an unchanged pipeline is
served from cache with the outputs restored.

Example:
    ```python
    from aiorch.flows.data_pipeline import data_pipeline

    result = data_pipeline(runner="local")
    print(result.regions[0])
    ```
"""

from __future__ import annotations

import csv
import tempfile
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Annotated

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import Field

from aiorch.core.models import AiorchModel
from aiorch.core.settings import load_settings
from aiorch.deploy.images import BUSYBOX_IMAGE
from aiorch.tasks.container import ContainerStep, RunnerKind, StepInput, StepResult, run_step
from aiorch.tasks.container.dagger_session import close_dagger_session

ARTIFACT_KEY = "aiorch-data-pipeline"
HEADER = "region,zones,countries,min_latitude,max_latitude"

# POSIX awk: busybox, mawk and gawk all run it. Latitude is the ISO 6709 +DDMM prefix.
SUMMARISE = r"""
BEGIN { FS = "\t"; minimum = 1000; maximum = -1000 }
/^#/ { next }
{
    zones++
    count = split($1, codes, ",")
    for (i = 1; i <= count; i++) if (!(codes[i] in seen)) { seen[codes[i]] = 1; countries++ }
    sign = substr($2, 1, 1) == "-" ? -1 : 1
    latitude = sign * (substr($2, 2, 2) + substr($2, 4, 2) / 60)
    if (latitude < minimum) minimum = latitude
    if (latitude > maximum) maximum = latitude
}
END { printf "%s,%d,%d,%.2f,%.2f\n", region, zones, countries, minimum, maximum }
"""


class RegionSummary(AiorchModel):
    """One region's row in the merged summary."""

    region: str
    zones: int
    countries: int
    min_latitude: float
    max_latitude: float


class PipelineResult(AiorchModel):
    """What the pipeline produced and how its steps ran."""

    regions: list[RegionSummary]
    summary_csv: Path
    steps: list[StepResult]

    @property
    def cache_hits(self) -> int:
        """How many steps were served from cache."""
        return sum(step.cache_hit for step in self.steps)


def zone_table() -> Path:
    """The zone1970.tab file shipped by the ``tzdata`` package."""
    return Path(str(resources.files("tzdata").joinpath("zoneinfo", "zone1970.tab")))


@task(name="partition-zones")
def partition(table: Path, directory: Path) -> dict[str, Path]:
    """Split the zone table into one file per region (the first part of the zone name)."""
    rows: dict[str, list[str]] = defaultdict(list)
    for line in table.read_text().splitlines():
        if line and not line.startswith("#"):
            rows[line.split("\t")[2].split("/")[0]].append(line)
    files = {}
    for region, lines in sorted(rows.items()):
        files[region] = directory / f"{region}.tab"
        files[region].write_text("\n".join(lines) + "\n")
    return files


def summarise_step(region: str, source: Path, image: str) -> ContainerStep:
    """The container step that summarises one region's partition."""
    return ContainerStep(
        name=f"zones-{region.lower()}",
        image=image,
        commands=[
            [
                "sh",
                "-c",
                'mkdir -p out && awk -v region="$REGION" "$PROGRAM" zones.tab > out/summary.csv',
            ]
        ],
        env={"REGION": region, "PROGRAM": SUMMARISE},
        inputs=[StepInput(source=source, target="zones.tab")],
        outputs=["out"],
        timeout_seconds=120,
    )


def merge_step(parts: dict[str, Path], image: str) -> ContainerStep:
    """The container step that merges the region summaries into one sorted CSV."""
    return ContainerStep(
        name="merge-regions",
        image=image,
        commands=[
            [
                "sh",
                "-c",
                f'mkdir -p out && {{ echo "{HEADER}"; cat parts/*.csv | sort; }} > out/regions.csv',
            ]
        ],
        inputs=[
            StepInput(source=path, target=f"parts/{region}.csv")
            for region, path in sorted(parts.items())
        ],
        outputs=["out"],
        timeout_seconds=120,
    )


@task(name="publish-pipeline-report")
def publish(regions: list[RegionSummary], steps: list[StepResult]) -> None:
    """Publish the merged summary as a table artifact and a markdown report."""
    create_table_artifact(
        key=ARTIFACT_KEY,
        table=[region.model_dump() for region in regions],
        description="Time zones per region, from the aiorch data pipeline.",
    )
    hits = sum(step.cache_hit for step in steps)
    edges = "\n".join(f"    partition --> {step.step} --> merge-regions" for step in steps[:-1])
    rows = "\n".join(
        f"| {step.step} | {step.runner} | {'hit' if step.cache_hit else 'ran'} | "
        f"{step.duration_seconds:.2f} |"
        for step in steps
    )
    create_markdown_artifact(
        key=f"{ARTIFACT_KEY}-report",
        markdown=f"""# Time zones by region

{len(regions)} regions, {sum(region.zones for region in regions)} zones; {len(steps)} container
steps, {hits} served from cache.

```mermaid
flowchart LR
    partition[partition-zones]
{edges}
```

| step | runner | cache | seconds |
|---|---|---|---|
{rows}
""",
        description="How the aiorch data pipeline ran.",
    )


@flow(
    name="aiorch-data-pipeline",
    on_completion=[close_dagger_session],
    on_failure=[close_dagger_session],
    on_cancellation=[close_dagger_session],
    on_crashed=[close_dagger_session],
)
def data_pipeline(
    runner: RunnerKind = RunnerKind.AUTO,
    image: Annotated[str, Field(min_length=1)] = BUSYBOX_IMAGE,
    output_dir: Path | None = None,
    cache: bool = True,
) -> PipelineResult:
    """Partition the zone table, summarise each region in parallel steps, merge, publish.

    Args:
        runner: Where the steps run: auto, dagger, docker or local.
        image: Image with a POSIX shell, awk and sort (``aiorch image busybox`` builds the
            default one locally).
        output_dir: Where step outputs land; ``AIORCH_OUTPUT_DIR/data-pipeline`` if None.
        cache: Serve unchanged steps from cache.
    """
    destination = output_dir or load_settings().output_dir / "data-pipeline"
    with tempfile.TemporaryDirectory(prefix="aiorch-partitions-") as scratch:
        parts = partition(zone_table(), Path(scratch))
        steps = [summarise_step(region, path, image) for region, path in parts.items()]
        futures = run_step.map(
            steps,
            runner=runner,
            export_to=[destination / step.name for step in steps],
            cache=cache,
        )
        results: list[StepResult] = futures.result()
    summaries = {
        step.name.removeprefix("zones-"): result.outputs["out"] / "summary.csv"
        for step, result in zip(steps, results, strict=True)
    }
    merge = merge_step(summaries, image)
    merged = run_step(merge, runner, export_to=destination / merge.name, cache=cache)
    summary_csv = merged.outputs["out"] / "regions.csv"
    with summary_csv.open() as handle:
        regions = [RegionSummary.model_validate(row) for row in csv.DictReader(handle)]
    publish(regions, [*results, merged])
    return PipelineResult(regions=regions, summary_csv=summary_csv, steps=[*results, merged])
