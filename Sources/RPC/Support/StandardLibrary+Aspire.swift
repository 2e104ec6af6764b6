extension Duration {
    /// Whole milliseconds, as the protocol and the store carry times.
    public var milliseconds: Int64 {
        self.components.seconds * 1000 + self.components.attoseconds / 1_000_000_000_000_000
    }

    /// Seconds with their fraction.
    public var seconds: Double {
        Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18
    }
}

extension Array {
    /// Consecutive slices of at most `size` elements (batched statements, bounded bind counts).
    public func chunks(of size: Int) -> [ArraySlice<Element>] {
        precondition(size > 0)
        return stride(from: 0, to: self.count, by: size).map { self[$0 ..< Swift.min($0 + size, self.count)] }
    }
}

extension Array where Element: Hashable {
    /// The elements in order, each first occurrence only.
    public func uniqued() -> [Element] {
        var seen = Set<Element>()
        return self.filter { seen.insert($0).inserted }
    }
}

extension Sequence where Element == UInt8 {
    /// Lower-case hexadecimal, two digits a byte: tokens, SHA256 digests, hashed file names.
    public var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(self.underestimatedCount * 2)
        for byte in self {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
