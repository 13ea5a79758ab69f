import RAPLBackend
import Testing

@testable import Exporter

/// What `top` shows, computed and laid out without a terminal.
@Suite struct LiveViewTests {
    let package = Domain(.package, socket: 0)
    let dram = Domain(.dram, socket: 0)

    @Test func wattsMinAverageMaxAndAGapForAFailedRead() {
        var view = LiveView(backend: .sysfs, backends: [.sysfs])
        view.update(domains: [package, dram], energy: [10_000_000, 2_000_000], seconds: 1)
        view.update(domains: [package, dram], energy: [20_000_000, nil], seconds: 2)
        let row = view.rows[0]
        #expect(row.now == 10 && row.min == 10 && row.max == 10 && row.average == 10)
        view.update(domains: [package, dram], energy: [30_000_000, 1_000_000], seconds: 1)
        #expect(view.rows[0].min == 10 && view.rows[0].max == 30 && view.rows[0].average == 50.0 / 3)
        #expect(view.rows[1].history == [2, 1], "a refresh without energy adds nothing")
        #expect(view.nextBackend == nil)
    }

    @Test func theThrottledShareIsTheCountersChangeOverTheTime() {
        var view = LiveView(backend: .msr, backends: [.perf, .msr])
        var limits = PowerLimitSnapshot()
        limits.throttledSeconds = [DomainFigure(package, 1)]
        view.update(limits: limits, seconds: 0)
        limits.throttledSeconds = [DomainFigure(package, 1.25)]
        view.update(limits: limits, seconds: 1)
        view.update(domains: [package], energy: [1_000_000], seconds: 1)
        #expect(view.line() == "t=1.0s backend=msr package-0/0=1.00W throttled package-0/0=25.0%")
        #expect(view.nextBackend == .perf)
    }

    @Test func theFrameFitsAndColourIsOptional() {
        var view = LiveView(backend: .sysfs, backends: [.sysfs, .msr])
        let domains = (0..<30).map { Domain(.package, socket: $0) }
        for i in 1...200 { view.update(domains: domains, energy: domains.map { _ in UInt64(i) * 100_000 }, seconds: 1) }
        let plain = view.frame(width: 80, height: 24, color: false)
        #expect(plain.count == 24)
        #expect(plain.allSatisfy { $0.count <= 80 })
        #expect(plain.contains { $0.hasPrefix("… 10 more domains") })
        #expect(!plain.joined().contains("\u{1B}"))
        #expect(view.frame(width: 80, height: 24, color: true)[0].hasPrefix("\u{1B}[7m"))
        // The newest refreshes, rising: the sparkline ends at its top.
        #expect(LiveView.sparkline([1, 2, 3, 4, 5, 6, 7, 8], width: 4) == "▁▃▆█")
        #expect(LiveView.sparkline([3, 3], width: 10) == "▁▁")
    }
}
