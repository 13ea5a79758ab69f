/// What a metric is — its type, help text and unit — for the outputs that carry it: the /metrics
/// endpoint's HELP lines and remote write 2.0's per-series metadata. One catalog, so the two say the same.
public struct MetricMetadata: Sendable, Equatable {
    /// Remote write 2.0's `Metadata.MetricType` values.
    public enum Kind: UInt8, Sendable {
        case unspecified = 0
        case counter = 1
        case gauge = 2
    }

    public var kind: Kind
    public var help: String
    /// A unit only where the name ends with it (OpenMetrics' rule): `joules`, `seconds`.
    public var unit: String

    public init(_ kind: Kind, _ help: String, unit: String = "") {
        self.kind = kind
        self.help = help
        self.unit = unit
    }

    /// The per-window energy series (named by `--metric-name`): the µJ of one window, not a running total.
    public static let windowEnergy = MetricMetadata(.gauge, "Energy used in one measurement window, in microjoules (the seed's series).")

    /// By the name pushed (counters with `_total`); the /metrics endpoint drops the suffix for its family names.
    public static let catalog: [String: MetricMetadata] = [
        "rapl_energy_joules_total": MetricMetadata(
            .counter, "Energy used since the exporter started, wraparound-corrected and exact (J).", unit: "joules"),
        "rapl_exporter_read_errors_total": MetricMetadata(
            .counter, "Counter reads that failed, per domain (their energy arrives with the next good read)."),
        "rapl_exporter_counter_glitches_total": MetricMetadata(.counter, "Impossible counter steps not counted as energy, per domain."),
        "rapl_exporter_domain_stuck": MetricMetadata(.gauge, "1 while a domain's counter has not changed for --stuck-after."),
        "rapl_exporter_windows_total": MetricMetadata(.counter, "Measurement windows closed."),
        "rapl_exporter_windows_late_total": MetricMetadata(.counter, "Windows whose wake-up came late (their energy is exact)."),
        "rapl_exporter_windows_missed_total": MetricMetadata(.counter, "Deadlines skipped because a wake-up came after them."),
        "rapl_exporter_clock_steps_total": MetricMetadata(.counter, "Wall-clock steps seen against the monotonic clock."),
        "rapl_exporter_samples_sent_total": MetricMetadata(.counter, "Samples (energy and self-metrics) the remote-write receiver accepted."),
        "rapl_exporter_samples_failed_total": MetricMetadata(
            .counter, "Samples in requests that failed with a retryable error (per attempt)."),
        "rapl_exporter_samples_retried_total": MetricMetadata(.counter, "Samples sent again after a failure."),
        "rapl_exporter_samples_dropped_total": MetricMetadata(.counter, "Samples given up, by reason."),
        "rapl_exporter_requests_total": MetricMetadata(.counter, "Remote-write requests sent (every attempt)."),
        "rapl_exporter_samples_pending": MetricMetadata(.gauge, "Samples not yet delivered."),
        "rapl_exporter_push_duration_seconds": MetricMetadata(.gauge, "Duration of the last remote-write request.", unit: "seconds"),
        "rapl_exporter_spool_bytes": MetricMetadata(.gauge, "Bytes of spool segments on disk (--spool-dir)."),
        "rapl_exporter_spool_writable": MetricMetadata(.gauge, "1 while windows are made durable in the spool; 0 while writing fails."),
        "rapl_exporter_spool_write_errors_total": MetricMetadata(.counter, "Spool appends that failed (disk full, read-only, removed)."),
        "rapl_exporter_spool_windows_dropped_total": MetricMetadata(
            .counter, "Undelivered windows removed from the spool to stay within --spool-max-bytes."),
        "rapl_exporter_spool_bad_records_total": MetricMetadata(
            .counter, "Damaged or unreadable spool records and files skipped (torn writes, corruption, other versions)."),
        "rapl_exporter_spool_windows_replayed_total": MetricMetadata(.counter, "Windows read back from the spool for delivery."),
        "rapl_exporter_restart_gaps_total": MetricMetadata(
            .counter, "Starts whose downtime energy could not be accounted (another boot, backend or counters, or too long down)."),
        "rapl_exporter_build_info": MetricMetadata(
            .gauge, "The exporter's version and the backend it reads; backend=\"simulated\" is not a measurement."),
        "rapl_power_limit_watts": MetricMetadata(
            .gauge, "RAPL power limit per domain and constraint (long_term = PL1, short_term = PL2, peak_power = PL4), in watts."),
        "rapl_power_limit_time_window_seconds": MetricMetadata(
            .gauge, "Averaging window of a RAPL power limit, in seconds.", unit: "seconds"),
        "rapl_power_limit_enabled": MetricMetadata(.gauge, "1 while a RAPL power limit is enforced (sysfs: the zone's enabled)."),
        "rapl_power_limit_clamp_enabled": MetricMetadata(
            .gauge, "1 when the limit may clamp below the requested frequency (MSR clamp bit; MSR source only)."),
        "rapl_power_limit_locked": MetricMetadata(.gauge, "1 when the power-limit register is locked until reset (MSR source only)."),
        "rapl_tdp_watts": MetricMetadata(.gauge, "Thermal design power of the package (MSR_PKG_POWER_INFO, or powercap's long_term max_power_uw)."),
        "rapl_throttled_seconds_total": MetricMetadata(
            .counter, "Time RAPL throttled the domain to hold its power limit, since the exporter started (perf-status MSRs, wraps accounted).",
            unit: "seconds"),
        "rapl_exporter_throttle_glitches_total": MetricMetadata(
            .counter, "Impossible throttle-counter steps (more throttled time than time passed) not counted."),
    ]

    /// The catalog's help for `name` (as pushed); empty when it has none.
    static func help(_ name: String) -> String { catalog[name]?.help ?? "" }
}
