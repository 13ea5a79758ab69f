#!/usr/bin/env python3
"""Builds a fake RAPL machine for the benchmarks, in the kernel's layout (see Tests/TestSupport/FakeTree.swift).

maketree.py DIR DOMAINS  ->  DIR/sys (powercap zones, four per socket: package-N + core, uncore, dram;
CPU topology; a perf `power` PMU mapped onto the real software PMU), DIR/dev/cpu/0/msr (Intel registers),
DIR/proc (cpuinfo, perf_event_paranoid). Prints the energy_uj paths, one per line.
"""
import os
import struct
import sys

root, domains = sys.argv[1], int(sys.argv[2])
sockets = (domains + 3) // 4
sysfs = os.path.join(root, "sys")
devices = os.path.join(sysfs, "devices/virtual/powercap/intel-rapl")
klass = os.path.join(sysfs, "class/powercap")
os.makedirs(devices, exist_ok=True)
os.makedirs(klass, exist_ok=True)
if not os.path.exists(os.path.join(klass, "intel-rapl")):
    os.symlink("../../devices/virtual/powercap/intel-rapl", os.path.join(klass, "intel-rapl"))
paths = []


def zone(rel, name):
    d = os.path.join(devices, rel)
    os.makedirs(d, exist_ok=True)
    for f, v in [("name", name), ("energy_uj", "%020d" % 0), ("max_energy_range_uj", "262143328850")]:
        with open(os.path.join(d, f), "w") as fh:
            fh.write(v + "\n")
    link = os.path.join(klass, os.path.basename(rel))
    if not os.path.exists(link):
        os.symlink(os.path.relpath(d, klass), link)
    paths.append(os.path.join(d, "energy_uj"))


for s in range(sockets):
    top = "intel-rapl:%x" % s
    zone(top, "package-%d" % s)
    for i, sub in enumerate(["core", "uncore", "dram"]):
        if len(paths) < domains:
            zone("%s/intel-rapl:%x:%x" % (top, s, i), sub)

for cpu in range(max(sockets, 1)):
    t = os.path.join(sysfs, "devices/system/cpu/cpu%d/topology" % cpu)
    os.makedirs(t, exist_ok=True)
    for f, v in [("physical_package_id", cpu), ("die_id", 0), ("core_id", 0)]:
        open(os.path.join(t, f), "w").write("%d\n" % v)

pmu = os.path.join(sysfs, "bus/event_source/devices/power")
os.makedirs(os.path.join(pmu, "events"), exist_ok=True)
open(os.path.join(pmu, "type"), "w").write(open("/sys/bus/event_source/devices/software/type").read())
open(os.path.join(pmu, "cpumask"), "w").write("0\n")
for ev in ["energy-pkg", "energy-cores", "energy-gpu", "energy-ram", "energy-psys"]:
    open(os.path.join(pmu, "events", ev), "w").write("event=0x00\n")
    open(os.path.join(pmu, "events", ev + ".scale"), "w").write("2.3283064365386962890625e-10\n")
    open(os.path.join(pmu, "events", ev + ".unit"), "w").write("Joules\n")

os.makedirs(os.path.join(root, "dev/cpu/0"), exist_ok=True)
with open(os.path.join(root, "dev/cpu/0/msr"), "wb") as msr:
    for reg, value in [(0x606, 0xA0E03), (0x611, 1000), (0x619, 2000), (0x639, 3000), (0x641, 4000), (0x64D, 5000)]:
        msr.seek(reg)
        msr.write(struct.pack("<Q", value))

os.makedirs(os.path.join(root, "proc/sys/kernel"), exist_ok=True)
open(os.path.join(root, "proc/sys/kernel/perf_event_paranoid"), "w").write("2\n")
open(os.path.join(root, "proc/cpuinfo"), "w").write("vendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n\n")
print("\n".join(paths))
