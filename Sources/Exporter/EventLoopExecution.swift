// Running the daemon's async work on one NIO event loop thread: a task executor that runs jobs there,
// and a clock whose sleeps are that loop's timers.
//
// Why: with Swift concurrency's default executor, every push woke about eight threads (libdispatch's
// timer thread for the push interval's sleep, two or three cooperative-pool threads handing the work
// along, NIO's event loop for the socket, and back), each of them coming back to a cold CPU cache — on
// a VM that cost more than the push itself (docs/performance.md). With the writer's task preferring the
// event loop and sleeping on its timers, a push wakes that one thread: its timer fires, the batch is
// encoded, the request sent and the response read, all there.

import NIOCore
import Support
import Synchronization

/// A `TaskExecutor` that runs every job it is given on one NIO event loop (in the order given). Tasks
/// that prefer it (`withTaskExecutorPreference`, `Task(executorPreference:)`) run their nonisolated code
/// and their default actors' code on the loop's thread.
public final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    public let eventLoop: any EventLoop

    public init(_ eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        // From the loop's own thread this only queues the job; from another it also wakes the loop.
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// A clock whose `sleep` is a timer of a NIO event loop: the sleeping task is resumed by the loop's
/// thread when the timer fires (with `EventLoopTaskExecutor`'s preference, it then runs right there),
/// not by libdispatch's timer thread. A ``Doorbell`` can end a sleep early (``DoorbellClock``).
/// Instants are `ContinuousClock`'s.
public struct EventLoopClock: DoorbellClock {
    public typealias Instant = ContinuousClock.Instant
    public typealias Duration = Swift.Duration

    public let eventLoop: any EventLoop

    public init(_ eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    public var now: Instant { .now }
    public var minimumResolution: Duration { ContinuousClock().minimumResolution }

    public func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        _ = try await sleep(until: deadline, bell: nil)
    }

    public func sleep(until deadline: Instant, orUntilRung bell: Doorbell) async throws -> Bool {
        try await sleep(until: deadline, bell: bell)
    }

    private func sleep(until deadline: Instant, bell: Doorbell?) async throws -> Bool {
        let wait = Instant.now.duration(to: deadline)
        guard wait > .zero else {
            try Task.checkCancellation()
            return false
        }
        // Resumed exactly once: by the timer (false), the bell (true) or cancellation (which also cancels
        // the timer). A ring comes from another thread; the timer it leaves is cancelled here, back on
        // the loop, rather than from that thread (which would be a second hand-over to the loop).
        let state = Mutex<SleepState>(.waiting)
        let loop = eventLoop
        let (rang, timer) = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<(Bool, Scheduled<Void>?), any Error>) in
                let scheduled = loop.scheduleTask(in: .nanoseconds(wait.wholeNanoseconds)) {
                    if let continuation = state.withLock({ $0.take() }) { continuation.resume(returning: (false, nil)) }
                }
                let cancelled = state.withLock { s -> Bool in
                    if case .cancelled = s { return true }
                    s = .sleeping(continuation, scheduled)
                    return false
                }
                if cancelled {
                    scheduled.cancel()
                    continuation.resume(throwing: CancellationError())
                    return
                }
                guard let bell else { return }
                let armed = bell.arm {
                    if let continuation = state.withLock({ $0.take() }) {
                        continuation.resume(returning: (true, scheduled))
                    } else {
                        bell.ring()  // the timer (or cancellation) came first: the ring is for the next sleep
                    }
                }
                if !armed, let continuation = state.withLock({ $0.take() }) { continuation.resume(returning: (true, scheduled)) }
            }
        } onCancel: {
            if let (continuation, timer) = state.withLock({ $0.cancel() }) {
                timer.cancel()
                continuation.resume(throwing: CancellationError())
            }
        }
        if rang {
            timer?.cancel()
        } else {
            bell?.disarm()
        }
        return rang
    }
}

private enum SleepState {
    case waiting
    case sleeping(CheckedContinuation<(Bool, Scheduled<Void>?), any Error>, Scheduled<Void>)
    case cancelled
    case done

    /// The timer fired or the bell rang: the continuation to resume, if nothing resumed it yet.
    mutating func take() -> CheckedContinuation<(Bool, Scheduled<Void>?), any Error>? {
        defer { self = .done }
        if case .sleeping(let c, _) = self { return c }
        return nil
    }

    /// Cancellation: the continuation to resume and the timer to cancel, if nothing resumed it yet.
    mutating func cancel() -> (CheckedContinuation<(Bool, Scheduled<Void>?), any Error>, Scheduled<Void>)? {
        switch self {
        case .sleeping(let c, let s):
            self = .done
            return (c, s)
        case .waiting:
            self = .cancelled
            return nil
        case .cancelled, .done:
            return nil
        }
    }
}
