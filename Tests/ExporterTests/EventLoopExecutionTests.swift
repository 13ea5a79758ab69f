import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import Exporter

/// The daemon's async work runs on one event loop: jobs of tasks that prefer the executor run on the
/// loop's thread, and the clock's sleeps are the loop's timers, ended early by cancellation or a
/// doorbell.
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

    /// A ring from another thread (the sampling thread's, after a batch) ends the sleep long before its
    /// deadline and says so; a sleep nobody rings ends at its deadline and says that.
    @Test func aDoorbellEndsASleepEarlyFromAnotherThread() async throws {
        let clock = EventLoopClock(loop)
        let bell = Doorbell()
        let start = clock.now
        let sleeper = Task { try await clock.sleep(until: start.advanced(by: .seconds(3600)), orUntilRung: bell) }
        // From a thread of the default pool, not the loop's; the ring may come before the sleep starts:
        // it is kept for it.
        Task.detached { bell.ring() }
        #expect(try await sleeper.value)
        #expect(start.duration(to: clock.now) < .seconds(60))
        let unrung = try await clock.sleep(until: clock.now.advanced(by: .milliseconds(30)), orUntilRung: bell)
        #expect(!unrung)
    }

    /// A ring while nobody sleeps is kept for the next sleep (which returns at once), and only one: the
    /// sleep after it waits for its deadline again.
    @Test func aRingWhileNobodySleepsEndsTheNextSleepOnly() async throws {
        let clock = EventLoopClock(loop)
        let bell = Doorbell()
        bell.ring()
        bell.ring()
        #expect(try await clock.sleep(until: clock.now.advanced(by: .seconds(3600)), orUntilRung: bell))
        let start = clock.now
        #expect(try await !clock.sleep(until: start.advanced(by: .milliseconds(30)), orUntilRung: bell))
        #expect(start.duration(to: clock.now) >= .milliseconds(30))
    }

    /// Cancellation still ends a sleep a doorbell could end, and a ring after it goes to the next sleep.
    @Test func cancellationEndsASleepWithADoorbell() async throws {
        let clock = EventLoopClock(loop)
        let bell = Doorbell()
        let sleeper = Task { try await clock.sleep(until: clock.now.advanced(by: .seconds(3600)), orUntilRung: bell) }
        sleeper.cancel()
        let result = await sleeper.result
        #expect(throws: CancellationError.self) { try result.get() }
        bell.ring()
        #expect(try await clock.sleep(until: clock.now.advanced(by: .seconds(3600)), orUntilRung: bell))
    }
}
