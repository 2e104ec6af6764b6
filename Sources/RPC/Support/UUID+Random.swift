public import FoundationEssentials

extension UUID {
    /// A new random (version 4) UUID from the system's generator, `getrandom(2)`: what commands,
    /// subtasks and staging names are called. Foundation's `UUID()` on Linux opens and reads
    /// /dev/urandom for each one (~20 µs of system calls: ten thousand opens for a task of ten
    /// thousand hosts, and one on every RunCommand).
    public static func random() -> UUID {
        var generator = SystemRandomNumberGenerator()
        let (high, low) = (generator.next() as UInt64, generator.next() as UInt64)
        var bytes = (0 ..< 16).map { index in UInt8(truncatingIfNeeded: (index < 8 ? high : low) >> (8 * (7 - index % 8))) }
        bytes[6] = bytes[6] & 0x0F | 0x40  // version 4
        bytes[8] = bytes[8] & 0x3F | 0x80  // RFC 4122 variant
        return UUID(uuid: (
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
            bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
        ))
    }
}
