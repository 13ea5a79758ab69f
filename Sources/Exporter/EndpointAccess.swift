import HummingbirdBcrypt
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import RAPLBackend

/// The endpoint's TLS context, rebuilt when its certificate, key or client CA file changes (a renewed
/// certificate is served from the next connection on, as exporter-toolkit does, without a restart). A
/// change that does not load (a key written before its certificate) keeps the previous context, is
/// logged once, and is tried again at the next connection. Touched on the event loop only.
final class ServerTLSReloader: @unchecked Sendable {
    let settings: ServerTLSSettings
    private var context: NIOSSLContext
    private var identities: [FileIdentity?]
    private var failureLogged = false
    private let logger: Logger

    /// Loads the context now: a certificate or key that cannot be read or used is an error at start.
    init(_ settings: ServerTLSSettings, logger: Logger) throws {
        // First as plain files, for an error that names the file and the reason (BoringSSL's does not).
        for path in settings.files { _ = try TextFile.readRegular(path, limit: 1 << 20) }
        self.settings = settings
        self.logger = logger
        identities = settings.files.map(FileIdentity.of)
        context = try settings.makeContext()
    }

    /// The context for a new connection: a `stat` of each file (a microsecond or two), and a reload when
    /// one changed.
    func current() -> NIOSSLContext {
        let now = settings.files.map(FileIdentity.of)
        guard now != identities else { return context }
        do {
            context = try settings.makeContext()
            identities = now
            failureLogged = false
            logger.notice("metrics endpoint: TLS certificate files changed; serving the new ones")
        } catch {
            if !failureLogged {
                failureLogged = true
                logger.error("metrics endpoint: the changed TLS files do not load (\(error)); still serving the previous certificate")
            }
        }
        return context
    }
}

/// Basic auth from `basic_auth_users`: the request's `Authorization: Basic` credentials checked with
/// bcrypt against the user's hash. bcrypt is slow by design (cost 10 ≈ 50–100 ms), so it runs on a
/// thread of its own, not on the event loop that pushes and serves; a password that verified is kept
/// (per user, in memory) and later requests are compared with it in constant time, as exporter-toolkit
/// caches its verifications. An unknown user costs the same bcrypt as a known one (no timing tells
/// which users exist). At most ``maxPending`` verifications wait or run at once: a flood of wrong
/// passwords gets `busy` at once instead of queueing bcrypt work without bound (and holding connection
/// slots while it waits). Touched on the event loop only.
final class BasicAuthGate: @unchecked Sendable {
    enum Verdict: Sendable, Equatable {
        case allowed, denied
        /// Too many verifications in progress: answered 503 with Retry-After.
        case busy
    }

    static let maxPending = 4
    private var pending = 0
    private let hashes: [String: String]
    /// What an unknown user's password is checked against.
    private let decoy: String
    private var verified: [String: [UInt8]] = [:]
    private var pool: NIOThreadPool?
    private var failures = 0
    private let logger: Logger

    init(users: [String: String], logger: Logger) {
        hashes = users.mapValues(BcryptHash.normalized)
        decoy = hashes.values.max { $0.prefix(7) < $1.prefix(7) } ?? ""
        self.logger = logger
    }

    /// Whether `authorization` (the header's value) names a user and their password.
    func check(_ authorization: String?, on loop: any EventLoop) -> EventLoopFuture<Verdict> {
        guard let (user, password) = Self.credentials(authorization) else { return loop.makeSucceededFuture(record(false)) }
        if let known = verified[user], Self.constantTimeEqual(known, Array(password.utf8)) { return loop.makeSucceededFuture(record(true)) }
        guard pending < Self.maxPending else { return loop.makeSucceededFuture(.busy) }
        pending += 1
        let hash = hashes[user]
        let against = hash ?? decoy
        let pool = self.pool ?? Self.startPool()
        self.pool = pool
        let gate = NIOLoopBound(self, eventLoop: loop)
        return pool.runIfActive(eventLoop: loop) { Bcrypt.verify(password, hash: against) && hash != nil }
            .recover { _ in false }
            .map { ok in
                gate.value.pending -= 1
                if ok { gate.value.verified[user] = Array(password.utf8) }
                return gate.value.record(ok)
            }
    }

    /// Counts a failure episode: the first failure after a success (or the start) is logged.
    private func record(_ ok: Bool) -> Verdict {
        if ok {
            failures = 0
        } else {
            failures += 1
            if failures == 1 {
                logger.warning("metrics endpoint: a request without valid basic-auth credentials (answered 401; logged once until one succeeds)")
            }
        }
        return ok ? .allowed : .denied
    }

    private static func startPool() -> NIOThreadPool {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        return pool
    }

    func shutdown() {
        pool?.shutdownGracefully { _ in }
        pool = nil
    }

    /// `Basic base64(user:password)`; nil for anything else.
    static func credentials(_ header: String?) -> (user: String, password: String)? {
        guard let header, header.count <= 4096 else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic",
            let decoded = Base64.decode(Substring(parts[1].drop { $0 == " " })),
            let text = String(validating: decoded, as: UTF8.self), let colon = text.firstIndex(of: ":")
        else { return nil }
        return (String(text[..<colon]), String(text[text.index(after: colon)...]))
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}
