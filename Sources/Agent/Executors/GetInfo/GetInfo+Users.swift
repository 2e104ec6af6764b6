#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RPC

extension GetInfo {
    struct User: Encodable {
        var name: String
        var uid: UInt32
        var gid: UInt32
        var group: String?
        var groups: [String]
        var gecos: String
        var home: String
        var shell: String
        /// "normal" or "system", by UID_MIN of /etc/login.defs.
        var kind: String
        /// nil when /etc/shadow is not readable.
        var locked: Bool?
        var passwordStatus: String?
        /// Date of the last password change (YYYY-MM-DD), from /etc/shadow.
        var lastPasswordChange: String?
        var passwordMaxDays: Int?
    }

    struct UsersDocument: Encodable {
        var users: [User]
        var shadowReadable: Bool
    }

    /// `-U name` one user, `-A` all (default), `-u` normal users, `-S` system users.
    func users(_ arguments: Arguments) throws -> UsersDocument {
        enum Filter { case all, normal, system, named(String) }
        var filter = Filter.all
        var iterator = arguments.tokens.makeIterator()
        var seen = 0
        while let token = iterator.next() {
            seen += 1
            switch token {
            case "-A": filter = .all
            case "-u": filter = .normal
            case "-S": filter = .system
            case "-U":
                guard let name = iterator.next(), !name.hasPrefix("-") else {
                    throw AspireError(.invalidParams, "getinfo.users: -U needs a user name")
                }
                filter = .named(name)
            default:
                throw AspireError(.invalidParams, "getinfo.users: unknown argument '\(token)' (use -U NAME, -A, -u or -S)")
            }
        }
        if seen > 2 || (seen == 2 && arguments.tokens.first != "-U") {
            throw AspireError(.invalidParams, "getinfo.users: give one of -U NAME, -A, -u, -S")
        }

        let uidMin = self.loginDefs("UID_MIN") ?? 1000
        let uidMax = self.loginDefs("UID_MAX") ?? 60000
        let groupFile = self.parseColonFile(try self.read("/etc/group"))
        var groupNames: [UInt32: String] = [:]
        var memberships: [String: [String]] = [:]
        for fields in groupFile where fields.count >= 4 {
            guard let gid = UInt32(fields[2]) else { continue }
            groupNames[gid] = groupNames[gid] ?? fields[0]
            for member in fields[3].split(separator: ",") {
                memberships[String(member), default: []].append(fields[0])
            }
        }
        let shadowText = self.readIfPresent("/etc/shadow")
        var shadow: [String: [String]] = [:]
        if let shadowText {
            for fields in self.parseColonFile(shadowText) where fields.count >= 2 {
                shadow[fields[0]] = fields
            }
        }

        var users: [User] = []
        for fields in self.parseColonFile(try self.read("/etc/passwd")) where fields.count >= 7 {
            guard let uid = UInt32(fields[2]), let gid = UInt32(fields[3]) else { continue }
            let name = fields[0]
            let normal = uid >= uidMin && uid <= uidMax
            switch filter {
            case .all: break
            case .normal where !normal: continue
            case .system where normal: continue
            case .named(let wanted) where wanted != name: continue
            default: break
            }
            var user = User(
                name: name,
                uid: uid,
                gid: gid,
                group: groupNames[gid],
                groups: ([groupNames[gid]].compactMap { $0 } + (memberships[name] ?? [])).uniqued(),
                gecos: fields[4],
                home: fields[5],
                shell: fields[6],
                kind: normal ? "normal" : "system"
            )
            if shadowText != nil {
                let entry = shadow[name]
                let hash = entry?[1] ?? (fields[1] == "x" ? "" : fields[1])
                user.locked = hash.hasPrefix("!") || hash.hasPrefix("*")
                user.passwordStatus =
                    hash.isEmpty ? "empty" : hash.hasPrefix("!") ? "locked" : hash.hasPrefix("*") ? "no password" : "set"
                if let entry, entry.count > 2, let days = Int(entry[2]) {
                    user.lastPasswordChange = Self.dayString(days)
                }
                if let entry, entry.count > 4, let days = Int(entry[4]) {
                    user.passwordMaxDays = days
                }
            }
            users.append(user)
        }
        if case .named(let wanted) = filter, users.isEmpty {
            throw AspireError(.unknownUser, "getinfo.users: user '\(wanted)' does not exist on this host")
        }
        return UsersDocument(users: users, shadowReadable: shadowText != nil)
    }

    func parseColonFile(_ text: String) -> [[String]] {
        text.split(separator: "\n").compactMap { line in
            let trimmed = line.trimmingBlanks()
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { return nil }
            return line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        }
    }

    func loginDefs(_ key: String) -> UInt32? {
        guard let text = self.readIfPresent("/etc/login.defs") else { return nil }
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if parts.count >= 2, parts[0] == key { return UInt32(parts[1]) }
        }
        return nil
    }

    static func dayString(_ daysSinceEpoch: Int) -> String {
        let date = Date(timeIntervalSince1970: TimeInterval(daysSinceEpoch) * 86400)
        return date.formatted(Date.ISO8601FormatStyle(timeZone: .gmt).year().month().day())
    }
}
