// rapl-bench: the in-process measurements of scripts/benchmark.
//   rapl-bench reading perf|msr|sysfs SYSFS DEV PROC SECONDS   → one line: backend counters ns_per_reading ns_per_raw_pass
//   rapl-bench encode SAMPLES_PER_BATCH BATCHES OUT.json        → one line: samples/s bytes protobuf-only-samples/s protobuf-bytes; the batch as JSON
import Exporter
import RAPLBackend

#if canImport(Glibc)
    import Glibc
#endif

func nanoseconds(_ d: Duration) -> Double { Double(d.components.seconds) * 1e9 + Double(d.components.attoseconds) / 1e9 }

func fail(_ message: String) -> Never {
    var text = "rapl-bench: \(message)\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(2)
}

let args = CommandLine.arguments
guard args.count >= 2 else { fail("usage: rapl-bench reading|encode …") }

switch args[1] {
case "reading":
    guard args.count == 7, let kind = BackendKind(rawValue: args[2]), let seconds = Double(args[6]) else {
        fail("reading BACKEND SYSFS DEV PROC SECONDS")
    }
    let paths = HardwarePaths(sysfsRoot: args[3], devRoot: args[4], procRoot: args[5])
    var facts = SystemFacts.current(paths: paths)
    if kind == .msr { facts.identity = CPUIdentity(vendor: .intel, family: 6, model: 0x55) }
    let selector = BackendSelector(paths: paths, facts: facts, moveCheck: .zero, leastPrivilege: false)
    guard case .success(let backend) = selector.open(kind) else { fail("\(kind) does not open") }
    let meter = EnergyMeter(backend: backend)
    let clock = ContinuousClock()
    // Full readings through the meter (what the sampler does), then raw passes over the counters.
    var iterations = 0
    let start = clock.now
    let end = start.advanced(by: .nanoseconds(Int64(seconds * 1e9)))
    while clock.now < end {
        for _ in 0..<1000 { meter.read(now: start.duration(to: clock.now)) }
        iterations += 1000
    }
    let perReading = nanoseconds(start.duration(to: clock.now)) / Double(iterations)
    var raw = 0
    var sink: UInt64 = 0
    let rawStart = clock.now
    let rawEnd = rawStart.advanced(by: .nanoseconds(Int64(seconds * 1e9)))
    while clock.now < rawEnd {
        for _ in 0..<1000 {
            for i in backend.counters.indices { sink &+= (try? backend.read(i).value) ?? 0 }
        }
        raw += 1000
    }
    let perRaw = nanoseconds(rawStart.duration(to: clock.now)) / Double(raw)
    print("\(kind) \(backend.counters.count) \(perReading) \(perRaw) \(sink & 1)")

case "encode":
    guard args.count == 5, let perBatch = Int(args[2]), let batches = Int(args[3]) else { fail("encode SAMPLES_PER_BATCH BATCHES OUT.json") }
    var table = SeriesTable()
    let components = ["package-0", "core", "uncore", "dram"]
    let series = components.map {
        table.series("pyjoules_remote_write_energy_uj", [("component", $0), ("socket", "0"), ("source", "cpu-pyjoules")], metadata: .windowEnergy)
    }
    var samples: [PendingSample] = []
    for i in 0..<perBatch {
        samples.append(
            PendingSample(
                series: series[i % series.count], value: Double(100_000 + (i * 7919) % 50_000),
                timestamp: 1_800_000_000_000 + Int64(i / series.count) * 100))
    }
    // The identical batch for the Python side.
    var json = "{\"components\": [" + components.map { "\"\($0)\"" }.joined(separator: ",") + "], \"samples\": ["
    json += samples.map { "[\($0.series), \($0.value), \($0.timestamp)]" }.joined(separator: ",") + "]}\n"
    let fd = open(args[4], O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    json.withUTF8 { _ = write(fd, $0.baseAddress, $0.count) }
    close(fd)
    let clock = ContinuousClock()
    var bytes = 0
    let start = clock.now
    var encoder = RemoteWriteEncoder()
    for _ in 0..<batches { bytes = encoder.encode(samples[...], table: table).count }
    let elapsed = nanoseconds(start.duration(to: clock.now)) / 1e9
    // The protobuf encoding alone (no snappy), to show where the time goes.
    let protobufStart = clock.now
    var protobufBytes = 0
    for _ in 0..<batches { protobufBytes = encoder.protobufBytes(samples[...], table: table).count }
    let protobufElapsed = nanoseconds(protobufStart.duration(to: clock.now)) / 1e9
    // The same batch as remote write 2.0 (symbols, label references, metadata), compressed.
    let v2Start = clock.now
    var v2Bytes = 0
    for _ in 0..<batches { v2Bytes = encoder.encode(samples[...], table: table, wire: .v2).count }
    let v2Elapsed = nanoseconds(v2Start.duration(to: clock.now)) / 1e9
    // And as OTLP (the cumulative sums, gzip'd): the same samples under the cumulative series.
    let cumulative = components.map { table.series("rapl_energy_joules_total", [("component", $0), ("socket", "0"), ("source", "cpu-pyjoules")]) }
    let sums = samples.map { PendingSample(series: cumulative[series.firstIndex(of: $0.series)!], value: $0.value / 1e6, timestamp: $0.timestamp) }
    let otlp = OTLPEncoder(resource: [("service.name", "rapl-exporter"), ("host.name", "bench")], scopeVersion: "bench", startNanoseconds: 1)
    let otlpStart = clock.now
    var otlpBytes = 0
    for _ in 0..<batches { otlpBytes = Gzip.compress(otlp.encode(sums[...], table: table)).count }
    let otlpElapsed = nanoseconds(otlpStart.duration(to: clock.now)) / 1e9
    let n = Double(perBatch * batches)
    print("\(n / elapsed) \(bytes) \(n / protobufElapsed) \(protobufBytes) \(n / v2Elapsed) \(v2Bytes) \(n / otlpElapsed) \(otlpBytes)")

default:
    fail("unknown command \(args[1])")
}
