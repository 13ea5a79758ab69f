import Foundation
import Synchronization
import TestSupport
import Testing

@testable import RAPLBackend

/// `rapl-exporter top` in a real terminal: tmux runs it in an 80×24 pane, send-keys types, capture-pane
/// reads the screen; the terminal must be restored on every way out.
@Suite(.serialized, .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux"), "needs tmux (scripts/test installs it)"))
struct TopCommandTests {
    /// A tmux server of the test's own (its socket name), with one 80×24 session.
    final class Pane {
        let socket = "rapl-top-\(UUID().uuidString.prefix(8))"
        let directory = NSTemporaryDirectory() + "rapl-top-\(UUID().uuidString.prefix(8))"

        init(_ command: String, environment: [String: String] = [:]) throws {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let exports = environment.map { "export \($0.key)=\($0.value); " }.joined()
            // The shell reports the terminal's modes, then the status (the test waits for it), after top, then
            // waits to be read. Its
            // SIGINT handler (not an ignore: top gets the default back at exec) keeps it alive through C-c.
            let script =
                "trap true INT; \(exports)\(command); s=$?; stty -a > \(directory)/stty; echo EXIT=$s > \(directory)/status.tmp; mv \(directory)/status.tmp \(directory)/status; echo AFTER-TOP; sleep 60"
            // The server this starts lives on: it must hold no pipe of this process (a Process reading one
            // would never see its end), so bash (dash cannot name descriptors above 9) closes every one but 0-2, which are /dev/null.
            let start = Process()
            start.executableURL = URL(fileURLWithPath: "/bin/bash")
            start.arguments = [
                "-c",
                "for fd in /proc/$$/fd/*; do n=${fd##*/}; [ \"$n\" -gt 2 ] && eval \"exec $n>&-\"; done 2>/dev/null; "
                    + "exec /usr/bin/tmux -L \"$SOCKET\" new-session -d -s t -x 80 -y 24 sh -c \"$SCRIPT\"",
            ]
            // The test's own NO_COLOR (a test runner may set it) is not the pane's: each test says.
            start.environment = ProcessInfo.processInfo.environment.filter { $0.key != "NO_COLOR" }.merging(["SOCKET": socket, "SCRIPT": script]) {
                $1
            }
            start.standardInput = FileHandle.nullDevice
            start.standardOutput = FileHandle.nullDevice
            start.standardError = FileHandle.nullDevice
            try start.run()
            start.waitUntilExit()
        }

        deinit {
            _ = try? tmux(["kill-server"])
            try? FileManager.default.removeItem(atPath: directory)
        }

        @discardableResult
        func tmux(_ arguments: [String]) throws -> String {
            try Binary.runBlocking("/usr/bin/tmux", ["-L", socket] + arguments, environment: [:]).stdout
        }

        func screen(escapes: Bool = false) throws -> String { try tmux(["capture-pane", "-p", "-t", "t"] + (escapes ? ["-e"] : [])) }
        func keys(_ keys: String) throws { try tmux(["send-keys", "-t", "t", keys]) }
        var status: String? { (try? String(contentsOfFile: directory + "/status", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) }
        var stty: String { (try? String(contentsOfFile: directory + "/stty", encoding: .utf8)) ?? "" }
        /// 1 while the pane shows the alternate screen.
        var alternate: String {
            ((try? tmux(["display", "-p", "-t", "t", "#{alternate_on}"])) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        }

        /// The pid of the pane's shell, whose child top is.
        var shellPID: String {
            get throws { try tmux(["display", "-p", "-t", "t", "#{pane_pid}"]).trimmingCharacters(in: .whitespacesAndNewlines) }
        }

        /// Waits for top to end, then checks its status and that the terminal is as it was: the
        /// alternate screen left, line editing and echo back on.
        func expectExit(_ status: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            try waitFor("top to exit") { self.status != nil }
            #expect(self.status == status, sourceLocation: sourceLocation)
            #expect(alternate == "0", "the alternate screen is left", sourceLocation: sourceLocation)
            #expect(stty.contains(" icanon") && stty.contains(" echo"), "the modes are restored: \(stty)", sourceLocation: sourceLocation)
        }

        func waitFor(_ what: String, seconds: Double = 10, _ condition: () throws -> Bool) throws {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if try condition() { return }
                Thread.sleep(forTimeInterval: 0.05)
            }
            throw TimeoutError(description: "\(what): \((try? screen()) ?? "")")
        }
    }

    /// MSR and sysfs both read the package (so `b` has somewhere to go), moving at 12 W while `body` runs;
    /// sysfs has a 65 W PL1.
    func withMachine(_ body: (FakeTree, String) throws -> Void) throws {
        let tree = FakeTree.powercap([("intel-rapl:0", "package-0", 0)])
        tree.cpu(0, package: 0)
        tree.cpuinfo(vendor: "GenuineIntel", family: 6, model: 0x8C)
        tree.msr(cpu: 0, MSRBackend.Register.intelPowerUnit, 0x000A_0E03)
        tree.msr(cpu: 0, MSRBackend.Register.intelPackage, 0)
        tree.constraint("intel-rapl:0", 0, name: "long_term", microwatts: 65_000_000, windowMicroseconds: 28_000_000)
        let running = Atomic(true)
        let writer = Thread {
            var i: UInt64 = 0
            while running.load(ordering: .relaxed) {
                i += 1
                tree.setEnergy("intel-rapl:0", i * 240_000)  // 12 W at 20 ms
                tree.msr(cpu: 0, MSRBackend.Register.intelPackage, i * 3932)
                Thread.sleep(forTimeInterval: 0.02)
            }
        }
        writer.start()
        defer { running.store(false, ordering: .relaxed) }
        let command = "\(Binary.path) top --refresh 0.3 --sysfs-root \(tree.sys) --dev-root \(tree.dev) --proc-root \(tree.proc)"
        try body(tree, command)
    }

    @Test func theViewFitsEightyByTwentyFourAndKeysWork() throws {
        try withMachine { _, command in
            let pane = try Pane(command, environment: ["NO_COLOR": "1"])
            try pane.waitFor("a row with watts") {
                let screen = try pane.screen()
                return screen.contains("package-0") && screen.contains { "▁▂▃▄▅▆▇█".contains($0) }
                    && screen.range(of: #"packages [0-9]+\.[0-9]+ W"#, options: .regularExpression) != nil
            }
            let screen = try pane.screen()
            let lines = screen.split(separator: "\n", omittingEmptySubsequences: false).dropLast()  // the final newline
            #expect(lines.count <= 24)
            #expect(lines.allSatisfy { $0.count <= 80 }, "\(screen)")
            #expect(lines[0].hasPrefix("rapl-exporter top — "), "\(screen)")
            #expect(lines[0].contains("q quit · b → "), "\(screen)")
            let row = try #require(lines.first { $0.hasPrefix("package-0") }, "\(screen)")
            #expect(row.contains("65"), "the long-term limit: \(row)")
            #expect(row.contains { "▁▂▃▄▅▆▇█".contains($0) }, "a sparkline: \(row)")
            // The packages' sum is the one package's figure of the same refresh (its value follows the
            // writer thread's pace, which a loaded machine slows: ~12 W when it keeps its 20 ms).
            let now = row.split(separator: " ", omittingEmptySubsequences: true).dropFirst(2).first.map(String.init)
            #expect(now != nil && screen.contains("packages \(now ?? "?") W"), "\(screen)")
            #expect(!(try pane.screen(escapes: true)).contains("\u{1B}[7m"), "NO_COLOR: no colours")
            // The title names the backend `b` goes to; after the key, the view shows it and says why the
            // figures start again (for a few seconds: the title's clock alone changes every second).
            let other = try #require(lines[0].components(separatedBy: "b → ").last?.trimmingCharacters(in: .whitespaces), "\(screen)")
            try pane.keys("b")
            try pane.waitFor("the switch to \(other)") {
                let screen = try pane.screen()
                return screen.contains("switched to \(other): figures restart") && screen.hasPrefix("rapl-exporter top — \(other) — ")
            }
            try pane.keys("q")
            try pane.expectExit("EXIT=0")
            #expect(try pane.screen().contains("AFTER-TOP"))
        }
    }

    @Test func aSignalRestoresTheTerminalAndColoursAreUsedWithoutNoColor() throws {
        try withMachine { _, command in
            let pane = try Pane(command)
            try pane.waitFor("the view") { try pane.screen().contains("package-0") }
            let escaped = try pane.screen(escapes: true)
            #expect(escaped.contains("\u{1B}[7m"), "the header in inverse video: \(escaped.debugDescription)")
            #expect(pane.alternate == "1")
            // The pane's shell runs top as its child: SIGTERM to that child.
            _ = try Binary.runBlocking("/usr/bin/pkill", ["-TERM", "-P", pane.shellPID, "-f", "rapl-exporter top"], environment: [:])
            try pane.expectExit("EXIT=143")
        }
    }

    @Test func controlCIsSIGINT() throws {
        try withMachine { _, command in
            let pane = try Pane(command)
            try pane.waitFor("the view") { try pane.screen().contains("package-0") }
            try pane.keys("C-c")
            try pane.expectExit("EXIT=130")
        }
    }

    @Test func aClosedTerminalEndsIt() throws {
        try withMachine { _, command in
            let pane = try Pane(command)
            try pane.waitFor("the view") { try pane.screen().contains("package-0") }
            let top = try Binary.runBlocking("/usr/bin/pgrep", ["-P", pane.shellPID, "-f", "rapl-exporter top"], environment: [:]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(!top.isEmpty)
            try pane.tmux(["kill-session", "-t", "t"])
            let deadline = Date().addingTimeInterval(5)
            while FileManager.default.fileExists(atPath: "/proc/\(top)"), Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            #expect(!FileManager.default.fileExists(atPath: "/proc/\(top)"), "top exits when its terminal goes away")
        }
    }

    @Test func withoutATerminalItPrintsALinePerRefresh() async throws {
        let tree = FakeTree.powercap([("intel-rapl:0", "package-0", 0)])
        let result = try await Binary.run(Binary.path, ["top", "--iterations", "3", "--refresh", "0.1"] + tree.sysfsArguments)
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == 3, "\(result.stdout)")
        #expect(lines.allSatisfy { $0.hasPrefix("t=") && $0.contains("backend=sysfs") && $0.contains("package-0/0=") }, "\(result.stdout)")
        #expect(!result.stdout.contains("\u{1B}["), "no escape sequences in a pipe")
        let bad = try await Binary.run(Binary.path, ["top", "--refresh", "0"] + tree.sysfsArguments)
        #expect(bad.status == 2 && bad.stderr.contains("invalid --refresh"), "\(bad.stderr)")
    }
}
