import NIOCore
import NIOEmbedded
@testable import Server
import Testing

/// What TLS decrypted reaches HTTP/2 in a buffer of its own (P1 memory: NIOSSL's 32 KiB read
/// buffer must not be kept by the frame decoder).
@Suite("Reads handed on compact")
struct CompactReadsTests {
    @Test("A read in a large buffer is handed on whole, in a buffer sized to it")
    func compact() throws {
        let channel = EmbeddedChannel(handler: CompactReads())
        var read = channel.allocator.buffer(capacity: 32 * 1024)
        read.writeString("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        read.moveReaderIndex(forwardBy: 4)
        try channel.writeInbound(read)

        let handed = try #require(try channel.readInbound(as: ByteBuffer.self))
        #expect(handed.readableBytesView.elementsEqual(read.readableBytesView))
        #expect(handed.capacity < 1024, "handed on in a \(handed.capacity)-byte buffer")
        #expect(try channel.finish().isClean)
    }
}
