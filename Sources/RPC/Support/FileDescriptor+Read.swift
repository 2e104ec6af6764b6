public import SystemPackage

// Reading files through swift-system's descriptors: the agent has no `FileHandle` (it is
// Foundation's, and would link all of Foundation and ICU's data into `boot`).

extension FileDescriptor {
    /// Up to `count` bytes from the current offset: fewer at the end of the file, none past it.
    public func read(upTo count: Int) throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            initialized = try self.read(into: UnsafeMutableRawBufferPointer(buffer))
        }
    }

    /// What is left of the file, from the current offset to the end, in pieces of at most
    /// `size` bytes.
    public func readToEnd(inPiecesOf size: Int = 1 << 20, _ body: ([UInt8]) throws -> Void) throws {
        while true {
            let piece = try self.read(upTo: size)
            if piece.isEmpty { return }
            try body(piece)
        }
    }

    /// Opens `path` for reading, hands it to `body`, and closes it.
    public static func reading<T>(_ path: String, _ body: (FileDescriptor) throws -> T) throws -> T {
        let file = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
        return try file.closeAfter { try body(file) }
    }
}
