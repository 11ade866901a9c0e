"""The suite-wide guard: a test whose run logs an undeclared ERROR fails."""

from __future__ import annotations

import pytest

PLUGIN = 'pytest_plugins = ["aiorch.testing.error_guard"]\n'


def test_an_undeclared_error_fails_the_test_and_a_declared_one_does_not(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(PLUGIN)
    pytester.makepyfile(
        """
        import logging

        import pytest

        def test_root_error() -> None:
            logging.getLogger("somewhere").error("disk full")

        def test_unpropagated_prefect_error() -> None:
            try:
                raise ValueError("No lock for transaction with key k")
            except ValueError:
                logging.getLogger("prefect.extra").exception("while committing")

        @pytest.mark.logs_errors("disk full")
        def test_declared_error() -> None:
            logging.getLogger("somewhere").error("disk full")

        @pytest.mark.logs_errors("disk full")
        def test_other_error_than_declared() -> None:
            logging.getLogger("somewhere").error("out of memory")

        def test_warning_is_not_an_error() -> None:
            logging.getLogger("somewhere").warning("slow disk")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*1 ERROR record(s) the test does not declare*",
            "  somewhere: disk full",
            "  prefect.extra: while committing [[]ValueError: No lock for transaction*",
            "  somewhere: out of memory",
        ]
    )
