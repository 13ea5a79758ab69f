"""Scrapes a /metrics endpoint N times over one kept-alive connection, as Prometheus does, and reports
the server's CPU per scrape (the sum of its threads' run time from /proc/PID/task/*/schedstat, in ns,
before and after), the scrape latency percentiles, and the server's peak RSS (VmHWM).

    scrape_bench.py PID HOST PORT N  ->  JSON on stdout
"""
import http.client
import json
import os
import sys
import time


def cpu_ns(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def peak_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


pid, host, port, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
conn = http.client.HTTPConnection(host, port, timeout=5)
headers = {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"}
# Warm-up: the first scrapes touch code and pages for the first time.
for _ in range(20):
    conn.request("GET", "/metrics", headers=headers)
    body = conn.getresponse().read()
before = cpu_ns(pid)
latencies = []
for _ in range(n):
    t = time.perf_counter_ns()
    conn.request("GET", "/metrics", headers=headers)
    response = conn.getresponse()
    body = response.read()
    latencies.append(time.perf_counter_ns() - t)
    if response.status != 200:
        sys.exit(f"HTTP {response.status}")
after = cpu_ns(pid)
latencies.sort()
print(json.dumps({
    "scrapes": n,
    "cpu_us_per_scrape": (after - before) / n / 1000,
    "p50_us": latencies[n // 2] / 1000,
    "p99_us": latencies[n * 99 // 100] / 1000,
    "bytes": len(body),
    "peak_rss_kb": peak_rss_kb(pid),
}))
