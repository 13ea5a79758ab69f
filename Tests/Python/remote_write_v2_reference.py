#!/usr/bin/env python3
"""The reference for the hand-written remote write 2.0 encoder: builds the same request with the types
protoc generates from Protos/remote_v2.proto (Google's protobuf runtime) and compares the bytes.

usage: remote_write_v2_reference.py GENERATED_DIR EXPECTED.json ENCODED.bin
EXPECTED.json: {"symbols": [...], "series": [{"refs": [...], "samples": [[value_bits_hex, ts], ...],
"type": n, "help": ref, "unit": ref}]}. Prints "identical" and exits 0, or says where they differ.
"""
import json
import struct
import sys

sys.path.insert(0, sys.argv[1])
import remote_v2_pb2 as v2  # noqa: E402

expected = json.load(open(sys.argv[2]))
encoded = open(sys.argv[3], "rb").read()

request = v2.Request()
request.symbols.extend(expected["symbols"])
for s in expected["series"]:
    ts = request.timeseries.add()
    ts.labels_refs.extend(s["refs"])
    for bits, timestamp in s["samples"]:
        sample = ts.samples.add()
        sample.value = struct.unpack("<d", bytes.fromhex(bits))[0]
        sample.timestamp = timestamp
    ts.metadata.type = s["type"]
    ts.metadata.help_ref = s["help"]
    ts.metadata.unit_ref = s["unit"]
    ts.metadata.SetInParent()
reference = request.SerializeToString()

v2.Request().ParseFromString(encoded)  # decodes at all
if reference != encoded:
    at = next((i for i, (a, b) in enumerate(zip(reference, encoded)) if a != b), min(len(reference), len(encoded)))
    print(f"bytes differ at offset {at}: reference {len(reference)} bytes, encoded {len(encoded)} bytes")
    sys.exit(1)
print("identical")
