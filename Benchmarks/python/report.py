#!/usr/bin/env python3
"""Writes docs/performance.md (table, method, budgets) and docs/performance.png from results.json."""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results = json.load(open(sys.argv[1]))
docs = sys.argv[2]
r = results


def verdict(ok):
    return "**met**" if ok else "**missed**"


rows = []
for x in r["reading"]:
    ratio = x["full_ns"] / x["bare_ns"]
    rows.append(f"| one full reading, {x['backend']} ({x['counters']} counters) | {x['full_ns'] / 1000:.2f} µs | bare syscalls {x['bare_ns'] / 1000:.2f} µs | {ratio:.2f}× | ≤ 1.5× | {verdict(ratio <= 1.5)} |")
enc = r["encode"]
enc_ratio = enc["swift_sps"] / enc["python_sps"]
rows.append(f"| encode + compress, samples/s ({enc['samples_per_batch']}-sample batches) | {enc['swift_sps'] / 1e6:.2f} M/s | seed path {enc['python_sps'] / 1e6:.3f} M/s | {enc_ratio:.1f}× | ≥ 20× | {verdict(enc_ratio >= 20)} |")
d = r["daemon"]
cpu_ratio = d["python"]["cpu_s"] / max(d["swift"]["cpu_s"], 1e-9)
rss_ratio = d["swift"]["rss_kb"] / d["python"]["rss_kb"]
rows.append(f"| daemon, {r['seconds']} s: CPU seconds | {d['swift']['cpu_s']:.2f} s | seed {d['python']['cpu_s']:.2f} s | {cpu_ratio:.0f}× less | ≥ 50× less | {verdict(cpu_ratio >= 50)} |")
rows.append(f"| daemon, {r['seconds']} s: peak RSS | {d['swift']['rss_kb'] / 1024:.1f} MB | seed {d['python']['rss_kb'] / 1024:.1f} MB | {rss_ratio:.2f}× | ≤ 0.5× | {verdict(rss_ratio <= 0.5)} |")
k = r["khz"]
rows.append(f"| 1 kHz sampling, {r['seconds']} s: CPU share of one core | {k['cpu_share'] * 100:.2f} % | | | < 1 % | {verdict(k['cpu_share'] < 0.01)} |")
rows.append(f"| 1 kHz: window-length error p50 / p99 / max | {k['p50_us']} / {k['p99_us']} / {k['max_us']} µs | | | p99 < 100 µs | {verdict(k['p99_us'] < 100)} |")
rows.append(f"| 1 kHz: windows missed (of {k['windows']}) | {k['missed']} | | | none | {verdict(k['missed'] == 0)} |")


def slope(points):
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / den if den else 0


sd, sr = r["scaling_domains"], r["scaling_rate"]
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
ax = axes[0]
ax.bar(["rapl-exporter", "seed (Python)"], [d["swift"]["cpu_s"], d["python"]["cpu_s"]], color=["#2a7", "#c55"])
ax.set_title(f"CPU seconds over {r['seconds']} s (10 Hz, push 4 s)")
ax.set_yscale("log")
ax = axes[1]
ax.bar(["rapl-exporter", "seed (Python)"], [d["swift"]["rss_kb"] / 1024, d["python"]["rss_kb"] / 1024], color=["#2a7", "#c55"])
ax.set_title("peak RSS (MB)")
ax = axes[2]
ax.plot([p[0] for p in sr], [p[1] * 1000 for p in sr], "o-", label="by scrape rate (4 domains), x = Hz")
ax.plot([p[0] for p in sd], [p[1] * 1000 for p in sd], "s-", label="by domains (10 Hz), x = domains")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_ylabel("CPU ms per second")
ax.set_title("scaling")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(os.path.join(docs, "performance.png"), dpi=90)

m = r["machine"]
text = f"""# Performance

Measured by `scripts/benchmark` (about {r['total_minutes']:.0f} minutes) on {m['cpu']}, {m['cores']} cores,
Linux {m['kernel']}, {r['date']}. Release build with the static Swift standard library (the image's
binary, from `scripts/build-release`). The seed pipeline is rebuilt from PyPI (pyjoules 0.5.1, protobuf
{m['protobuf']}, python-snappy, requests; Python {m['python']}).

| measurement | rapl-exporter | reference | ratio | budget | |
|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""

Scaling (CPU per second of wall time; the slope is the cost of one more domain or one more window a second):

| domains (10 Hz) | CPU ms/s | | scrape rate (4 domains) | CPU ms/s |
|---|---|---|---|---|
""" + "\n".join(
    f"| {a[0]} | {a[1] * 1000:.3f} | | {b[0]} Hz | {b[1] * 1000:.3f} |" for a, b in zip(sd, sr)
) + f"""

Slopes: **{slope(sd) * 1e6:.1f} µs of CPU per second per domain** at 10 Hz, and
**{slope(sr) * 1e6:.2f} µs of CPU per window** (4 domains) — the per-window cost, including its share of
pushing.

![CPU, RSS and scaling](performance.png)

## Method

- **One full reading** = `EnergyMeter.read()` over every counter of the backend (what the sampler does each
  window: syscalls, wraparound, exact conversion, stuck detection), timed in a tight loop for
  {r['reading_seconds']} s by `rapl-bench reading`; **bare syscalls** = a C loop doing only the same reads
  (`pread` of each `energy_uj`, 8-byte `pread` of each MSR, `read` of each perf fd), same run. Both are
  pinned to CPU 0, the CPU the perf events count on: read from the other CPU, each perf read costs an
  inter-processor interrupt (measured here: about 11 µs per read instead of 0.7 µs, for both) — in
  production the sampler runs wherever the scheduler puts it, so real perf readings may cost that. perf: this
  machine has no RAPL PMU, so the fake `power` PMU maps the five energy events onto the real `software`
  PMU (cpu-clock): the real `perf_event_open`/`read` syscalls, not RAPL's. sysfs: fake tree on tmpfs
  (`/dev/shm`), one package with core, uncore, dram. MSR: a sparse file on tmpfs at the register offsets.
- **Encode + compress**: the same {enc['samples_per_batch']}-sample batch (4 series) encoded as a remote-write
  `WriteRequest` and snappy-compressed, {enc['batches']} times: `SeriesTable.encode` (swift-protobuf +
  libsnappy) vs the seed's path (`protobuf` + `python-snappy`), both producing {enc['bytes']} bytes.
- **Daemon as a whole**: {r['seconds']} s, both on the same fake sysfs tree (4 domains) advanced at 1 kHz by
  a C helper, both pushing to the same loopback Prometheus 2.42; scrape 0.1 s, push 4 s. CPU = user + system
  seconds and peak RSS from `/usr/bin/time -v`. The seed pipeline is `Benchmarks/python/seed_pipeline.py`:
  one pyJoules `EnergyMeter` window per scrape (pyJoules reopens each `energy_uj` at every read), a push
  thread building a `WriteRequest` per batch.
- **1 kHz sampling**: the daemon with `--scrape-interval 0.001` for {r['seconds']} s on the same tree and
  receiver; the window-length error is |window length − 1 ms| for every window, from the sampler's own
  histogram (logged at exit); missed = deadlines skipped because a wake-up came after them.
- **Scaling**: 10 s runs per point; domains 1, 4, 16, 64 (fake multi-socket trees, 4 domains per socket) at
  10 Hz, and 1, 10, 100, 1000 Hz at 4 domains.
- This is a 2-core VM shared with nothing else during the run. `/usr/bin/time` counts CPU in 10 ms steps,
  so the 10 s scaling points are coarse (±1 ms/s); the 60 s rows are the ones to compare.

## Where the time and memory go (profiled with callgrind; `perf` is not available here)

- **Per window** (1 kHz, remote write) the syscalls are a small part: the rest is the Swift concurrency
  sleep (a dispatch timer per `Task.sleep`, a job switch per wake-up), generic code instantiated at run time
  (`Sampler<ContinuousClock>` across modules: metadata and conformance look-ups), an actor hop and the
  window's arrays per window, and swift-protobuf's per-sample message objects at push time. Waiting for
  graceful shutdown used to add a task group per window (removed); the stdout JSON line used to append
  scalar by scalar (fixed). Next: a dedicated sampling thread with `clock_nanosleep(TIMER_ABSTIME)`, a
  preallocated ring the writer drains, and a hand-written encoder into a reused buffer checked against the
  generated types.
- **Peak RSS** is mostly the binary itself: of about 18 MB, 14 MB are clean pages of the 29 MB static
  executable touched at run time (Swift runtime, NIO, BoringSSL, swift-protobuf); the heap is under 2 MB,
  and `MALLOC_ARENA_MAX` changes nothing. https adds about 1.8 MB.
- **The seed pipeline** as rebuilt from PyPI is lighter than its 34 MB container suggests at 10 Hz
  (pyJoules reads four files per window; protobuf's upb backend is C), which is why the CPU ratio at 10 Hz is
  only a few times, not 50×.
"""
open(os.path.join(docs, "performance.md"), "w").write(text + r.get("notes", ""))
print(open(os.path.join(docs, "performance.md")).read())
