import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import Exporter

/// The daemon's async work runs on one event loop: jobs of tasks that prefer the executor run on the
/// loop's thread, and the clock's sleeps are the loop's timers, ended early by cancellation.
@Suite struct EventLoopExecutionTests {
    let loop = MultiThreadedEventLoopGroup.singleton.next()

    @Test func tasksThatPreferTheExecutorRunOnTheLoop() async {
        let executor = EventLoopTaskExecutor(loop)
        let onLoop = await Task(executorPreference: executor) { [loop] in
            // Nonisolated async code and code after a suspension both run there.
            let before = loop.inEventLoop
            await Task.yield()
            return before && loop.inEventLoop
        }.value
        #expect(onLoop)
        #expect(!loop.inEventLoop)
    }

    @Test func aSleepEndsAtItsDeadlineNotBefore() async throws {
        let clock = EventLoopClock(loop)
        let start = clock.now
        try await clock.sleep(for: .milliseconds(50))
        #expect(start.duration(to: clock.now) >= .milliseconds(50))
        // A deadline already past returns at once.
        try await clock.sleep(until: start, tolerance: nil)
    }

    @Test func cancellationEndsASleepAtOnce() async {
        let clock = EventLoopClock(loop)
        let sleeper = Task { try await clock.sleep(for: .seconds(3600)) }
        sleeper.cancel()
        let result = await sleeper.result
        #expect(throws: CancellationError.self) { try result.get() }
    }

    @Test func aTaskCancelledBeforeItSleepsDoesNotSleep() async {
        let clock = EventLoopClock(loop)
        let started = Mutex(false)
        let sleeper = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            started.withLock { $0 = true }
            try await clock.sleep(for: .seconds(3600))
        }
        let result = await sleeper.result
        #expect(started.withLock { $0 })
        #expect(throws: CancellationError.self) { try result.get() }
    }
}
