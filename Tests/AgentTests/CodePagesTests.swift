import Foundation
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

@testable import Agent

@Suite("Start-up pages")
struct CodePagesTests {
    static let sample = """
        55a000000000-55a000200000 r--p 00000000 fd:01 4242                       /usr/bin/boot
        Size:               2048 kB
        Rss:                1024 kB
        Anonymous:             0 kB
        VmFlags: rd mr mw me sd
        55a000200000-55a001c00000 r-xp 00200000 fd:01 4242                       /usr/bin/boot
        Rss:               26000 kB
        Anonymous:             0 kB
        55a001c00000-55a001d00000 r--p 01c00000 fd:01 4242                       /usr/bin/boot
        Rss:                 900 kB
        Anonymous:           880 kB
        55a001d00000-55a001d10000 rw-p 01d00000 fd:01 4242                       /usr/bin/boot
        Rss:                  64 kB
        Anonymous:            64 kB
        55a002000000-55a002400000 rw-p 00000000 00:00 0                          [heap]
        Rss:                3000 kB
        Anonymous:          3000 kB
        7f0000000000-7f0000001000 r--p 00000000 fd:01 77                         /usr/lib/locale/C.utf8 (deleted)
        Rss:                   4 kB
        Anonymous:             0 kB
        7f0000100000-7f0000101000 ---p 00000000 00:00 0
        Rss:                   0 kB
        7ffd00000000-7ffd00002000 r--p 00000000 00:00 0                          [vvar]
        Rss:                   8 kB
        Anonymous:             0 kB
        """

    @Test("Reads the mappings of smaps; only read-only file pages with no private copy are released")
    func readsSmaps() {
        let mappings = CodePages.mappings(Self.sample)
        #expect(mappings.count == 8)
        #expect(mappings[1] == CodePages.Mapping(
            start: 0x55a0_0020_0000, end: 0x55a0_01c0_0000, permissions: "r-xp", path: "/usr/bin/boot", residentBytes: 26000 * 1024
        ))
        #expect(mappings[5].path == "/usr/lib/locale/C.utf8 (deleted)")
        #expect(mappings[6].path.isEmpty)
        // rodata, text and a data file, yes; relocated data made read-only (private pages), data,
        // heap, an inaccessible gap and the kernel's page, no.
        #expect(mappings.map(\.isReleasable) == [true, true, false, false, false, true, false, false])
    }

    @Test("Released pages of a read-only file mapping leave memory and read back the same; a mapping with private pages keeps them")
    func releasesCleanPagesOnly() throws {
        let path = try makeTemporaryDirectory("code-pages") + "/file"
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let size = 1 << 20
        let bytes = (0 ..< size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let descriptor = open(path, O_RDONLY)
        #expect(descriptor >= 0)
        defer { close(descriptor) }
        // Clean, read-only: what code and constants are.
        let clean = try #require(mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0))
        defer { munmap(clean, size) }
        // Written, then made read-only: what the loader leaves of relocated data (RELRO).
        let relocated = try #require(mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, descriptor, 0))
        defer { munmap(relocated, size) }
        relocated.storeBytes(of: 0xAB, toByteOffset: 4096, as: UInt8.self)
        #expect(mprotect(relocated, size, PROT_READ) == 0)
        var sum = 0
        for offset in stride(from: 0, to: size, by: 4096) { sum &+= Int(clean.load(fromByteOffset: offset + 1, as: UInt8.self)) }
        func resident(_ start: UnsafeMutableRawPointer) throws -> CodePages.Mapping? {
            try CodePages.mappings(#require(CodePages.smaps())).first { $0.start == Int(bitPattern: start) }
        }
        #expect(try resident(clean)?.residentBytes == size, "every page touched is mapped")
        #expect(try resident(clean)?.isReleasable == true)
        #expect(try resident(relocated)?.isReleasable == false, "a private page makes it not releasable")

        let released = CodePages.release()
        #expect(released.mappings >= 1 && released.bytes >= size, "\(released)")
        // Nothing else touches this mapping: all of it left memory.
        #expect(try resident(clean)?.residentBytes == 0)
        // Read again, from the page cache: the same bytes.
        #expect(Array(UnsafeRawBufferPointer(start: clean, count: size)) == bytes)
        // The private page kept what was written into it.
        #expect(relocated.load(fromByteOffset: 4096, as: UInt8.self) == 0xAB)
        #expect(sum == stride(from: 0, to: size, by: 4096).reduce(0) { $0 &+ Int(bytes[$1 + 1]) })
    }
}
