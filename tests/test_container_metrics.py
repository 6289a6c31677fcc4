"""The monitoring role's container metrics script: docker inspect's JSON turned into the node
exporter's text format, one sample per container and metric, its labels escaped."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "roles/monitoring/files/shipshape-container-metrics"
loader = importlib.machinery.SourceFileLoader("container_metrics", str(SCRIPT))
spec = importlib.util.spec_from_loader("container_metrics", loader)
metrics = importlib.util.module_from_spec(spec)
loader.exec_module(metrics)

WEB = {"Name": "/model-a-web-1", "RestartCount": 0,
       "State": {"Running": True, "Health": {"Status": "healthy"}},
       "Config": {"Labels": {"com.docker.compose.project": "model-a", "com.docker.compose.service": "web"}}}
SICK = {"Name": '/odd"name', "RestartCount": 4, "State": {"Running": True, "Health": {"Status": "unhealthy"}},
        "Config": {"Labels": {}}}
STOPPED = {"Name": "/model-b-web-1", "State": {"Running": False, "Health": {"Status": "unhealthy"}},
           "Config": {"Labels": {"com.docker.compose.project": "model-b", "com.docker.compose.service": "web"}}}
PLAIN = {"Name": "/plain", "State": {"Running": True}, "Config": {"Labels": None}}


def test_each_container_has_its_state_restarts_and_health():
    text = metrics.render([WEB, SICK, PLAIN, STOPPED])
    labels = 'name="model-a-web-1",project="model-a",service="web"'
    assert f"shipshape_container_running{{{labels}}} 1\n" in text
    assert f"shipshape_container_unhealthy{{{labels}}} 0\n" in text
    assert f"shipshape_container_restarts_total{{{labels}}} 0\n" in text
    sick = 'name="odd\\"name",project="",service=""'
    assert f"shipshape_container_unhealthy{{{sick}}} 1\n" in text
    assert f"shipshape_container_running{{{sick}}} 1\n" in text
    # The old slot's stopped container is stopped, not unhealthy.
    stopped = 'name="model-b-web-1",project="model-b",service="web"'
    assert f"shipshape_container_running{{{stopped}}} 0\n" in text
    assert f"shipshape_container_unhealthy{{{stopped}}} 0\n" in text
    assert f"shipshape_container_restarts_total{{{sick}}} 4\n" in text
    assert 'shipshape_container_unhealthy{name="plain",project="",service=""} 0\n' in text
    assert "# TYPE shipshape_container_restarts_total counter\n" in text
    assert "# TYPE shipshape_container_running gauge\n" in text


def test_no_container_still_declares_the_metrics():
    text = metrics.render([])
    assert text.count("# TYPE ") == 3 and "{" not in text


def test_the_file_is_replaced_whole_and_readable_by_the_exporter(tmp_path):
    out = tmp_path / "shipshape_containers.prom"
    metrics.write(str(out), metrics.render([WEB]))
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["shipshape_containers.prom"]


def test_without_a_docker_engine_the_file_lists_no_container(tmp_path):
    out = tmp_path / "c.prom"
    env = {"PATH": str(tmp_path)}  # no docker command at all
    subprocess.run([sys.executable, str(SCRIPT), str(out)], check=True, env=env)
    assert "{" not in out.read_text() and "# HELP shipshape_container_running" in out.read_text()
