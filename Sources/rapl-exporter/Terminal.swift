// The one file of the command line that calls C: the terminal `top` draws on (termios and poll from
// Glibc; the window size and the signalfd through the shim, which Swift's Glibc module lacks).

import CPerfShim
import Glibc

/// The terminal of `rapl-exporter top`: raw keys (no echo, no line buffering) while stdin is a
/// terminal, the alternate screen and a hidden cursor while stdout is one, and the signals that end or
/// resize the view delivered through a signalfd, so the loop waits on keys, signals and its next
/// refresh in one poll(2). ``restore()`` puts everything back; `top` calls it on every way out.
final class Terminal {
    enum Event: Equatable {
        case key(UInt8)
        /// stdin ended or failed: the terminal is gone.
        case closed
        case signal(CInt)
        case resized
        case timeout
    }

    /// stdout is a terminal: draw screens. Otherwise `top` prints a line per refresh.
    let drawsScreens: Bool
    /// stdin is a terminal: read keys.
    private(set) var readsKeys: Bool
    private var saved: termios?
    private var signals: CInt = -1
    private var active = false

    init() {
        drawsScreens = isatty(1) == 1
        readsKeys = isatty(0) == 1
    }

    /// Blocks SIGINT, SIGTERM, SIGHUP and SIGWINCH (read from the signalfd instead: the process must be
    /// single-threaded here, as `top` is), enters raw mode and the alternate screen.
    func enter() {
        let wanted: [CInt] = [SIGINT, SIGTERM, SIGHUP, SIGWINCH]
        signals = rapl_signalfd_open(wanted, CInt(wanted.count))
        if readsKeys {
            var attributes = termios()
            if tcgetattr(0, &attributes) == 0 {
                saved = attributes
                attributes.c_lflag &= ~tcflag_t(ICANON | ECHO)
                withUnsafeMutableBytes(of: &attributes.c_cc) { cc in
                    cc[Int(VMIN)] = 0
                    cc[Int(VTIME)] = 0
                }
                tcsetattr(0, TCSANOW, &attributes)
            }
        }
        if drawsScreens { write("\u{1B}[?1049h\u{1B}[?25l\u{1B}[H\u{1B}[2J") }
        active = true
    }

    /// Leaves the alternate screen, shows the cursor, restores the terminal's modes; idempotent.
    func restore() {
        guard active else { return }
        active = false
        if drawsScreens { write("\u{1B}[0m\u{1B}[?25h\u{1B}[?1049l") }
        if var saved { tcsetattr(0, TCSANOW, &saved) }
    }

    /// Rows and columns of stdout's terminal; 24 × 80 when it is not one.
    var size: (rows: Int, columns: Int) {
        var rows: UInt16 = 0
        var columns: UInt16 = 0
        guard rapl_terminal_size(1, &rows, &columns) == 0, rows > 0, columns > 0 else { return (24, 80) }
        return (Int(rows), Int(columns))
    }

    /// Draws `lines` from the top left, each line's rest and the screen below cleared.
    func draw(_ lines: [String]) {
        write("\u{1B}[H" + lines.joined(separator: "\u{1B}[K\r\n") + "\u{1B}[K\u{1B}[J")
    }

    /// Waits up to `milliseconds` for a key, a signal or nothing.
    func wait(milliseconds: Int) -> Event {
        var fds = [pollfd(fd: signals, events: Int16(POLLIN), revents: 0)]
        if readsKeys { fds.append(pollfd(fd: 0, events: Int16(POLLIN), revents: 0)) }
        let n = poll(&fds, nfds_t(fds.count), CInt(clamping: max(0, milliseconds)))
        guard n > 0 else { return .timeout }
        if fds[0].revents & Int16(POLLIN) != 0 {
            let signal = rapl_signalfd_read(signals)
            if signal > 0 { return signal == SIGWINCH ? .resized : .signal(signal) }
        }
        if fds.count > 1, fds[1].revents != 0 {
            var byte: UInt8 = 0
            if Glibc.read(0, &byte, 1) == 1 { return .key(byte) }
            readsKeys = false
            return .closed
        }
        return .timeout
    }

    /// Writes to stdout, all of it (a closed terminal's EIO ends the attempt).
    func write(_ text: String) {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(1, $0.baseAddress! + offset, $0.count - offset) }
            if n <= 0 {
                if n < 0, errno == EINTR { continue }
                return
            }
            offset += n
        }
    }
}
