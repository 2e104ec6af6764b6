import Foundation
import RPC

/// A list's place in its URL: the filters it keeps and the page it shows (`?page=`, 50 rows a
/// page), read from the request and written back into the links to the pages beside it, so a
/// link restores the same list.
struct ConsolePager {
    static let size = 50

    let path: String
    let page: Int
    /// The filters the list keeps, by name, as the query gave them.
    let filters: [String: String]
    private let names: [String]
    private let newestFirst: Bool

    init(_ query: Query, path: String, keeping names: [String] = [], newestFirst: Bool = false) throws(AspireError) {
        self.path = path
        self.page = Int(try query.integer("page", range: 1 ... 1_000_000) ?? 1)
        self.names = names
        self.filters = Dictionary(uniqueKeysWithValues: names.map { ($0, query.string($0)) })
        self.newestFirst = newestFirst
    }

    subscript(_ name: String) -> String { self.filters[name] ?? "" }

    var offset: Int32 { Int32(self.page - 1) * Int32(Self.size) }
    var limit: Int32 { Int32(Self.size) }

    /// This list at `page` (the first page without `page=`).
    func url(page: Int) -> String {
        var items = self.names.compactMap { name in self[name].isEmpty ? nil : "\(name)=\(ConsoleText.encoded(self[name]))" }
        if page > 1 { items.append("page=\(page)") }
        return items.isEmpty ? self.path : "\(self.path)?" + items.joined(separator: "&")
    }

    /// What the `pager` template shows for a list of `count` rows.
    func values(count: Int) -> [String: Any] {
        let pages = max(1, (count + Self.size - 1) / Self.size)
        return [
            "page": self.page, "pages": pages,
            "previous": self.page > 1 ? self.url(page: self.page - 1) : "",
            "next": self.page < pages ? self.url(page: self.page + 1) : "",
            "previousLabel": self.newestFirst ? "Newer" : "Previous", "nextLabel": self.newestFirst ? "Older" : "Next",
        ]
    }
}
