import Foundation
import TestSupport
import Testing

/// Docker does not run on these machines: the deployment files are parsed and checked instead.
@Suite struct DeployFilesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    @Test func composeKubernetesGrafanaAndDockerfileParseAndHold() async throws {
        let result = try await Binary.run("/usr/bin/env", ["python3", Self.root + "/scripts/check-deploy.py"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("all deploy checks passed"))
    }

    /// The DaemonSet against the API schemas of Kubernetes 1.27–1.37 (strict), and its Pod Security level.
    @Test func kubernetesManifestsMatchTheAPISchemasAndTheirPodSecurityLevel() async throws {
        let result = try await Binary.run("/usr/bin/env", ["python3", Self.root + "/scripts/check-kubernetes.py"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr) (scripts/test installs kubernetes-validate)")
        #expect(result.stdout.contains("all kubernetes checks passed"))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: Receivers.directory + "/promtool")))
    func prometheusConfigsAreValid() async throws {
        for file in ["prometheus.yml", "prometheus-scrape.yml"] {
            let result = try await Binary.run(Receivers.directory + "/promtool", ["check", "config", Self.root + "/deploy/prometheus/" + file])
            #expect(result.status == 0, "\(file): \(result.stdout)\(result.stderr)")
        }
    }

    @Test(
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/apparmor_parser"), "apparmor_parser missing (scripts/test installs it)"))
    func apparmorProfileParses() async throws {
        // -Q: parse without loading into the kernel; -K: no cache.
        let result = try await Binary.run("/usr/sbin/apparmor_parser", ["-Q", "-K", "-T", Self.root + "/deploy/apparmor/rapl-exporter"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    }
}
