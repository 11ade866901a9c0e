"""The per-process bound on parallel steps follows the setting it is given each time."""

from __future__ import annotations

import anyio

from aiorch.tasks.container.slots import StepSlots


def test_a_changed_limit_applies_to_the_next_step() -> None:
    slots = StepSlots()

    async def scenario() -> list[bool]:
        seen: list[bool] = []
        async with slots.taken(limit=1):
            # The bound was 1; raised to 2, a second step gets in at once.
            with anyio.move_on_after(5) as window:
                async with slots.taken(limit=2):
                    seen.append(slots.taken_now == 2)
            seen.append(not window.cancelled_caught)
            # Back at 1, a step waits while the first holds its slot.
            with anyio.move_on_after(0.2) as waited:
                async with slots.taken(limit=1):
                    seen.append(False)
            seen.append(waited.cancelled_caught)
        seen.append(slots.taken_now == 0)
        return seen

    assert anyio.run(scenario) == [True, True, True, True]
