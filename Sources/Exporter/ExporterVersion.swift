/// The version the binary reports (`--version`, the User-Agent, build info).
public enum ExporterVersion {
    public static let current = "0.1.0"
}
