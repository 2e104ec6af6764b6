#if canImport(Glibc)
public import Glibc
#endif

/// A user account of the host, with what is needed to run a process as it.
public struct Account: Sendable, Hashable {
    public var name: String
    public var uid: uid_t
    public var gid: gid_t
    public var home: String
    public var shell: String

    /// Looks a user up by name (or by a numeric uid), through NSS like `id` does.
    public static func user(named name: String) -> Account? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        let status: Int32
        if let uid = uid_t(name), !name.isEmpty {
            status = getpwuid_r(uid, &entry, &buffer, buffer.count, &result)
        } else {
            status = getpwnam_r(name, &entry, &buffer, buffer.count, &result)
        }
        guard status == 0, result != nil else { return nil }
        return Account(
            name: String(cString: entry.pw_name),
            uid: entry.pw_uid,
            gid: entry.pw_gid,
            home: String(cString: entry.pw_dir),
            shell: String(cString: entry.pw_shell)
        )
    }

    /// Looks a group up by name (or numeric gid); returns its gid.
    public static func group(named name: String) -> gid_t? {
        var entry = SwiftGlibc.group()
        var result: UnsafeMutablePointer<SwiftGlibc.group>?
        var buffer = [CChar](repeating: 0, count: 16384)
        let status: Int32
        if let gid = gid_t(name), !name.isEmpty {
            status = getgrgid_r(gid, &entry, &buffer, buffer.count, &result)
        } else {
            status = getgrnam_r(name, &entry, &buffer, buffer.count, &result)
        }
        guard status == 0, result != nil else { return nil }
        return entry.gr_gid
    }

    /// The account's supplementary groups, as `initgroups` would set them, with `primary` first.
    public func supplementaryGroups(primary: gid_t) -> [gid_t] {
        var count: Int32 = 64
        while true {
            var groups = [gid_t](repeating: 0, count: Int(count))
            let previous = count
            if getgrouplist(self.name, primary, &groups, &count) >= 0 {
                return Array(groups.prefix(Int(count)))
            }
            if count <= previous { count = previous * 2 }
        }
    }
}
