"""Registered secrets are masked in every log record, whichever handler writes it."""

from __future__ import annotations

import io
import logging

from aiorch.core.redaction import MASK, looks_secret, quoted, register_secret

SECRET = "sk-redaction-canary-6a1f"


def test_records_are_masked_even_on_handlers_added_after_registration() -> None:
    register_secret(SECRET)
    # A library's logger and handler made after the secret was registered.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    late = logging.getLogger(f"late-library-{id(stream)}")
    late.addHandler(handler)
    late.propagate = False
    try:
        late.warning("calling with key %s", SECRET)
        try:
            raise RuntimeError(f"401: bad key {SECRET}")
        except RuntimeError:
            late.exception("request failed")
        late.warning("stack", stack_info=True, extra={"unrelated": SECRET})
    finally:
        late.removeHandler(handler)
    written = stream.getvalue()
    assert SECRET not in written
    assert f"calling with key {MASK}" in written
    assert f"RuntimeError: 401: bad key {MASK}" in written


def test_values_that_look_like_credentials_are_not_quoted() -> None:
    for secret in ("sk-proj-abcdefgh12345678", "ghp_" + "a1" * 12, "a8f3k2m9x7q1w5e6r4t0y2u8"):
        assert looks_secret(secret)
        assert quoted(f"https://{secret}@host/v1") == "<hidden: it looks like a secret>"
    for plain in ("busybox:1.36", "generic.smollm2", "count-words-3", "sha256:" + "a" * 64):
        assert not looks_secret(plain)
        assert quoted(plain) == repr(plain)
