/// Keeps the first and the last bytes of a stream within a fixed cap, counting everything.
///
/// Command output can be endless; operators need its beginning (what started) and its end
/// (how it ended), so the middle is what is dropped.
public struct HeadTailBuffer: Sendable {
    public let capacity: Int
    private var head: [UInt8] = []
    private var tail: [UInt8] = []
    /// Index of the oldest byte in `tail`, which is a ring once full.
    private var tailStart = 0
    /// Every byte appended, kept or not.
    public private(set) var totalBytes: UInt64 = 0

    public init(capacity: Int) {
        self.capacity = max(capacity, 2)
        self.head.reserveCapacity(min(self.capacity / 2, 64 * 1024))
    }

    private var headCapacity: Int { self.capacity / 2 }
    private var tailCapacity: Int { self.capacity - self.headCapacity }

    /// True when bytes were dropped.
    public var isTruncated: Bool { self.totalBytes > UInt64(self.capacity) }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        self.totalBytes += UInt64(bytes.count)
        var rest = bytes[...]
        if self.head.count < self.headCapacity {
            let take = min(self.headCapacity - self.head.count, rest.count)
            self.head.append(contentsOf: rest.prefix(take))
            rest = rest.dropFirst(take)
        }
        guard !rest.isEmpty else { return }
        if rest.count >= self.tailCapacity {
            self.tail = Array(rest.suffix(self.tailCapacity))
            self.tailStart = 0
            return
        }
        // Fill the ring, then overwrite its oldest bytes: at most two copies a chunk (a command
        // printing megabytes went byte by byte here).
        if self.tail.count < self.tailCapacity {
            let take = min(self.tailCapacity - self.tail.count, rest.count)
            self.tail.append(contentsOf: rest.prefix(take))
            rest = rest.dropFirst(take)
            guard !rest.isEmpty else { return }
        }
        let start = self.tailStart
        let capacity = self.tailCapacity
        self.tail.withUnsafeMutableBytes { ring in
            let source = UnsafeRawBufferPointer(rebasing: rest)
            let first = min(source.count, capacity - start)
            ring.baseAddress!.advanced(by: start).copyMemory(from: source.baseAddress!, byteCount: first)
            if first < source.count {
                ring.baseAddress!.copyMemory(from: source.baseAddress!.advanced(by: first), byteCount: source.count - first)
            }
        }
        self.tailStart = (start + rest.count) % capacity
    }

    public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { self.append($0) }
    }

    /// The kept bytes; where the middle was dropped, a marker line says how much.
    public var bytes: [UInt8] {
        var result = self.head
        if self.isTruncated {
            let omitted = self.totalBytes - UInt64(self.head.count + self.tail.count)
            result.append(contentsOf: Array("\n... [\(omitted) bytes omitted] ...\n".utf8))
        }
        result.append(contentsOf: self.tail[self.tailStart...])
        result.append(contentsOf: self.tail[..<self.tailStart])
        return result
    }
}
