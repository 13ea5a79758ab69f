// Waking the remote writer's push loop from another thread, before its timer: the sampling thread rings
// after each batch of windows it hands over (the push then starts while the batch is fresh, in one
// wake-up of the loop instead of a timer of its own), and shutdown rings to end the loop's sleep.

import Synchronization

/// Ends one task's sleep early, from any thread. A ring while nobody sleeps is kept for the next sleep,
/// which then returns at once; rings before it are not counted (one is enough to say "something came").
/// The sleep is the clock's (``DoorbellClock``): no task of its own per wait.
public final class Doorbell: Sendable {
    private enum State {
        case idle
        case rung
        /// A sleep is armed: calling this ends it.
        case armed(@Sendable () -> Void)
    }

    private let state = Mutex(State.idle)

    public init() {}

    /// Ends the sleep armed now, or the next one as soon as it starts.
    public func ring() {
        let wake = state.withLock { state -> (@Sendable () -> Void)? in
            if case .armed(let wake) = state {
                state = .idle
                return wake
            }
            state = .rung
            return nil
        }
        wake?()
    }

    /// Arms a sleep: `wake` is called (once, on the ringing thread) by the next ring. False, with the
    /// kept ring taken, when it rang since the last sleep: the sleep must not start.
    func arm(_ wake: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { state in
            if case .rung = state {
                state = .idle
                return false
            }
            state = .armed(wake)
            return true
        }
    }

    /// The sleep ended otherwise (its deadline, cancellation): a later ring is kept, not delivered to it.
    func disarm() {
        state.withLock { state in
            if case .armed = state { state = .idle }
        }
    }
}

/// A clock whose sleep a ``Doorbell`` can end before its deadline.
public protocol DoorbellClock: Clock {
    /// Sleeps until `deadline` or until `bell` rings, whichever comes first: true when it rang (also for
    /// a ring kept from before the call). Throws `CancellationError` when the task is cancelled.
    func sleep(until deadline: Instant, orUntilRung bell: Doorbell) async throws -> Bool
}
