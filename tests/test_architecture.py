"""The boundaries of the architecture, held by import-linter over the real import graph."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_services_share_only_shared_and_events():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every contract pyproject.toml declares was checked and kept, the original three among them.
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken" in result.stdout
    assert {
        "Services never import each other",
        "shared imports no service, gateway or CLI",
        "The gateway imports no service",
    } <= {contract["name"] for contract in CONTRACTS}


def test_every_service_but_identify_is_layered():
    """identify's sub-domains carry their own layers contracts."""
    layered = [c for c in CONTRACTS if c["type"] == "layers" and c.get("containers")]
    containers = {container for contract in layered for container in contract["containers"]}
    assert {"services.engage", "services.network", "services.value", "services.lifecycle"} <= containers
