#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// What the agent's modules need of text and errors that FoundationEssentials does not have.
// Foundation's `trimmingCharacters(in:)` and `localizedDescription` would link all of Foundation
// and ICU's data into `boot` (bench/README.md, "Packaged binaries").

extension StringProtocol {
    /// Without whitespace and line breaks at either end (`trimmingCharacters(in: .whitespacesAndNewlines)`).
    public func trimmed() -> String {
        self.trimming { $0.isWhitespace }
    }

    /// Without spaces and tabs at either end, line breaks kept (`trimmingCharacters(in: .whitespaces)`).
    public func trimmingBlanks() -> String {
        self.trimming { $0.isWhitespace && !$0.isNewline }
    }

    private func trimming(_ isTrimmed: (Character) -> Bool) -> String {
        guard let first = self.firstIndex(where: { !isTrimmed($0) }), let last = self.lastIndex(where: { !isTrimmed($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}

extension AspireError {
    /// What went wrong, in words an operator reads: the system's reason for a file that cannot be
    /// read or written ("No such file or directory", not `CocoaError(code: 260, userInfo: ...)`),
    /// an Aspire error's cause, any other error as it describes itself.
    public static func reason(_ error: any Error) -> String {
        switch error {
        case let error as AspireError:
            return error.cause
        case let error as POSIXError:
            return String(cString: strerror(error.code.rawValue))
        case let error as CocoaError:
            if let underlying = error.underlying { return Self.reason(underlying) }
            switch error.code {
            case .fileReadCorruptFile, .fileReadInapplicableStringEncoding: return "not UTF-8 text"
            case .fileNoSuchFile, .fileReadNoSuchFile: return "No such file or directory"
            case .fileReadNoPermission, .fileWriteNoPermission: return "Permission denied"
            default: return "file error \(error.code.rawValue)"
            }
        default:
            return "\(error)"
        }
    }
}
