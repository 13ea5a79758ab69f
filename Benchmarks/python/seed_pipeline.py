#!/usr/bin/env python3
"""The seed `cpu-pyjoules` pipeline rebuilt from PyPI (pyjoules 0.5.1, protobuf, python-snappy, requests),
as its README describes it: a monitor measures one pyJoules window per SCRAPE_INTERVAL_S and a push loop
sends a remote-write batch every PUSH_INTERVAL_S (keeping up to MAX_RETRY_BATCHES on failure).

pyJoules reads /sys/class/powercap/intel-rapl; it is pointed at the fake tree (FAKE_SYSFS) instead.
"""
import os
import sys
import threading
import time
from datetime import datetime

import requests
import snappy

sys.path.insert(0, os.environ["PB_DIR"])
import remote_pb2  # noqa: E402
from pyJoules.device import rapl_device  # noqa: E402

rapl_device.RAPL_API_DIR = os.environ["FAKE_SYSFS"] + "/class/powercap/intel-rapl"
from pyJoules.device.device_factory import DeviceFactory  # noqa: E402
from pyJoules.energy_meter import EnergyMeter  # noqa: E402

URL = os.environ["REMOTE_WRITE_URL"]
SCRAPE = float(os.environ.get("SCRAPE_INTERVAL_S", "0.1"))
PUSH = float(os.environ.get("PUSH_INTERVAL_S", "4"))
MAX_RETRY = int(os.environ.get("MAX_RETRY_BATCHES", "5"))
SOURCE = os.environ.get("SERVICE_LABEL", "cpu-pyjoules")
DURATION = float(os.environ["DURATION_S"])

meter = EnergyMeter(DeviceFactory.create_devices())
buffer, lock, stop = [], threading.Lock(), threading.Event()


def monitor():
    while not stop.is_set():
        meter.start(tag="window")
        time.sleep(SCRAPE)
        meter.stop()
        for sample in meter.get_trace():
            data = {"timestamp": datetime.fromtimestamp(sample.timestamp).isoformat(), "duration": sample.duration}
            data.update({k.replace("_", "-"): v for k, v in sample.energy.items()})
            with lock:
                buffer.append(data)


def process_data(data):
    ts = int(datetime.fromisoformat(data["timestamp"]).timestamp() * 1000)
    out = []
    for key, value in data.items():
        if key in ("timestamp", "duration"):
            continue
        series = remote_pb2.TimeSeries()
        for name, v in [("__name__", "pyjoules_remote_write_energy_uj"), ("component", key), ("source", SOURCE)]:
            label = series.labels.add()
            label.name, label.value = name, v
        sample = series.samples.add()
        sample.value, sample.timestamp = float(value), ts
        out.append(series)
    return out


def pusher():
    pending = []
    while not stop.wait(PUSH):
        with lock:
            items, buffer[:] = list(buffer), []
        req = remote_pb2.WriteRequest()
        for item in items:
            req.timeseries.extend(process_data(item))
        pending.append(snappy.compress(req.SerializeToString()))
        pending = pending[-MAX_RETRY:]
        while pending:
            try:
                r = requests.post(URL, data=pending[0], timeout=10, headers={
                    "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                    "X-Prometheus-Remote-Write-Version": "0.1.0"})
                if r.status_code >= 500:
                    break
                pending.pop(0)
            except requests.RequestException:
                break


threads = [threading.Thread(target=monitor), threading.Thread(target=pusher)]
for t in threads:
    t.start()
time.sleep(DURATION)
stop.set()
for t in threads:
    t.join()
