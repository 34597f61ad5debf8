"""Every probe subcommand of the CLI on the JAX example shipped in examples/."""

from __future__ import annotations

import pytest

from .cli_cases import EXAMPLES, cases, check

TARGET = str(EXAMPLES / "jax_digits.py") + ":mlp"


@pytest.mark.parametrize("argv, result", cases(TARGET, TARGET, TARGET))
def test_probe_subcommand_on_the_example(tmp_path, capsys, argv, result):
    check(tmp_path, capsys, argv, result)
