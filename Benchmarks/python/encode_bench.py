#!/usr/bin/env python3
"""The seed's encode path on the identical batch: protobuf WriteRequest + python-snappy. Prints samples/s."""
import json
import sys
import time

import snappy

sys.path.insert(0, sys.argv[3])
import remote_pb2  # noqa: E402

batch = json.load(open(sys.argv[1]))
batches = int(sys.argv[2])
components = batch["components"]
samples = batch["samples"]


def encode():
    req = remote_pb2.WriteRequest()
    series = {}
    for s, value, ts in samples:
        if s not in series:
            t = req.timeseries.add()
            for name, v in sorted([("__name__", "pyjoules_remote_write_energy_uj"), ("component", components[s]), ("socket", "0"), ("source", "cpu-pyjoules")]):
                label = t.labels.add()
                label.name, label.value = name, v
            series[s] = t
        sample = series[s].samples.add()
        sample.value, sample.timestamp = value, ts
    return snappy.compress(req.SerializeToString())


start = time.perf_counter()
for _ in range(batches):
    out = encode()
elapsed = time.perf_counter() - start
print(len(samples) * batches / elapsed, len(out))
