#!/usr/bin/env python3
"""The reference for the hand-written OTLP encoder: parses a request with the generated types of the
`opentelemetry-proto` package (Google's protobuf runtime), serialises it again and compares the bytes
(a field out of order, of the wrong type or unknown to the schema would come back elsewhere), and prints
the request as JSON for the test to check what it says.

usage: otlp_reference.py ENCODED.bin      prints {"identical": bool, "request": {...}}
(a gzip'd body, as sent with Content-Encoding: gzip, is decompressed first)
"""
import gzip
import json
import sys

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

encoded = open(sys.argv[1], "rb").read()
if encoded[:2] == b"\x1f\x8b":  # a request body sent with Content-Encoding: gzip
    encoded = gzip.decompress(encoded)
request = metrics_service_pb2.ExportMetricsServiceRequest()
request.ParseFromString(encoded)
print(json.dumps({
    "identical": request.SerializeToString() == encoded,
    "request": MessageToDict(request, preserving_proto_field_name=True),
}))
