/// What a sub-agent package's file name says of its version, for install and upgrade commands
/// that give a url but no version (the seed's jobs carry none): `MiniAgent-1.2.tar.gz`,
/// `MiniAgent-1.2-1.el7.x86_64.rpm`, `miniagent_1.2-1_amd64.deb`.
public enum PackageFileName {
    static let extensions = [".tar.gz", ".tgz", ".rpm", ".deb"]
    static let rpmArches: Set<String> = ["x86_64", "aarch64", "noarch", "i686", "i386", "armv7hl", "ppc64le", "s390x"]

    /// The version in the url's last path component when it is `<name>-<version><ext>` (or
    /// Debian's `<name>_<version>[_<arch>].deb`) and the version is a ``PathName``; else nil.
    public static func version(inURL url: String, name: String) -> String? {
        var file = Substring(url)
        if let end = file.firstIndex(where: { $0 == "?" || $0 == "#" }) { file = file[..<end] }
        if let slash = file.lastIndex(of: "/") { file = file[file.index(after: slash)...] }
        guard let ext = self.extensions.first(where: { file.lowercased().hasSuffix($0) }) else { return nil }
        var stem = String(file.dropLast(ext.count))
        var version: Substring
        if ext == ".deb", stem.hasPrefix(name + "_") {
            version = stem.dropFirst(name.count + 1).split(separator: "_", omittingEmptySubsequences: false).first ?? ""
        } else {
            if ext == ".rpm", let dot = stem.lastIndex(of: "."), self.rpmArches.contains(String(stem[stem.index(after: dot)...])) {
                stem = String(stem[..<dot])
            }
            guard stem.hasPrefix(name + "-") else { return nil }
            version = stem.dropFirst(name.count + 1)
        }
        while version.hasSuffix(".") { version = version.dropLast() }
        let result = String(version)
        return (try? PathName.check(result, field: "version")) != nil ? result : nil
    }
}
