"""``import probecore`` must not import a deep-learning framework."""

import subprocess
import sys


def test_import_probecore_leaves_torch_and_jax_out():
    code = (
        "import sys, probecore, probecore.analytic, probecore.testing, probecore.cli;"
        "probecore.plugins.get_plugin_manager();"
        "bad = [m for m in ('torch', 'jax', 'jaxlib', 'tensorflow', 'matplotlib') "
        "if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""
