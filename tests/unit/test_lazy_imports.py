"""The hub process and the CLI do not build rfc3987_syntax's parsers at import; IRIs still validate as before."""
import json
import subprocess
import sys

import pytest

from tests.unit.conftest import PARSERS

SEEN = """
import json, sys
{imports}
loaded_at_import = {parsers!r} in sys.modules
from jsonschema import FormatChecker
checker = FormatChecker()
answers = [checker.conforms(text, form) for text, form in
           (("http://example.org/a", "iri"), ("http://exa mple.org", "iri"), ("b/c", "iri-reference"),
            ("b c%", "iri-reference"))]
print(json.dumps([loaded_at_import, answers, {parsers!r} in sys.modules]))
"""


def run(imports: str) -> list:
    """In a fresh interpreter: whether the parsers were built by the imports, jsonschema's IRI answers after, and
    whether they were built by then."""
    out = subprocess.run([sys.executable, "-c", SEEN.format(imports=imports, parsers=PARSERS)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


CLI = """
from barehub import cli
try:
    cli.main(["--version"])
except SystemExit:
    pass
import jupyterhub.app  # (as `barehub check` and `barehub reload` load JupyterHub's classes)
"""


@pytest.mark.parametrize("imports", ["import barehub.hub", CLI], ids=["the hub process", "the barehub command"])
def test_jupyterhub_imports_without_building_the_iri_parsers_and_iris_validate_as_before(imports):
    plain_loaded, plain_answers, _ = run("import jupyterhub.app")
    assert plain_loaded  # (what the stand-in saves: jsonschema imports it eagerly)
    loaded, answers, loaded_after = run(imports)
    assert not loaded
    assert answers == plain_answers == [True, False, True, False]
    assert loaded_after  # the first check imported the real module


@pytest.mark.parametrize("command", ["jupyterhub.singleuser", "barehub.singleuser"])
def test_a_local_servers_command_starts_jupyter_server_without_building_the_iri_parsers(command):
    """c.Spawner.cmd is barehub-singleuser (barehub.singleuser): jupyterhub-singleuser with the stand-ins."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", command, "--version"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == __import__("jupyterhub").__version__, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    assert "jupyter_server.serverapp" in imported
    assert (PARSERS in imported) == (command == "jupyterhub.singleuser")
