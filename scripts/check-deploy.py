#!/usr/bin/env python3
"""Parses and checks deploy/ and the Dockerfile (Docker itself does not run on the CI machines).

Prints one 'ok: …' line per check and exits non-zero on the first failure. Run by the test suite.
"""
import json
import os
import re
import sys

import yaml

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


class Reset:
    def __init__(self, value):
        self.value = value


class ComposeLoader(yaml.SafeLoader):
    pass


# Compose's `!reset` tag (2.24+): keep it visible so the overlay can be checked.
ComposeLoader.add_constructor("!reset", lambda loader, node: Reset(loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else None))


def load(path, loader=yaml.SafeLoader, many=False):
    with open(os.path.join(root, path)) as f:
        return list(yaml.load_all(f, Loader=loader)) if many else yaml.load(f, Loader=loader)


def check(condition, message):
    if not condition:
        print("FAIL: " + message)
        sys.exit(1)
    print("ok: " + message)


base = load("deploy/docker-compose.yml", ComposeLoader)
services = base["services"]
check(set(services) == {"rapl-exporter", "prometheus", "grafana"}, "compose has rapl-exporter, prometheus and grafana")
exporter = services["rapl-exporter"]
check(exporter["environment"]["REMOTE_WRITE_URL"] == "http://prometheus:9090/api/v1/write", "exporter pushes to the compose prometheus")
check("--web.enable-remote-write-receiver" in services["prometheus"]["command"], "prometheus has the remote-write receiver on")
check("/sys:/host/sys:ro" in exporter["volumes"] and "/host/sys" in exporter["command"], "host /sys mounted read-only at /host/sys and passed with --sysfs-root")
check(exporter["cap_drop"] == ["ALL"] and exporter["cap_add"] == ["DAC_READ_SEARCH"], "exporter drops all capabilities but DAC_READ_SEARCH")
check("apparmor=rapl-exporter" in exporter["security_opt"], "exporter runs under the rapl-exporter AppArmor profile")
spool_dir = exporter["environment"].get("SPOOL_DIR", "")
check(spool_dir.startswith("/var/lib/rapl-exporter/") and "rapl-spool:/var/lib/rapl-exporter" in exporter["volumes"] and "rapl-spool" in base["volumes"],
      "compose: the spool is on a named volume at the image's /var/lib/rapl-exporter")
for mount in services["grafana"]["volumes"]:
    check(os.path.exists(os.path.join(root, "deploy", mount.split(":")[0])), f"grafana mount {mount.split(':')[0]} exists")
check(os.path.exists(os.path.join(root, "deploy", services["prometheus"]["volumes"][0].split(":")[0])), "prometheus config mount exists")

overlay = load("deploy/docker-compose.privileged.yml", ComposeLoader)["services"]["rapl-exporter"]
check(overlay.get("privileged") is True, "privileged overlay sets privileged")
check(isinstance(overlay.get("security_opt"), Reset) and overlay["security_opt"].value == [], "privileged overlay really clears security_opt with !reset")
check(isinstance(overlay.get("cap_drop"), Reset), "privileged overlay resets cap_drop")
simulated = load("deploy/docker-compose.simulated.yml", ComposeLoader)["services"]["rapl-exporter"]
check(simulated.get("command") == ["--backend", "simulated"], "simulated overlay selects the simulated backend")
check(isinstance(simulated.get("security_opt"), Reset) and simulated["security_opt"].value == [], "simulated overlay clears security_opt with !reset")
check(isinstance(simulated.get("cap_add"), Reset) and simulated["cap_add"].value == [], "simulated overlay adds no capability")

scrape = load("deploy/docker-compose.scrape.yml", ComposeLoader)["services"]
scraping = scrape["rapl-exporter"]
check("--listen" in scraping["command"] and scraping["environment"]["REMOTE_WRITE_URL"] == "", "scrape overlay: the exporter listens and does not push")
listen_port = scraping["command"][scraping["command"].index("--listen") + 1].rsplit(":", 1)[1]
base_target = services["prometheus"]["volumes"][0].split(":")[1]
source, target = scrape["prometheus"]["volumes"][0].split(":")[:2]
check(target == base_target, "scrape overlay: its prometheus config replaces the base mount (same container path)")
scrape_config = load(os.path.join("deploy", source))
targets = [t for job in scrape_config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
check(f"rapl-exporter:{listen_port}" in targets, "scrape overlay: prometheus scrapes the port the exporter listens on")

docs = [d for d in load("deploy/kubernetes/daemonset.yaml", many=True) if d]
kinds = [d["kind"] for d in docs]
check(kinds == ["Namespace", "Secret", "DaemonSet"], "kubernetes manifest: Namespace, Secret, DaemonSet")
ds = docs[2]
pod = ds["spec"]["template"]["spec"]
check(ds["spec"]["selector"]["matchLabels"] == ds["spec"]["template"]["metadata"]["labels"], "daemonset selector matches its pod labels")
container = pod["containers"][0]
check(pod["securityContext"]["runAsNonRoot"] is True, "daemonset runs as non-root")
check(container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]}, "daemonset: one capability")
check(container["livenessProbe"]["exec"]["command"] == ["rapl-exporter", "healthcheck"], "daemonset liveness probe is the exporter's own healthcheck")
env = {e["name"]: e.get("value") for e in container["env"]}
spool_mount = next((m for m in container["volumeMounts"] if m["name"] == "spool"), None)
check(spool_mount is not None and env.get("SPOOL_DIR", "").startswith(spool_mount["mountPath"] + "/"), "daemonset: SPOOL_DIR lies on the spool volume")
mounts = {m["name"] for m in container["volumeMounts"]}
check(mounts == {v["name"] for v in pod["volumes"]}, "every volume is mounted and every mount has a volume")

dash = json.load(open(os.path.join(root, "deploy/grafana/dashboards/rapl-energy.json")))
exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
check(any("pyjoules_remote_write_energy_uj" in e for e in exprs), "dashboard queries the energy series")
check(all("rapl_energy_joules_total" in e for e in exprs[:3]), "dashboard energy panels read the scraped counter too")
check({v["name"] for v in dash["templating"]["list"]} == {"source", "instance"}, "dashboard variables: source (push) and instance (scrape)")
check(len({p["id"] for p in dash["panels"]}) == len(dash["panels"]), "dashboard panel ids are unique")
for path in ["deploy/grafana/provisioning/datasources/prometheus.yml", "deploy/grafana/provisioning/dashboards/rapl.yml"]:
    check(load(path)["apiVersion"] == 1, f"{path} parses")

dockerfile = open(os.path.join(root, "Dockerfile")).read()
check("RUN ./scripts/build-release" in dockerfile, "the image builds with scripts/build-release, as CI does")
check(re.search(r"^USER 10001", dockerfile, re.M) is not None, "the image runs as a non-root user")
check('HEALTHCHECK' in dockerfile and '"rapl-exporter", "healthcheck"' in dockerfile, "the image's health check is the exporter's own")
check("install -d -o 10001 -g 10001 -m 0750 /var/lib/rapl-exporter" in dockerfile, "the image's spool home belongs to its user")
check("--static-swift-stdlib" in open(os.path.join(root, "scripts/build-release")).read(), "the release build links the Swift stdlib statically")
print("all deploy checks passed")
