// rapl-bench: the in-process measurements of scripts/benchmark.
//   rapl-bench reading perf|msr|sysfs SYSFS DEV PROC SECONDS   → one line: backend counters ns_per_reading ns_per_raw_pass
//   rapl-bench encode SAMPLES_PER_BATCH BATCHES OUT.json        → one line: samples/s bytes protobuf-only-samples/s protobuf-bytes; the batch as JSON
//   rapl-bench spool DIR WINDOWS PER_FLUSH                      → one line: CPU µs per window (encode + append + fdatasync), wall µs
//                                                                  per window, bytes per window, encode-only ns per window
//   rapl-bench spool-fill DIR WINDOWS END_MS                    → fills a spool with WINDOWS windows of 4 domains at 10 Hz ending at END_MS
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

case "spool", "spool-fill":
    guard args.count == 5, let windows = Int(args[3]), let third = Int64(args[4]) else {
        fail("spool DIR WINDOWS PER_FLUSH | spool-fill DIR WINDOWS END_MS")
    }
    let domains = [Domain(.package, socket: 0), Domain(.core, socket: 0), Domain(.uncore, socket: 0), Domain(.dram, socket: 0)]
    let source = SpoolSource(
        bootID: "bench", backend: "sysfs", domains: domains,
        counters: domains.indices.map { SpooledCounter(source: "intel-rapl:0:\($0)", domainIndex: $0, modulus: 262_143_328_851, unit: .microjoule) })
    let spool: Spool
    do { spool = try Spool.open(SpoolSettings(directory: args[2], maxBytes: 1 << 30)) } catch { fail("\(error)") }
    let fill = args[1] == "spool-fill"
    let perFlush = fill ? 1000 : Int(third)
    let firstMs = fill ? third - Int64(windows) * 100 : 1_800_000_000_000
    var totals = [UInt64](repeating: 0, count: 4)
    var records: [UInt8] = []
    var bytes = 0
    var encodeNs = 0.0
    let clock = ContinuousClock()
    func cpuSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
    let cpuStart = cpuSeconds()
    let start = clock.now
    var seq = spool.nextSeq
    var pending = 0
    for w in 0..<windows {
        if records.isEmpty { SpoolFormat.appendSource(source, to: &records) }
        let energy: [UInt64?] = (0..<4).map { UInt64(150_000 + (w * 7919 + $0 * 31) % 50_000) }
        for i in 0..<4 { totals[i] &+= energy[i]! }
        let encodeStart = clock.now
        SpoolFormat.appendWindow(
            SpooledWindow(
                seq: seq, timestampMilliseconds: firstMs + Int64(w) * 100, bootMicroseconds: Int64(w) * 100_000, energy: energy, totals: totals,
                counterValues: totals.map { $0 % 262_143_328_851 }), to: &records)
        encodeNs += nanoseconds(encodeStart.duration(to: clock.now))
        seq += 1
        pending += 1
        if pending == perFlush || w == windows - 1 {
            bytes += records.count
            guard spool.append(records, firstSeq: seq - UInt64(pending), lastSeq: seq - 1, windows: pending) else { fail("append failed") }
            records.removeAll(keepingCapacity: true)
            pending = 0
        }
    }
    let wall = nanoseconds(start.duration(to: clock.now)) / 1e3
    let cpu = (cpuSeconds() - cpuStart) * 1e6
    if !fill { print("\(cpu / Double(windows)) \(wall / Double(windows)) \(Double(bytes) / Double(windows)) \(encodeNs / Double(windows))") }

default:
    fail("unknown command \(args[1])")
}
