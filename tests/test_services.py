"""The suite's rule for missing services: skipped on a laptop, a failure under CI=true."""

from __future__ import annotations

import pytest

import tests.doubles.dagger_cli


@pytest.mark.parametrize(("ci", "outcome"), [("true", "errors"), ("", "skipped")])
def test_a_missing_dagger_schema_fails_under_ci_and_skips_elsewhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    monkeypatch.setattr(tests.doubles.dagger_cli, "schema_path", lambda: None)
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest("from tests.conftest import dagger_double, scratch_dir\n")
    pytester.makepyfile("def test_uses_the_double(dagger_double):\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(**{outcome: 1})
    expected = "is required under CI=true" if ci else "Dagger double not available"
    assert expected in result.stdout.str()
