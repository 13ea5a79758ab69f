#!/usr/bin/env python3
"""Checks the Kubernetes manifests against the API schemas of several Kubernetes versions
(kubernetes-validate's bundled OpenAPI schemas, strict: unknown fields are errors), and evaluates the
DaemonSet's pod against the Pod Security Standards' baseline and restricted rules, so that the level the
namespace asks for is the one the pod needs, for the reasons written in it. Exit status 1 on any failure."""
import subprocess
import sys
import tempfile

import yaml

ROOT = __file__.rsplit("/scripts/", 1)[0]
MANIFEST = ROOT + "/deploy/kubernetes/daemonset.yaml"
VERSIONS = ["1.27.0", "1.30.0", "1.33.0", "1.37.0"]
failures = []


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def validate(path, version):
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", version, path], capture_output=True, text=True)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


for version in VERSIONS:
    ok, output = validate(MANIFEST, version)
    check(ok, f"daemonset.yaml is valid against the Kubernetes {version} schemas (strict){'' if ok else ': ' + output}")

# The validator must catch a mistake: a misspelt field under strict validation.
with open(MANIFEST) as f:
    broken = f.read().replace("readOnlyRootFilesystem", "readOnlyRootFileSystem")
with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
    f.write(broken)
    f.flush()
    ok, _ = validate(f.name, VERSIONS[-1])
    check(not ok, "a misspelt field is refused (the validation is not a no-op)")

documents = [d for d in yaml.safe_load_all(open(MANIFEST)) if d]
namespace = next(d for d in documents if d["kind"] == "Namespace")
daemonset = next(d for d in documents if d["kind"] == "DaemonSet")
pod = daemonset["spec"]["template"]["spec"]

# Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards), the rules that
# can apply to this pod.
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
                 "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}


def violations(pod):
    baseline, restricted = [], []
    containers = pod.get("containers", []) + pod.get("initContainers", [])
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            baseline.append(key)
    for volume in pod.get("volumes", []):
        if "hostPath" in volume:
            baseline.append(f"hostPath volume {volume['name']}")
        allowed = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
        if not set(volume) - {"name"} <= allowed:
            restricted.append(f"volume type of {volume['name']}")
    pod_context = pod.get("securityContext", {})
    for c in containers:
        context = c.get("securityContext", {})
        if context.get("privileged"):
            baseline.append(f"{c['name']}: privileged")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                baseline.append(f"{c['name']}: hostPort")
        caps = context.get("capabilities", {})
        added = set(caps.get("add", []))
        if added - BASELINE_CAPS:
            baseline.append(f"{c['name']}: adds {sorted(added - BASELINE_CAPS)}")
        if added - {"NET_BIND_SERVICE"}:
            restricted.append(f"{c['name']}: adds capabilities beyond NET_BIND_SERVICE")
        if "ALL" not in caps.get("drop", []):
            restricted.append(f"{c['name']}: does not drop ALL")
        if context.get("allowPrivilegeEscalation", True) is not False:
            restricted.append(f"{c['name']}: allowPrivilegeEscalation")
        if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            restricted.append(f"{c['name']}: runAsNonRoot")
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            restricted.append(f"{c['name']}: seccomp")
    return baseline, restricted


baseline, restricted = violations(pod)
check(sorted(baseline) == ["hostPath volume host-sys", "rapl-exporter: adds ['DAC_READ_SEARCH']"],
      f"baseline is broken by the /sys hostPath and CAP_DAC_READ_SEARCH only: {baseline}")
check(restricted == ["volume type of host-sys", "rapl-exporter: adds capabilities beyond NET_BIND_SERVICE", "rapl-exporter: allowPrivilegeEscalation"],
      f"restricted additionally only by privilege escalation (for the file capability): {restricted}")
labels = namespace["metadata"].get("labels", {})
check(labels.get("pod-security.kubernetes.io/enforce") == "privileged", "the namespace enforces the level the pod needs: privileged")

if failures:
    print(f"{len(failures)} kubernetes check(s) failed", file=sys.stderr)
    sys.exit(1)
print("all kubernetes checks passed")
