import SQLKit

/// A statement the store writes out itself, as text and binds, for the few that carry thousands
/// of values. SQLKit renders a `SQLQueryString` fragment by fragment, each bind a placeholder
/// expression of its own, on the connection's thread: at a result batch's thousand rows that was
/// 11 % of SQLite's thread (bench/README.md, P7). Written here, before the statement reaches its
/// engine, it is a string that grows and an array of binds, and the engine takes both as they are.
struct SQLText: SQLExpression {
    private(set) var sql = ""
    private(set) var binds: [any Encodable & Sendable] = []
    /// Whose placeholders the binds are written as.
    let kind: SQLEngineKind

    init(_ kind: SQLEngineKind) {
        self.kind = kind
    }

    /// SQL of our own: never a value that came from outside (those are bound).
    mutating func append(_ sql: String) {
        self.sql += sql
    }

    /// A number written into the text: no bind to encode, at the price of a text that differs
    /// with its numbers (and so a statement prepared again).
    mutating func append(literal number: Int) {
        self.sql += String(number)
    }

    mutating func append(bind value: some Encodable & Sendable) {
        self.binds.append(value)
        switch self.kind {
        case .sqlite: self.sql += "?"
        case .postgres: self.sql += "$"
        }
        self.sql += String(self.binds.count)
    }

    /// The whole statement: its placeholders count from the first.
    func serialize(to serializer: inout SQLSerializer) {
        precondition(serializer.binds.isEmpty, "an SQLText is a statement of its own, not a part of one")
        serializer.sql += self.sql
        serializer.binds += self.binds
    }
}
