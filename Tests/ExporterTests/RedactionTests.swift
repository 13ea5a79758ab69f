import Testing

@testable import Exporter

/// Receiver bodies are logged with the credentials sent replaced (the daemon-level test, through the
/// binary, is `HardeningTests.receiverBodiesAreLoggedWithoutTheCredentialsSent`).
@Suite struct RedactionTests {
    @Test func redactionReplacesEverySecretLongestFirst() {
        let body = Array("bad credentials: Bearer tok-12345 (token tok-12345), key K-abc".utf8)
        let out = String(decoding: Redaction.redact(body, ["Bearer tok-12345", "tok-12345", "K-abc", "x"]), as: UTF8.self)
        #expect(out == "bad credentials: <redacted> (token <redacted>), key <redacted>")
    }
}
