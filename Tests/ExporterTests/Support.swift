import Foundation
import Logging
import RAPLBackend
import RemoteWriteProtobuf
import Support
import Synchronization

@testable import Exporter

/// A manual clock: time moves only when a test advances it. `sleep` suspends until then, or (with a
/// doorbell) until the bell rings.
final class TestClock: DoorbellClock, Sendable {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by d: Duration) -> Instant { Instant(offset: offset + d) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (a: Instant, b: Instant) -> Bool { a.offset < b.offset }
    }

    private struct Sleeper {
        var id: Int
        var deadline: Instant
        var continuation: CheckedContinuation<Bool, any Error>
    }

    private struct State {
        var now = Instant(offset: .zero)
        var sleepers: [Sleeper] = []
        var nextID = 0
    }

    private let state = Mutex(State())

    var now: Instant { state.withLock { $0.now } }
    var minimumResolution: Duration { .zero }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        _ = try await sleep(until: deadline, bell: nil)
    }

    func sleep(until deadline: Instant, orUntilRung bell: Doorbell) async throws -> Bool {
        try await sleep(until: deadline, bell: bell)
    }

    /// The sleeper `id`, taken out: nil when something else woke it already.
    private func take(_ id: Int) -> Sleeper? {
        state.withLock { s in
            guard let i = s.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
            return s.sleepers.remove(at: i)
        }
    }

    private func sleep(until deadline: Instant, bell: Doorbell?) async throws -> Bool {
        let id = state.withLock { s -> Int in
            s.nextID += 1
            return s.nextID
        }
        let rang = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Bool, any Error>) in
                let resumeNow = state.withLock { s -> Bool in
                    if deadline <= s.now || Task.isCancelled { return true }
                    s.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    return false
                }
                if resumeNow {
                    if Task.isCancelled { continuation.resume(throwing: CancellationError()) } else { continuation.resume(returning: false) }
                    return
                }
                guard let bell else { return }
                let armed = bell.arm {
                    if let sleeper = self.take(id) { sleeper.continuation.resume(returning: true) } else { bell.ring() }
                }
                if !armed { self.take(id)?.continuation.resume(returning: true) }
            }
        } onCancel: {
            take(id)?.continuation.resume(throwing: CancellationError())
        }
        if !rang { bell?.disarm() }
        return rang
    }

    /// Moves time forward and wakes every sleeper whose deadline has come.
    func advance(by duration: Duration) {
        let due = state.withLock { s -> [Sleeper] in
            s.now = s.now.advanced(by: duration)
            let now = s.now
            let due = s.sleepers.filter { $0.deadline <= now }
            s.sleepers.removeAll { $0.deadline <= now }
            return due
        }
        for sleeper in due { sleeper.continuation.resume(returning: false) }
    }

    var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    /// The earliest deadline anyone sleeps until.
    var nextDeadline: Instant? { state.withLock { $0.sleepers.map(\.deadline).min() } }

    /// Yields until at least `count` tasks sleep on this clock (synchronisation without wall time).
    func waitForSleepers(_ count: Int = 1) async {
        while sleeperCount < count { await Task.yield() }
    }
}

/// A wall clock a test sets.
final class TestWallClock: WallClock {
    private let micros: Mutex<Int64>
    init(_ start: Int64 = 1_800_000_000_000_000) { micros = Mutex(start) }
    func nowMicroseconds() -> Int64 { micros.withLock { $0 } }
    func advance(by d: Duration) { micros.withLock { $0 += Int64(d.seconds * 1e6) } }
}

/// Holds the first request until the test answers it (204); answers every later one at once (204).
final class GatedTransport: RemoteWriteTransport {
    private let state = Mutex<(bodies: [[UInt8]], delivered: [[UInt8]], gate: CheckedContinuation<Void, Never>?, open: Bool)>(([], [], nil, false))

    func send(_ body: [UInt8], wire: RemoteWriteWire, timeout: Duration) async -> TransportResult {
        let first = state.withLock { s -> Bool in
            s.bodies.append(body)
            return s.bodies.count == 1
        }
        if first {
            await withCheckedContinuation { (gate: CheckedContinuation<Void, Never>) in
                let openNow = state.withLock { s -> Bool in
                    if s.open { return true }
                    s.gate = gate
                    return false
                }
                if openNow { gate.resume() }
            }
        }
        state.withLock { $0.delivered.append(body) }
        return .response(status: 204, headers: [], body: [])
    }

    /// Answers the first request.
    func answerFirst() {
        let gate = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.open = true
            defer { s.gate = nil }
            return s.gate
        }
        gate?.resume()
    }

    func waitForRequests(_ count: Int) async {
        while state.withLock({ $0.bodies.count }) < count { await Task.yield() }
    }

    /// The requests answered.
    var delivered: [Prometheus_WriteRequest] { state.withLock { $0.delivered }.map(RecordingTransport.decode) }
}

/// Records every request and answers from a script (then 204 forever); while `down()` is true every
/// request fails as a refused connection instead.
final class RecordingTransport: RemoteWriteTransport {
    private let state: Mutex<(script: [TransportResult], bodies: [[UInt8]], timeouts: [Duration], delivered: [[UInt8]], wires: [RemoteWriteWire])>
    private let down: @Sendable () -> Bool

    /// What every request gets once the script is used up.
    private let answer: TransportResult

    init(
        _ script: [TransportResult] = [], answer: TransportResult = .response(status: 204, headers: [], body: []),
        down: @escaping @Sendable () -> Bool = { false }
    ) {
        state = Mutex((script, [], [], [], []))
        self.answer = answer
        self.down = down
    }

    func send(_ body: [UInt8], wire: RemoteWriteWire, timeout: Duration) async -> TransportResult {
        let down = down()
        return state.withLock { s in
            s.bodies.append(body)
            s.wires.append(wire)
            s.timeouts.append(timeout)
            if down { return .failure("connection refused") }
            let result = s.script.isEmpty ? answer : s.script.removeFirst()
            if case .response(200..<300, _, _) = result { s.delivered.append(body) }
            return result
        }
    }

    var requests: [Prometheus_WriteRequest] { state.withLock { $0.bodies }.map(Self.decode) }

    /// The requests answered 2xx.
    var deliveredRequests: [Prometheus_WriteRequest] { state.withLock { $0.delivered }.map(Self.decode) }

    static func decode(_ body: [UInt8]) -> Prometheus_WriteRequest {
        try! Prometheus_WriteRequest(serializedBytes: Snappy.uncompress(body)!)
    }

    var bodies: [[UInt8]] { state.withLock { $0.bodies } }
    /// The protocol of each request, in order.
    var wires: [RemoteWriteWire] { state.withLock { $0.wires } }

    /// Replaces what the next requests get.
    func script(_ results: [TransportResult]) { state.withLock { $0.script = results } }
}

func energy(_ requests: [Prometheus_WriteRequest], component: String = "package-0") -> [(Int64, Double)] {
    requests.flatMap { $0.samples(["__name__": "pyjoules_remote_write_energy_uj", "component": component]) }
}

func window(_ values: [UInt64?], domains: [Domain]? = nil, endMicros: Int64, duration: Duration = .milliseconds(100)) -> EnergyWindow {
    let doms = domains ?? [Domain(.package, socket: 0), Domain(.core, socket: 0)].prefix(values.count).map { $0 }
    return EnergyWindow(
        startMicroseconds: endMicros - Int64(duration.seconds * 1e6),
        endMicroseconds: endMicros,
        duration: duration,
        domains: doms,
        energy: values,
        stuck: values.map { _ in false },
        readErrors: values.map { _ in 0 },
        glitches: values.map { _ in 0 },
        lateWindows: 0,
        missedWindows: 0,
        clockSteps: 0,
        clockStepMicroseconds: 0
    )
}
