"""A pytest plugin: a test whose run logs an ERROR it does not declare fails.

A successful run logs no ERROR and no traceback. A test that provokes an error on
purpose declares it by pattern, matched against the logger name, the message and the
exception: ``@pytest.mark.logs_errors("StepFailed")``. Only the test's call phase is
watched; records from every logger count (those that do not propagate to the root
logger, as some of Prefect's, included).

Use it in your own suite with ``pytest_plugins = ["aiorch.testing.error_guard"]`` in a
``conftest.py``.

Example:
    ```python
    import logging

    import pytest

    @pytest.mark.logs_errors("disk full")
    def test_reports_a_full_disk() -> None:
        logging.getLogger("myflows").error("disk full")
    ```
"""

from __future__ import annotations

import logging
import re
from collections.abc import Generator

import pytest

MARKER = "logs_errors"


class _ErrorRecords(logging.Handler):
    """Collects every ERROR (and worse) record logged while a test runs."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _unpropagated_loggers() -> list[logging.Logger]:
    """Loggers whose records stop before the root logger (some of Prefect's, uvicorn's)."""
    return [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]


def describe(record: logging.LogRecord) -> str:
    """A record as the patterns see it: logger, message and exception."""
    try:
        message = record.getMessage()
    except Exception:  # an argument whose repr fails (aio-pika's callbacks after a close)
        message = str(record.msg)
    text = f"{record.name}: {message}"
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        text += f" [{type(error).__name__}: {error}]"
    return text


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``logs_errors`` marker."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*patterns): the test logs ERROR records matching these regexes on purpose",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None]:
    """Run the test, then fail it for each ERROR record it did not declare."""
    handler = _ErrorRecords()
    loggers = [logging.getLogger(), *_unpropagated_loggers()]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    allowed = [
        re.compile(pattern) for marker in item.iter_markers(MARKER) for pattern in marker.args
    ]
    unexpected = [
        text
        for text in map(describe, handler.records)
        if not any(pattern.search(text) for pattern in allowed)
    ]
    if unexpected:
        listing = "\n".join(f"  {text}" for text in unexpected)
        pytest.fail(
            f"the run logged {len(unexpected)} ERROR record(s) the test does not declare "
            f"(@pytest.mark.{MARKER}(pattern)):\n{listing}",
            pytrace=False,
        )
