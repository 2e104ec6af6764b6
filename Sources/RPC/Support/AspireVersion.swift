/// The version every Aspire binary reports.
public enum AspireVersion {
    public static let current = "0.1.0"
}
