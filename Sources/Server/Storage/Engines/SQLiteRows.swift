import Foundation
import Logging
import NIOCore
import NIOPosix
import SQLKit
import SQLiteKit
import SQLiteNIO

/// SQLKit's `SQLDatabase` over the store's `SQLiteFile`: SQLiteKit's dialect, its statements
/// run in place, and the store's plain values taken the short way.
///
/// SQLiteKit reads every column through its `Decoder` and writes every bind through its
/// `Encoder`: each value asks at run time whether its type converts directly, a conformance
/// lookup and a cast. The store reads and writes integers, strings, doubles and bytes (and
/// their optionals) almost only, and a page of 50 hosts is a thousand columns: that lookup was an eighth of a REST host
/// list's time (P6 in bench/README.md). Here those types are matched by their metadata and
/// converted as SQLiteKit converts them; anything else, and any value stored in another form
/// than its type's own, still goes through SQLiteKit's decoder and encoder, so what is read
/// and written is the same.
struct SQLiteRows: SQLDatabase {
    let file: SQLiteFile
    let logger: Logger

    var eventLoop: any EventLoop { MultiThreadedEventLoopGroup.singleton.any() }
    var version: (any SQLDatabaseReportedVersion)? { nil }
    var dialect: any SQLDialect { SQLiteDialect() }
    var queryLogLevel: Logger.Level? { .debug }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) -> EventLoopFuture<Void> {
        self.eventLoop.makeCompletedFuture { try self.run(query, onRow) }
    }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) async throws {
        try self.run(query, onRow)
    }

    func withSession<R>(_ closure: @escaping @Sendable (any SQLDatabase) async throws -> R) async throws -> R {
        try await closure(self)
    }

    /// Runs the statement in place (see `SQLiteFile`).
    private func run(_ query: any SQLExpression, _ onRow: (any SQLRow) -> Void) throws {
        let (sql, binds) = self.serialize(query)
        self.log(sql, binds)
        try self.file.run(sql, try binds.map(Self.data)) { onRow(Row(row: $0)) }
    }

    /// As SQLiteKit logs a query (at debug).
    private func log(_ sql: String, _ binds: [any Encodable & Sendable]) {
        if let level = self.queryLogLevel {
            self.logger.log(level: level, "Executing query", metadata: ["sql": .string(sql), "binds": .array(binds.map { .string("\($0)") })])
        }
    }

    private static let encoder = SQLiteDataEncoder()

    /// A bind as SQLiteKit's encoder makes it.
    static func data(_ value: any Encodable & Sendable) throws -> SQLiteData {
        switch value {
        case let string as String: .text(string)
        case let int as Int: .integer(SQLiteInt64(int))
        case let int as Int64: .integer(SQLiteInt64(int))
        case let double as Double: .float(double)
        case let data as Data: .blob(ByteBuffer(bytes: data))
        default: try Self.encoder.encode(value)
        }
    }

    struct MissingColumn: Error, CustomStringConvertible {
        let column: String
        var description: String { "no column \(self.column) in the row" }
    }

    struct Row: SQLRow {
        let row: SQLiteValues
        private static let decoder = SQLiteDataDecoder()

        var allColumns: [String] { self.row.columns.names }

        func contains(column: String) -> Bool {
            self.row.columns.index(of: column) != nil
        }

        func decodeNil(column: String) throws -> Bool {
            (self.row.value(column) ?? .null) == .null
        }

        func decode<D: Decodable>(column: String, as type: D.Type) throws -> D {
            guard let data = self.row.value(column) else {
                throw MissingColumn(column: column)
            }
            // No `D?` on the way: this runs unspecialized, where an optional of `D` is metadata
            // the runtime looks up at every column of every row.
            switch data {
            case .integer(let int) where Self.is(D.self, Int.self, or: Optionals.int):
                return Self.cast(Int(int), to: D.self)
            case .integer(let int) where Self.is(D.self, Int64.self, or: Optionals.int64):
                return Self.cast(Int64(int), to: D.self)
            case .text(let string) where Self.is(D.self, String.self, or: Optionals.string):
                return Self.cast(string, to: D.self)
            case .float(let double) where Self.is(D.self, Double.self, or: Optionals.double):
                return Self.cast(double, to: D.self)
            case .blob(let bytes) where Self.is(D.self, Data.self, or: Optionals.data):
                return Self.cast(Data(bytes.readableBytesView), to: D.self)
            default:
                return try Self.decoder.decode(D.self, from: data)
            }
        }

        /// Whether `D` is `Plain` or `Plain?` (`optional`: the optional's identity).
        @inline(__always)
        private static func `is`<Plain, D>(_: D.Type, _: Plain.Type, or optional: ObjectIdentifier) -> Bool {
            D.self == Plain.self || ObjectIdentifier(D.self) == optional
        }

        /// `value` as a `D` that ``is(_:_:or:)`` matched: the value itself or its optional.
        @inline(__always)
        private static func cast<Plain, D>(_ value: Plain, to: D.Type) -> D {
            D.self == Plain.self ? unsafeBitCast(value, to: D.self) : unsafeBitCast(Plain?.some(value), to: D.self)
        }

        /// The optionals a column decodes to, looked up once: this decode is reached unspecialized
        /// (through SQLKit's `SQLRow`), where writing `Int?.self` asks the runtime for the type's
        /// metadata at every column — 9 % of the node's time under a REST host list (bench/README.md, P6).
        private enum Optionals {
            static let int = ObjectIdentifier(Int?.self)
            static let int64 = ObjectIdentifier(Int64?.self)
            static let string = ObjectIdentifier(String?.self)
            static let double = ObjectIdentifier(Double?.self)
            static let data = ObjectIdentifier(Data?.self)
        }
    }
}
